/**
 * Enforcement: what the policy named (budgets, rate limits, loop check) turned into one
 * all-or-nothing reservation in the store, and usage reports turned into settlements.
 *
 * The policy decides which limits apply; this module only counts. Its outcomes are plain data
 * (reserved, denied with a reason, store unavailable) that the pipeline turns into a decision.
 */
import { hash } from 'node:crypto';
import { canonicalJson } from '../core/canonical-json.js';
import { SignalboxError } from '../core/errors.js';
import type { LlmFacts } from '../inspect/llm.js';
import type { ToolCallFact } from '../inspect/llm/tool-calls.js';
import type { PriceTable, TokenUsage } from '../inspect/prices.js';
import type { EnforcementClaims } from '../policy/result.js';
import { microToUsd, usdToMicro } from '../core/money.js';
import {
  checkBreakerSettings,
  type BudgetCounter,
  type BudgetKey,
  type EnforcementStore,
  type LoopCheck,
  type ProviderBreakerSettings,
  type ProviderHealth,
  type ProviderHealthChange,
  type ProviderOutcome,
  type RateCounter,
  type SettleResult,
} from './store.js';
import { SpendViews, budgetView, type BudgetView, type SpendView } from './spend-views.js';
import { windowSlot } from './windows.js';

/**
 * The store and price table, with the `budgets`, `store.partition` and `routing.breaker`
 * settings in the units the enforcer counts in (built by `createEnforcer`, src/app/app.ts).
 */
export interface EnforcerOptions {
  readonly store: EnforcementStore;
  readonly prices: PriceTable;
  /** How long a hold waits for its usage report before it expires. */
  readonly holdTtlMs: number;
  /** How long counters outlive their window and settled holds are remembered. */
  readonly retentionMs: number;
  /** How long an agent session's call history is kept after its last call. */
  readonly loopTtlMs: number;
  /** How long a `session` window counter lives after its last reservation. */
  readonly sessionTtlMs: number;
  /** `tenant` spreads counters over Redis Cluster slots by tenant; `none` keeps one slot. */
  readonly partition: 'none' | 'tenant';
  /** Scope templates whose balances are looked up for `input.spend` ("user:{subject}"). */
  readonly spendScopes: readonly string[];
  readonly spendWindows: readonly string[];
  /** When a provider's circuit breaker opens and how long it stays open (see breakerStep). */
  readonly breaker: ProviderBreakerSettings;
}

/** Breaker settings until configuration names them: 3 failures in a minute open it for 30 s. */
export const DEFAULT_BREAKER: ProviderBreakerSettings = Object.freeze({ failureThreshold: 3, failureWindowMs: 60_000, coolDownMs: 30_000 });

/** What the request is, as far as enforcement is concerned. */
export interface EnforcementFacts {
  readonly llm: LlmFacts | undefined;
  readonly toolCalls: readonly ToolCallFact[];
  readonly tenant: string | undefined;
}

/**
 * What {@link Enforcer.reserve} did, as plain data: the pipeline, not the enforcer, turns it into
 * an allow, a 429, or a fail-closed (or fail-open) decision.
 */
export type EnforcementOutcome =
  | { readonly kind: 'reserved'; readonly amountMicroUsd: number; readonly budgets: readonly BudgetView[] }
  | {
      readonly kind: 'denied';
      readonly reason: 'budget.exceeded' | 'rate_limit.exceeded' | 'loop.repeated_call' | 'loop.ping_pong';
      readonly status: 429;
      readonly retryAfterS: number | null;
      /** The JSON error detail for the caller (no secrets: scopes, amounts, counts). */
      readonly detail: Readonly<Record<string, unknown>>;
      readonly message: string;
    }
  | { readonly kind: 'estimate_unavailable' }
  | { readonly kind: 'store_unavailable'; readonly failOpen: boolean; readonly error: unknown };

