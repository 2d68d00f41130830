/**
 * OPA's REST Data API as a door: anything that already asks OPA (`POST /v1/data/{path}` with
 * `{"input": …}`, answered `{"result": …}`) can ask Signalbox instead, and Kong's OPA plugin
 * works unchanged. The request is mapped through {@link decisionRequestFromHttp}, decided by the
 * pipeline (identity, policy, budgets, audit), and answered in the shape the caller expects.
 *
 * | path | input | result |
 * | --- | --- | --- |
 * | `/v1/data/signalbox/kong` | Kong's OPA plugin input (`input.request.http`) | Kong's object: `{allow, headers}` / `{allow: false, status, headers, message}` |
 * | `/v1/data/signalbox/authz/decision` | any of the three shapes below | the decision in the policy-result shape (`allowed`, `headers`, `http_status`, `body`, …) |
 * | `/v1/data/signalbox/authz/allow` | any of the three shapes below | a bare boolean |
 *
 * Input shapes (the generic paths tell them apart by their keys): an Envoy-like document
 * (`input.attributes.request.http`, as opa-envoy-plugin's input), Kong's (`input.request.http`),
 * or a plain HTTP description (`input.method`, `input.path`, `input.headers`, `input.body`, …).
 *
 * As OPA's Data API: `POST` with the body `{"input": …}`, or `GET` with `?input=<JSON>`; the answer
 * is 200 with `{"decision_id", "result"}`; a body or input that cannot be read is 400
 * `{"code": "invalid_parameter", "message"}` (OPA's error shape and code; the deny is audited and
 * its `decision_id` is added); a path Signalbox does not serve is 200 without `result` (OPA's
 * "undefined document"), with a `warning` naming the served paths.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignalboxError, describeCause } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { DecisionPipeline } from '../../decide/decide.js';
import type { Decision } from '../../decide/decision.js';
import type { HeaderEntry } from '../../policy/result.js';
import { decisionRequestFromHttp, type ForwardedRequest } from './http-request.js';
import { principalOfSocket, withPeerPrincipal } from '../peer.js';
import { readLimitedBody } from './read-body.js';
import { isJsonObject } from '../../core/json-object.js';

/** The route prefix: OPA's Data API. */
export const OPA_DATA_PREFIX = '/v1/data/';
/** Kong's OPA plugin: `config.opa_path`. */
export const KONG_OPA_PATH = '/v1/data/signalbox/kong';
/** The decision in the policy-result shape (the default policy's own decision path). */
export const OPA_DECISION_PATH = '/v1/data/signalbox/authz/decision';
/** The decision as a bare boolean. */
export const OPA_ALLOW_PATH = '/v1/data/signalbox/authz/allow';

/** Door name of requests from Kong's OPA plugin (`/v1/data/signalbox/kong`), as the audit trail and metrics show it. */
export const KONG_DOOR = 'kong.opa';
/** Door name of every other OPA Data API request, as the audit trail and metrics show it. */
export const OPA_REST_DOOR = 'opa.rest';

/** Largest request body read: the input carries the LLM request body, JSON-escaped. */
export const MAX_OPA_BODY_BYTES = 8 * 1024 * 1024;

/** What the OPA Data API door needs from the HTTP server. */
export interface OpaRestContext {
  readonly pipeline: DecisionPipeline;
  readonly logger: Logger;
}

type Mode = 'kong' | 'decision' | 'allow';

const MODES: Readonly<Record<string, Mode>> = {
  [KONG_OPA_PATH]: 'kong',
  [OPA_DECISION_PATH]: 'decision',
  [OPA_ALLOW_PATH]: 'allow',
};

/** Thrown for a body or input that cannot be read: OPA's 400. */
class InvalidParameter extends Error {}

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new InvalidParameter(`${name} must be a string`);
  return value;
}

/** A header map whose values are strings, or lists of strings (Kong sends repeated headers as lists). */
function headerMap(value: unknown, name: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isJsonObject(value)) throw new InvalidParameter(`${name} must be an object`);
  const headers: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string') headers[key.toLowerCase()] = v;
    else if (Array.isArray(v) && v.every((item) => typeof item === 'string')) headers[key.toLowerCase()] = v.join(', ');
    else throw new InvalidParameter(`${name}.${key} must be a string or a list of strings`);
  }
  return headers;
}

function stringMap(value: unknown, name: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value) || !Object.values(value).every((v) => typeof v === 'string')) throw new InvalidParameter(`${name} must be an object of strings`);
  return value as Record<string, string>;
}

