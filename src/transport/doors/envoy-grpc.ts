/**
 * Envoy ext_authz v3 over gRPC: CheckRequest → DecisionRequest, Decision → CheckResponse.
 *
 * `input.attributes` is built the way opa-envoy-plugin builds it today (envoyauth/protomap.go):
 * lowerCamelCase JSON names, only fields that are set, Struct as plain JSON, Timestamp as
 * {seconds, nanos}, 64-bit integers and enums as numbers, bytes as base64. The proto-loader
 * options in transport/protos.ts produce exactly that; this module fixes up the Structs.
 */
import type { Decision, DecisionRequest } from '../../decide/decision.js';
import type { HeaderEntry } from '../../policy/result.js';
import type { CheckResponseMessage, HeaderOptionMessage } from './check-response-wire.js';
import { fromStruct, toStruct, type Struct } from './struct.js';

/** This door's name in `input.door.name`, the audit trail and metrics. */
export const ENVOY_DOOR = 'envoy.ext_authz.grpc';

/** gRPC status codes Envoy reads in CheckResponse.status. */
const OK = 0;
const PERMISSION_DENIED = 7;

interface HeaderMapEntry {
  key?: string;
  value?: string;
  rawValue?: string;
}

interface DecodedHttpRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  headerMap?: { headers?: HeaderMapEntry[] };
  body?: string;
  rawBody?: string;
  [key: string]: unknown;
}

interface DecodedAttributes {
  source?: { principal?: string; [key: string]: unknown };
  request?: { http?: DecodedHttpRequest; [key: string]: unknown };
  metadataContext?: { filterMetadata?: Record<string, Struct>; [key: string]: unknown };
  routeMetadataContext?: { filterMetadata?: Record<string, Struct>; [key: string]: unknown };
  [key: string]: unknown;
}

function plainMetadata(metadata: DecodedAttributes['metadataContext']): Record<string, unknown> | undefined {
  if (!metadata) return undefined;
  const copy: Record<string, unknown> = { ...metadata };
  if (metadata.filterMetadata) {
    copy.filterMetadata = Object.fromEntries(Object.entries(metadata.filterMetadata).map(([ns, struct]) => [ns, fromStruct(struct)]));
  }
  return copy;
}

function requestHeaders(http: DecodedHttpRequest | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(http?.headers ?? {})) headers[name.toLowerCase()] = value;
  for (const entry of http?.headerMap?.headers ?? []) {
    if (!entry.key) continue;
    const value = entry.value ?? (entry.rawValue ? Buffer.from(entry.rawValue, 'base64').toString('utf8') : '');
    const name = entry.key.toLowerCase();
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  return headers;
}

/** Maps a decoded CheckRequest to the pipeline's request. */
export function fromCheckRequest(message: { attributes?: DecodedAttributes }): DecisionRequest {
  const decoded = message.attributes ?? {};
  const attributes: Record<string, unknown> = { ...decoded };
  const metadata = plainMetadata(decoded.metadataContext);
  if (metadata) attributes.metadataContext = metadata;
  const routeMetadata = plainMetadata(decoded.routeMetadataContext);
  if (routeMetadata) attributes.routeMetadataContext = routeMetadata;
  const http = decoded.request?.http;
  const body = http?.body ? Buffer.from(http.body, 'utf8') : http?.rawBody ? Buffer.from(http.rawBody, 'base64') : Buffer.alloc(0);
  return {
    door: ENVOY_DOOR,
    attributes,
    path: http?.path ?? '',
    headers: requestHeaders(http),
    body,
    ...(decoded.source?.principal ? { sourcePrincipal: decoded.source.principal } : {}),
  };
}

/** Header entries as Envoy HeaderValueOptions: the first value of a name overwrites, the rest append. */
function headerOptions(entries: readonly HeaderEntry[]): HeaderOptionMessage[] {
  const seen = new Set<string>();
  return entries.map((entry) => {
    const name = entry.key.toLowerCase();
    const appendAction = seen.has(name) ? ('APPEND_IF_EXISTS_OR_ADD' as const) : ('OVERWRITE_IF_EXISTS_OR_ADD' as const);
    seen.add(name);
    return { header: { key: entry.key, value: entry.value }, appendAction };
  });
}

/** Maps a decision to the CheckResponse the server writes (check-response-wire.ts). */
export function toCheckResponse(decision: Decision): CheckResponseMessage {
  const dynamicMetadata = toStruct(decision.dynamicMetadata);
  if (decision.allowed) {
    return {
      status: { code: OK },
      okResponse: {
        headers: headerOptions(decision.headers),
        headersToRemove: [...decision.requestHeadersToRemove],
        responseHeadersToAdd: headerOptions(decision.responseHeadersToAdd),
        queryParametersToSet: decision.queryParametersToSet.map((q) => ({ key: q.key, value: q.value })),
        queryParametersToRemove: [...decision.queryParametersToRemove],
      },
      dynamicMetadata,
    };
  }
  return {
    status: { code: PERMISSION_DENIED },
    deniedResponse: {
      status: { code: decision.httpStatus },
      headers: headerOptions(decision.headers),
      body: decision.body,
    },
    dynamicMetadata,
  };
}
