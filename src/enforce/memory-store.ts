/**
 * The in-memory enforcement store: the embedded default for a single Signalbox process.
 *
 * Node runs each call to completion on one thread, so every operation here is atomic by
 * construction. The algorithm is the Redis store's Lua script, step for step (sweep expired
 * holds, check the loop, the budgets and the rate limits, then commit everything); the shared
 * store test suite holds the two to the same behaviour.
 */
import { SignalboxError } from '../core/errors.js';
import {
  MAX_PROVIDERS,
  breakerState,
  breakerStep,
  checkBreakerSettings,
  checkProviderName,
  providerView,
  type BudgetBalance,
  type BudgetKey,
  type EnforcementStore,
  type ExpiredHoldPolicy,
  type ProviderBreakerSettings,
  type ProviderHealth,
  type ProviderHealthChange,
  type ProviderOutcome,
  type Reservation,
  type ReserveResult,
  type SettleResult,
  type Settlement,
  type StoredBreaker,
} from './store.js';
import { bucketExpiry, drain, waitFor, type Bucket } from './buckets.js';
import { budgetIdentity } from './keys.js';

interface BudgetState {
  scope: string;
  window: string;
  slot: string;
  limit: number;
  spent: number;
  held: number;
  /** holdId → [amount, expiresAtMs] */
  holds: Map<string, [number, number]>;
  /** The same holds ordered by expiry, so a sweep costs O(expired · log n), not O(holds). */
  expiries: ExpiryHeap;
  expireAtMs: number;
}

/**
 * A binary min-heap of [expiresAtMs, holdId]. Settled holds are not removed from it (they are
 * gone from `holds`, and skipped when they surface), so it stays at most one hold TTL deep.
 */
class ExpiryHeap {
  private readonly items: [number, string][] = [];

  push(expiresAt: number, holdId: string): void {
    const items = this.items;
    items.push([expiresAt, holdId]);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]![0] <= items[i]![0]) break;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
  }

  /** The earliest expiry still in the heap (possibly of a hold settled since), or Infinity. */
  earliest(): number {
    return this.items[0]?.[0] ?? Number.POSITIVE_INFINITY;
  }

  /** Removes and returns every entry with expiresAt <= now. */
  popExpired(now: number): string[] {
    const out: string[] = [];
    const items = this.items;
    while (items.length > 0 && items[0]![0] <= now) {
      out.push(items[0]![1]);
      const last = items.pop()!;
      if (items.length === 0) break;
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < items.length && items[left]![0] < items[smallest]![0]) smallest = left;
        if (right < items.length && items[right]![0] < items[smallest]![0]) smallest = right;
        if (smallest === i) break;
        [items[smallest], items[i]] = [items[i]!, items[smallest]!];
        i = smallest;
      }
    }
    return out;
  }
}

interface HoldRecord {
  state: 'held' | 'settled';
  amount: number;
  settledAmount: number;
  budgets: string[];
  /** Token buckets charged: [key, weight, per minute]. */
  tokenRates: [string, number, number][];
  /** Every rate bucket charged, requests too: [key, weight, per minute] (given back by {@link MemoryStore.cancel}). */
  charged: [string, number, number][];
  /** The call the loop check remembered for it, if any. */
  loopCall?: { readonly session: string; readonly callHash: string };
  meta: Readonly<Record<string, string | number | null>>;
  expireAtMs: number;
}

/** What {@link MemoryStore.peekHold} sees of a hold. */
export type HoldView =
  | { readonly state: 'held'; readonly meta: Readonly<Record<string, string | number | null>> }
  | { readonly state: 'settled'; readonly amount: number }
  | { readonly state: 'not_found' };

/**
 * The store for a single process (`store.type: memory`): counters live in this process only, so
 * replicas would not share budgets. With several workers the primary process owns it and the
 * workers reach it through ipc-store.ts.
 */
export class MemoryStore implements EnforcementStore {
  readonly kind = 'memory' as const;
  private readonly budgets = new Map<string, BudgetState>();
  private readonly holds = new Map<string, HoldRecord>();
  /** Rate bucket key → its bucket (buckets.ts), with its expiry. */
  private readonly rates = new Map<string, Bucket & { expireAtMs: number }>();
  private readonly loops = new Map<string, { calls: string[]; expireAtMs: number }>();
  /** Provider → its breaker. Never pruned: providers are few, and capped at MAX_PROVIDERS. */
  private readonly breakers = new Map<string, StoredBreaker>();
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(private readonly expiredHolds: ExpiredHoldPolicy, private readonly clock: () => number = Date.now) {
    // Forget counters whose window has passed, so a long-running process does not grow forever.
    this.pruneTimer = setInterval(() => this.prune(this.clock()), 60_000);
    this.pruneTimer.unref();
  }

