/**
 * Policies with large limits: budgets up to 9e9 USD and token rates up to 1e12 a minute work and
 * are counted exactly by both stores; a limit beyond the schema's maxima fails with a message
 * that names the member, the value and the maximum, at load time when the bundle's smoke
 * evaluation already shows it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../src/bundles/bundle.js';
import { MemoryStore } from '../src/enforce/memory-store.js';
import { RedisStore } from '../src/enforce/redis-store.js';
import type { EnforcementStore, Reservation } from '../src/enforce/store.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { interpretResult } from '../src/policy/result.js';
import { resultViolation } from '../src/policy/result-schema.js';
import { buildTestBundle } from './helpers/bundles.js';
import { capturedLogger } from './helpers/logs.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { checkRequest, startTestSignalbox } from './helpers/signalbox.js';

// The real clock (Redis judges key lifetimes by its own), fixed for the run.
const NOW = Date.now();
const TOKENS_PER_MINUTE = 1e12;
const BIG_AMOUNT = 123_456_789_012_346;

function tokens(holdId: string, weight: number, scope: string, amount = 1): Reservation {
  return {
    holdId,
    partition: '',
    nowMs: NOW,
    amount,
    budgets: [{ scope, window: 'day', slot: 'd1', limit: 1e9 * 1e6, expireAtMs: NOW + 86_400_000 }],
    rates: [{ scope, unit: 'tokens', perMinute: TOKENS_PER_MINUTE, weight }],
    holdTtlMs: 600_000,
    retentionMs: 3_600_000,
    meta: {},
  };
}

describe('a token rate of 1e12 a minute is counted to the token', () => {
  let redis: RedisServer;
  let redisStore: RedisStore;
  const stores: Array<[string, () => EnforcementStore]> = [
    ['memory', () => new MemoryStore('charge', () => NOW)],
    ['redis', () => redisStore],
  ];

  beforeAll(async () => {
    redis = await startRedis();
    redisStore = RedisStore.create({ url: redis.url, keyPrefix: 'large', commandTimeoutMs: 2_000, connectTimeoutMs: 2_000, expiredHolds: 'charge', partitioned: false }, capturedLogger().logger);
    await redisStore.ready(10_000);
  });

  afterAll(async () => {
    await redisStore?.close();
    await redis?.stop();
  });

  it.each(stores)('%s store: a bucket 5 000 tokens short of full takes five requests of 1 000 and refuses the sixth; balances stay exact', async (_name, store) => {
    const s = store();
    // An epoch time in ms as a double cannot hold a step of 1 000 tokens at 1e12 a minute
    // (6e-5 ms): a bucket kept as an arrival time would never fill.
    // 123 456 789.012346 USD: more significant digits than Lua's cjson writes (14).
    expect((await s.reserve(tokens('big', TOKENS_PER_MINUTE - 5_000, `user:${_name}`, BIG_AMOUNT))).outcome).toBe('reserved');
    for (let i = 0; i < 5; i++) expect((await s.reserve(tokens(`small-${i}`, 1_000, `user:${_name}`))).outcome).toBe('reserved');
    const sixth = await s.reserve(tokens('small-6', 1_000, `user:${_name}`));
    expect(sixth).toMatchObject({ outcome: 'rate_limited', unit: 'tokens', perMinute: TOKENS_PER_MINUTE });
    // 1 000 tokens at 1e12 a minute drain in 6e-5 ms: a retry fits within the next millisecond.
    expect(sixth.outcome === 'rate_limited' && sixth.retryAfterMs).toBe(1);
    // The budget of 1e9 USD took every hold, exactly.
    const [balance] = await s.balances('', [{ scope: `user:${_name}`, window: 'day', slot: 'd1' }], NOW);
    expect(balance).toMatchObject({ limit: 1e15, held: BIG_AMOUNT + 5, holds: 6 });
    if (s instanceof MemoryStore) await s.close();
  });
});

describe('the policy result', () => {
  const bundleFor = async (decision: string) =>
    readBundle(await buildTestBundle(['package t', '', '# METADATA', '# entrypoint: true', decision, ''].join('\n')));

  it('budgets of 1e9 USD and a token rate of 1e12 are a valid result', async () => {
    const engine = await PolicyEngine.create(
      await bundleFor('decision := {"allowed": true, "budgets": [{"scope": "team:a", "window": "day", "limit_usd": 1e9}], "rate_limits": [{"scope": "team:a", "tokens_per_minute": 1e12}]}'),
      { entrypoint: 't/decision' },
    );
    const verdict = interpretResult(engine.evaluate({}, 0n));
    expect(verdict.enforcement).toMatchObject({ budgets: [{ limitUsd: 1e9 }], rateLimits: [{ tokensPerMinute: 1e12 }] });
  });

  it('a limit beyond the maximum is named with its value and the maximum', () => {
    expect(resultViolation({ allowed: true, rate_limits: [{ scope: 'team:a', tokens_per_minute: 1e13 }] })).toBe('/rate_limits/0/tokens_per_minute must be <= 1000000000000 (got 10000000000000)');
    expect(resultViolation({ allowed: true, budgets: [{ scope: 'team:a', window: 'day', limit_usd: 1e10 }] })).toBe('/budgets/0/limit_usd must be <= 9000000000 (got 10000000000)');
    // Other faults name the member, never a string value.
    expect(resultViolation({ allowed: 'true' })).toBe('/allowed must be boolean');
    expect(resultViolation({ allowed: true, budget: [] })).toBe('(result) must NOT have additional properties ("budget")');
    expect(resultViolation({ allowed: true, headers: { 'x-a': 'secret-value', 'x-b': 1 } })).not.toContain('secret-value');
    expect(resultViolation('yes')).toBe('(result) must be a boolean or an object with a boolean "allowed"');
    expect(resultViolation(true)).toBeUndefined();
  });

  it('a bundle whose decision shows an out-of-range limit is refused at load time', async () => {
    const bundle = await bundleFor('decision := {"allowed": true, "rate_limits": [{"scope": "team:a", "tokens_per_minute": 1e13}]}');
    await expect(PolicyEngine.create(bundle, { entrypoint: 't/decision' })).rejects.toMatchObject({
      code: 'bundle_invalid',
      message: expect.stringMatching(/names a limit out of range: \/rate_limits\/0\/tokens_per_minute must be <= 1000000000000 \(got 10000000000000\)/),
    });
  });

  it('one that shows it only for some input loads, and denies those requests naming the member', async () => {
    const bundle = await buildTestBundle(
      ['package t', '', '# METADATA', '# entrypoint: true', 'default decision := {"allowed": true}', 'decision := {"allowed": true, "budgets": [{"scope": "team:a", "window": "day", "limit_usd": 1e10}]} if input.attributes', ''].join('\n'),
    );
    const logs = capturedLogger();
    const sb = await startTestSignalbox(logs.logger, { bundle, decision: 't/decision' });
    try {
      const response = await sb.check(checkRequest({}));
      expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('policy_result_invalid');
      expect(logs.text()).toContain('/budgets/0/limit_usd must be <= 9000000000 (got 10000000000)');
    } finally {
      await sb.close();
    }
  });
});
