/**
 * Usage reports and spend queries: the native API's other half. After the LLM answers, the
 * gateway (or an adapter for it) reports what the call used; the hold made at decision time is
 * replaced by the actual cost. Each settlement is audited in the same hash chain as decisions.
 *
 * Reports accept Signalbox's own usage shape and the usage blocks providers return (OpenAI chat
 * and responses, Anthropic messages), so a gateway can forward the provider's `usage` as is.
 */
import { z } from 'zod';
import type { AuditSink } from '../audit/log.js';
import { budgetView, type BudgetView, type Enforcer, type ReportOutcome, type UsageReport } from '../enforce/enforcer.js';
import { WINDOW_PATTERN, windowSlot } from '../enforce/windows.js';
import { SignalboxError, describeCause } from '../errors.js';
import type { TokenUsage } from '../inspect/prices.js';
import type { Logger } from '../log.js';

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
    outcome: z.enum(['completed', 'failed', 'not_sent']).optional(),
  })
  .strict();

export type ReportBody = z.input<typeof reportSchema>;

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

export interface ReportServiceOptions {
  readonly enforcer: Enforcer;
  readonly audit: AuditSink;
  readonly logger: Logger;
  readonly clock?: () => number;
}

export class ReportService {
  private readonly clock: () => number;

  constructor(private readonly options: ReportServiceOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /** Settles one report. Throws SignalboxError with report_malformed, hold_not_found or budget_store_unavailable. */
  async report(door: string, body: unknown): Promise<ReportOutcome & { decision_id: string }> {
    const parsed = reportSchema.safeParse(body);
    if (!parsed.success) throw new SignalboxError('report_malformed', describeIssues(parsed.error));
    const r = parsed.data;
    const report: UsageReport = {
      decisionId: r.decision_id,
      ...(r.usage ? { usage: tokenUsage(r.usage) } : {}),
      ...(r.model ? { model: r.model } : {}),
      ...(r.cost_usd !== undefined ? { costUsd: r.cost_usd } : {}),
      ...(r.outcome ? { outcome: r.outcome } : {}),
    };
    const nowMs = this.clock();
    let outcome: ReportOutcome;
    try {
      outcome = await this.options.enforcer.settle(report, nowMs);
    } catch (error) {
      const code = error instanceof SignalboxError ? error.code : 'internal_error';
      this.options.logger.warn({ decision_id: r.decision_id, door, code, cause: describeCause(error) }, 'usage report not settled');
      throw error instanceof SignalboxError ? error : new SignalboxError('internal_error', 'settlement failed', { cause: error });
    }
    if (outcome.outcome === 'settled') {
      this.options.audit.append({
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
      });
    }
    return { decision_id: r.decision_id, ...outcome };
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