  async reserve(r: Reservation): Promise<ReserveResult> {
    const now = r.nowMs;
    if (this.liveHold(r.holdId, now)) return { outcome: 'duplicate' };
    const states = r.budgets.map((b) => {
      const key = budgetIdentity(b);
      let state = this.budgets.get(key);
      if (!state || state.expireAtMs <= now) {
        state = { scope: b.scope, window: b.window, slot: b.slot, limit: 0, spent: 0, held: 0, holds: new Map(), expiries: new ExpiryHeap(), expireAtMs: b.expireAtMs };
        this.budgets.set(key, state);
      }
      this.sweep(state, now);
      return state;
    });

    if (r.loop) {
      const history = this.liveLoop(r.loop.session, now)?.calls.slice(0, r.loop.window) ?? [];
      const verdict = loopVerdict(history, r.loop.callHash, r.loop.maxRepeats, r.loop.pingPong);
      if (verdict) return { outcome: 'loop_detected', reason: verdict.reason, session: r.loop.session, count: verdict.count };
    }

    for (const [i, b] of r.budgets.entries()) {
      const state = states[i] as BudgetState;
      if (state.spent + state.held + r.amount > b.limit) {
        return { outcome: 'budget_exceeded', budget: balanceOf({ ...state, limit: b.limit }) };
      }
    }

    const newBuckets: Bucket[] = [];
    for (const rate of r.rates) {
      const entry = this.rates.get(rateKey(rate.scope, rate.unit));
      const drained = drain(entry && entry.expireAtMs > now ? entry : undefined, now, rate.perMinute);
      const wait = waitFor(drained, rate.weight, rate.perMinute, now);
      if (wait !== null) {
        const never = rate.weight > rate.perMinute;
        return { outcome: 'rate_limited', scope: rate.scope, unit: rate.unit, perMinute: rate.perMinute, retryAfterMs: never ? null : wait };
      }
      newBuckets.push({ level: drained.level + rate.weight, atMs: drained.atMs });
    }

    // Everything has room: commit all of it.
    const holdExpiresAt = now + r.holdTtlMs;
    for (const [i, b] of r.budgets.entries()) {
      const state = states[i] as BudgetState;
      state.limit = b.limit;
      state.held += r.amount;
      state.holds.set(r.holdId, [r.amount, holdExpiresAt]);
      state.expiries.push(holdExpiresAt, r.holdId);
      state.expireAtMs = Math.max(state.expireAtMs, b.expireAtMs, holdExpiresAt + r.retentionMs);
    }
    const tokenRates: [string, number, number][] = [];
    const charged: [string, number, number][] = [];
    for (const [j, rate] of r.rates.entries()) {
      const key = rateKey(rate.scope, rate.unit);
      const bucket = newBuckets[j] as Bucket;
      this.rates.set(key, { ...bucket, expireAtMs: bucketExpiry(bucket, rate.perMinute) });
      charged.push([key, rate.weight, rate.perMinute]);
      if (rate.unit === 'tokens') tokenRates.push([key, rate.weight, rate.perMinute]);
    }
    if (r.loop) {
      const history = this.liveLoop(r.loop.session, now)?.calls ?? [];
      this.loops.set(r.loop.session, { calls: [r.loop.callHash, ...history].slice(0, r.loop.window), expireAtMs: now + r.loop.ttlMs });
    }
    this.holds.set(r.holdId, {
      state: 'held',
      amount: r.amount,
      settledAmount: 0,
      budgets: r.budgets.map(budgetIdentity),
      tokenRates,
      charged,
      ...(r.loop ? { loopCall: { session: r.loop.session, callHash: r.loop.callHash } } : {}),
      meta: r.meta,
      expireAtMs: holdExpiresAt + r.retentionMs,
    });
    return { outcome: 'reserved', budgets: states.map(balanceOf) };
  }

