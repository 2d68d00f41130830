/**
 * The enforcement store: where budget counters, holds, rate-limit state and agent call history
 * live. Two implementations share this interface and one test suite (test/enforce-store.test.ts):
 * the in-memory store (one process, the embedded default) and the Redis store (any number of
 * replicas, standalone or Cluster).
 *
 * All amounts are whole micro-USD (1e-6 USD) and all times are milliseconds since the epoch.
 * Every operation is atomic: a reservation either charges every counter it names or none.
 *
 * The store also keeps one circuit breaker per LLM provider (at the end of this file), fed by
 * the outcomes gateways report, so every replica's policy sees the same provider health.
 */
import { SignalboxError } from '../core/errors.js';

/** One budget counter to reserve against. */
export interface BudgetCounter {
  readonly scope: string;
  readonly window: string;
  /** The period of the window (see windows.ts), part of the key. */
  readonly slot: string;
  /** The cap, in micro-USD, as the policy named it on this request. */
  readonly limit: number;
  /** When the counter may be forgotten: the end of its period plus the retention. */
  readonly expireAtMs: number;
}

/** One rate limit: a token bucket holding `perMinute` units, refilled at `perMinute` per minute. */
export interface RateCounter {
  readonly scope: string;
  readonly unit: 'requests' | 'tokens';
  readonly perMinute: number;
  /** Units this request takes: 1 for requests, the token estimate for tokens. */
  readonly weight: number;
}

/** The agent loop check for one session. */
export interface LoopCheck {
  readonly session: string;
  /** Hash of the tool call(s) being made now. */
  readonly callHash: string;
  /** Deny when the call already appears this many times among the last `window` calls (0: off). */
  readonly maxRepeats: number;
  /** Deny when, with this call, the last 2×N calls alternate between two calls (0: off). */
  readonly pingPong: number;
  /** How many recent calls are remembered. */
  readonly window: number;
  /** How long a session's history is kept after its last call. */
  readonly ttlMs: number;
}

/** Everything one decision reserves, applied all or nothing: budget holds, rate-limit units and the loop check. */
export interface Reservation {
  /** The decision id; reports settle by it. */
  readonly holdId: string;
  /** Which slot family the counters live in (Redis Cluster hash tag); '' when unpartitioned. */
  readonly partition: string;
  readonly nowMs: number;
  /** The estimate held against every budget, in micro-USD. */
  readonly amount: number;
  readonly budgets: readonly BudgetCounter[];
  readonly rates: readonly RateCounter[];
  readonly loop?: LoopCheck;
  /** The hold expires, unsettled, at nowMs + holdTtlMs. */
  readonly holdTtlMs: number;
  /** How long a settled or expired hold is remembered, so a late or repeated report is harmless. */
  readonly retentionMs: number;
  /** Facts kept with the hold for settlement (model, estimate tokens). */
  readonly meta: Readonly<Record<string, string | number | null>>;
}

/** A budget counter's state after expired holds were swept. */
export interface BudgetBalance {
  readonly scope: string;
  readonly window: string;
  readonly slot: string;
  /** The cap the last reservation named (0 when never reserved against). */
  readonly limit: number;
  /** Settled spend, expired holds charged included. */
  readonly spent: number;
  /** Outstanding holds. */
  readonly held: number;
  /** Number of outstanding holds. */
  readonly holds: number;
}

/** What {@link EnforcementStore.reserve} did; on any outcome but `reserved`, no counter changed. */
export type ReserveResult =
  | { readonly outcome: 'reserved'; readonly budgets: readonly BudgetBalance[] }
  | { readonly outcome: 'budget_exceeded'; readonly budget: BudgetBalance }
  | {
      readonly outcome: 'rate_limited';
      readonly scope: string;
      readonly unit: 'requests' | 'tokens';
      readonly perMinute: number;
      /** When a retry could pass; null when this request alone is larger than the limit. */
      readonly retryAfterMs: number | null;
    }
  | { readonly outcome: 'loop_detected'; readonly reason: 'repeated_call' | 'ping_pong'; readonly session: string; readonly count: number }
  | { readonly outcome: 'duplicate' };

/** A usage report as the store applies it: the hold to settle and how to price it. */
export interface Settlement {
  readonly holdId: string;
  readonly nowMs: number;
  /**
   * The actual cost in micro-USD, replacing the hold, given the facts kept with it (the model
   * reserved for, when the report does not name one). Called at most once, before anything
   * changes; a throw aborts the settlement.
   */
  readonly price: (meta: Readonly<Record<string, string | number | null>>) => number;
  /** Actual tokens, to return unused token-rate capacity; null when unknown. */
  readonly tokens: number | null;
  /** How long the settled hold is remembered, so a repeated report is recognised. */
  readonly retentionMs: number;
}

/**
 * What {@link EnforcementStore.settle} did; amounts in micro-USD. `not_found` means never reserved
 * or past its retention.
 */
