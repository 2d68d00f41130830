/**
 * One behaviour, two stores: every case runs against the in-memory store (directly, and as
 * workers reach their primary's, through the IPC client), a real standalone Redis and a real
 * Redis Cluster (unpartitioned and partitioned by tenant). Time is virtual: each
 * call carries its own `nowMs`, so expiry and refill are tested without waiting. The virtual
 * clock starts from the real one (T0, noon UTC of today), never from a fixed date: Redis expires
 * keys by its own real clock, and a suite frozen at a past date only passes on the day it was
 * written.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { IpcStoreClient, answerStoreRequests } from '../src/enforce/ipc-store.js';
import { MemoryStore } from '../src/enforce/memory-store.js';
import { CLOCK_SKEW_WARNING_MS, RedisStore } from '../src/enforce/redis-store.js';
import { RedisKeys } from '../src/enforce/keys.js';
import { windowSlot } from '../src/enforce/windows.js';
import { MAX_PROVIDERS, breakerState, breakerStep, providerView, type StoredBreaker, type BudgetCounter, type EnforcementStore, type ExpiredHoldPolicy, type ProviderBreakerSettings, type Reservation } from '../src/enforce/store.js';
import { SignalboxError, describeCause } from '../src/core/errors.js';
import { silentLogger } from '../src/core/log.js';
import { capturedLogger } from './helpers/logs.js';
import { redisCommand, startRedis, startRedisCluster, type RedisCluster, type RedisServer } from './helpers/redis.js';

let redis: RedisServer;
let cluster: RedisCluster;

beforeAll(async () => {
  [redis, cluster] = await Promise.all([startRedis(), startRedisCluster()]);
}, 60_000);

afterAll(async () => {
  await Promise.all([redis?.stop(), cluster?.stop()]);
});

type Factory = (expired: ExpiredHoldPolicy) => Promise<{ store: EnforcementStore; partition: string }>;

async function redisStore(expired: ExpiredHoldPolicy, options: { cluster?: boolean; partitioned?: boolean; keyPrefix?: string }): Promise<RedisStore> {
  const store = RedisStore.create(
    {
      ...(options.cluster ? { cluster: cluster.nodes.map((n) => `${n.host}:${n.port}`) } : { url: redis.url }),
      keyPrefix: options.keyPrefix ?? `t${randomUUID().slice(0, 8)}`,
      commandTimeoutMs: 2000,
      connectTimeoutMs: 2000,
      expiredHolds: expired,
      partitioned: options.partitioned ?? false,
    },
    silentLogger(),
  );
  await store.ready(10_000);
  return store;
}

/**
 * A worker's store with its primary's in this process: every message is structured-cloned, as the
 * cluster channel (advanced serialization) copies it, and answered on a later turn.
 */
function ipcStore(expired: ExpiredHoldPolicy): IpcStoreClient {
  const primary = new MemoryStore(expired);
  const client: IpcStoreClient = new IpcStoreClient((message) => {
    const copy = structuredClone(message);
    setImmediate(
      () =>
        void answerStoreRequests(primary, copy).then(({ replies, changed }) => {
          if (changed) client.changed(structuredClone(changed));
          client.receive(structuredClone(replies));
        }),
    );
  });
  return client;
}

/**
 * Several workers' stores with one primary in this process, wired as src/app/cluster.ts wires
 * them: a change notice goes to every worker before the sender hears its answer.
 */
function ipcWorkers(count: number, expired: ExpiredHoldPolicy = 'charge'): { clients: IpcStoreClient[]; sent: () => number } {
  const primary = new MemoryStore(expired);
  const clients: IpcStoreClient[] = [];
  let sent = 0;
  for (let i = 0; i < count; i++) {
    const client: IpcStoreClient = new IpcStoreClient((message) => {
      sent += message.requests.length;
      const copy = structuredClone(message);
      setImmediate(
        () =>
          void answerStoreRequests(primary, copy).then(({ replies, changed }) => {
            if (changed) for (const other of clients) other.changed(structuredClone(changed));
            client.receive(structuredClone(replies));
          }),
      );
    });
    clients.push(client);
  }
  return { clients, sent: () => sent };
}

const stores: [string, Factory][] = [
  ['memory', async (expired) => ({ store: new MemoryStore(expired), partition: '' })],
  ['memory through the IPC client', async (expired) => ({ store: ipcStore(expired), partition: '' })],
  ['redis', async (expired) => ({ store: await redisStore(expired, {}), partition: '' })],
  ['redis cluster', async (expired) => ({ store: await redisStore(expired, { cluster: true }), partition: '' })],
  ['redis cluster, partitioned by tenant', async (expired) => ({ store: await redisStore(expired, { cluster: true, partitioned: true }), partition: 't:acme' })],
];