  async settle(s: Settlement): Promise<SettleResult> {
    const now = s.nowMs;
    const hold = this.liveHold(s.holdId, now);
    if (!hold) return { outcome: 'not_found' };
    if (hold.state === 'settled') return { outcome: 'already_settled', amount: hold.settledAmount };
    const amount = s.price(hold.meta);
    let late = false;
    for (const key of hold.budgets) {
      const state = this.budgets.get(key);
      if (!state || state.expireAtMs <= now) continue; // The counter's window is long gone.
      const held = state.holds.get(s.holdId);
      if (held && held[1] > now) {
        state.holds.delete(s.holdId);
        state.held -= held[0];
        state.spent += amount;
      } else {
        // The hold expired before this report: sweep it (charged or released per policy), then
        // correct the spend to the actual cost.
        this.sweep(state, now);
        late = true;
        state.spent += amount - (this.expiredHolds === 'charge' ? hold.amount : 0);
      }
    }
    if (s.tokens !== null) {
      for (const [key, weight, perMinute] of hold.tokenRates) {
        const entry = this.rates.get(key);
        if (!entry || entry.expireAtMs <= now || s.tokens >= weight) continue;
        const drained = drain(entry, now, perMinute);
        // The expiry stays: a bucket given units back drains no later than before.
        this.rates.set(key, { level: Math.max(0, drained.level - (weight - s.tokens)), atMs: drained.atMs, expireAtMs: entry.expireAtMs });
      }
    }
    hold.state = 'settled';
    hold.settledAmount = amount;
    hold.expireAtMs = now + s.retentionMs;
    return { outcome: 'settled', amount, held: hold.amount, late, meta: hold.meta };
  }

  /**
   * Undoes a reservation whose caller was told it failed (a worker that gave up waiting for this
   * process): the hold leaves every budget, the rate buckets get their units back and the loop
   * check forgets the call, so a refused request consumes nothing. A hold already settled is
   * left alone. Returns the budget counters it changed.
   */
  cancel(holdId: string, nowMs: number): { readonly outcome: 'cancelled' | 'not_found'; readonly budgets: readonly string[] } {
    const hold = this.liveHold(holdId, nowMs);
    if (!hold || hold.state !== 'held') return { outcome: 'not_found', budgets: [] };
    for (const key of hold.budgets) {
      const state = this.budgets.get(key);
      const held = state?.holds.get(holdId);
      if (!state || !held) continue; // expired and swept, or the window is gone
      state.holds.delete(holdId);
      state.held -= held[0];
    }
    for (const [key, weight, perMinute] of hold.charged) {
      const entry = this.rates.get(key);
      if (!entry || entry.expireAtMs <= nowMs) continue;
      const drained = drain(entry, nowMs, perMinute);
      this.rates.set(key, { level: Math.max(0, drained.level - weight), atMs: drained.atMs, expireAtMs: entry.expireAtMs });
    }
    const loop = hold.loopCall ? this.liveLoop(hold.loopCall.session, nowMs) : undefined;
    if (loop && hold.loopCall) {
      const at = loop.calls.indexOf(hold.loopCall.callHash);
      if (at >= 0) loop.calls.splice(at, 1);
    }
    this.holds.delete(holdId);
    return { outcome: 'cancelled', budgets: hold.budgets };
  }

  /**
   * Where a hold stands, without changing it: what settling it would price (`held`, with its
   * facts) or what it was settled at. The first half of a settlement made from another process
   * (ipc-store.ts), which prices the report itself and then calls {@link settle}; a settlement
   * in between is caught there (already_settled), as with the Redis store's two steps.
   */
  peekHold(holdId: string, nowMs: number): HoldView {
    const hold = this.liveHold(holdId, nowMs);
    if (!hold) return { state: 'not_found' };
    return hold.state === 'settled' ? { state: 'settled', amount: hold.settledAmount } : { state: 'held', meta: hold.meta };
  }

  async balances(_partition: string, keys: readonly BudgetKey[], nowMs: number): Promise<BudgetBalance[]> {
    return keys.map((k) => {
      const state = this.budgets.get(budgetIdentity(k));
      if (!state || state.expireAtMs <= nowMs) return { scope: k.scope, window: k.window, slot: k.slot, limit: 0, spent: 0, held: 0, holds: 0 };
      this.sweep(state, nowMs);
      return balanceOf(state);
    });
  }

  /**
   * Until when `key`'s balance stays what {@link balances} says at `nowMs` if no operation
   * touches it: its earliest hold expiry or the end of its counter; Infinity when it has no live
   * counter (only a reservation creates one). Lets another process keep a copy of a balance
   * without asking again (ipc-store.ts): any change before that time comes from an operation.
   */
  balanceStableUntil(key: BudgetKey, nowMs: number): number {
    const state = this.budgets.get(budgetIdentity(key));
    if (!state || state.expireAtMs <= nowMs) return Number.POSITIVE_INFINITY;
    return Math.min(state.expiries.earliest(), state.expireAtMs);
  }