export type SettleResult =
  | {
      readonly outcome: 'settled';
      /** The actual cost now charged. */
      readonly amount: number;
      /** What the hold had reserved. */
      readonly held: number;
      /** True when the hold had already expired on at least one budget before this report. */
      readonly late: boolean;
      readonly meta: Readonly<Record<string, string | number | null>>;
    }
  | { readonly outcome: 'already_settled'; readonly amount: number }
  | { readonly outcome: 'not_found' };

/** What happens to a hold nobody settles before it expires. */
export type ExpiredHoldPolicy = 'charge' | 'release';

/** Names one budget counter (scope, window and period) for a balance look-up. */
export interface BudgetKey {
  readonly scope: string;
  readonly window: string;
  readonly slot: string;
}

/**
 * Where every enforcement counter lives; the in-memory and Redis stores implement it and pass the
 * same test suite (test/enforce-store.test.ts).
 */
export interface EnforcementStore {
  readonly kind: 'memory' | 'redis';
  reserve(reservation: Reservation): Promise<ReserveResult>;
  /** Replaces a hold by its actual cost. Idempotent: a second report changes nothing. */
  settle(settlement: Settlement): Promise<SettleResult>;
  /** Current balances (expired holds swept first); counters never reserved against read as zero. */
  balances(partition: string, keys: readonly BudgetKey[], nowMs: number): Promise<BudgetBalance[]>;
  /** Every live budget counter, for `signalbox spend` and the spend endpoint. */
  listBudgets(nowMs: number): Promise<BudgetBalance[]>;
  /**
   * Records one upstream call's outcome against the provider's breaker, atomically (many
   * replicas may report at once), following {@link breakerStep}; returns the health after it,
   * with the state just before. Throws report_malformed for a name {@link checkProviderName}
   * refuses, or a new provider beyond {@link MAX_PROVIDERS}; budget_store_unavailable when the
   * store cannot be reached.
   */
  recordProviderOutcome(provider: string, outcome: ProviderOutcome, nowMs: number, settings: ProviderBreakerSettings): Promise<ProviderHealthChange>;
  /** Every provider ever reported, sorted by name (code-unit order), its state computed at `nowMs`. */
  providerHealth(nowMs: number): Promise<ProviderHealth[]>;
  /**
   * Resolves when the store can be reached now, for readiness (a Redis PING, bounded by the
   * command timeout; the in-memory store always can). Throws budget_store_unavailable.
   */
  ping(): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Provider circuit breaker
// ---------------------------------------------------------------------------------------------

/**
 * How a provider's breaker opens and recovers (one setting for every provider).
 *
 * - `failureThreshold`: failures within one window that open the breaker (an integer ≥ 1).
 * - `failureWindowMs`: the length of a counting window, which starts at its first failure.
 * - `coolDownMs`: how long an opened breaker stays open before it reads as `half_open`.
 */
export interface ProviderBreakerSettings {
  readonly failureThreshold: number;
  readonly failureWindowMs: number;
  readonly coolDownMs: number;
}

/** What one upstream call said about its provider's health. */
export type ProviderOutcome = 'success' | 'failure';

/**
 * A circuit breaker's state: `closed` lets traffic through, `open` keeps the provider out,
 * `half_open` allows a trial after the cool-down.
 */
export type ProviderState = 'closed' | 'open' | 'half_open';

/**
 * One provider's breaker as every replica sees it, computed at a given time from the stored
 * fields (so no timer is needed: an open breaker reads as `half_open` once `retry_at_ms` passes).
 */
export interface ProviderHealth {
  readonly provider: string;
  readonly state: ProviderState;
  /**
   * Closed: failures counted in the current window (0 once the window has passed). Open and
   * half-open: the failures that opened it (the threshold count, or 1 when a failure in
   * half-open reopened it).
   */
  readonly failures: number;
  readonly opened_at_ms: number | null;
  /** When an open breaker becomes half_open. */
  readonly retry_at_ms: number | null;
  readonly last_failure_at_ms: number | null;
  readonly last_success_at_ms: number | null;
}

/**
 * What recording an outcome returns: the health after it, plus the state the breaker was in
 * just before (computed at the same `nowMs`). `previous_state !== state` marks a transition;
 * exactly one of any number of concurrent recorders sees each transition, so it is what the
 * caller audits.
 */
export interface ProviderHealthChange extends ProviderHealth {
  readonly previous_state: ProviderState;
}

/**
 * Providers one store remembers. Names come from reports (the caller's text), so the set is
 * capped; a report naming a new provider beyond the cap is refused (report_malformed).
 */
export const MAX_PROVIDERS = 1024;

/** A breaker as stored: what the state and counts are computed from at read time. */
export interface StoredBreaker {
  /** Failures in the current window (closed), or the failures that opened it (open). */
  readonly failures: number;
  /** When the current counting window ends (closed with failures > 0); null otherwise. */
  readonly window_end_ms: number | null;
  readonly opened_at_ms: number | null;
  readonly retry_at_ms: number | null;
  readonly last_failure_at_ms: number | null;
  readonly last_success_at_ms: number | null;
}

/** Provider names: 1–128 characters, no control characters (nor unpaired surrogates). */
export function checkProviderName(provider: unknown): asserts provider is string {
  if (typeof provider !== 'string' || provider.length < 1 || provider.length > 128 || /[\p{Cc}\p{Cs}]/u.test(provider)) {
    throw new SignalboxError('report_malformed', 'provider must be 1 to 128 characters without control characters');
  }
}

/** Rejects settings no breaker could follow (a zero threshold, a negative window or cool-down). */
export function checkBreakerSettings(settings: ProviderBreakerSettings): void {
  const { failureThreshold, failureWindowMs, coolDownMs } = settings;
  if (!Number.isSafeInteger(failureThreshold) || failureThreshold < 1) {
    throw new SignalboxError('config_invalid', 'breaker failureThreshold must be an integer of at least 1');
  }
  for (const [name, value] of [['failureWindowMs', failureWindowMs], ['coolDownMs', coolDownMs]] as const) {
    if (!Number.isSafeInteger(value) || value < 1) throw new SignalboxError('config_invalid', `breaker ${name} must be a positive integer (ms)`);
  }
}

/** The breaker's state at `nowMs`. */
export function breakerState(stored: StoredBreaker | undefined, nowMs: number): ProviderState {
  if (!stored || stored.retry_at_ms === null) return 'closed';
  return nowMs < stored.retry_at_ms ? 'open' : 'half_open';
}

/** The health a stored breaker reads as at `nowMs` (both stores use this for every read). */
export function providerView(provider: string, stored: StoredBreaker | undefined, nowMs: number): ProviderHealth {
  const state = breakerState(stored, nowMs);
  const s = stored ?? EMPTY_BREAKER;
  const windowOver = state === 'closed' && (s.window_end_ms === null || nowMs >= s.window_end_ms);
  return {
    provider,
    state,
    failures: windowOver ? 0 : s.failures,
    opened_at_ms: s.opened_at_ms,
    retry_at_ms: s.retry_at_ms,
    last_failure_at_ms: s.last_failure_at_ms,
    last_success_at_ms: s.last_success_at_ms,
  };
}

const EMPTY_BREAKER: StoredBreaker = {
  failures: 0,
  window_end_ms: null,
  opened_at_ms: null,
  retry_at_ms: null,
  last_failure_at_ms: null,
  last_success_at_ms: null,
};

/**
 * The breaker rule: the stored breaker after one outcome at `nowMs`. The memory store runs it
 * as is; the Redis script (PROVIDER_SCRIPT) mirrors it line for line.
 *
 * - closed, failure: counted in the window [first failure, first failure + failureWindowMs);
 *   a failure at or after the window's end starts a new window at 1. Reaching failureThreshold
 *   opens the breaker: opened_at = now, retry_at = now + coolDownMs.
 * - closed, success: failures reset to 0 (the window ends).
 * - open (now < retry_at): nothing but last_failure_at / last_success_at changes. A failure does
 *   not extend the cool-down; a success (a late in-flight call) does not close it.
 * - half_open (now ≥ retry_at): a success closes it (failures 0); a failure reopens it with
 *   opened_at = now, retry_at = now + coolDownMs, failures 1.
 *
 * last_*_at only move forward, so a report carrying a replica's slightly older clock cannot
 * move them back.
 */
export function breakerStep(stored: StoredBreaker | undefined, outcome: ProviderOutcome, nowMs: number, settings: ProviderBreakerSettings): StoredBreaker {
  const s = stored ?? EMPTY_BREAKER;
  const state = breakerState(stored, nowMs);
  const later = (at: number | null) => (at === null ? nowMs : Math.max(at, nowMs));
  if (outcome === 'success') {
    const last_success_at_ms = later(s.last_success_at_ms);
    if (state === 'open') return { ...s, last_success_at_ms };
    return { ...EMPTY_BREAKER, last_failure_at_ms: s.last_failure_at_ms, last_success_at_ms };
  }
  const last_failure_at_ms = later(s.last_failure_at_ms);
  if (state === 'open') return { ...s, last_failure_at_ms };
  const reopen = (failures: number): StoredBreaker => ({
    failures,
    window_end_ms: null,
    opened_at_ms: nowMs,
    retry_at_ms: nowMs + settings.coolDownMs,
    last_failure_at_ms,
    last_success_at_ms: s.last_success_at_ms,
  });
  if (state === 'half_open') return reopen(1);
  const inWindow = s.failures > 0 && s.window_end_ms !== null && nowMs < s.window_end_ms;
  const failures = inWindow ? s.failures + 1 : 1;
  if (failures >= settings.failureThreshold) return reopen(failures);
  return {
    ...s,
    failures,
    window_end_ms: inWindow ? s.window_end_ms : nowMs + settings.failureWindowMs,
    last_failure_at_ms,
  };
}