const DAY_MS = 86_400_000;
/** Noon UTC of the real current day: far from a day boundary, and never in the past by more than 12 hours. */
const T0 = Math.floor(Date.now() / DAY_MS) * DAY_MS + DAY_MS / 2;
const TODAY = windowSlot('day', T0).id;
const THIS_MONTH = windowSlot('month', T0).id;
const HOLD_TTL = 60_000;

function budget(scope: string, limit: number, window = 'day', slot = TODAY, nowMs = T0): BudgetCounter {
  return { scope, window, slot, limit, expireAtMs: nowMs + 2 * DAY_MS };
}

function reservation(partition: string, overrides: Partial<Reservation>): Reservation {
  return {
    holdId: randomUUID(),
    partition,
    nowMs: T0,
    amount: 100,
    budgets: [],
    rates: [],
    holdTtlMs: HOLD_TTL,
    retentionMs: 86_400_000,
    meta: { model: 'gpt-4o-mini', tokens: 10 },
    ...overrides,
  };
}

const flat = (amount: number) => () => amount;

const BREAKER: ProviderBreakerSettings = { failureThreshold: 3, failureWindowMs: 10_000, coolDownMs: 5_000 };

describe.each(stores)('%s store', (_name, factory) => {
  async function open(expired: ExpiredHoldPolicy = 'charge'): Promise<{ store: EnforcementStore; partition: string; close: () => Promise<void> }> {
    const made = await factory(expired);
    return { ...made, close: () => made.store.close() };
  }

  it('reserves against every budget and reports the balances', async () => {
    const { store, partition, close } = await open();
    try {
      const result = await store.reserve(reservation(partition, { budgets: [budget('user:alice', 1000), budget('team:search', 5000, 'month', THIS_MONTH)] }));
      expect(result).toMatchObject({ outcome: 'reserved' });
      if (result.outcome !== 'reserved') return;
      expect(result.budgets.map((b) => [b.scope, b.spent, b.held, b.holds, b.limit])).toEqual([
        ['user:alice', 0, 100, 1, 1000],
        ['team:search', 0, 100, 1, 5000],
      ]);
    } finally {
      await close();
    }
  });

  it('is all or nothing: one full budget refuses the whole reservation and charges none', async () => {
    const { store, partition, close } = await open();
    try {
      const roomy = budget('team:search', 10_000);
      const tight = budget('user:bob', 150);
      expect((await store.reserve(reservation(partition, { budgets: [roomy, tight] }))).outcome).toBe('reserved');
      const refused = await store.reserve(reservation(partition, { budgets: [roomy, tight] }));
      expect(refused).toMatchObject({ outcome: 'budget_exceeded', budget: { scope: 'user:bob', spent: 0, held: 100, limit: 150 } });
      const [team, user] = await store.balances(partition, [roomy, tight], T0);
      expect([team!.held, user!.held]).toEqual([100, 100]);
    } finally {
      await close();
    }
  });

  it('admits a request that exactly fills the budget, and nothing after it', async () => {
    const { store, partition, close } = await open();
    try {
      const b = budget('user:carol', 300);
      for (let i = 0; i < 3; i++) expect((await store.reserve(reservation(partition, { budgets: [b] }))).outcome).toBe('reserved');
      expect((await store.reserve(reservation(partition, { budgets: [b] }))).outcome).toBe('budget_exceeded');
      // A zero-cost request still fits a full budget: it costs nothing.
      expect((await store.reserve(reservation(partition, { budgets: [b], amount: 0 }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('settles a hold to its actual cost, once', async () => {
    const { store, partition, close } = await open();
    try {
      const b = budget('user:dave', 1000);
      const r = reservation(partition, { budgets: [b], amount: 400 });
      await store.reserve(r);
      const settled = await store.settle({ holdId: r.holdId, nowMs: T0 + 1000, price: flat(123), tokens: null, retentionMs: 86_400_000 });
      expect(settled).toMatchObject({ outcome: 'settled', amount: 123, held: 400, late: false, meta: { model: 'gpt-4o-mini' } });
      const again = await store.settle({ holdId: r.holdId, nowMs: T0 + 2000, price: flat(999), tokens: null, retentionMs: 86_400_000 });
      expect(again).toEqual({ outcome: 'already_settled', amount: 123 });
      const [balance] = await store.balances(partition, [b], T0 + 3000);
      expect(balance).toMatchObject({ spent: 123, held: 0, holds: 0 });
    } finally {
      await close();
    }
  });

  it('answers not_found for a hold it never made', async () => {
    const { store, close } = await open();
    try {
      expect(await store.settle({ holdId: randomUUID(), nowMs: T0, price: flat(1), tokens: null, retentionMs: 1000 })).toEqual({ outcome: 'not_found' });
    } finally {
      await close();
    }
  });

  it('charges an expired hold its estimate, and a late report corrects it to the actual cost', async () => {
    const { store, partition, close } = await open('charge');
    try {
      const b = budget('user:erin', 1000);
      const r = reservation(partition, { budgets: [b], amount: 400 });
      await store.reserve(r);
      const [before] = await store.balances(partition, [b], T0 + HOLD_TTL - 1);
      expect(before).toMatchObject({ spent: 0, held: 400, holds: 1 });
      const [expired] = await store.balances(partition, [b], T0 + HOLD_TTL);
      expect(expired).toMatchObject({ spent: 400, held: 0, holds: 0 });
      const late = await store.settle({ holdId: r.holdId, nowMs: T0 + HOLD_TTL + 5000, price: flat(150), tokens: null, retentionMs: 86_400_000 });
      expect(late).toMatchObject({ outcome: 'settled', amount: 150, late: true });
      const [after] = await store.balances(partition, [b], T0 + HOLD_TTL + 6000);
      expect(after).toMatchObject({ spent: 150, held: 0, holds: 0 });
    } finally {
      await close();
    }
  });

  it('releases an expired hold under the release policy, and a late report charges the actual cost', async () => {
    const { store, partition, close } = await open('release');
    try {
      const b = budget('user:frank', 1000);
      const r = reservation(partition, { budgets: [b], amount: 400 });
      await store.reserve(r);
      const [expired] = await store.balances(partition, [b], T0 + HOLD_TTL + 1);
      expect(expired).toMatchObject({ spent: 0, held: 0, holds: 0 });
      await store.settle({ holdId: r.holdId, nowMs: T0 + HOLD_TTL + 2, price: flat(150), tokens: null, retentionMs: 86_400_000 });
      const [after] = await store.balances(partition, [b], T0 + HOLD_TTL + 3);
      expect(after).toMatchObject({ spent: 150, held: 0 });
    } finally {
      await close();
    }
  });

  it('frees an expired hold for the next reservation (no phantom denial)', async () => {
    const { store, partition, close } = await open('release');
    try {
      const b = budget('user:gina', 500);
      await store.reserve(reservation(partition, { budgets: [b], amount: 500 }));
      expect((await store.reserve(reservation(partition, { budgets: [b], amount: 100, nowMs: T0 + 1 }))).outcome).toBe('budget_exceeded');
      expect((await store.reserve(reservation(partition, { budgets: [b], amount: 500, nowMs: T0 + HOLD_TTL }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('limits requests per minute with a refilling bucket', async () => {
    const { store, partition, close } = await open();
    try {
      const rates = [{ scope: 'user:hank', unit: 'requests' as const, perMinute: 3, weight: 1 }];
      for (let i = 0; i < 3; i++) expect((await store.reserve(reservation(partition, { rates, nowMs: T0 }))).outcome).toBe('reserved');
      const limited = await store.reserve(reservation(partition, { rates, nowMs: T0 }));
      expect(limited).toEqual({ outcome: 'rate_limited', scope: 'user:hank', unit: 'requests', perMinute: 3, retryAfterMs: 20_000 });
      // One request's worth refills every 20 s.
      expect((await store.reserve(reservation(partition, { rates, nowMs: T0 + 19_999 }))).outcome).toBe('rate_limited');
      expect((await store.reserve(reservation(partition, { rates, nowMs: T0 + 20_000 }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('refuses a request larger than a token limit outright, and charges nothing when a rate limit refuses', async () => {
    const { store, partition, close } = await open();
    try {
      const b = budget('user:ivy', 10_000);
      const huge = await store.reserve(reservation(partition, { budgets: [b], rates: [{ scope: 'user:ivy', unit: 'tokens', perMinute: 1000, weight: 1001 }] }));
      expect(huge).toMatchObject({ outcome: 'rate_limited', unit: 'tokens', retryAfterMs: null });
      const [balance] = await store.balances(partition, [b], T0);
      expect(balance).toMatchObject({ spent: 0, held: 0, holds: 0 });
    } finally {
      await close();
    }
  });

  it('returns unused token capacity when the hold settles', async () => {
    const { store, partition, close } = await open();
    try {
      const rate = (weight: number) => [{ scope: 'user:jack', unit: 'tokens' as const, perMinute: 1000, weight }];
      const first = reservation(partition, { rates: rate(900) });
      await store.reserve(first);
      expect((await store.reserve(reservation(partition, { rates: rate(200) }))).outcome).toBe('rate_limited');
      await store.settle({ holdId: first.holdId, nowMs: T0, price: flat(1), tokens: 100, retentionMs: 86_400_000 });
      expect((await store.reserve(reservation(partition, { rates: rate(200) }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('catches a call repeated past the threshold, and only records allowed calls', async () => {
    const { store, partition, close } = await open();
    try {
      const loop = (hash: string) => ({ session: 's1', callHash: hash, maxRepeats: 2, pingPong: 0, window: 10, ttlMs: 60_000 });
      expect((await store.reserve(reservation(partition, { loop: loop('A') }))).outcome).toBe('reserved');
      expect((await store.reserve(reservation(partition, { loop: loop('A') }))).outcome).toBe('reserved');
      const third = await store.reserve(reservation(partition, { loop: loop('A') }));
      expect(third).toEqual({ outcome: 'loop_detected', reason: 'repeated_call', session: 's1', count: 3 });
      // Distinct calls pass, and the refused one was not recorded.
      expect((await store.reserve(reservation(partition, { loop: loop('B') }))).outcome).toBe('reserved');
      expect((await store.reserve(reservation(partition, { loop: loop('C') }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('catches A→B→A→B ping-pong and lets distinct sequences through', async () => {
    const { store, partition, close } = await open();
    try {
      const loop = (session: string, hash: string) => ({ session, callHash: hash, maxRepeats: 0, pingPong: 2, window: 10, ttlMs: 60_000 });
      const outcomes = [];
      for (const call of ['A', 'B', 'A', 'B']) outcomes.push((await store.reserve(reservation(partition, { loop: loop('pp', call) }))).outcome);
      expect(outcomes).toEqual(['reserved', 'reserved', 'reserved', 'loop_detected']);
      const distinct = [];
      for (const call of ['A', 'B', 'C', 'A', 'B', 'C', 'D']) distinct.push((await store.reserve(reservation(partition, { loop: loop('other', call) }))).outcome);
      expect(distinct.every((o) => o === 'reserved')).toBe(true);
      // Sessions are separate.
      expect((await store.reserve(reservation(partition, { loop: loop('fresh', 'B') }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('forgets a session history after its ttl', async () => {
    const { store, partition, close } = await open();
    try {
      const loop = (hash: string) => ({ session: 'ttl', callHash: hash, maxRepeats: 1, pingPong: 0, window: 10, ttlMs: 1_000 });
      expect((await store.reserve(reservation(partition, { loop: loop('A') }))).outcome).toBe('reserved');
      expect((await store.reserve(reservation(partition, { loop: loop('A') }))).outcome).toBe('loop_detected');
      if (store.kind === 'redis') await new Promise((done) => setTimeout(done, 1_100)); // Redis expires keys in real time.
      expect((await store.reserve(reservation(partition, { loop: loop('A'), nowMs: T0 + 1_001 }))).outcome).toBe('reserved');
    } finally {
      await close();
    }
  });

  it('lists live budget counters', async () => {
    const { store, partition, close } = await open();
    try {
      await store.reserve(reservation(partition, { budgets: [budget('user:kim', 1000), budget('org:acme', 9000, 'month', THIS_MONTH)] }));
      const listed = (await store.listBudgets(T0)).map((b) => `${b.scope}/${b.window}/${b.slot}/${b.held}`).sort();
      expect(listed).toEqual([`org:acme/month/${THIS_MONTH}/100`, `user:kim/day/${TODAY}/100`]);
    } finally {
      await close();
    }
  });

  it.each([
    ['30 days behind', -30 * DAY_MS],
    ['30 days ahead of', 30 * DAY_MS],
  ])('keeps counting when the caller clock is %s the store clock', async (_what, skewMs) => {
    const { store, partition, close } = await open();
    try {
      const now = Date.now() + skewMs;
      const b = budget('user:skewed', 150, 'day', windowSlot('day', now).id, now);
      expect((await store.reserve(reservation(partition, { budgets: [b], nowMs: now }))).outcome).toBe('reserved');
      expect(await store.reserve(reservation(partition, { budgets: [b], nowMs: now + 1 }))).toMatchObject({ outcome: 'budget_exceeded', budget: { held: 100 } });
    } finally {
      await close();
    }
  });

  it('never overshoots under 300 concurrent reservations', async () => {
    const { store, partition, close } = await open();
    try {
      const b = budget('team:race', 2_550);
      const results = await Promise.all(
        Array.from({ length: 300 }, () => store.reserve(reservation(partition, { budgets: [b], amount: 100 }))),
      );
      expect(results.filter((r) => r.outcome === 'reserved')).toHaveLength(25);
      const [balance] = await store.balances(partition, [b], T0);
      expect(balance).toMatchObject({ held: 2_500, holds: 25, spent: 0 });
    } finally {
      await close();
    }
  });
  describe('provider circuit breaker', () => {
    it('opens at the threshold, and neither more failures nor a late success change an open breaker', async () => {
      const { store, close } = await open();
      try {
        const fail = (at: number) => store.recordProviderOutcome('openai', 'failure', at, BREAKER);
        expect(await fail(T0)).toMatchObject({ state: 'closed', failures: 1, previous_state: 'closed', last_failure_at_ms: T0 });
        expect(await fail(T0 + 1)).toMatchObject({ state: 'closed', failures: 2 });
        expect(await fail(T0 + 2)).toEqual({
          provider: 'openai',
          state: 'open',
          previous_state: 'closed',
          failures: 3,
          opened_at_ms: T0 + 2,
          retry_at_ms: T0 + 5_002,
          last_failure_at_ms: T0 + 2,
          last_success_at_ms: null,
        });
        // Failures while open do not extend the cool-down.
        expect(await fail(T0 + 3_000)).toMatchObject({ state: 'open', previous_state: 'open', failures: 3, opened_at_ms: T0 + 2, retry_at_ms: T0 + 5_002, last_failure_at_ms: T0 + 3_000 });
        // A late in-flight success is recorded but does not close it.
        const late = await store.recordProviderOutcome('openai', 'success', T0 + 3_001, BREAKER);
        expect(late).toMatchObject({ state: 'open', previous_state: 'open', failures: 3, retry_at_ms: T0 + 5_002, last_success_at_ms: T0 + 3_001 });
        expect(await store.providerHealth(T0 + 3_002)).toEqual([
          { provider: 'openai', state: 'open', failures: 3, opened_at_ms: T0 + 2, retry_at_ms: T0 + 5_002, last_failure_at_ms: T0 + 3_000, last_success_at_ms: T0 + 3_001 },
        ]);
      } finally {
        await close();
      }
    });

    it('counts failures in a window that starts at the first failure, and a success resets them', async () => {
      const { store, close } = await open();
      try {
        const record = (outcome: 'success' | 'failure', at: number) => store.recordProviderOutcome('anthropic', outcome, at, BREAKER);
        await record('failure', T0);
        expect(await record('failure', T0 + 9_999)).toMatchObject({ state: 'closed', failures: 2 });
        // The window [T0, T0 + 10 s) is over: a new one starts at 1, so this does not open it.
        expect(await record('failure', T0 + 10_000)).toMatchObject({ state: 'closed', failures: 1 });
        expect(await record('failure', T0 + 15_000)).toMatchObject({ state: 'closed', failures: 2 });
        // Read after the window has passed: nothing counts any more.
        expect(await store.providerHealth(T0 + 19_999)).toMatchObject([{ provider: 'anthropic', state: 'closed', failures: 2 }]);
        expect(await store.providerHealth(T0 + 20_000)).toMatchObject([{ provider: 'anthropic', state: 'closed', failures: 0 }]);
        // A success resets the count.
        await record('failure', T0 + 30_000);
        await record('failure', T0 + 30_001);
        expect(await record('success', T0 + 30_002)).toMatchObject({ state: 'closed', failures: 0, last_success_at_ms: T0 + 30_002, last_failure_at_ms: T0 + 30_001 });
        expect(await record('failure', T0 + 30_003)).toMatchObject({ state: 'closed', failures: 1 });
        expect(await record('failure', T0 + 30_004)).toMatchObject({ state: 'closed', failures: 2 });
      } finally {
        await close();
      }
    });

    it('reads as half_open once the cool-down has passed; a failure then reopens it', async () => {
      const { store, close } = await open();
      try {
        for (let i = 0; i < 3; i++) await store.recordProviderOutcome('mistral', 'failure', T0, BREAKER);
        expect(await store.providerHealth(T0 + 4_999)).toMatchObject([{ state: 'open', retry_at_ms: T0 + 5_000 }]);
        expect(await store.providerHealth(T0 + 5_000)).toMatchObject([{ state: 'half_open', failures: 3, opened_at_ms: T0, retry_at_ms: T0 + 5_000 }]);
        const reopened = await store.recordProviderOutcome('mistral', 'failure', T0 + 6_000, BREAKER);
        expect(reopened).toMatchObject({ state: 'open', previous_state: 'half_open', failures: 1, opened_at_ms: T0 + 6_000, retry_at_ms: T0 + 11_000 });
        expect(await store.providerHealth(T0 + 10_999)).toMatchObject([{ state: 'open' }]);
        expect(await store.providerHealth(T0 + 11_000)).toMatchObject([{ state: 'half_open' }]);
      } finally {
        await close();
      }
    });

    it('closes from half_open on a success, and counts afresh', async () => {
      const { store, close } = await open();
      try {
        for (let i = 0; i < 3; i++) await store.recordProviderOutcome('gemini', 'failure', T0 + i, BREAKER);
        const closed = await store.recordProviderOutcome('gemini', 'success', T0 + 5_002, BREAKER);
        expect(closed).toEqual({
          provider: 'gemini',
          state: 'closed',
          previous_state: 'half_open',
          failures: 0,
          opened_at_ms: null,
          retry_at_ms: null,
          last_failure_at_ms: T0 + 2,
          last_success_at_ms: T0 + 5_002,
        });
        expect(await store.recordProviderOutcome('gemini', 'failure', T0 + 5_003, BREAKER)).toMatchObject({ state: 'closed', failures: 1 });
        expect(await store.recordProviderOutcome('gemini', 'failure', T0 + 5_004, BREAKER)).toMatchObject({ state: 'closed', failures: 2 });
        expect(await store.recordProviderOutcome('gemini', 'failure', T0 + 5_005, BREAKER)).toMatchObject({ state: 'open', previous_state: 'closed' });
      } finally {
        await close();
      }
    });

    it('opens exactly once under 200 concurrent failures', async () => {
      const { store, close } = await open();
      try {
        const settings = { ...BREAKER, failureThreshold: 25 };
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.recordProviderOutcome('race', 'failure', T0 + (i % 3), settings)));
        const transitions = results.filter((r) => r.previous_state !== r.state);
        expect(transitions).toHaveLength(1);
        expect(transitions[0]).toMatchObject({ previous_state: 'closed', state: 'open', failures: 25 });
        expect(results.filter((r) => r.state === 'closed')).toHaveLength(24);
        const [health] = await store.providerHealth(T0 + 3);
        expect(health).toMatchObject({ provider: 'race', state: 'open', failures: 25, opened_at_ms: transitions[0]!.opened_at_ms });
      } finally {
        await close();
      }
    });

    it('lists every provider ever reported, sorted by name, and nothing before any report', async () => {
      const { store, close } = await open();
      try {
        expect(await store.providerHealth(T0)).toEqual([]);
        const unicode = 'Ωmega AI/eu-west ✓';
        for (const name of ['openai', 'azure-openai', unicode, 'Zeta', 'x'.repeat(128)]) await store.recordProviderOutcome(name, 'success', T0, BREAKER);
        const names = (await store.providerHealth(T0 + 1)).map((h) => h.provider);
        expect(names).toEqual(['Zeta', 'azure-openai', 'openai', 'x'.repeat(128), unicode]);
      } finally {
        await close();
      }
    });

    it('follows the breaker rule (breakerStep) step for step over a long random sequence', async () => {
      const { store, close } = await open();
      try {
        let seed = 42;
        const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
        let model: StoredBreaker | undefined;
        let now = T0;
        for (let i = 0; i < 300; i++) {
          now += Math.floor(random() * 4_000);
          const outcome = random() < 0.6 ? 'failure' : 'success';
          const got = await store.recordProviderOutcome('model-check', outcome, now, BREAKER);
          const previous = breakerState(model, now);
          model = breakerStep(model, outcome, now, BREAKER);
          expect(got, `step ${i}`).toEqual({ ...providerView('model-check', model, now), previous_state: previous });
        }
      } finally {
        await close();
      }
    });

    it(`tracks at most ${MAX_PROVIDERS} providers, and still records the known ones when full`, async () => {
      const { store, close } = await open();
      try {
        await Promise.all(Array.from({ length: MAX_PROVIDERS }, (_, i) => store.recordProviderOutcome(`p${i}`, 'success', T0, BREAKER)));
        await expect(store.recordProviderOutcome('one-too-many', 'failure', T0, BREAKER)).rejects.toMatchObject({ code: 'report_malformed' });
        expect(await store.recordProviderOutcome('p7', 'failure', T0 + 1, BREAKER)).toMatchObject({ provider: 'p7', failures: 1 });
        expect(await store.providerHealth(T0 + 2)).toHaveLength(MAX_PROVIDERS);
      } finally {
        await close();
      }
    });

    it.each([
      ['empty', ''],
      ['too long', 'x'.repeat(129)],
      ['a newline', 'open\nai'],
      ['NUL', 'a\u0000b'],
      ['DEL', 'a\u007fb'],
      ['a C1 control', 'a\u0085b'],
      ['an unpaired surrogate', 'a\ud800b'],
    ])('refuses a provider name that is %s', async (_what, name) => {
      const { store, close } = await open();
      try {
        const error = await store.recordProviderOutcome(name, 'failure', T0, BREAKER).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(SignalboxError);
        expect(error).toMatchObject({ code: 'report_malformed' });
        expect(await store.providerHealth(T0)).toEqual([]);
      } finally {
        await close();
      }
    });
  });
});

describe('a Redis Cluster client', () => {
  // Before node connections queued their first command, one start in a few failed the Cluster's
  // ready check, dropped every connection and started again, answering 503 meanwhile.
  it('comes up without a reconnect cycle, and serves a burst over every node at once', async () => {
    const { logger, lines } = capturedLogger();
    for (let start = 0; start < 10; start++) {
      const store = RedisStore.create(
        { cluster: cluster.nodes.map((n) => `${n.host}:${n.port}`), keyPrefix: `t${randomUUID().slice(0, 8)}`, commandTimeoutMs: 2000, connectTimeoutMs: 2000, expiredHolds: 'charge', partitioned: true },
        logger,
      );
      try {
        await store.ready(10_000);
        // 30 tenants: their partitions hash to slots on every node.
        const results = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => store.reserve(reservation(`t:tenant-${i % 30}`, { budgets: [budget(`team:t${i % 30}`, 1_000)] }))));
        expect(results.flatMap((r) => (r.status === 'rejected' ? [describeCause(r.reason)] : [])).slice(0, 3), `start ${start}`).toEqual([]);
        expect(results.every((r) => r.status === 'fulfilled' && r.value.outcome === 'reserved')).toBe(true);
      } finally {
        await store.close();
      }
    }
    expect(lines().filter((l) => l.code === 'budget_store_unavailable').map((l) => l.msg)).toEqual([]);
  });
});

describe('the Redis scripts', () => {
  it('are loaded again when Redis has lost them (SCRIPT FLUSH, a restart without persistence)', async () => {
    const store = await redisStore('charge', {});
    try {
      const b = budget('user:flushed', 150);
      expect((await store.reserve(reservation('', { budgets: [b] }))).outcome).toBe('reserved');
      expect(await redisCommand(redis.port, ['SCRIPT', 'FLUSH'])).toBe('OK');
      expect(await store.reserve(reservation('', { budgets: [b] }))).toMatchObject({ outcome: 'budget_exceeded', budget: { held: 100 } });
      expect(await store.balances('', [b], T0)).toMatchObject([{ held: 100, holds: 1 }]);
    } finally {
      await store.close();
    }
  });
});

describe('a budget counter in Redis', () => {
  const pttl = async (key: string) => Number(await redisCommand(redis.port, ['PTTL', key]));

  it('lives for its window plus retention as Redis counts time, whatever the caller clock reads, and only ever longer', async () => {
    const keyPrefix = `t${randomUUID().slice(0, 8)}`;
    const store = await redisStore('charge', { keyPrefix });
    try {
      const keys = new RedisKeys(keyPrefix);
      // A replica 30 days behind Redis: an absolute expiry would be in Redis's past.
      const behind = Date.now() - 30 * DAY_MS;
      const b = budget('team:lifetime', 10_000, 'day', 'd-lifetime', behind);
      await store.reserve(reservation('', { budgets: [b], nowMs: behind }));
      for (const key of [keys.budget('', b), keys.budgetHolds('', b)]) {
        const left = await pttl(key);
        expect(left).toBeGreaterThan(2 * DAY_MS - 60_000);
        expect(left).toBeLessThanOrEqual(2 * DAY_MS);
      }
      // Another replica, whose clock is a day ahead, asks for a shorter life: it is not cut.
      const ahead = behind + DAY_MS;
      await store.reserve(reservation('', { budgets: [{ ...b, expireAtMs: ahead + DAY_MS / 2 }], nowMs: ahead }));
      expect(await pttl(keys.budget('', b))).toBeGreaterThan(2 * DAY_MS - 60_000);
      // A longer life than the current one is granted.
      await store.reserve(reservation('', { budgets: [{ ...b, expireAtMs: behind + 3 * DAY_MS }], nowMs: behind }));
      expect(await pttl(keys.budget('', b))).toBeGreaterThan(3 * DAY_MS - 60_000);
    } finally {
      await store.close();
    }
  });

  it('is kept by Redis until its lifetime ends, and then forgotten', async () => {
    const keyPrefix = `t${randomUUID().slice(0, 8)}`;
    const store = await redisStore('charge', { keyPrefix });
    try {
      const key = new RedisKeys(keyPrefix).budget('', { scope: 'team:short', window: '1s', slot: 's-short' });
      // A caller a year ahead gives the counter 1.5 s to live (hold_ttl and retention kept short).
      const now = Date.now() + 365 * DAY_MS;
      const b: BudgetCounter = { scope: 'team:short', window: '1s', slot: 's-short', limit: 10_000, expireAtMs: now + 1_500 };
      await store.reserve(reservation('', { budgets: [b], nowMs: now, holdTtlMs: 500, retentionMs: 500 }));
      expect(Number(await redisCommand(redis.port, ['EXISTS', key]))).toBe(1);
      await new Promise((done) => setTimeout(done, 1_700));
      expect(Number(await redisCommand(redis.port, ['EXISTS', key]))).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe('a replica clock that differs from Redis', () => {
  async function connect(server: RedisServer, logger = silentLogger()): Promise<RedisStore> {
    const store = RedisStore.create({ url: server.url, keyPrefix: 'skew', commandTimeoutMs: 2000, connectTimeoutMs: 2000, expiredHolds: 'charge', partitioned: false }, logger);
    await store.ready(10_000);
    return store;
  }

  it('measures nothing worth a warning on one machine', async () => {
    const { logger, lines } = capturedLogger();
    const store = await connect(redis, logger);
    try {
      expect(Math.abs(await store.clockSkewMs())).toBeLessThan(CLOCK_SKEW_WARNING_MS);
      await new Promise((done) => setTimeout(done, 100));
      expect(lines().filter((l) => l.code === 'store_clock_skew')).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('is measured, and logged as store_clock_skew when the replica connects', async () => {
    // This Redis runs an hour ahead: the replica is an hour behind it.
    const ahead = await startRedis({ clockShiftS: 3_600 });
    const { logger, lines } = capturedLogger();
    const store = await connect(ahead, logger);
    try {
      const skew = await store.clockSkewMs();
      expect(skew).toBeLessThan(-3_600_000 + 1_000);
      expect(skew).toBeGreaterThan(-3_600_000 - 1_000);
      await vi.waitFor(() => expect(lines().find((l) => l.code === 'store_clock_skew')).toMatchObject({ level: 40, skew_ms: expect.any(Number), msg: expect.stringContaining('behind Redis') }));
      // Counting is unaffected: lifetimes are relative, so nothing written expires at once.
      const b = budget('user:skew', 150);
      expect((await store.reserve(reservation('', { budgets: [b] }))).outcome).toBe('reserved');
      expect((await store.reserve(reservation('', { budgets: [b] }))).outcome).toBe('budget_exceeded');
    } finally {
      await store.close();
      await ahead.stop();
    }
  });
});

describe('in-memory store shared by workers: each worker keeps what it read, dropped when it changes', () => {
  it('serves repeated reads without a round trip, and sees another worker\'s hold and settlement at once', async () => {
    const { clients, sent } = ipcWorkers(2);
    const [a, b] = clients as [IpcStoreClient, IpcStoreClient];
    const key = budget('user:shared', 1000);
    expect((await a.balances('', [key], T0))[0]).toMatchObject({ spent: 0, held: 0 });
    const afterFirstRead = sent();
    for (let i = 0; i < 5; i++) expect((await a.balances('', [key], T0 + i))[0]).toMatchObject({ held: 0 });
    expect(sent()).toBe(afterFirstRead); // answered from the copy
    const hold = reservation('', { budgets: [key], amount: 300 });
    expect((await b.reserve(hold)).outcome).toBe('reserved');
    expect((await a.balances('', [key], T0 + 10))[0]).toMatchObject({ held: 300, holds: 1 });
    expect((await b.settle({ holdId: hold.holdId, nowMs: T0 + 20, tokens: null, retentionMs: 60_000, price: flat(120) })).outcome).toBe('settled');
    expect((await a.balances('', [key], T0 + 30))[0]).toMatchObject({ held: 0, spent: 120 });
    await Promise.all(clients.map((c) => c.close()));
  });

  it('does not use a copy past the time a hold in it expires', async () => {
    const { clients } = ipcWorkers(2, 'charge');
    const [a, b] = clients as [IpcStoreClient, IpcStoreClient];
    const key = budget('user:expiring', 1000);
    expect((await b.reserve(reservation('', { budgets: [key], amount: 200 }))).outcome).toBe('reserved');
    expect((await a.balances('', [key], T0 + 1))[0]).toMatchObject({ held: 200, spent: 0 });
    // No operation happens; the hold runs out and is charged (expired_holds: charge).
    expect((await a.balances('', [key], T0 + HOLD_TTL + 1))[0]).toMatchObject({ held: 0, spent: 200 });
    await Promise.all(clients.map((c) => c.close()));
  });

  it('sees a breaker another worker opened, and its turn to half-open on its own clock', async () => {
    const { clients } = ipcWorkers(2);
    const [a, b] = clients as [IpcStoreClient, IpcStoreClient];
    expect(await a.providerHealth(T0)).toEqual([]);
    for (let i = 0; i < BREAKER.failureThreshold; i++) await b.recordProviderOutcome('openai', 'failure', T0 + i, BREAKER);
    expect((await a.providerHealth(T0 + 10)).map((h) => [h.provider, h.state])).toEqual([['openai', 'open']]);
    expect((await a.providerHealth(T0 + 10 + BREAKER.coolDownMs)).map((h) => h.state)).toEqual(['half_open']);
    await Promise.all(clients.map((c) => c.close()));
  });
});