/** A gateway's report of what a decided request actually used, which settles the hold made at decision time. */
export interface UsageReport {
  readonly decisionId: string;
  readonly usage?: TokenUsage;
  /** The model that actually answered, when it differs from the one reserved for. */
  readonly model?: string;
  /** The actual cost, when the gateway priced the call itself (overrides usage × price). */
  readonly costUsd?: number;
  /**
   * `not_sent` releases the hold (the request never reached a provider). `failed` and `timeout`
   * settle like `completed`: with the usage or cost reported.
   */
  readonly outcome?: 'completed' | 'failed' | 'timeout' | 'not_sent';
}

/**
 * What a usage report changed: a fresh settlement (`late` when the hold had already expired), or
 * the cost of an earlier report for the same decision.
 */
export type ReportOutcome =
  | { readonly outcome: 'settled'; readonly cost_usd: number; readonly held_usd: number; readonly late: boolean }
  | { readonly outcome: 'already_settled'; readonly cost_usd: number };

/** A short, stable hash of the tool calls being made, for loop detection. */
export function toolCallHash(calls: readonly ToolCallFact[]): string {
  const canonical = canonicalJson(calls.map((c) => ({ name: c.name, arguments: c.arguments })));
  return hash('sha256', canonical, 'hex').slice(0, 32);
}

/** A caller field in a spend scope template: `{subject}`, `{team}`, ... */
const SCOPE_FIELD = /\{(\w+)\}/g;

function expand(template: string, fields: Readonly<Record<string, string | undefined>>): string | undefined {
  let missing = false;
  const scope = template.replace(SCOPE_FIELD, (_, name: string) => {
    const value = fields[name];
    if (value === undefined || value === '') missing = true;
    return value ?? '';
  });
  return missing ? undefined : scope;
}

/**
 * Turns the limits a policy named into one all-or-nothing reservation and usage reports into
 * settlements. Stateless itself: every counter is in the store, so replicas sharing a Redis store
 * agree.
 */
export class Enforcer {
  /** The spend view kept per caller, handed out again while it holds. */
  private readonly spendViews = new SpendViews();
  /** The caller fields the spend scope templates are made of (`{subject}`, ...). */
  private readonly spendFields: readonly string[];

  /** Throws config_invalid when the breaker settings are unusable. */
  constructor(private readonly options: EnforcerOptions) {
    checkBreakerSettings(options.breaker);
    this.spendFields = [...new Set(options.spendScopes.flatMap((template) => [...template.matchAll(SCOPE_FIELD)].map((m) => m[1]!)))];
  }

  get store(): EnforcementStore {
    return this.options.store;
  }

  /** The Cluster partition for a request: its tenant, when partitioning by tenant. */
  partitionFor(tenant: string | undefined): string {
    return this.options.partition === 'tenant' ? `t:${tenant ?? '-'}` : '';
  }

