/**
 * A short-form request through each door: the HTTP request it describes (path, body), and the
 * DecisionRequest the named door builds for that request, by the door's own mapping
 * (`decisionRequestFromHttp`, `fromCheckRequest`), so nothing here is a second implementation.
 */
import type { DecisionRequest } from '../decide/decision.js';
import { fromCheckRequest } from '../transport/doors/envoy-grpc.js';
import { AUTHZ_DOOR_NAMES } from '../transport/doors/http-authz.js';
import { decisionRequestFromHttp, type ForwardedRequest } from '../transport/doors/http-request.js';
import { LITELLM_DOOR } from '../transport/doors/litellm.js';
import { KONG_DOOR, OPA_REST_DOOR } from '../transport/doors/opa-rest.js';
import { SIGNALBOX_DOOR } from '../transport/doors/signalbox-grpc.js';
import type { ShortRequest, SimulatedDoor } from './short-request.js';

const LLM_PATHS = { anthropic: '/v1/messages', responses: '/v1/responses', chat: '/v1/chat/completions' };

function shapedTool(path: string, tool: string | Record<string, unknown>): Record<string, unknown> {
  if (typeof tool !== 'string') return tool;
  if (path.endsWith(LLM_PATHS.anthropic)) return { name: tool, input_schema: { type: 'object', properties: {} } };
  if (path.endsWith(LLM_PATHS.responses)) return { type: 'function', name: tool, parameters: { type: 'object', properties: {} } };
  return { type: 'function', function: { name: tool, parameters: { type: 'object', properties: {} } } };
}

/** The body the short form describes, or undefined for none. */
export function shortBody(request: ShortRequest, path: string): unknown {
  if (request.body !== undefined) return request.body;
  if (request.tool_call) {
    return { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: request.tool_call.name, arguments: request.tool_call.arguments ?? {} } };
  }
  if (request.model === undefined && request.messages === undefined && request.prompt === undefined && request.tools === undefined) return undefined;
  const responses = path.endsWith(LLM_PATHS.responses);
  const messages = request.messages ?? [{ role: 'user', content: request.prompt ?? 'Hello' }];
  return {
    ...(request.model !== undefined ? { model: request.model } : {}),
    ...(responses ? { input: messages } : { messages }),
    ...(request.tools ? { tools: request.tools.map((t) => shapedTool(path, t)) } : {}),
    ...(request.max_tokens !== undefined ? { [responses ? 'max_output_tokens' : 'max_tokens']: request.max_tokens } : {}),
    ...(request.stream !== undefined ? { stream: request.stream } : {}),
  };
}

/** The path the short form describes: its own, /mcp for a tool call, else chat completions. */
export function defaultPath(request: ShortRequest): string {
  if (request.path) return request.path;
  if (request.tool_call) return '/mcp';
  return LLM_PATHS.chat;
}

/**
 * The DecisionRequest `door` builds for the forwarded request. nginx and Caddy never forward the
 * body; Envoy's is the ext_authz CheckRequest for it at `nowNs`.
 */
export function doorRequest(door: SimulatedDoor, forwarded: ForwardedRequest, nowNs: bigint): DecisionRequest {
  switch (door) {
    case 'native':
      return decisionRequestFromHttp(SIGNALBOX_DOOR, forwarded, true);
    case 'litellm':
      return decisionRequestFromHttp(LITELLM_DOOR, forwarded, true);
    case 'opa':
      return decisionRequestFromHttp(OPA_REST_DOOR, forwarded, false);
    case 'kong':
      return decisionRequestFromHttp(KONG_DOOR, forwarded, false);
    case 'envoy-http':
      return decisionRequestFromHttp(AUTHZ_DOOR_NAMES.envoy, forwarded, false);
    case 'nginx':
    case 'caddy': {
      const name = door === 'nginx' ? AUTHZ_DOOR_NAMES.nginx : AUTHZ_DOOR_NAMES.caddy;
      const { body: _dropped, ...withoutBody } = forwarded;
      const noBodyHeaders = { ...forwarded.headers };
      delete noBodyHeaders['content-length'];
      return { ...decisionRequestFromHttp(name, { ...withoutBody, headers: noBodyHeaders }, false), bodyForwarded: false };
    }
    case 'envoy':
      return fromCheckRequest({ attributes: envoyAttributes(forwarded, nowNs) });
  }
}

/** What Envoy's ext_authz filter sends for the same request (as proto-loader decodes it). */
function envoyAttributes(req: ForwardedRequest, nowNs: bigint): Record<string, unknown> {
  const body = req.body;
  const source = req.sourceAddress ? /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(req.sourceAddress) : null;
  return {
    ...(source || req.sourcePrincipal
      ? {
          source: {
            ...(source ? { address: { socketAddress: { address: source[1], ...(source[2] ? { portValue: Number(source[2]) } : {}) } } } : {}),
            ...(req.sourcePrincipal ? { principal: req.sourcePrincipal } : {}),
          },
        }
      : {}),
    request: {
      time: { seconds: Number(nowNs / 1_000_000_000n), nanos: Number(nowNs % 1_000_000_000n) },
      http: {
        id: 'simulated',
        method: req.method,
        headers: { ...req.headers, ':authority': req.host ?? '', ':method': req.method ?? 'GET', ':path': req.path ?? '/' },
        path: req.path,
        host: req.host,
        scheme: req.scheme,
        protocol: req.protocol,
        ...(body && body.length > 0 ? { body: body.toString('utf8'), size: body.length } : {}),
      },
    },
    ...(req.contextExtensions ? { contextExtensions: req.contextExtensions } : {}),
  };
}
