/** The text-keyed cache behind token counts and content findings: bounded, keeping what is in use. */
import { describe, expect, it } from 'vitest';
import { TextCache } from '../src/core/text-cache.js';

describe('TextCache', () => {
  it('keeps at most its entry bound, and what was used within the last half of it', () => {
    const cache = new TextCache<number>(1_000_000, 100);
    for (let i = 0; i < 1000; i++) {
      cache.set(`text ${i}`, i);
      expect(cache.get('text 0')).toBe(0); // used on every step: never evicted
    }
    let kept = 0;
    for (let i = 0; i < 1000; i++) if (cache.get(`text ${i}`) !== undefined) kept++;
    expect(kept).toBeLessThanOrEqual(100);
    expect(cache.get('text 999')).toBe(999);
    expect(cache.get('text 1')).toBeUndefined();
  });

  it('keeps at most its character bound, and never a text over a quarter of it', () => {
    const cache = new TextCache<number>(4_000, 1_000_000);
    cache.set('x'.repeat(1_001), 1);
    expect(cache.get('x'.repeat(1_001))).toBeUndefined();
    for (let i = 0; i < 100; i++) cache.set(`${i}`.padEnd(500, '.'), i);
    let chars = 0;
    for (let i = 0; i < 100; i++) if (cache.get(`${i}`.padEnd(500, '.')) !== undefined) chars += 500;
    expect(chars).toBeLessThanOrEqual(4_000);
    expect(cache.get('99'.padEnd(500, '.'))).toBe(99);
  });
});