/** A body given as a string, or as JSON (serialised; it was parsed by the caller). */
function bodyOf(value: unknown): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
}

/**
 * Kong's OPA plugin input (https://developer.konghq.com/plugins/opa/, "OPA input format"):
 * `input.request.http` = {host, port, tls, method, scheme, path, querystring, headers,
 * uri_captures}, plus `body` and `body_size` with `include_body_in_opa_input`, `parsed_body` with
 * `include_parsed_json_body_in_opa_input`; `input.client_ip`; `input.service`, `input.route`,
 * `input.consumer` when configured. `querystring` values are strings, lists of strings, or `true`
 * for a key without a value; `path` has no query string.
 */
function fromKong(input: Record<string, unknown>): ForwardedRequest {
  const request = input.request;
  if (!isJsonObject(request) || !isJsonObject(request.http)) throw new InvalidParameter('input.request.http must be an object (Kong OPA plugin input)');
  const http = request.http;
  const path = optionalString(http.path, 'input.request.http.path') ?? '/';
  const query = new URLSearchParams();
  if (http.querystring !== undefined && http.querystring !== null) {
    if (!isJsonObject(http.querystring)) throw new InvalidParameter('input.request.http.querystring must be an object');
    for (const [key, value] of Object.entries(http.querystring)) {
      const values = Array.isArray(value) ? value : [value];
      for (const v of values) {
        if (v === true) query.append(key, '');
        else if (typeof v === 'string' || typeof v === 'number') query.append(key, String(v));
        else throw new InvalidParameter(`input.request.http.querystring.${key} must be a string, a list of strings or true`);
      }
    }
  }
  const encoded = query.toString().replace(/=(?=&|$)/g, '');
  const headers = headerMap(http.headers, 'input.request.http.headers');
  let body: Buffer | undefined;
  if (typeof http.body === 'string') body = Buffer.from(http.body, 'utf8');
  else if (http.body !== undefined && http.body !== null) throw new InvalidParameter('input.request.http.body must be a string');
  else if (http.parsed_body !== undefined && http.parsed_body !== null) {
    // Only the parsed body was sent: it is re-serialised, so the client's content-length no
    // longer describes it (and would read as a truncated body).
    body = bodyOf(http.parsed_body);
    delete headers['content-length'];
  }
  const extensions: Record<string, string> = {};
  for (const entity of ['service', 'route', 'consumer'] as const) {
    const value = input[entity];
    if (isJsonObject(value)) {
      const name = typeof value.name === 'string' ? value.name : typeof value.username === 'string' ? value.username : undefined;
      if (name) extensions[`kong.${entity}`] = name;
      if (typeof value.id === 'string') extensions[`kong.${entity}_id`] = value.id;
    }
  }
  const host = optionalString(http.host, 'input.request.http.host');
  const scheme = optionalString(http.scheme, 'input.request.http.scheme');
  const method = optionalString(http.method, 'input.request.http.method');
  const clientIp = optionalString(input.client_ip, 'input.client_ip');
  return {
    ...(method ? { method } : {}),
    path: encoded ? `${path}?${encoded}` : path,
    ...(host ? { host } : {}),
    ...(scheme ? { scheme } : {}),
    headers,
    ...(body ? { body } : {}),
    ...(clientIp ? { sourceAddress: clientIp } : {}),
    ...(Object.keys(extensions).length > 0 ? { contextExtensions: extensions } : {}),
  };
}