  /**
   * Reserves what the policy named, all or nothing, in one store round trip. Never throws:
   * store failures come back as `store_unavailable` for the caller to deny (or allow, when the
   * policy opted to fail open).
   */
  async reserve(decisionId: string, claims: EnforcementClaims, facts: EnforcementFacts, nowMs: number): Promise<EnforcementOutcome> {
    let amount = 0;
    if (claims.costUsd !== undefined) amount = usdToMicro(claims.costUsd, 'up');
    else if (facts.llm) {
      if (facts.llm.estimated_cost_micro_usd === null) {
        if (claims.budgets.length > 0) return { kind: 'estimate_unavailable' };
      } else amount = facts.llm.estimated_cost_micro_usd;
    }
    const tokens = facts.llm ? facts.llm.input_tokens + facts.llm.max_output_tokens : 0;
    const budgets: BudgetCounter[] = claims.budgets.map((b) => {
      const slot = windowSlot(b.window, nowMs);
      // A session window never resets; its counter lives on while the session is active.
      const end = Number.isFinite(slot.endsAtMs) ? slot.endsAtMs : nowMs + this.options.sessionTtlMs;
      return { scope: b.scope, window: b.window, slot: slot.id, limit: usdToMicro(b.limitUsd, 'nearest'), expireAtMs: end + this.options.retentionMs };
    });
    const rates: RateCounter[] = [];
    for (const r of claims.rateLimits) {
      if (r.requestsPerMinute !== undefined) rates.push({ scope: r.scope, unit: 'requests', perMinute: r.requestsPerMinute, weight: 1 });
      if (r.tokensPerMinute !== undefined) rates.push({ scope: r.scope, unit: 'tokens', perMinute: r.tokensPerMinute, weight: tokens });
    }
    let loop: LoopCheck | undefined;
    if (claims.loop && facts.toolCalls.length > 0) {
      loop = {
        session: claims.loop.session,
        callHash: toolCallHash(facts.toolCalls),
        maxRepeats: claims.loop.maxRepeats,
        pingPong: claims.loop.pingPong,
        window: Math.max(claims.loop.window, 2 * claims.loop.pingPong),
        ttlMs: this.options.loopTtlMs,
      };
    }
    if (budgets.length === 0 && rates.length === 0 && !loop) return { kind: 'reserved', amountMicroUsd: 0, budgets: [] };
    let result;
    try {
      result = await this.options.store.reserve({
        holdId: decisionId,
        partition: this.partitionFor(facts.tenant),
        nowMs,
        amount,
        budgets,
        rates,
        ...(loop ? { loop } : {}),
        holdTtlMs: this.options.holdTtlMs,
        retentionMs: this.options.retentionMs,
        meta: { model: facts.llm?.model ?? null, tokens },
      });
    } catch (error) {
      return { kind: 'store_unavailable', failOpen: claims.failOpen, error };
    }
    switch (result.outcome) {
      case 'reserved':
        return { kind: 'reserved', amountMicroUsd: amount, budgets: result.budgets.map(budgetView) };
      case 'duplicate':
        // Decision ids are fresh UUIDs: a duplicate means a bug, and a bug never allows.
        return { kind: 'store_unavailable', failOpen: false, error: new SignalboxError('internal_error', 'hold id reused') };
      case 'budget_exceeded': {
        const view = budgetView(result.budget);
        const endsAt = windowSlot(result.budget.window, nowMs).endsAtMs;
        const resetsAt = Number.isFinite(endsAt) ? endsAt : null;
        return {
          kind: 'denied',
          reason: 'budget.exceeded',
          status: 429,
          retryAfterS: resetsAt === null ? null : Math.max(1, Math.ceil((resetsAt - nowMs) / 1000)),
          message: `budget ${view.scope} (${view.window}) has ${view.remaining_usd} USD left; this request may cost up to ${microToUsd(amount)} USD`,
          detail: {
            budget: { ...view, ...(resetsAt === null ? {} : { resets_at: new Date(resetsAt).toISOString() }) },
            estimated_cost_usd: microToUsd(amount),
          },
        };
      }
      case 'rate_limited':
        return {
          kind: 'denied',
          reason: 'rate_limit.exceeded',
          status: 429,
          retryAfterS: result.retryAfterMs === null ? null : Math.max(1, Math.ceil(result.retryAfterMs / 1000)),
          message:
            result.retryAfterMs === null
              ? `this request alone exceeds the ${result.unit} per minute limit of ${result.scope}`
              : `rate limit of ${result.perMinute} ${result.unit} per minute for ${result.scope} reached`,
          detail: { rate_limit: { scope: result.scope, unit: result.unit, per_minute: result.perMinute, retry_after_ms: result.retryAfterMs } },
        };
      case 'loop_detected':
        return {
          kind: 'denied',
          reason: result.reason === 'ping_pong' ? 'loop.ping_pong' : 'loop.repeated_call',
          status: 429,
          retryAfterS: null,
          message:
            result.reason === 'ping_pong'
              ? `the agent is alternating between the same two tool calls (${2 * result.count} in a row)`
              : `the agent has made the same tool call ${result.count} times`,
          detail: { loop: { session: result.session, reason: result.reason, count: result.count, tools: facts.toolCalls.map((c) => c.name) } },
        };
    }
  }

