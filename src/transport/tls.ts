/**
 * TLS for both listeners (`server.tls`): the certificate, key and client CA files, validated
 * together, watched, and handed to the gRPC and HTTPS servers whenever they change.
 *
 * A replacement is loaded only whole and valid: the certificate parses, is inside its validity
 * period and matches the key, and the CA bundle parses. Anything else is logged as `tls_invalid`
 * and the previous material keeps serving, so a half-written secret or a wrong key never takes
 * the listeners down. A certificate and key replaced one after the other (not atomically) are
 * refused at the first change and loaded at the second.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { FileWatch, fileFingerprint } from '../core/file-watch.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { TlsConfig } from './config.js';

/** One loaded, validated set of TLS files. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The client CA bundle; absent, clients are not asked for a certificate. */
  readonly ca?: Buffer;
  /** The leaf certificate's SHA-256 fingerprint, for logs. */
  readonly fingerprint: string;
  readonly notAfter: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

async function readPem(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new SignalboxError('tls_invalid', `server.tls.${key}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? describeCause(error)}`, { cause: error });
  }
}

function certificates(pem: Buffer, path: string, key: string): X509Certificate[] {
  const blocks = pem.toString('utf8').match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new SignalboxError('tls_invalid', `server.tls.${key}: ${path} holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new SignalboxError('tls_invalid', `server.tls.${key}: certificate ${i + 1} in ${path} does not parse: ${describeCause(error)}`, { cause: error });
    }
  });
}

/**
 * Reads and validates the files `config` names (relative paths from the working directory);
 * throws `tls_invalid` naming the key and the problem. Never includes key material in a message.
 */
export async function loadTlsMaterial(config: TlsConfig, now: Date = new Date()): Promise<TlsMaterial> {
  const certPath = resolve(config.cert_file);
  const keyPath = resolve(config.key_file);
  const cert = await readPem(certPath, 'cert_file');
  const key = await readPem(keyPath, 'key_file');
  const leaf = certificates(cert, certPath, 'cert_file')[0]!;
  if (now < new Date(leaf.validFrom) || now > new Date(leaf.validTo)) {
    throw new SignalboxError('tls_invalid', `server.tls.cert_file: ${certPath} is valid from ${leaf.validFrom} to ${leaf.validTo}, not now`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new SignalboxError('tls_invalid', `server.tls.key_file: ${keyPath} is not a PEM private key`, { cause: error });
  }
  if (!matches) throw new SignalboxError('tls_invalid', `server.tls.key_file: ${keyPath} is not the key of the certificate in ${certPath}`);
  let ca: Buffer | undefined;
  if (config.client_ca_file) {
    const caPath = resolve(config.client_ca_file);
    ca = await readPem(caPath, 'client_ca_file');
    certificates(ca, caPath, 'client_ca_file');
  }
  try {
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (error) {
    throw new SignalboxError('tls_invalid', `server.tls: the files do not make a TLS context: ${describeCause(error)}`, { cause: error });
  }
  return { cert, key, ...(ca ? { ca } : {}), fingerprint: leaf.fingerprint256, notAfter: leaf.validTo };
}

/** Whether connections without a verified client certificate are refused. */
export function requiresClientCert(config: TlsConfig): boolean {
  return config.require_client_cert ?? config.client_ca_file !== undefined;
}

/**
 * The TLS files of a running server: the current material, reloaded when a file changes, and
 * pushed to every listener attached. {@link TlsFiles.close} stops watching.
 */
export class TlsFiles {
  readonly #config: TlsConfig;
  readonly #logger: Logger;
  #current: TlsMaterial;
  readonly #listeners = new Set<(material: TlsMaterial) => void>();
  readonly #watches: FileWatch[] = [];
  #reloading: Promise<boolean> = Promise.resolve(false);

  private constructor(config: TlsConfig, material: TlsMaterial, logger: Logger) {
    this.#config = config;
    this.#current = material;
    this.#logger = logger;
  }

  /** Loads the files (throws `tls_invalid`), then watches them unless `watch` is false. */
  static async open(config: TlsConfig, logger: Logger, options: { watch?: boolean } = {}): Promise<TlsFiles> {
    const paths = [config.cert_file, config.key_file, ...(config.client_ca_file ? [config.client_ca_file] : [])].map((p) => resolve(p));
    const seen = await Promise.all(paths.map((p) => fileFingerprint(p)));
    const files = new TlsFiles(config, await loadTlsMaterial(config), logger);
    const current = files.#current;
    logger.info({ cert_file: paths[0], fingerprint: current.fingerprint, not_after: current.notAfter, client_ca: current.ca !== undefined, require_client_cert: requiresClientCert(config) }, 'TLS enabled on both listeners');
    paths.forEach((path, i) => {
      files.#watches.push(
        new FileWatch(path, {
          watch: options.watch !== false,
          pollIntervalMs: config.poll_interval_ms,
          debounceMs: 100,
          seen: seen[i]!,
          onChange: async () => {
            await files.reload();
          },
          logger,
          what: 'TLS file',
        }),
      );
    });
    return files;
  }

  /** The material serving now. */
  get current(): TlsMaterial {
    return this.#current;
  }

  /** Whether clients must present a verified certificate. */
  get requireClientCert(): boolean {
    return requiresClientCert(this.#config);
  }

  /**
   * Reads the files again now; true when new material was loaded. A failure is logged as
   * `tls_invalid` and the previous material keeps serving. Never rejects; reloads run in turn.
   */
  reload(): Promise<boolean> {
    this.#reloading = this.#reloading.then(async () => {
      let next: TlsMaterial;
      try {
        next = await loadTlsMaterial(this.#config);
      } catch (error) {
        this.#logger.error({ code: 'tls_invalid', problem: describeCause(error) }, 'TLS files changed but cannot be loaded; the previous certificate keeps serving');
        return false;
      }
      const same = next.cert.equals(this.#current.cert) && next.key.equals(this.#current.key) && (next.ca?.equals(this.#current.ca ?? Buffer.alloc(0)) ?? this.#current.ca === undefined);
      if (same) return false;
      this.#current = next;
      for (const listener of this.#listeners) listener(next);
      this.#logger.info({ fingerprint: next.fingerprint, not_after: next.notAfter }, 'TLS certificate reloaded');
      return true;
    });
    return this.#reloading;
  }

  /** Calls `listener` with every new material; returns the unsubscribe. */
  onUpdate(listener: (material: TlsMaterial) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Options for node:https's createServer; pair with {@link TlsFiles.attach} for reloads. */
  httpsOptions(): HttpsServerOptions {
    const m = this.#current;
    return { cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}), requestCert: m.ca !== undefined, rejectUnauthorized: this.requireClientCert };
  }

  /** Gives an HTTPS server every reloaded certificate (new connections use it; open ones keep theirs). */
  attach(server: HttpsServer): void {
    const off = this.onUpdate((m) => server.setSecureContext({ cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) }));
    server.once('close', off);
  }

  /**
   * gRPC server credentials fed by these files, reloaded with them (grpc-js's certificate
   * provider credentials: the server calls setSecureContext on each update).
   */
  grpcCredentials(): grpc.ServerCredentials {
    const provider = new TlsCertificateProvider(this);
    // One provider serves both roles; grpc-js 1.14 passes these two arguments on in swapped
    // order, which a single provider makes harmless.
    return grpc.experimental.createCertificateProviderServerCredentials(provider, this.#current.ca ? provider : null, this.requireClientCert);
  }

  /** Stops watching the files. */
  async close(): Promise<void> {
    this.#listeners.clear();
    await Promise.all(this.#watches.map((w) => w.close()));
  }
}

/** grpc-js's CertificateProvider over {@link TlsFiles}: delivers the current material, then every reload. */
class TlsCertificateProvider implements grpc.experimental.CertificateProvider {
  readonly #files: TlsFiles;
  readonly #ca = new Map<grpc.experimental.CaCertificateUpdateListener, () => void>();
  readonly #identity = new Map<grpc.experimental.IdentityCertificateUpdateListener, () => void>();

  constructor(files: TlsFiles) {
    this.#files = files;
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    const deliver = (m: TlsMaterial): void => listener(m.ca ? { caCertificate: m.ca } : null);
    this.#ca.set(listener, this.#files.onUpdate(deliver));
    // Later, not now: grpc-js registers its own watcher only after adding this listener.
    queueMicrotask(() => deliver(this.#files.current));
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.#ca.get(listener)?.();
    this.#ca.delete(listener);
  }

  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    const deliver = (m: TlsMaterial): void => listener({ certificate: m.cert, privateKey: m.key });
    this.#identity.set(listener, this.#files.onUpdate(deliver));
    queueMicrotask(() => deliver(this.#files.current));
  }

  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.#identity.get(listener)?.();
    this.#identity.delete(listener);
  }
}
