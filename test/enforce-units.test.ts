import { describe, expect, it } from 'vitest';
import { toolCallHash } from '../src/enforce/enforcer.js';
import { loopVerdict } from '../src/enforce/memory-store.js';
import { usdToMicro } from '../src/core/money.js';
import { windowSlot } from '../src/enforce/windows.js';
import { SignalboxError } from '../src/core/errors.js';

describe('budget windows', () => {
  const at = (iso: string) => Date.parse(iso);

  it.each([
    ['day', '2026-11-22T23:59:59.999Z', 'd2026-11-22', '2026-11-23T00:00:00.000Z'],
    ['day', '2026-11-23T00:00:00.000Z', 'd2026-11-23', '2026-11-24T00:00:00.000Z'],
    ['week', '2026-11-22T12:00:00.000Z', 'w2026-11-16', '2026-11-23T00:00:00.000Z'], // a Sunday: week began Monday the 16th
    ['week', '2026-11-23T00:00:00.000Z', 'w2026-11-23', '2026-11-30T00:00:00.000Z'],
    ['month', '2026-12-31T23:00:00.000Z', 'm2026-12', '2027-01-01T00:00:00.000Z'],
    ['month', '2028-02-29T10:00:00.000Z', 'm2028-02', '2028-03-01T00:00:00.000Z'],
    ['3600s', '2026-11-22T10:30:00.000Z', `s3600:${Math.floor(at('2026-11-22T10:30:00.000Z') / 3_600_000)}`, '2026-11-22T11:00:00.000Z'],
  ])('%s at %s is period %s, ending %s', (window, now, id, end) => {
    const slot = windowSlot(window, at(now));
    expect(slot.id).toBe(id);
    expect(new Date(slot.endsAtMs).toISOString()).toBe(end);
  });

  it('never resets a session window', () => {
    expect(windowSlot('session', Date.now())).toEqual({ id: 'session', endsAtMs: Number.POSITIVE_INFINITY });
  });

  it.each(['fortnight', '0s', '-5s', 'Day', ''])('rejects the window %j', (window) => {
    expect(() => windowSlot(window, Date.now())).toThrow(SignalboxError);
  });
});

describe('money', () => {
  it.each([
    [0.1, 'nearest', 100_000],
    [0.1, 'up', 100_000],
    [5, 'nearest', 5_000_000],
    [0.0000001, 'up', 1],
    [0.0000001, 'nearest', 0],
    [0.0000015, 'nearest', 2],
    [1234.567891, 'up', 1_234_567_891],
    [9_000_000_000, 'nearest', 9_000_000_000_000_000],
  ] as const)('%d USD rounded %s is %d micro-USD', (usd, rounding, micro) => {
    expect(usdToMicro(usd, rounding)).toBe(micro);
  });

  it('rejects negative and non-finite amounts', () => {
    expect(() => usdToMicro(-1, 'up')).toThrow(RangeError);
    expect(() => usdToMicro(Number.NaN, 'up')).toThrow(RangeError);
  });
});

describe('loop rule', () => {
  it('counts repeats within the history only', () => {
    expect(loopVerdict(['A', 'B', 'A'], 'A', 2, 0)).toEqual({ reason: 'repeated_call', count: 3 });
    expect(loopVerdict(['A', 'B'], 'A', 2, 0)).toBeUndefined();
    expect(loopVerdict(['A', 'A', 'A'], 'A', 0, 0)).toBeUndefined();
  });

  it('needs 2N alternating calls for ping-pong, with two distinct calls', () => {
    expect(loopVerdict(['B', 'A', 'B'], 'A', 0, 2)).toEqual({ reason: 'ping_pong', count: 2 });
    expect(loopVerdict(['B', 'A'], 'A', 0, 2)).toBeUndefined();
    expect(loopVerdict(['A', 'A', 'A'], 'A', 0, 2)).toBeUndefined();
    expect(loopVerdict(['B', 'A', 'C'], 'A', 0, 2)).toBeUndefined();
    expect(loopVerdict(['B', 'A', 'B', 'A', 'B'], 'A', 0, 3)).toEqual({ reason: 'ping_pong', count: 3 });
  });

  it('hashes tool calls by name and canonical arguments', () => {
    const a = toolCallHash([{ name: 'search', arguments: { q: 'x', n: 1 }, source: 'mcp' }]);
    const sameReordered = toolCallHash([{ name: 'search', arguments: { n: 1, q: 'x' }, source: 'openai.chat' }]);
    const other = toolCallHash([{ name: 'search', arguments: { q: 'y', n: 1 }, source: 'mcp' }]);
    expect(a).toBe(sameReordered);
    expect(a).not.toBe(other);
    expect(a).toMatch(/^[0-9a-f]{32}$/);
  });
});
