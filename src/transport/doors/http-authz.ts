/**
 * The HTTP authorization doors: Envoy ext_authz in HTTP mode, nginx `auth_request` and Caddy
 * `forward_auth`. Each maps its gateway's subrequest to a DecisionRequest (through the shared
 * {@link decisionRequestFromHttp}) and the Decision back to the HTTP answer that gateway acts on.
 * Nothing here decides: identity, policy, enforcement and audit are the pipeline's.
 *
 * | door | Signalbox path | original request from | body |
 * | --- | --- | --- | --- |
 * | `envoy.ext_authz.http` | `/authz/envoy/<original path>` (Envoy's `path_prefix: /authz/envoy`) | the method, path and headers Envoy forwards | with `with_request_body` |
 * | `nginx.auth_request` | `/authz/nginx` | `X-Original-Method`, `X-Original-URI`, `X-Original-Host` | never |
 * | `caddy.forward_auth` | `/authz/caddy` | `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host` | never |
 *
 * Allow is 200 with the upstream headers as response headers (the gateway copies the ones its
 * config names; Envoy also gets `x-envoy-auth-headers-to-remove`). Deny is the decision's status,
 * headers and body, except on nginx, which only passes 401 and 403 on: there every deny other than
 * 401 is a 403, and the real status and body travel in `x-signalbox-deny-status` and
 * `x-signalbox-deny-body` for the config's `error_page` location to answer with.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignalboxError, describeCause } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { DecisionPipeline } from '../../decide/decide.js';
import type { Decision, DecisionRequest } from '../../decide/decision.js';
import type { HeaderEntry } from '../../policy/result.js';
import { decisionRequestFromHttp, type ForwardedRequest } from './http-request.js';
import { readLimitedBody } from './read-body.js';
import { principalOfSocket, withPeerPrincipal } from '../peer.js';

/** What a door handler needs from the HTTP server. */
export interface AuthzDoorContext {
  readonly pipeline: DecisionPipeline;
  readonly logger: Logger;
}

/**
 * Which gateway's HTTP authorization protocol a request speaks; selects both the request mapping
 * and the answer's shape.
 */
export type AuthzDoor = 'envoy' | 'nginx' | 'caddy';

/** Door names, as `input.door.name` and the audit trail's `door` show them. */
export const AUTHZ_DOOR_NAMES: Readonly<Record<AuthzDoor, string>> = {
  envoy: 'envoy.ext_authz.http',
  nginx: 'nginx.auth_request',
  caddy: 'caddy.forward_auth',
};

/** The route prefix of the Envoy door: Envoy's `path_prefix` is this without the trailing "/". */
export const ENVOY_HTTP_PREFIX = '/authz/envoy/';
/** The nginx door's path, for the `auth_request` location to proxy to. */
export const NGINX_AUTH_PATH = '/authz/nginx';
/** The Caddy door's path, for `forward_auth` to call. */
export const CADDY_AUTH_PATH = '/authz/caddy';

/** nginx door: the status and body of a deny that nginx itself would not pass on (anything but 401/403). */
export const DENY_STATUS_HEADER = 'x-signalbox-deny-status';
/**
 * nginx door: the deny body, compacted into one header line (at most 8 KiB, else a short error
 * naming the decision).
 */
export const DENY_BODY_HEADER = 'x-signalbox-deny-body';
/** Envoy HTTP mode: header names (comma-separated) Envoy removes from the upstream request on 200. */
export const ENVOY_HEADERS_TO_REMOVE = 'x-envoy-auth-headers-to-remove';

/** Largest body the Envoy door reads; beyond it the request is decided as truncated (413 by the default policy). */
export const MAX_AUTHZ_BODY_BYTES = 4 * 1024 * 1024;
/** Largest deny body carried in a header to nginx (its proxy_buffer_size must hold it). */
const MAX_HEADER_BODY_BYTES = 8 * 1024;

/** Headers about the hop from the gateway to Signalbox, not the original request. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy-connection', 'trailer']);
/** Headers our own response framing owns; a policy cannot set them through an HTTP door. */
const FRAMING_HEADERS = new Set([...HOP_HEADERS, 'content-length', 'date']);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const METHOD = /^[A-Z][A-Z0-9_-]{0,31}$/;

function flatHeaders(req: IncomingMessage, drop: ReadonlySet<string>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_HEADERS.has(name) || drop.has(name)) continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

function single(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text.trim() === '' ? undefined : text.trim();
}

/** The last hop of X-Forwarded-For: the address the gateway itself saw (earlier entries are the client's say). */
function lastForwardedFor(req: IncomingMessage): string | undefined {
  const value = single(req, 'x-forwarded-for');
  if (!value) return undefined;
  const last = value.split(',').at(-1)?.trim();
  return last ? last : undefined;
}

