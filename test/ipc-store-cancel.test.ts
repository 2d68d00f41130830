/**
 * With several workers the in-memory store lives in the primary and workers reach it over IPC.
 * A worker that gives up waiting for a hung primary answers 503, while the reservation may still
 * run when the primary catches up: the worker then asks the primary to cancel it (after the
 * reservation, on the same ordered channel), so a refused request holds no budget, no rate slot
 * and no loop entry.
 */
import { describe, expect, it } from 'vitest';
import { IpcStoreClient, answerStoreRequests, type StoreReplies, type StoreRequests } from '../src/enforce/ipc-store.js';
import { MemoryStore } from '../src/enforce/memory-store.js';
import type { Reservation } from '../src/enforce/store.js';

const NOW = Date.now();
const budget = { scope: 'user:alice', window: 'day', slot: 'd', limit: 1_000_000, expireAtMs: NOW + 86_400_000 };

function reservation(holdId: string, nowMs: number): Reservation {
  return {
    holdId,
    partition: '',
    nowMs,
    amount: 250_000,
    budgets: [budget],
    rates: [{ scope: 'user:alice', unit: 'requests', perMinute: 1, weight: 1 }],
    loop: { session: 'user:alice/s1', callHash: 'h-search', maxRepeats: 1, pingPong: 0, window: 20, ttlMs: 60_000 },
    holdTtlMs: 60_000,
    retentionMs: 60_000,
    meta: { model: 'gpt-4o-mini' },
  };
}

describe('cancelling a reservation', () => {
  it('gives back the hold, the rate slot and the loop entry; a settled hold is left alone', async () => {
    const store = new MemoryStore('charge');
    expect(await store.reserve(reservation('d1', NOW))).toMatchObject({ outcome: 'reserved' });
    // The slot (1 a minute) and the loop entry (max 1 repeat) are taken: the same call is refused.
    expect((await store.reserve(reservation('d2', NOW + 1))).outcome).not.toBe('reserved');
    const charged = store.holdBudgets('d1');
    expect(charged).toHaveLength(1);
    expect(store.cancel('d1', NOW + 2)).toEqual({ outcome: 'cancelled', budgets: charged });
    const [balance] = await store.balances('', [budget], NOW + 3);
    expect(balance).toMatchObject({ held: 0, spent: 0, holds: 0 });
    expect(await store.reserve(reservation('d3', NOW + 4))).toMatchObject({ outcome: 'reserved' });
    expect(await store.settle({ holdId: 'd1', nowMs: NOW + 5, tokens: null, retentionMs: 60_000, price: () => 1 })).toEqual({ outcome: 'not_found' });
    await store.settle({ holdId: 'd3', nowMs: NOW + 6, tokens: null, retentionMs: 60_000, price: () => 100_000 });
    expect(store.cancel('d3', NOW + 7)).toMatchObject({ outcome: 'not_found' });
    expect((await store.balances('', [budget], NOW + 8))[0]).toMatchObject({ spent: 100_000, held: 0 });
    await store.close();
  });

  it('a worker that gave up on a hung primary leaves nothing held once the primary catches up', async () => {
    const store = new MemoryStore('charge');
    const delayMs = 400;
    let client!: IpcStoreClient;
    // The primary answers every message 400 ms late, in order, as a hung one that recovers would.
    const primary = (message: StoreRequests): void => {
      setTimeout(() => {
        void answerStoreRequests(store, message).then(({ replies }: { replies: StoreReplies }) => client.receive(replies));
      }, delayMs);
    };
    client = new IpcStoreClient(primary, 100);
    await expect(client.reserve(reservation('late-1', Date.now()))).rejects.toMatchObject({ code: 'budget_store_unavailable' });
    // The reservation ran in the primary after the worker refused it, then the cancel undid it.
    await new Promise((resolve) => setTimeout(resolve, delayMs * 3));
    const [balance] = await store.balances('', [budget], Date.now());
    expect(balance).toMatchObject({ held: 0, spent: 0, holds: 0 });
    expect(await store.reserve(reservation('next', Date.now()))).toMatchObject({ outcome: 'reserved' });
    await client.close();
    await store.close();
  });
});