/** An Envoy-like input (opa-envoy-plugin's): `input.attributes` as Envoy's AttributeContext in JSON names. */
function fromEnvoyAttributes(attributes: Record<string, unknown>): ForwardedRequest {
  const request = attributes.request;
  if (!isJsonObject(request) || !isJsonObject(request.http)) throw new InvalidParameter('input.attributes.request.http must be an object');
  const http = request.http;
  const rawBody = http.rawBody ?? http.raw_body;
  let body: Buffer | undefined;
  if (typeof http.body === 'string' && http.body !== '') body = Buffer.from(http.body, 'utf8');
  else if (typeof rawBody === 'string' && rawBody !== '') body = Buffer.from(rawBody, 'base64');
  else if (http.body !== undefined && typeof http.body !== 'string') throw new InvalidParameter('input.attributes.request.http.body must be a string');
  const source = isJsonObject(attributes.source) ? attributes.source : {};
  const socket = isJsonObject(source.address) && isJsonObject(source.address.socketAddress) ? source.address.socketAddress : undefined;
  const address = socket && typeof socket.address === 'string' ? socket.address : undefined;
  const port = socket && (typeof socket.portValue === 'number' || typeof socket.portValue === 'string') ? String(socket.portValue) : undefined;
  const method = optionalString(http.method, 'input.attributes.request.http.method');
  const path = optionalString(http.path, 'input.attributes.request.http.path');
  const host = optionalString(http.host, 'input.attributes.request.http.host');
  const scheme = optionalString(http.scheme, 'input.attributes.request.http.scheme');
  const protocol = optionalString(http.protocol, 'input.attributes.request.http.protocol');
  const principal = optionalString(source.principal, 'input.attributes.source.principal');
  const extensions = stringMap(attributes.contextExtensions ?? attributes.context_extensions, 'input.attributes.contextExtensions');
  return {
    ...(method ? { method } : {}),
    ...(path ? { path } : {}),
    ...(host ? { host } : {}),
    ...(scheme ? { scheme } : {}),
    ...(protocol ? { protocol } : {}),
    headers: headerMap(http.headers, 'input.attributes.request.http.headers'),
    ...(body ? { body } : {}),
    ...(address ? { sourceAddress: port ? (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`) : address } : {}),
    ...(principal ? { sourcePrincipal: principal } : {}),
    ...(extensions ? { contextExtensions: extensions } : {}),
  };
}

/** A plain HTTP description: `{method, path, headers, body, host, scheme, protocol, source_address, source_principal}`. */
function fromHttpDescription(input: Record<string, unknown>): ForwardedRequest {
  const method = optionalString(input.method, 'input.method');
  const path = optionalString(input.path, 'input.path');
  if (!method || !path) throw new InvalidParameter('input must be an Envoy-like document (attributes), Kong\'s (request.http), or an HTTP description with method and path');
  const host = optionalString(input.host, 'input.host');
  const scheme = optionalString(input.scheme, 'input.scheme');
  const protocol = optionalString(input.protocol, 'input.protocol');
  const sourceAddress = optionalString(input.source_address, 'input.source_address');
  const sourcePrincipal = optionalString(input.source_principal, 'input.source_principal');
  const body = bodyOf(input.body);
  return {
    method,
    path,
    headers: headerMap(input.headers, 'input.headers'),
    ...(host ? { host } : {}),
    ...(scheme ? { scheme } : {}),
    ...(protocol ? { protocol } : {}),
    ...(body ? { body } : {}),
    ...(sourceAddress ? { sourceAddress } : {}),
    ...(sourcePrincipal ? { sourcePrincipal } : {}),
  };
}

/** The forwarded request an input describes, for the door `mode` serves. Throws InvalidParameter. */
export function forwardedFromInput(mode: Mode, input: unknown): ForwardedRequest {
  if (!isJsonObject(input)) throw new InvalidParameter('input must be an object');
  if (mode === 'kong') return fromKong(input);
  if (isJsonObject(input.attributes)) return fromEnvoyAttributes(input.attributes);
  if (isJsonObject(input.request) && isJsonObject(input.request.http)) return fromKong(input);
  return fromHttpDescription(input);
}

function grouped(entries: readonly HeaderEntry[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const { key, value } of entries) {
    const existing = out[key];
    out[key] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return out;
}

/** The decision in the policy-result shape (src/policy/schema/result.schema.json), after enforcement. */
export function policyShapedResult(decision: Decision): Record<string, unknown> {
  const base: Record<string, unknown> = {
    allowed: decision.allowed,
    headers: grouped(decision.headers),
    dynamic_metadata: decision.dynamicMetadata,
    reasons: decision.reasons,
  };
  if (!decision.allowed) return { ...base, http_status: decision.httpStatus, body: decision.body };
  return {
    ...base,
    request_headers_to_remove: decision.requestHeadersToRemove,
    response_headers_to_add: grouped(decision.responseHeadersToAdd),
    ...(decision.queryParametersToSet.length > 0 ? { query_parameters_to_set: grouped(decision.queryParametersToSet) } : {}),
    ...(decision.queryParametersToRemove.length > 0 ? { query_parameters_to_remove: decision.queryParametersToRemove } : {}),
    ...(decision.route ? { route: decision.route } : {}),
    ...(decision.upstreamBody !== undefined ? { upstream_body: decision.upstreamBody } : {}),
  };
}

/**
 * Kong's OPA plugin result (https://developer.konghq.com/plugins/opa/, "OPA response"): a
 * boolean, or `{allow, status, headers, message}`. On allow Kong sets `headers` on the request it
 * forwards upstream; on deny it answers the client with `status` (403 when absent), `headers` and
 * `{"message": message}`. Kong answers 500 to any other shape or a non-200 from OPA.
 *
 * Kong can only set headers, not remove them: a header the decision removes (the caller's
 * `authorization`, a spoofed `x-signalbox-*`) is set to the empty string, so the upstream never
 * sees the caller's value. Kong has no place for response headers on allow; the decision id
 * reaches the upstream as `x-signalbox-decision-id`. On deny `content-type` is left to Kong,
 * which always answers JSON; a JSON body is sent as an object so it stays JSON under "message".
 */
export function kongResult(decision: Decision): Record<string, unknown> {
  if (decision.allowed) {
    const headers: Record<string, string> = {};
    for (const name of decision.requestHeadersToRemove) headers[name.toLowerCase()] = '';
    for (const [key, value] of Object.entries(grouped(decision.headers))) headers[key.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
    return { allow: true, headers };
  }
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(grouped(decision.headers))) {
    if (key.toLowerCase() === 'content-type') continue;
    headers[key.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  if (decision.body === '') return { allow: false, status: decision.httpStatus, headers }; // Kong's default message
  let message: unknown = decision.body;
  try {
    message = JSON.parse(decision.body) as unknown;
  } catch {
    // Not JSON: Kong sends the text as the message.
  }
  return { allow: false, status: decision.httpStatus, headers, message };
}

/** The `input` of a Data API call: the POST body's `input`, or GET's `?input=`. Throws InvalidParameter. */
async function readInput(req: IncomingMessage, url: URL): Promise<unknown> {
  if (req.method === 'GET') {
    const raw = url.searchParams.get('input');
    if (raw === null) throw new InvalidParameter('input is required (?input=<JSON>)');
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      throw new InvalidParameter('input parameter is not JSON');
    }
  }
  const { body: raw, overLimit } = await readLimitedBody(req, MAX_OPA_BODY_BYTES);
  if (overLimit) throw new InvalidParameter(`body larger than ${MAX_OPA_BODY_BYTES} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new InvalidParameter('body contains malformed input document: not JSON');
  }
  if (!isJsonObject(body)) throw new InvalidParameter('body must be an object: {"input": ...}');
  if (!('input' in body) || body.input === null) throw new InvalidParameter('body must be {"input": ...}; "input" is missing');
  return body.input;
}

function send(res: ServerResponse, status: number, body: unknown, pretty: boolean): void {
  const text = JSON.stringify(body, null, pretty ? 2 : undefined);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Handles `GET|POST /v1/data/{path}`. Never throws: every failure is answered. */
export async function handleOpaData(req: IncomingMessage, res: ServerResponse, url: URL, context: OpaRestContext): Promise<void> {
  const pretty = url.searchParams.get('pretty') === 'true';
  const path = url.pathname.replace(/\/+$/, '');
  const mode = MODES[path];
  if (!mode) {
    // OPA answers an undefined document with 200 and no result; callers treat it as undefined.
    req.resume();
    send(res, 200, { warning: { code: 'api_usage_warning', message: `Signalbox serves ${Object.keys(MODES).join(', ')}` } }, pretty);
    return;
  }
  const door = mode === 'kong' ? KONG_DOOR : OPA_REST_DOOR;
  let decision: Decision;
  try {
    const input = await readInput(req, url);
    const forwarded = forwardedFromInput(mode, input);
    // The caller describes the request, principal included (as Envoy's Check): the connection's own identity is only the door's.
    decision = await context.pipeline.decide(withPeerPrincipal(decisionRequestFromHttp(door, forwarded, false), principalOfSocket(req.socket), false));
  } catch (error) {
    if (error instanceof InvalidParameter) {
      // Audited as a deny like any unreadable request; OPA's error shape for the caller.
      const denied = context.pipeline.rejectUnreadable(door, new SignalboxError('request_malformed', error.message));
      send(res, 400, { code: 'invalid_parameter', message: error.message, decision_id: denied.decisionId }, pretty);
      return;
    }
    context.logger.error({ code: 'internal_error', door, cause: describeCause(error) }, 'OPA Data API call failed; denied');
    decision = context.pipeline.rejectUnreadable(door, new SignalboxError('internal_error', 'pipeline failure', { cause: error }));
  }
  const result = mode === 'kong' ? kongResult(decision) : mode === 'allow' ? decision.allowed : policyShapedResult(decision);
  send(res, 200, { decision_id: decision.decisionId, result }, pretty);
}
