/**
 * What every door builds and reads back: one request to decide, and the decision on it. Only
 * the doors (transport/doors/) know a wire format; they meet the pipeline here.
 */
import type { ErrorCode } from '../core/codes.js';
import type { PolicyVerdict, RouteClaim } from '../policy/result.js';

/** The header carrying the decision id, upstream and back to the client. */
export const DECISION_ID_HEADER = 'x-signalbox-decision-id';

/** One request to decide, as every adapter presents it. */
export interface DecisionRequest {
  /** Which door it came through ("envoy.ext_authz.grpc", "signalbox.v1.grpc"). */
  readonly door: string;
  /** Envoy's AttributeContext in JSON names: what the policy sees as `input.attributes`. */
  readonly attributes: Readonly<Record<string, unknown>>;
  /** The original request path, query included. */
  readonly path: string;
  /** Request headers, names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** The calling workload's mTLS identity (Envoy's source.principal), when known. */
  readonly sourcePrincipal?: string;
  /**
   * The verified mTLS identity of the connection that called Signalbox (`input.door.peer_principal`):
   * the gateway for Envoy's Check and ext_proc, the client itself for the native API and HTTP doors.
   */
  readonly peerPrincipal?: string;
  /** True when the door can hand the gateway a rewritten body (the native API, LiteLLM), so `redact` can be honoured. */
  readonly canRewriteBody?: boolean;
  /**
   * False when the door never forwards the request body (nginx auth_request, Caddy forward_auth):
   * the body facts are empty rather than "truncated", and `input.content.scanned` is false.
   */
  readonly bodyForwarded?: boolean;
}

/**
 * The decision on one request, which every door maps back to its wire format: the policy's
 * verdict plus its id, the deciding revision, and what shaping, dry-run or a fail-closed error
 * changed.
 */
export interface Decision extends PolicyVerdict {
  readonly decisionId: string;
  /** The bundle revision that decided. */
  readonly revision: string;
  /** Set when the decision is a fail-closed error rather than the policy's answer. */
  readonly error?: ErrorCode;
  /** On allow: the body to send upstream instead of the caller's (findings masked, model rerouted). */
  readonly upstreamBody?: string;
  /** On allow: where the policy routed the request. */
  readonly route?: RouteClaim;
  /** Set when dry-run let a policy denial pass: the denial that was not enforced. */
  readonly dryRunDenial?: { readonly httpStatus: number; readonly reasons: readonly string[] };
}
