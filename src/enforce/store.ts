/**
 * The enforcement store: where budget counters, holds, rate-limit state and agent call history
 * live. Two implementations share this interface and one test suite (test/enforce-store.test.ts):
 * the in-memory store (one process, the embedded default) and the Redis store (any number of
 * replicas, standalone or Cluster).
 *
 * All amounts are whole micro-USD (1e-6 USD) and all times are milliseconds since the epoch.
 * Every operation is atomic: a reservation either charges every counter it names or none.
 */

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

export interface BudgetKey {
  readonly scope: string;
  readonly window: string;
  readonly slot: string;
}

export interface EnforcementStore {
  readonly kind: 'memory' | 'redis';
  reserve(reservation: Reservation): Promise<ReserveResult>;
  /** Replaces a hold by its actual cost. Idempotent: a second report changes nothing. */
  settle(settlement: Settlement): Promise<SettleResult>;
  /** Current balances (expired holds swept first); counters never reserved against read as zero. */
  balances(partition: string, keys: readonly BudgetKey[], nowMs: number): Promise<BudgetBalance[]>;
  /** Every live budget counter, for `signalbox spend` and the spend endpoint. */
  listBudgets(nowMs: number): Promise<BudgetBalance[]>;
  close(): Promise<void>;
}
