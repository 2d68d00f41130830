/**
 * signalbox.v1.DecisionService/Decide: Signalbox's own gateway-neutral request and response.
 * The request is mapped to the same Envoy-shaped `input.attributes`, so one policy serves every door.
 */
import type { BudgetView } from '../../enforce/spend-views.js';
import type { ProviderHealth } from '../../enforce/store.js';
import type { Decision, DecisionRequest } from '../../decide/decision.js';
import { decisionRequestFromHttp } from './http-request.js';
import { toStruct } from './struct.js';

/** This door's name in `input.door.name`, the audit trail and metrics; also the door of gRPC usage reports. */
export const SIGNALBOX_DOOR = 'signalbox.v1.grpc';

interface DecodedDecideRequest {
  request?: {
    method?: string;
    path?: string;
    host?: string;
    scheme?: string;
    headers?: Record<string, string>;
    body?: Buffer;
    protocol?: string;
  };
  sourceAddress?: string;
  sourcePrincipal?: string;
  contextExtensions?: Record<string, string>;
}

/**
 * Maps a DecideRequest through the shared HTTP mapping; this door can rewrite bodies, so the
 * policy may ask for redaction.
 */
export function fromDecideRequest(message: DecodedDecideRequest): DecisionRequest {
  const req = message.request ?? {};
  return decisionRequestFromHttp(
    SIGNALBOX_DOOR,
    {
      ...req,
      ...(message.sourceAddress ? { sourceAddress: message.sourceAddress } : {}),
      ...(message.sourcePrincipal ? { sourcePrincipal: message.sourcePrincipal } : {}),
      ...(message.contextExtensions ? { contextExtensions: message.contextExtensions } : {}),
    },
    true,
  );
}

/** Maps a decision to a DecideResponse; an allow always carries HTTP 200, whatever the policy's deny status. */
export function toDecideResponse(decision: Decision): object {
  return {
    decisionId: decision.decisionId,
    allowed: decision.allowed,
    httpStatus: decision.allowed ? 200 : decision.httpStatus,
    headers: decision.headers.map((h) => ({ key: h.key, value: h.value })),
    requestHeadersToRemove: [...decision.requestHeadersToRemove],
    responseHeadersToAdd: decision.responseHeadersToAdd.map((h) => ({ key: h.key, value: h.value })),
    body: decision.body,
    reasons: [...decision.reasons],
    policyRevision: decision.revision,
    dynamicMetadata: toStruct(decision.dynamicMetadata),
    queryParametersToSet: decision.queryParametersToSet.map((q) => ({ key: q.key, value: q.value })),
    queryParametersToRemove: [...decision.queryParametersToRemove],
    ...(decision.upstreamBody !== undefined ? { upstreamBody: Buffer.from(decision.upstreamBody, 'utf8') } : {}),
    ...(decision.route ? { route: decision.route } : {}),
  };
}

/** signalbox.v1.ReportRequest as proto-loader decodes it (camelCase, defaults filled in). */
export interface ReportMessage {
  decisionId?: string;
  usage?: { inputTokens?: number; cachedInputTokens?: number; outputTokens?: number } | null;
  model?: string;
  costUsd?: number;
  outcome?: string;
  provider?: string;
  /** proto3 `optional`: absent (undefined or null) when not sent. */
  upstreamStatus?: number | null;
}

/** Maps a ReportRequest to the JSON report both doors share (validated there). */
export function fromReportMessage(message: ReportMessage): unknown {
  return {
    decision_id: message.decisionId ?? '',
    ...(message.usage
      ? {
          usage: {
            input_tokens: Number(message.usage.inputTokens ?? 0),
            cached_input_tokens: Number(message.usage.cachedInputTokens ?? 0),
            output_tokens: Number(message.usage.outputTokens ?? 0),
          },
        }
      : {}),
    ...(message.model ? { model: message.model } : {}),
    ...(message.costUsd !== undefined && message.costUsd !== null ? { cost_usd: message.costUsd } : {}),
    ...(message.outcome ? { outcome: message.outcome } : {}),
    ...(message.provider ? { provider: message.provider } : {}),
    ...(message.upstreamStatus !== undefined && message.upstreamStatus !== null ? { upstream_status: message.upstreamStatus } : {}),
  };
}

/**
 * Maps a report's outcome to a ReportResponse; fields the outcome lacks get proto3 defaults, and
 * absent breaker times are left out.
 */
export function toReportResponse(outcome: {
  decision_id: string;
  outcome: string;
  cost_usd?: number;
  held_usd?: number;
  late?: boolean;
  hold?: string;
  provider_state?: ProviderHealth | null;
}): object {
  const p = outcome.provider_state;
  return {
    decisionId: outcome.decision_id,
    outcome: outcome.outcome,
    costUsd: outcome.cost_usd ?? 0,
    heldUsd: outcome.held_usd ?? 0,
    late: outcome.late ?? false,
    hold: outcome.hold ?? '',
    ...(p
      ? {
          providerState: {
            provider: p.provider,
            state: p.state,
            failures: p.failures,
            ...(p.opened_at_ms !== null ? { openedAtMs: p.opened_at_ms } : {}),
            ...(p.retry_at_ms !== null ? { retryAtMs: p.retry_at_ms } : {}),
            ...(p.last_failure_at_ms !== null ? { lastFailureAtMs: p.last_failure_at_ms } : {}),
            ...(p.last_success_at_ms !== null ? { lastSuccessAtMs: p.last_success_at_ms } : {}),
          },
        }
      : {}),
  };
}

/** Maps budget views to a GetSpendResponse (camelCase, USD). */
export function toSpendResponse(budgets: ReadonlyArray<BudgetView>): object {
  return {
    budgets: budgets.map((b) => ({
      scope: b.scope,
      window: b.window,
      period: b.period,
      limitUsd: b.limit_usd,
      spentUsd: b.spent_usd,
      heldUsd: b.held_usd,
      remainingUsd: b.remaining_usd,
      holds: b.holds,
    })),
  };
}