  /** Settles a hold with the usage the gateway reports. Idempotent by decision id. */
  async settle(report: UsageReport, nowMs: number): Promise<ReportOutcome> {
    const result: SettleResult = await this.options.store.settle({
      holdId: report.decisionId,
      nowMs,
      retentionMs: this.options.retentionMs,
      tokens: report.usage ? report.usage.input_tokens + report.usage.output_tokens : report.outcome === 'not_sent' ? 0 : null,
      price: (meta) => this.price(report, meta),
    });
    switch (result.outcome) {
      case 'settled':
        return { outcome: 'settled', cost_usd: microToUsd(result.amount), held_usd: microToUsd(result.held), late: result.late };
      case 'already_settled':
        return { outcome: 'already_settled', cost_usd: microToUsd(result.amount) };
      case 'not_found':
        throw new SignalboxError('hold_not_found', 'no budget hold for this decision id (never reserved, or past its retention)');
    }
  }

  /**
   * Records one upstream call's outcome against the provider's circuit breaker (shared by every
   * replica through the store). Throws report_malformed for a bad provider name,
   * budget_store_unavailable when the store cannot be reached.
   */
  recordProviderOutcome(provider: string, outcome: ProviderOutcome, nowMs: number): Promise<ProviderHealthChange> {
    return this.options.store.recordProviderOutcome(provider, outcome, nowMs, this.options.breaker);
  }

  /** Every reported provider's breaker at `nowMs`, sorted by name. Throws budget_store_unavailable. */
  providerHealth(nowMs: number): Promise<ProviderHealth[]> {
    return this.options.store.providerHealth(nowMs);
  }

  /** Balances for the scopes the templates name for this caller, as `input.spend`. */
  async spendFor(fields: Readonly<Record<string, string | undefined>>, tenant: string | undefined, nowMs: number): Promise<SpendView> {
    const partition = this.partitionFor(tenant);
    // Whose view it is: everything its scopes are made of, written unambiguously.
    const caller = JSON.stringify([partition, ...this.spendFields.map((name) => fields[name] ?? null)]);
    let keys = this.spendViews.keysFor(caller, nowMs);
    if (keys === undefined) {
      const fresh: BudgetKey[] = [];
      for (const template of this.options.spendScopes) {
        const scope = expand(template, fields);
        if (scope === undefined) continue;
        const windows = scope.startsWith('session:') ? ['session'] : this.options.spendWindows;
        for (const window of windows) fresh.push({ scope, window, slot: windowSlot(window, nowMs).id });
      }
      keys = fresh;
    }
    if (keys.length === 0) return {};
    return this.spendViews.view(caller, keys, await this.options.store.balances(partition, keys, nowMs));
  }

  /**
   * The cost of a report for a decision that reserved nothing (its policy named no budget), for
   * the record only: the gateway's `cost_usd`, else usage × the price of the model it names;
   * undefined when neither is known. Nothing is charged anywhere.
   */
  unheldCostMicroUsd(report: UsageReport): number | undefined {
    if (report.costUsd !== undefined) return usdToMicro(report.costUsd, 'up');
    if (!report.usage || report.model === undefined) return undefined;
    return this.options.prices.costMicroUsd(report.model, report.usage);
  }

  private price(report: UsageReport, meta: Readonly<Record<string, string | number | null>>): number {
    if (report.costUsd !== undefined) return usdToMicro(report.costUsd, 'up');
    if (report.outcome === 'not_sent' && !report.usage) return 0;
    if (!report.usage) throw new SignalboxError('report_malformed', 'a report needs usage or cost_usd (or outcome not_sent)');
    const model = report.model ?? (typeof meta.model === 'string' ? meta.model : undefined);
    if (model === undefined) throw new SignalboxError('report_malformed', 'the hold names no model: report cost_usd or model');
    const cost = this.options.prices.costMicroUsd(model, report.usage);
    if (cost === undefined) throw new SignalboxError('report_malformed', `model ${JSON.stringify(model)} has no price: report cost_usd`);
    return cost;
  }
}
