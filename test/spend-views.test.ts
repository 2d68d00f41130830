/**
 * `input.spend` kept per caller (src/enforce/spend-views.ts, Enforcer.spendFor): the same frozen
 * view while nothing it shows has changed, so its JSON is written once; a new view as soon as a
 * balance, a period or the caller differs. A kept view must never show a stale balance.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemberwiseJson } from '../src/core/json-text.js';
import { Enforcer } from '../src/enforce/enforcer.js';
import { MemoryStore } from '../src/enforce/memory-store.js';
import { windowSlot } from '../src/enforce/windows.js';
import { PriceTable } from '../src/inspect/prices.js';

// Noon today (UTC), on the real clock: no frozen date meets the store's own clock.
const T0 = Math.floor(Date.now() / 86_400_000) * 86_400_000 + 43_200_000;
const DAY = 86_400_000;

function setUp() {
  const store = new MemoryStore('charge');
  const enforcer = new Enforcer({
    store,
    prices: PriceTable.default(),
    holdTtlMs: 600_000,
    retentionMs: 3 * DAY,
    loopTtlMs: 3_600_000,
    sessionTtlMs: DAY,
    partition: 'none',
    spendScopes: ['user:{subject}', 'team:{team}'],
    spendWindows: ['day'],
    breaker: { failureThreshold: 2, failureWindowMs: 60_000, coolDownMs: 30_000 },
  });
  const reserve = (scope: string, amount: number, nowMs = T0) =>
    store.reserve({
      holdId: randomUUID(),
      partition: '',
      nowMs,
      amount,
      budgets: [{ scope, window: 'day', slot: windowSlot('day', nowMs).id, limit: 10_000_000, expireAtMs: nowMs + 2 * DAY }],
      rates: [],
      holdTtlMs: 600_000,
      retentionMs: 3 * DAY,
      meta: { model: 'gpt-4o-mini', tokens: 10 },
    });
  return { enforcer, reserve };
}

const ada = { subject: 'ada', team: 'search' };

describe('the spend view kept per caller', () => {
  it('is the same frozen object while nothing it shows changed', async () => {
    const { enforcer, reserve } = setUp();
    await reserve('user:ada', 1_000);
    const first = await enforcer.spendFor(ada, undefined, T0);
    const again = await enforcer.spendFor(ada, undefined, T0 + 1_000);
    expect(again).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first['user:ada']!.day)).toBe(true);
    expect(first['user:ada']!.day!.held_usd).toBe(0.001);
  });

  it('is new as soon as a balance changes, and shows it', async () => {
    const { enforcer, reserve } = setUp();
    await reserve('user:ada', 1_000);
    const before = await enforcer.spendFor(ada, undefined, T0);
    await reserve('team:search', 2_000);
    const after = await enforcer.spendFor(ada, undefined, T0);
    expect(after).not.toBe(before);
    expect(after['team:search']!.day!.held_usd).toBe(0.002);
    expect(before['team:search']?.day?.held_usd ?? 0).toBe(0);
  });

  it('is new in a new period', async () => {
    const { enforcer } = setUp();
    const today = await enforcer.spendFor(ada, undefined, T0);
    const tomorrow = await enforcer.spendFor(ada, undefined, T0 + DAY);
    expect(tomorrow).not.toBe(today);
    expect(tomorrow['user:ada']!.day!.period).toBe(windowSlot('day', T0 + DAY).id);
  });

  it('is per caller, whatever the fields hold', async () => {
    const { enforcer, reserve } = setUp();
    await reserve('user:a"b', 1_000);
    // Fields that a joined key would confuse: each caller still gets only its own scopes.
    const one = await enforcer.spendFor({ subject: 'a"b', team: 'c' }, undefined, T0);
    const two = await enforcer.spendFor({ subject: 'a', team: '"b","c' }, undefined, T0);
    expect(Object.keys(one)).toEqual(['user:a"b', 'team:c']);
    expect(Object.keys(two)).toEqual(['user:a', 'team:"b","c']);
    expect(one['user:a"b']!.day!.held_usd).toBe(0.001);
    expect(two['user:a']!.day!.held_usd).toBe(0);
  });

  it('is written into the input as the view it is', async () => {
    const { enforcer, reserve } = setUp();
    await reserve('user:ada', 1_500);
    const spend = await enforcer.spendFor(ada, undefined, T0);
    const input = { attributes: {}, identity: { subject: 'ada' }, spend };
    const first = JSON.parse(MemberwiseJson.of(input, ['attributes']).text) as typeof input;
    const second = JSON.parse(MemberwiseJson.of({ ...input, spend: await enforcer.spendFor(ada, undefined, T0) }, ['attributes']).text) as typeof input;
    expect(first).toEqual(JSON.parse(JSON.stringify(input)));
    expect(second).toEqual(first);
  });
});
