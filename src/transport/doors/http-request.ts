/**
 * The one mapping from "an HTTP request the gateway is about to forward" to a DecisionRequest.
 * Every door that does not receive Envoy's AttributeContext (the native API, the HTTP doors:
 * ext_authz HTTP mode, auth_request, forward_auth, OPA's REST API, LiteLLM) describes the request
 * with these fields and gets the same Envoy-shaped `input.attributes`, so one policy serves them
 * all.
 */
import type { DecisionRequest } from '../../decide/decision.js';

/**
 * A request the gateway is about to forward, as much as the door knows of it; missing fields are
 * left out of `input.attributes`.
 */
export interface ForwardedRequest {
  readonly method?: string;
  /** Path with query string, as the client sent it ("/v1/chat/completions?x=1"). */
  readonly path?: string;
  readonly host?: string;
  readonly scheme?: string;
  /** Header names in any case; they are lower-cased. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  readonly protocol?: string;
  /** Address of the original client, "ip:port" or "ip" (IPv6 may be bracketed). */
  readonly sourceAddress?: string;
  /** mTLS identity of the calling workload, when the gateway knows it. */
  readonly sourcePrincipal?: string;
  /** Free-form context for the policy (as Envoy's context_extensions). */
  readonly contextExtensions?: Readonly<Record<string, string>>;
}

function socketAddress(address: string | undefined): object | undefined {
  if (!address) return undefined;
  const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(address);
  const ip = match?.[1] ?? address;
  const port = match?.[2];
  return { address: { socketAddress: { address: ip, ...(port ? { portValue: Number(port) } : {}) } } };
}

/** Builds the DecisionRequest for `door`; `canRewriteBody` says whether the door can send a redacted body upstream. */
export function decisionRequestFromHttp(door: string, req: ForwardedRequest, canRewriteBody: boolean): DecisionRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers ?? {})) headers[name.toLowerCase()] = value;
  const body = req.body ? Buffer.from(req.body) : Buffer.alloc(0);
  const path = req.path ?? '';
  const q = path.indexOf('?');
  const http: Record<string, unknown> = {
    ...(req.method ? { method: req.method } : {}),
    headers,
    ...(path ? { path } : {}),
    ...(req.host ? { host: req.host } : {}),
    ...(req.scheme ? { scheme: req.scheme } : {}),
    ...(q >= 0 ? { query: path.slice(q + 1) } : {}),
    ...(req.protocol ? { protocol: req.protocol } : {}),
    ...(body.length > 0 ? { body: body.toString('utf8'), size: body.length } : {}),
  };
  const source = socketAddress(req.sourceAddress);
  const extensions = req.contextExtensions && Object.keys(req.contextExtensions).length > 0 ? req.contextExtensions : undefined;
  const attributes: Record<string, unknown> = {
    ...(source || req.sourcePrincipal ? { source: { ...(source ?? {}), ...(req.sourcePrincipal ? { principal: req.sourcePrincipal } : {}) } } : {}),
    request: { http },
    ...(extensions ? { contextExtensions: extensions } : {}),
  };
  return {
    door,
    attributes,
    path,
    headers,
    body,
    ...(req.sourcePrincipal ? { sourcePrincipal: req.sourcePrincipal } : {}),
    canRewriteBody,
  };
}
