/**
 * Money is counted in whole micro-USD (integers) everywhere state is kept, so sums are exact and
 * Redis (integer counters, doubles in Lua) and the in-memory store agree to the unit.
 */

/** Micro-USD in one USD: state is kept in integer micro-USD (see the module comment). */
export const MICRO_PER_USD = 1_000_000;

/**
 * USD as the policy or a report gives it (a JSON number) to micro-USD. The decimal the number
 * prints as is what is meant, so 0.1 is exactly 100000, not 100000.00000000001 rounded up.
 * `up` rounds any remainder below a micro-USD up (costs: never under-charge); `nearest` is for
 * limits.
 */
export function usdToMicro(usd: number, rounding: 'up' | 'nearest'): number {
  if (!Number.isFinite(usd) || usd < 0) throw new RangeError('amount must be a finite, non-negative number of USD');
  const [whole = '0', fraction = ''] = usd.toFixed(12).split('.');
  const micro = Number(whole) * MICRO_PER_USD + Number(fraction.slice(0, 6).padEnd(6, '0'));
  const rest = fraction.slice(6);
  if (rounding === 'up') return /[1-9]/.test(rest) ? micro + 1 : micro;
  return Number(rest[0] ?? '0') >= 5 ? micro + 1 : micro;
}

/** Stored micro-USD back to USD for responses, logs and budget views; exact, as stored amounts are integers. */
export function microToUsd(micro: number): number {
  return micro / MICRO_PER_USD;
}
