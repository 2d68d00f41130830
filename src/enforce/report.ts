/**
 * Usage reports and spend queries: the native API's other half. After the LLM answers, the
 * gateway (or an adapter for it) reports what the call used; the hold made at decision time is
 * replaced by the actual cost. Each settlement is audited in the same hash chain as decisions.
 *
 * Reports accept Signalbox's own usage shape and the usage blocks providers return (OpenAI chat
 * and responses, Anthropic messages), so a gateway can forward the provider's `usage` as is.
 *
 * A report that names the `provider` it called also feeds that provider's circuit breaker
 * (see {@link ReportService.report} for the contract and {@link providerOutcome} for what
 * counts as a failure).
 */
import { z } from 'zod';
import { appendInBackground, type AuditSink } from '../audit/log.js';
import type { Enforcer, ReportOutcome, UsageReport } from './enforcer.js';
import { budgetView, type BudgetView } from './spend-views.js';
import type { ProviderHealth, ProviderHealthChange, ProviderOutcome } from './store.js';
import { WINDOW_PATTERN, windowSlot } from './windows.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { microToUsd } from '../core/money.js';
import type { TokenUsage } from '../inspect/prices.js';
import type { Logger } from '../core/log.js';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Any of the usage shapes we accept; normalised by `tokenUsage`. */
const usageSchema = z
  .object({
    // Signalbox / OpenAI responses / Anthropic
    input_tokens: count.optional(),
    output_tokens: count.optional(),
    cached_input_tokens: count.optional(),
    // OpenAI chat completions
    prompt_tokens: count.optional(),
    completion_tokens: count.optional(),
    prompt_tokens_details: z.object({ cached_tokens: count.optional() }).passthrough().nullish(),
    input_tokens_details: z.object({ cached_tokens: count.optional() }).passthrough().nullish(),
    // Anthropic prompt caching: reported apart from input_tokens
    cache_read_input_tokens: count.nullish(),
    cache_creation_input_tokens: count.nullish(),
  })
  .passthrough();

const reportSchema = z
  .object({
    decision_id: z.string().min(1).max(128),
    usage: usageSchema.optional(),
    model: z.string().min(1).max(256).optional(),
    cost_usd: z.number().min(0).max(9_000_000_000).optional(),
    outcome: z.enum(['completed', 'failed', 'timeout', 'not_sent']).optional(),
    /** The provider the gateway called (a routing target name), for its circuit breaker. */
    provider: z
      .string()
      .min(1)
      .max(128)
      .refine((name) => !/[\p{Cc}\p{Cs}]/u.test(name), 'must not contain control characters')
      .optional(),
    /** The HTTP status the provider answered with. */
    upstream_status: z.number().int().min(100).max(599).optional(),
  })
  .strict();

/** A usage report body as a gateway sends it to the native API, for code that builds one. */
export type ReportBody = z.input<typeof reportSchema>;

/** Checks a report body without acting on it: the parsed report, or report_malformed. */
export function parseReport(body: unknown): z.output<typeof reportSchema> {
  const parsed = reportSchema.safeParse(body);
  if (!parsed.success) throw new SignalboxError('report_malformed', describeIssues(parsed.error));
  return parsed.data;
}

/**
 * What a report says about its provider's health, or null when it says nothing:
 *
 * | report | signal |
 * | --- | --- |
 * | `outcome: not_sent` | none (the provider was never called) |
 * | `outcome: timeout` | failure |
 * | `upstream_status` ≥ 500, or 429 | failure |
 * | any other 4xx `upstream_status` | none (the request was bad, not the provider) |
 * | `upstream_status` 2xx or 3xx | success (whatever `outcome` says) |
 * | `outcome: failed`, no status (or a 1xx) | failure |
 * | `outcome: completed` or absent, no status (or a 1xx) | success |
 */
export function providerOutcome(report: {
  readonly outcome?: 'completed' | 'failed' | 'timeout' | 'not_sent' | undefined;
  readonly upstream_status?: number | undefined;
}): ProviderOutcome | null {
  if (report.outcome === 'not_sent') return null;
  if (report.outcome === 'timeout') return 'failure';
  const status = report.upstream_status;
  if (status !== undefined) {
    if (status >= 500 || status === 429) return 'failure';
    if (status >= 400) return null;
    if (status >= 200) return 'success';
  }
  return report.outcome === 'failed' ? 'failure' : 'success';
}

