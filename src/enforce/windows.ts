/**
 * Budget windows: which counter a charge made "now" lands in, and when that counter can be
 * forgotten. Calendar windows are UTC so every replica, whatever its time zone, agrees.
 */
import { SignalboxError } from '../core/errors.js';

/** `day`, `week` (ISO, from Monday), `month`, `session` (never resets) or a fixed length `<N>s`. */
export type BudgetWindow = string;

/**
 * The window names {@link windowSlot} accepts, so config and spend queries are refused up front:
 * day, week, month, session, or `<N>s` (1 to 999999999 seconds).
 */
export const WINDOW_PATTERN = /^(day|week|month|session|[1-9][0-9]{0,8}s)$/;

/** The period of a budget window that a given time falls in. */
export interface WindowSlot {
  /** Identifies the current period of the window, part of the counter key. */
  readonly id: string;
  /** When the period ends (ms since the epoch); Infinity for `session`. */
  readonly endsAtMs: number;
}

const DAY_MS = 86_400_000;

function isoDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The last slot computed per window name, with when it starts: most calls fall in the same period. */
const recentSlots = new Map<BudgetWindow, { readonly startsAtMs: number; readonly slot: WindowSlot }>();
/** Window names come from policies; past this many distinct ones the memo starts over. */
const MAX_REMEMBERED_WINDOWS = 256;

/**
 * The period of `window` that contains `nowMs`. Remembers the last period per window, so the
 * date arithmetic runs once a period rather than per request; any clock, frozen or real, moving
 * either way, gets the period that contains its own `nowMs`.
 */
export function windowSlot(window: BudgetWindow, nowMs: number): WindowSlot {
  const recent = recentSlots.get(window);
  if (recent !== undefined && nowMs >= recent.startsAtMs && nowMs < recent.slot.endsAtMs) return recent.slot;
  const computed = computeSlot(window, nowMs);
  if (recentSlots.size >= MAX_REMEMBERED_WINDOWS) recentSlots.clear();
  recentSlots.set(window, computed);
  return computed.slot;
}

function computeSlot(window: BudgetWindow, nowMs: number): { startsAtMs: number; slot: WindowSlot } {
  if (!WINDOW_PATTERN.test(window)) {
    throw new SignalboxError('policy_result_invalid', `budget window must be day, week, month, session or <seconds>s`);
  }
  const dayStart = Math.floor(nowMs / DAY_MS) * DAY_MS;
  switch (window) {
    case 'day':
      return { startsAtMs: dayStart, slot: { id: `d${isoDate(dayStart)}`, endsAtMs: dayStart + DAY_MS } };
    case 'week': {
      // getUTCDay: Sunday = 0; ISO weeks start on Monday.
      const weekday = (new Date(dayStart).getUTCDay() + 6) % 7;
      const monday = dayStart - weekday * DAY_MS;
      return { startsAtMs: monday, slot: { id: `w${isoDate(monday)}`, endsAtMs: monday + 7 * DAY_MS } };
    }
    case 'month': {
      const date = new Date(nowMs);
      const start = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
      const end = Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
      return { startsAtMs: start, slot: { id: `m${new Date(start).toISOString().slice(0, 7)}`, endsAtMs: end } };
    }
    case 'session':
      return { startsAtMs: Number.NEGATIVE_INFINITY, slot: { id: 'session', endsAtMs: Number.POSITIVE_INFINITY } };
    default: {
      const lengthMs = Number(window.slice(0, -1)) * 1000;
      const index = Math.floor(nowMs / lengthMs);
      return { startsAtMs: index * lengthMs, slot: { id: `s${lengthMs / 1000}:${index}`, endsAtMs: (index + 1) * lengthMs } };
    }
  }
}