function requireMethod(value: string | undefined, header: string): string {
  if (!value) throw new SignalboxError('request_malformed', `the ${header} header is missing`);
  const method = value.toUpperCase();
  if (!METHOD.test(method)) throw new SignalboxError('request_malformed', `the ${header} header is not an HTTP method`);
  return method;
}

function requirePath(value: string | undefined, header: string): string {
  if (!value) throw new SignalboxError('request_malformed', `the ${header} header is missing`);
  if (!value.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(value)) throw new SignalboxError('request_malformed', `the ${header} header is not an origin-form request target`);
  return value;
}

/** Envoy HTTP mode: the original method, `path_prefix` + path, the allowed headers, and the body when buffered. */
async function fromEnvoy(req: IncomingMessage): Promise<ForwardedRequest> {
  const raw = req.url ?? '';
  if (!raw.startsWith(ENVOY_HTTP_PREFIX)) throw new SignalboxError('request_malformed', `the path does not start with ${ENVOY_HTTP_PREFIX}`);
  const path = requirePath(raw.slice(ENVOY_HTTP_PREFIX.length - 1), 'path');
  const method = requireMethod(req.method, 'method');
  const { body, overLimit: truncated } = await readLimitedBody(req, MAX_AUTHZ_BODY_BYTES);
  const headers = flatHeaders(req, new Set());
  // Envoy marks a body cut at max_request_bytes itself; a body cut here is marked the same way.
  if (truncated) headers['x-envoy-auth-partial-body'] = 'true';
  const host = single(req, 'host');
  const scheme = single(req, 'x-forwarded-proto');
  const source = lastForwardedFor(req);
  return {
    method,
    path,
    headers,
    body,
    protocol: `HTTP/${req.httpVersion}`,
    ...(host ? { host } : {}),
    ...(scheme ? { scheme } : {}),
    ...(source ? { sourceAddress: source } : {}),
  };
}

const NGINX_CONTROL = new Set(['x-original-method', 'x-original-uri', 'x-original-host', 'x-original-proto', 'x-real-ip', 'content-length']);

/** nginx auth_request: the subrequest carries the client's headers; the config names the original method, URI and host. */
function fromNginx(req: IncomingMessage): ForwardedRequest {
  const method = requireMethod(single(req, 'x-original-method'), 'X-Original-Method');
  const path = requirePath(single(req, 'x-original-uri'), 'X-Original-URI');
  const headers = flatHeaders(req, NGINX_CONTROL);
  const host = single(req, 'x-original-host') ?? single(req, 'x-forwarded-host') ?? single(req, 'host');
  if (host) headers.host = host;
  const scheme = single(req, 'x-original-proto') ?? single(req, 'x-forwarded-proto');
  const source = single(req, 'x-real-ip') ?? lastForwardedFor(req);
  return {
    method,
    path,
    headers,
    ...(host ? { host } : {}),
    ...(scheme ? { scheme } : {}),
    ...(source ? { sourceAddress: source } : {}),
  };
}

const CADDY_CONTROL = new Set(['x-forwarded-method', 'x-forwarded-uri', 'content-length']);

/** Caddy forward_auth: a GET with the client's headers plus X-Forwarded-Method/-Uri/-Host/-Proto/-For. */
function fromCaddy(req: IncomingMessage): ForwardedRequest {
  const method = requireMethod(single(req, 'x-forwarded-method'), 'X-Forwarded-Method');
  const path = requirePath(single(req, 'x-forwarded-uri'), 'X-Forwarded-Uri');
  const headers = flatHeaders(req, CADDY_CONTROL);
  const host = single(req, 'x-forwarded-host') ?? single(req, 'host');
  if (host) headers.host = host;
  const scheme = single(req, 'x-forwarded-proto');
  const source = lastForwardedFor(req);
  return {
    method,
    path,
    headers,
    ...(host ? { host } : {}),
    ...(scheme ? { scheme } : {}),
    ...(source ? { sourceAddress: source } : {}),
  };
}

/** Maps the gateway's subrequest to a DecisionRequest; throws request_malformed when it cannot. */
export async function authzRequest(door: AuthzDoor, req: IncomingMessage): Promise<DecisionRequest> {
  const name = AUTHZ_DOOR_NAMES[door];
  // The gateway's verified mTLS identity is the only one these doors know: it is the source.
  const peer = principalOfSocket(req.socket);
  if (door === 'envoy') return withPeerPrincipal(decisionRequestFromHttp(name, await fromEnvoy(req), false), peer, true);
  const forwarded = door === 'nginx' ? fromNginx(req) : fromCaddy(req);
  return withPeerPrincipal({ ...decisionRequestFromHttp(name, forwarded, false), bodyForwarded: false }, peer, true);
}

/**
 * A header value Node will write: text beyond Latin-1 goes out as its UTF-8 bytes (what the
 * gateway passes on), control characters (a response-splitting attempt, or a policy's newline)
 * become spaces.
 */