/**
 * What a report did. The settlement outcomes of {@link ReportOutcome}, or `health_only`: the
 * report fed its provider's breaker and settled nothing, because it carried nothing to settle
 * with (`hold: not_settled`; any hold is left as it was) or the decision has no hold
 * (`hold: not_found`).
 *
 * `provider_state` is the provider's health after this report: present when the report named a
 * provider and carried a health signal and the outcome was recorded; null when a settlement
 * succeeded but recording the health then failed (logged); absent otherwise.
 */
export type ReportResult = { readonly decision_id: string; readonly provider_state?: ProviderHealth | null } & (
  | ReportOutcome
  | { readonly outcome: 'health_only'; readonly hold: 'not_found' | 'not_settled' }
);

/** Normalises a provider usage block: cached tokens are a subset of input tokens. */
export function tokenUsage(usage: z.output<typeof usageSchema>): TokenUsage {
  if (usage.prompt_tokens !== undefined || usage.completion_tokens !== undefined) {
    return {
      input_tokens: usage.prompt_tokens ?? 0,
      cached_input_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
      output_tokens: usage.completion_tokens ?? 0,
    };
  }
  const cacheRead = usage.cache_read_input_tokens ?? 0;
  const cacheWrite = usage.cache_creation_input_tokens ?? 0;
  // Anthropic counts cache reads and writes outside input_tokens; OpenAI's responses API and our
  // own shape count cached tokens inside it.
  const anthropic = usage.cache_read_input_tokens != null || usage.cache_creation_input_tokens != null;
  const input = (usage.input_tokens ?? 0) + (anthropic ? cacheRead + cacheWrite : 0);
  const cached = anthropic ? cacheRead : (usage.cached_input_tokens ?? usage.input_tokens_details?.cached_tokens ?? 0);
  return { input_tokens: input, cached_input_tokens: Math.min(cached, input), output_tokens: usage.output_tokens ?? 0 };
}

