/**
 * Interpreting what the decision rule returned. The shape is defined once, in
 * schema/result.schema.json (documented in README, used by the tests too); anything outside it
 * is `policy_result_invalid`, and the caller denies.
 */
import { SignalboxError } from '../core/errors.js';
import type { FindingType } from '../inspect/content/detectors.js';
import type { Evaluation } from './engine.js';
import { isValidResult, resultViolation } from './result-schema.js';

/** One header (or query parameter) to set; a list rather than a map, because a name may repeat. */
export interface HeaderEntry {
  readonly key: string;
  readonly value: string;
}

/** The policy's answer, normalised; what the adapters map back to their wire formats. */
export interface PolicyVerdict {
  readonly allowed: boolean;
  /** True when the policy returned a bare boolean (opa-envoy-plugin attaches no HTTP response). */
  readonly bare: boolean;
  /** Deny status; 403 when the policy did not choose one. */
  readonly httpStatus: number;
  readonly body: string;
  readonly headers: readonly HeaderEntry[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderEntry[];
  readonly queryParametersToSet: readonly HeaderEntry[];
  readonly queryParametersToRemove: readonly string[];
  readonly dynamicMetadata: Readonly<Record<string, unknown>>;
  readonly reasons: readonly string[];
  /** What the policy asked the enforcer to reserve on allow; undefined when nothing. */
  readonly enforcement?: EnforcementClaims;
  /** Where the request goes on allow (`route`); undefined when the policy did not say. */
  readonly route?: RouteClaim;
  /** Findings to mask in the body on allow (`redact`); `types` undefined means every type. */
  readonly redact?: { readonly types?: readonly FindingType[] };
}

/** One place a request can go: a provider, and optionally the model, upstream and credential there. */
export interface RouteTarget {
  readonly provider: string;
  readonly model?: string;
  readonly upstream?: string;
  /** A vault entry name; its value becomes the provider's API key header. */
  readonly credential?: string;
}

/** The policy's `route`: the first target, then further ones in order, for gateways that fail over within one request. */
export interface RouteClaim extends RouteTarget {
  readonly fallbacks: readonly RouteTarget[];
}

/** The budgets, rate limits and loop check a policy named, in its own units. */
export interface EnforcementClaims {
  readonly budgets: ReadonlyArray<{ readonly scope: string; readonly window: string; readonly limitUsd: number }>;
  readonly rateLimits: ReadonlyArray<{ readonly scope: string; readonly requestsPerMinute?: number; readonly tokensPerMinute?: number }>;
  readonly loop?: { readonly session: string; readonly maxRepeats: number; readonly pingPong: number; readonly window: number };
  /** The policy's own price for the request, replacing the estimate. */
  readonly costUsd?: number;
  /** True when the policy opted to allow unenforced if the store is down. */
  readonly failOpen: boolean;
}

/**
 * Recent tool calls of a session the loop check remembers when the policy names no `loop.window`
 * (the schema documents the same default).
 */
export const DEFAULT_LOOP_WINDOW = 20;

type HeaderMap = Record<string, string | string[]>;

interface ResultObject {
  allowed: boolean;
  headers?: HeaderMap | HeaderMap[];
  request_headers_to_remove?: string[];
  response_headers_to_add?: HeaderMap | HeaderMap[];
  query_parameters_to_set?: HeaderMap;
  query_parameters_to_remove?: string[];
  body?: string;
  http_status?: number;
  dynamic_metadata?: Record<string, unknown>;
  reasons?: string[];
  budgets?: { scope: string; window: string; limit_usd: number }[];
  rate_limits?: { scope: string; requests_per_minute?: number; tokens_per_minute?: number }[];
  loop?: { session: string; max_repeats?: number; ping_pong?: number; window?: number };
  cost_usd?: number;
  on_store_error?: 'deny' | 'allow';
  route?: RouteTarget & { fallbacks?: RouteTarget[] };
  redact?: { types?: FindingType[] };
}

function enforcementClaims(result: ResultObject): EnforcementClaims | undefined {
  if (!result.budgets?.length && !result.rate_limits?.length && !result.loop) return undefined;
  return {
    budgets: (result.budgets ?? []).map((b) => ({ scope: b.scope, window: b.window, limitUsd: b.limit_usd })),
    rateLimits: (result.rate_limits ?? []).map((r) => ({
      scope: r.scope,
      ...(r.requests_per_minute !== undefined ? { requestsPerMinute: r.requests_per_minute } : {}),
      ...(r.tokens_per_minute !== undefined ? { tokensPerMinute: r.tokens_per_minute } : {}),
    })),
    ...(result.loop
      ? {
          loop: {
            session: result.loop.session,
            maxRepeats: result.loop.max_repeats ?? 0,
            pingPong: result.loop.ping_pong ?? 0,
            window: result.loop.window ?? DEFAULT_LOOP_WINDOW,
          },
        }
      : {}),
    ...(result.cost_usd !== undefined ? { costUsd: result.cost_usd } : {}),
    failOpen: result.on_store_error === 'allow',
  };
}

/** The deny status when the policy gives none (or returns a bare boolean), as opa-envoy-plugin does. */
export const DEFAULT_DENY_STATUS = 403;

function headerEntries(value: HeaderMap | HeaderMap[] | undefined): HeaderEntry[] {
  if (value === undefined) return [];
  const maps = Array.isArray(value) ? value : [value];
  const entries: HeaderEntry[] = [];
  for (const map of maps) {
    for (const [key, v] of Object.entries(map)) {
      for (const item of Array.isArray(v) ? v : [v]) entries.push({ key, value: item });
    }
  }
  return entries;
}

/** Turns an evaluation into a verdict, or throws `policy_result_invalid`. */
export function interpretResult(evaluation: Evaluation): PolicyVerdict {
  if (!evaluation.defined) {
    throw new SignalboxError('policy_result_invalid', 'the decision rule is undefined for this input (add a default)');
  }
  if (!isValidResult(evaluation.result)) {
    throw new SignalboxError('policy_result_invalid', `the policy result is not of the documented shape: ${resultViolation(evaluation.result) ?? 'result does not match the schema'}`);
  }
  // The schema checked it: a boolean, or an object of this shape.
  const result = evaluation.result as boolean | ResultObject;
  if (typeof result === 'boolean') {
    return {
      allowed: result,
      bare: true,
      httpStatus: DEFAULT_DENY_STATUS,
      body: '',
      headers: [],
      requestHeadersToRemove: [],
      responseHeadersToAdd: [],
      queryParametersToSet: [],
      queryParametersToRemove: [],
      dynamicMetadata: {},
      reasons: [],
    };
  }
  for (const entry of [...headerEntries(result.headers), ...headerEntries(result.response_headers_to_add)]) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(entry.key) || /[\r\n\0]/.test(entry.value)) {
      throw new SignalboxError('policy_result_invalid', 'the policy result names a header that is not a valid HTTP header');
    }
  }
  const enforcement = enforcementClaims(result);
  return {
    allowed: result.allowed,
    bare: false,
    httpStatus: result.http_status ?? DEFAULT_DENY_STATUS,
    body: result.body ?? '',
    headers: headerEntries(result.headers),
    requestHeadersToRemove: result.request_headers_to_remove ?? [],
    responseHeadersToAdd: headerEntries(result.response_headers_to_add),
    queryParametersToSet: headerEntries(result.query_parameters_to_set),
    queryParametersToRemove: result.query_parameters_to_remove ?? [],
    dynamicMetadata: result.dynamic_metadata ?? {},
    reasons: result.reasons ?? [],
    ...(enforcement ? { enforcement } : {}),
    ...(result.route ? { route: { ...result.route, fallbacks: result.route.fallbacks ?? [] } } : {}),
    ...(result.redact ? { redact: result.redact } : {}),
  };
}