function wireValue(value: string): string {
  return Buffer.from(value.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, ' '), 'utf8').toString('latin1');
}

/** Entries grouped by lower-cased name in first-seen order, skipping names HTTP cannot carry or our framing owns. */
function grouped(entries: readonly HeaderEntry[], logger: Logger, decisionId: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const entry of entries) {
    const name = entry.key.toLowerCase();
    if (!TOKEN.test(name) || FRAMING_HEADERS.has(name)) {
      logger.debug({ decision_id: decisionId, header: name.slice(0, 64) }, 'header not representable on an HTTP door; skipped');
      continue;
    }
    const values = out.get(name) ?? [];
    values.push(wireValue(entry.value));
    out.set(name, values);
  }
  return out;
}

/**
 * The deny body as one header line for nginx: JSON re-serialised on one line (same document),
 * anything else with its control characters spaced out; too long for a header, a short JSON
 * error naming the decision instead.
 */
function bodyAsHeader(decision: Decision): string {
  let text = decision.body;
  try {
    text = JSON.stringify(JSON.parse(decision.body));
  } catch {
    // Not JSON: sent as text.
  }
  if (Buffer.byteLength(text) > MAX_HEADER_BODY_BYTES) {
    text = JSON.stringify({ error: { code: decision.reasons[0] ?? 'denied', message: 'the request was denied', decision_id: decision.decisionId } });
  }
  return wireValue(text);
}

function send(res: ServerResponse, status: number, headers: Map<string, string[]>, body: string): void {
  for (const [name, values] of headers) res.setHeader(name, values.length === 1 ? (values[0] as string) : values);
  const payload = Buffer.from(body, 'utf8');
  res.setHeader('content-length', payload.length);
  res.writeHead(status);
  res.end(payload);
}

/** Writes the decision as `door`'s gateway expects it. */
export function writeDecision(door: AuthzDoor, res: ServerResponse, decision: Decision, logger: Logger): void {
  const id = decision.decisionId;
  if (decision.allowed) {
    // One line per name (values joined): nginx's $upstream_http_* and Envoy's header matchers see one value.
    const headers = new Map<string, string[]>();
    for (const [name, values] of grouped(decision.headers, logger, id)) headers.set(name, [values.join(', ')]);
    for (const [name, values] of grouped(decision.responseHeadersToAdd, logger, id)) if (!headers.has(name)) headers.set(name, [values.join(', ')]);
    if (door === 'envoy' && decision.requestHeadersToRemove.length > 0) {
      const names = decision.requestHeadersToRemove.map((h) => h.toLowerCase()).filter((h) => TOKEN.test(h) && !headers.has(h));
      if (names.length > 0) headers.set(ENVOY_HEADERS_TO_REMOVE, [names.join(',')]);
    }
    send(res, 200, headers, '');
    return;
  }
  const headers = grouped(decision.headers, logger, id);
  let status = decision.httpStatus;
  if (door === 'nginx') {
    // auth_request passes 401 and 403 on and turns anything else into a 500 without a body; the
    // config's error_page answers with these two headers instead.
    headers.set(DENY_STATUS_HEADER, [String(status)]);
    headers.set(DENY_BODY_HEADER, [bodyAsHeader(decision)]);
    if (status !== 401) status = 403;
  }
  send(res, status, headers, decision.body);
}

/** The decision for one subrequest: the pipeline's, or a fail-closed deny when it cannot be mapped. */
async function decideFor(door: AuthzDoor, req: IncomingMessage, context: AuthzDoorContext): Promise<Decision> {
  const name = AUTHZ_DOOR_NAMES[door];
  let request: DecisionRequest;
  try {
    request = await authzRequest(door, req);
  } catch (error) {
    context.logger.warn({ code: 'request_malformed', door: name, cause: describeCause(error) }, 'cannot map request');
    const cause = error instanceof SignalboxError ? error : new SignalboxError('request_malformed', 'the request could not be read', { cause: error });
    return context.pipeline.rejectUnreadable(name, cause);
  }
  try {
    return await context.pipeline.decide(request);
  } catch (error) {
    // decide() never rejects by contract; if it ever does, the answer is still a deny.
    context.logger.error({ code: 'internal_error', door: name, cause: describeCause(error) }, 'pipeline rejected');
    return context.pipeline.rejectUnreadable(name, new SignalboxError('internal_error', 'pipeline failure', { cause: error }));
  }
}

/** The route handler of one door: an error never allows, and its cause is logged, never answered. */
export async function handleAuthz(door: AuthzDoor, req: IncomingMessage, res: ServerResponse, context: AuthzDoorContext): Promise<void> {
  const decision = await decideFor(door, req, context);
  // A body cut short at MAX_AUTHZ_BODY_BYTES is not read to its end: close rather than drain it.
  if (door === 'envoy' && !req.complete) res.setHeader('connection', 'close');
  writeDecision(door, res, decision, context.logger);
}
