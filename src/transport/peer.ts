/**
 * The verified mTLS identity of the connection that called Signalbox, and how it reaches the
 * policy.
 *
 * Only a certificate the TLS handshake verified against `server.tls.client_ca_file` counts
 * (`socket.authorized`); a certificate presented on a connection that does not require one and
 * fails verification is no identity at all. The identity is, in this order: the first SPIFFE URI
 * SAN (`spiffe://…`), else the subject CN, else the first DNS SAN.
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import type { DecisionRequest } from '../decide/decision.js';

/** The identity named by a certificate (DER), in the documented order; undefined when it names none. */
export function principalOfCertificate(der: Buffer): string | undefined {
  const cert = new X509Certificate(der);
  const names = subjectAltNames(cert.subjectAltName);
  const spiffe = names.find((n) => n.type === 'URI' && n.value.toLowerCase().startsWith('spiffe://'));
  if (spiffe) return spiffe.value;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  if (cn) return cn;
  return names.find((n) => n.type === 'DNS')?.value;
}

/** Node's `subjectAltName` text ("DNS:a, URI:b"; values with commas or quotes are JSON-quoted) as entries. */
function subjectAltNames(text: string | undefined): Array<{ type: string; value: string }> {
  if (!text) return [];
  const entries: Array<{ type: string; value: string }> = [];
  const pattern = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (const match of text.matchAll(pattern)) {
    const raw = match[2] ?? '';
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        continue;
      }
    }
    entries.push({ type: (match[1] ?? '').trim(), value });
  }
  return entries;
}

/** The verified identity of a TLS peer certificate as Node reports it, or undefined. */
export function principalOfPeer(certificate: PeerCertificate | undefined): string | undefined {
  if (!certificate || !certificate.raw || certificate.raw.length === 0) return undefined;
  return principalOfCertificate(certificate.raw);
}

/** The verified mTLS identity of an HTTP(S) connection; undefined in plaintext or without a verified certificate. */
export function principalOfSocket(socket: Socket): string | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  return principalOfPeer(socket.getPeerCertificate());
}

/**
 * Adds the connection's identity to a request: always as `input.door.peer_principal`, and, when
 * `asSource` (the native API and the HTTP doors, where the caller is the client), as
 * `input.source_principal`, `input.actor.principal` and `attributes.source.principal`, replacing
 * any the caller declared: a verified identity wins over a claimed one. Envoy's Check and
 * ext_proc pass `asSource` false: there the caller is Envoy, and Envoy's `source.principal`
 * names the end client.
 */
export function withPeerPrincipal(request: DecisionRequest, principal: string | undefined, asSource: boolean): DecisionRequest {
  if (!principal) return request;
  if (!asSource) return { ...request, peerPrincipal: principal };
  const source = (request.attributes.source as Record<string, unknown> | undefined) ?? {};
  return {
    ...request,
    attributes: { ...request.attributes, source: { ...source, principal } },
    sourcePrincipal: principal,
    peerPrincipal: principal,
  };
}
