/**
 * Envoy ext_proc v3 wire shapes (proto/envoy/service/ext_proc/v3/external_processor.proto, as
 * proto-loader decodes them with `oneofs`, Buffers for bytes and enum names): reading header
 * maps, and building the responses the filter accepts.
 */
import type { HeaderEntry } from '../../policy/result.js';

/** A header as Envoy sends it: Envoy 1.40 fills `rawValue` (bytes); older ones `value`. */
export interface WireHeaderValue {
  key?: string;
  value?: string;
  rawValue?: Buffer;
}

/** HttpHeaders as decoded. */
export interface WireHttpHeaders {
  headers?: { headers?: WireHeaderValue[] };
  endOfStream?: boolean;
}

/** HttpBody as decoded. */
export interface WireHttpBody {
  body?: Buffer;
  endOfStream?: boolean;
}

/** ProcessingRequest as decoded (`request` names the oneof member that is set). */
export interface WireProcessingRequest {
  request?: 'requestHeaders' | 'responseHeaders' | 'requestBody' | 'responseBody' | 'requestTrailers' | 'responseTrailers';
  requestHeaders?: WireHttpHeaders;
  responseHeaders?: WireHttpHeaders;
  requestBody?: WireHttpBody;
  responseBody?: WireHttpBody;
  attributes?: Record<string, unknown>;
  observabilityMode?: boolean;
}

/** Body send modes of envoy.extensions.filters.http.ext_proc.v3.ProcessingMode. */
export type BodySendMode = 'NONE' | 'STREAMED' | 'BUFFERED';

/** The headers of one message, names lower-cased; repeated names joined with "," as HTTP allows. */
export function readHeaders(message: WireHttpHeaders | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const entry of message?.headers?.headers ?? []) {
    if (!entry.key) continue;
    const name = entry.key.toLowerCase();
    const value = entry.rawValue && entry.rawValue.length > 0 ? entry.rawValue.toString('utf8') : (entry.value ?? '');
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  return headers;
}

/**
 * HeaderValueOptions for set_headers: the first value of a name overwrites, later ones append.
 * ext_proc reads the `append` flag (false when unset), not `append_action`, and only `raw_value`
 * (Envoy 1.40 sets a header given in `value` to the empty string).
 */
function setHeaders(entries: readonly HeaderEntry[]): object[] {
  const seen = new Set<string>();
  return entries.map((entry) => {
    const name = entry.key.toLowerCase();
    const append = seen.has(name);
    seen.add(name);
    return { header: { key: name, rawValue: Buffer.from(entry.value, 'utf8') }, append: { value: append } };
  });
}

/** What one CommonResponse changes: headers set and removed, and optionally the body. */
export interface Mutation {
  readonly set?: readonly HeaderEntry[];
  readonly remove?: readonly string[];
  readonly body?: Buffer;
}

/** A CommonResponse with the mutation; CONTINUE when nothing changes. */
export function commonResponse(mutation: Mutation = {}): object {
  const set = mutation.set ?? [];
  const remove = (mutation.remove ?? []).map((name) => name.toLowerCase());
  return {
    ...(set.length > 0 || remove.length > 0 ? { headerMutation: { setHeaders: setHeaders(set), removeHeaders: remove } } : {}),
    ...(mutation.body !== undefined ? { bodyMutation: { body: mutation.body } } : {}),
  };
}

/** The processing mode Signalbox asks for from here on (honoured when the filter sets allow_mode_override). */
export function modeOverride(mode: { requestBody?: BodySendMode; responseHeaders: 'SEND' | 'SKIP'; responseBody?: BodySendMode }): object {
  return {
    requestHeaderMode: 'SEND',
    responseHeaderMode: mode.responseHeaders,
    requestBodyMode: mode.requestBody ?? 'NONE',
    responseBodyMode: mode.responseBody ?? 'NONE',
    requestTrailerMode: 'SKIP',
    responseTrailerMode: 'SKIP',
  };
}

/** An ImmediateResponse: the status, headers and body Envoy sends to the client in place of the upstream's. */
export function immediateResponse(status: number, headers: readonly HeaderEntry[], body: string, details: string): object {
  return {
    immediateResponse: {
      status: { code: status },
      headers: { setHeaders: setHeaders(headers) },
      body: Buffer.from(body, 'utf8'),
      details,
    },
  };
}