  /** The budget counters (identities, as {@link budgetIdentity}) a hold charged: the balances settling it changes. */
  holdBudgets(holdId: string): readonly string[] {
    return this.holds.get(holdId)?.budgets ?? [];
  }

  /** Every provider's stored breaker: another process computes provider health from them at its own time. */
  storedBreakers(): [string, StoredBreaker][] {
    return [...this.breakers];
  }

  async listBudgets(nowMs: number): Promise<BudgetBalance[]> {
    const out: BudgetBalance[] = [];
    for (const state of this.budgets.values()) {
      if (state.expireAtMs <= nowMs) continue;
      this.sweep(state, nowMs);
      out.push(balanceOf(state));
    }
    return out;
  }

  async recordProviderOutcome(provider: string, outcome: ProviderOutcome, nowMs: number, settings: ProviderBreakerSettings): Promise<ProviderHealthChange> {
    checkProviderName(provider);
    checkBreakerSettings(settings);
    const stored = this.breakers.get(provider);
    if (!stored && this.breakers.size >= MAX_PROVIDERS) {
      throw new SignalboxError('report_malformed', `the store already tracks ${MAX_PROVIDERS} providers`);
    }
    const next = breakerStep(stored, outcome, nowMs, settings);
    this.breakers.set(provider, next);
    return { ...providerView(provider, next, nowMs), previous_state: breakerState(stored, nowMs) };
  }

  async providerHealth(nowMs: number): Promise<ProviderHealth[]> {
    return [...this.breakers.keys()].sort(byName).map((provider) => providerView(provider, this.breakers.get(provider), nowMs));
  }

  /** The in-memory store lives in this process: always reachable. */
  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
  }

  /** Applies the expired-hold policy to every hold on this counter that has run out. */
  private sweep(state: BudgetState, now: number): void {
    for (const holdId of state.expiries.popExpired(now)) {
      const hold = state.holds.get(holdId);
      if (!hold) continue; // settled before it expired
      state.holds.delete(holdId);
      state.held -= hold[0];
      if (this.expiredHolds === 'charge') state.spent += hold[0];
    }
  }

  private liveHold(holdId: string, now: number): HoldRecord | undefined {
    const hold = this.holds.get(holdId);
    if (hold && hold.expireAtMs <= now) {
      this.holds.delete(holdId);
      return undefined;
    }
    return hold;
  }

  private liveLoop(session: string, now: number): { calls: string[]; expireAtMs: number } | undefined {
    const loop = this.loops.get(session);
    return loop && loop.expireAtMs > now ? loop : undefined;
  }

  private prune(now: number): void {
    for (const [key, state] of this.budgets) {
      this.sweep(state, now);
      if (state.expireAtMs <= now) this.budgets.delete(key);
    }
    for (const [key, hold] of this.holds) if (hold.expireAtMs <= now) this.holds.delete(key);
    for (const [key, rate] of this.rates) if (rate.expireAtMs <= now) this.rates.delete(key);
    for (const [key, loop] of this.loops) if (loop.expireAtMs <= now) this.loops.delete(key);
  }
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function rateKey(scope: string, unit: string): string {
  return `${unit}\u0000${scope}`;
}

function balanceOf(state: Pick<BudgetState, 'scope' | 'window' | 'slot' | 'limit' | 'spent' | 'held' | 'holds'>): BudgetBalance {
  return { scope: state.scope, window: state.window, slot: state.slot, limit: state.limit, spent: state.spent, held: state.held, holds: state.holds.size };
}

/**
 * The loop rule, shared by the memory store and mirrored in the Redis script. `history` is most
 * recent first and does not include the call being made.
 */
export function loopVerdict(
  history: readonly string[],
  call: string,
  maxRepeats: number,
  pingPong: number,
): { reason: 'repeated_call' | 'ping_pong'; count: number } | undefined {
  if (maxRepeats > 0) {
    const seen = history.filter((h) => h === call).length;
    if (seen >= maxRepeats) return { reason: 'repeated_call', count: seen + 1 };
  }
  if (pingPong > 0) {
    // With this call, the last 2N calls must alternate: call, other, call, other, ... (newest first).
    const needed = 2 * pingPong - 1;
    const other = history[0];
    if (history.length >= needed && other !== undefined && other !== call) {
      let alternates = true;
      for (let i = 0; i < needed; i++) {
        if (history[i] !== (i % 2 === 0 ? other : call)) {
          alternates = false;
          break;
        }
      }
      if (alternates) return { reason: 'ping_pong', count: pingPong };
    }
  }
  return undefined;
}