function describeIssues(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join('.') || '(report)'}: ${issue.message}` : 'invalid report';
}

/**
 * What a {@link ReportService} needs: the enforcer to settle against, the audit chain settlements
 * go to, and an optional clock for tests.
 */
export interface ReportServiceOptions {
  readonly enforcer: Enforcer;
  readonly audit: AuditSink;
  readonly logger: Logger;
  readonly clock?: () => number;
  /** Called for every report (its outcome, or the code it was refused with) and breaker state change (metrics); a throw is ignored. */
  readonly observe?: (observation: ReportObservation) => void;
}

/** What the report service tells observers. */
export type ReportObservation =
  | { readonly type: 'report'; readonly outcome: string }
  | { readonly type: 'breaker'; readonly provider: string; readonly from: string; readonly to: string };

/**
 * Serves the native API's usage reports, spend queries and provider health for every door (HTTP,
 * gRPC, LiteLLM), so they settle, audit and count alike.
 */
export class ReportService {
  private readonly clock: () => number;

  constructor(private readonly options: ReportServiceOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Settles one report and, when it names a provider, feeds that provider's circuit breaker.
   * Throws SignalboxError with report_malformed, hold_not_found or budget_store_unavailable.
   *
   * The contract, for a report with `provider` and a health signal ({@link providerOutcome}):
   * - With something to settle with (`usage`, `cost_usd`): the hold is settled first, exactly
   *   as without a provider; then the outcome is recorded. When the decision has no hold, the
   *   outcome is still recorded and the answer is `health_only` / `hold: not_found` instead of
   *   hold_not_found.
   * - With nothing to settle with (a failed call or a timeout without usage): only the outcome
   *   is recorded (`health_only` / `hold: not_settled`); a hold for the decision is untouched
   *   (a later report with usage settles it, or it expires per `budgets.expired_holds`).
   * - A report refused (report_malformed, budget_store_unavailable) records nothing, and a
   *   repeated report (`already_settled`) records nothing again, so retrying a settling report
   *   is harmless. Health-only reports are not deduplicated: resending one counts it again.
   * - Without a signal (not_sent, a 4xx other than 429) or without `provider`, reports behave
   *   as before: they settle or throw.
   *
   * A change of breaker state (closed→open, half_open→open, half_open→closed) is audited as a
   * `provider_health` record in the same chain; of many replicas reporting at once, exactly the
   * one whose report made the change audits it.
   */
  async report(door: string, body: unknown): Promise<ReportResult> {
    try {
      const result = await this.settleReport(door, body);
      this.notify({ type: 'report', outcome: result.outcome });
      return result;
    } catch (error) {
      this.notify({ type: 'report', outcome: error instanceof SignalboxError ? error.code : 'internal_error' });
      throw error;
    }
  }

  private notify(observation: ReportObservation): void {
    try {
      this.options.observe?.(observation);
    } catch (error) {
      this.options.logger.error({ code: 'internal_error', cause: describeCause(error) }, 'report observer failed');
    }
  }

  private async settleReport(door: string, body: unknown): Promise<ReportResult> {
    const r = parseReport(body);
    const signal = r.provider === undefined ? null : providerOutcome(r);
    const report: UsageReport = {
      decisionId: r.decision_id,
      ...(r.usage ? { usage: tokenUsage(r.usage) } : {}),
      ...(r.model ? { model: r.model } : {}),
      ...(r.cost_usd !== undefined ? { costUsd: r.cost_usd } : {}),
      ...(r.outcome ? { outcome: r.outcome } : {}),
    };
    const nowMs = this.clock();
    const health = r.provider !== undefined && signal !== null ? { provider: r.provider, signal } : undefined;
    if (health && r.usage === undefined && r.cost_usd === undefined) {
      return { decision_id: r.decision_id, outcome: 'health_only', hold: 'not_settled', provider_state: await this.recordHealth(door, r, health, nowMs) };
    }
    let outcome: ReportOutcome;
    try {
      outcome = await this.options.enforcer.settle(report, nowMs);
    } catch (error) {
      if (health && error instanceof SignalboxError && error.code === 'hold_not_found') {
        return { decision_id: r.decision_id, outcome: 'health_only', hold: 'not_found', provider_state: await this.recordHealth(door, r, health, nowMs) };
      }
      const code = error instanceof SignalboxError ? error.code : 'internal_error';
      if (code === 'hold_not_found' && (report.usage !== undefined || report.costUsd !== undefined)) {
        // The common case without budgets: nothing to settle, the usage recorded for the ledger.
        this.recordUnheld(door, r, report, nowMs);
        this.options.logger.debug({ decision_id: r.decision_id, door, code }, 'usage recorded for a decision that holds nothing');
      } else {
        this.options.logger.warn({ decision_id: r.decision_id, door, code, cause: describeCause(error) }, 'usage report not settled');
      }
      throw error instanceof SignalboxError ? error : new SignalboxError('internal_error', 'settlement failed', { cause: error });
    }
    if (outcome.outcome === 'settled') {
      appendInBackground(this.options.audit, {
        type: 'settlement',
        decision_id: r.decision_id,
        timestamp: new Date(nowMs).toISOString(),
        door,
        usage: report.usage ?? null,
        model: report.model ?? null,
        report_outcome: report.outcome ?? 'completed',
        cost_usd: outcome.cost_usd,
        held_usd: outcome.held_usd,
        late: outcome.late,
        ...(r.provider !== undefined ? { provider: r.provider } : {}),
        ...(r.upstream_status !== undefined ? { upstream_status: r.upstream_status } : {}),
      });
    }
    if (!health || outcome.outcome !== 'settled') return { decision_id: r.decision_id, ...outcome };
    let providerState: ProviderHealth | null;
    try {
      providerState = await this.recordHealth(door, r, health, nowMs);
    } catch {
      // The settlement stands (it is committed and audited; recordHealth logged the failure);
      // failing the report now would only make the gateway resend it, and a resent report is
      // already_settled.
      providerState = null;
    }
    return { decision_id: r.decision_id, ...outcome, provider_state: providerState };
  }

  /**
   * A report for a decision that holds nothing (its policy named no budget, or the id is not
   * one of ours) still says what a call cost: it is audited as a `settlement` with `hold: none`,
   * so the spend ledger counts teams without budgets too. The ledger keeps it only for a decision
   * it has a record of, so a report for an unknown id adds no spend.
   */
  private recordUnheld(door: string, r: z.output<typeof reportSchema>, report: UsageReport, nowMs: number): void {
    const cost = this.options.enforcer.unheldCostMicroUsd(report);
    appendInBackground(this.options.audit, {
      type: 'settlement',
      decision_id: r.decision_id,
      timestamp: new Date(nowMs).toISOString(),
      door,
      hold: 'none',
      usage: report.usage ?? null,
      model: report.model ?? null,
      report_outcome: report.outcome ?? 'completed',
      cost_usd: cost === undefined ? null : microToUsd(cost),
      held_usd: 0,
      late: false,
      ...(r.provider !== undefined ? { provider: r.provider } : {}),
      ...(r.upstream_status !== undefined ? { upstream_status: r.upstream_status } : {}),
    });
  }

  /** Records a provider outcome; audits and logs a change of breaker state. Throws store errors. */
  private async recordHealth(
    door: string,
    r: { readonly decision_id: string; readonly upstream_status?: number | undefined; readonly outcome?: string | undefined },
    health: { readonly provider: string; readonly signal: ProviderOutcome },
    nowMs: number,
  ): Promise<ProviderHealth> {
    let change: ProviderHealthChange;
    try {
      change = await this.options.enforcer.recordProviderOutcome(health.provider, health.signal, nowMs);
    } catch (error) {
      const code = error instanceof SignalboxError ? error.code : 'internal_error';
      this.options.logger.warn({ decision_id: r.decision_id, door, provider: health.provider, code, cause: describeCause(error) }, 'provider health not recorded');
      throw error instanceof SignalboxError ? error : new SignalboxError('internal_error', 'recording provider health failed', { cause: error });
    }
    const { previous_state: from, ...state } = change;
    if (from !== state.state) {
      this.notify({ type: 'breaker', provider: state.provider, from, to: state.state });
      appendInBackground(this.options.audit, {
        type: 'provider_health',
        decision_id: r.decision_id,
        timestamp: new Date(nowMs).toISOString(),
        door,
        provider: state.provider,
        from,
        to: state.state,
        reported: health.signal,
        report_outcome: r.outcome ?? 'completed',
        upstream_status: r.upstream_status ?? null,
        failures: state.failures,
        retry_at: state.retry_at_ms === null ? null : new Date(state.retry_at_ms).toISOString(),
      });
      const log = { provider: state.provider, from, to: state.state, failures: state.failures, retry_at_ms: state.retry_at_ms, decision_id: r.decision_id };
      if (state.state === 'open') this.options.logger.warn(log, 'provider breaker opened');
      else this.options.logger.info(log, 'provider breaker closed');
    }
    return state;
  }

  /** Every provider's circuit breaker as of now (`GET /v1/providers`). */
  async providers(): Promise<ProviderHealth[]> {
    return this.options.enforcer.providerHealth(this.clock());
  }

  /** Spend per budget counter: one scope (and window), or every live counter. */
  async spend(scope: string | undefined, window: string | undefined): Promise<BudgetView[]> {
    if (window !== undefined && !WINDOW_PATTERN.test(window)) {
      throw new SignalboxError('report_malformed', 'window must be day, week, month, session or <seconds>s');
    }
    if (scope !== undefined && (scope.length === 0 || scope.length > 256)) throw new SignalboxError('report_malformed', 'scope must be 1 to 256 characters');
    const nowMs = this.clock();
    const enforcer = this.options.enforcer;
    // One named counter in an unpartitioned store is a direct read; anything else lists.
    if (scope !== undefined && window !== undefined && enforcer.partitionFor(undefined) === '') {
      const balances = await enforcer.store.balances('', [{ scope, window, slot: windowSlot(window, nowMs).id }], nowMs);
      return balances.filter((b) => b.limit > 0 || b.spent > 0 || b.held > 0).map(budgetView);
    }
    const all = await enforcer.store.listBudgets(nowMs);
    return all
      .filter((b) => (scope === undefined || b.scope === scope) && (window === undefined || b.window === window))
      .sort((a, b) => a.scope.localeCompare(b.scope) || a.window.localeCompare(b.window))
      .map(budgetView);
  }
}
