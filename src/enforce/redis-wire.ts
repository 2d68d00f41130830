/**
 * What the Redis scripts return, decoded: lists cjson may write as {}, balances whose amounts come
 * as exact integer strings, breakers with absent fields.
 */
import type { StoredBreaker } from './store.js';

/** Lua's cjson writes an empty table as {} rather than []. */
export function luaList<T>(json: string | null | undefined): T[] {
  if (!json) return [];
  const value: unknown = JSON.parse(json);
  return Array.isArray(value) ? (value as T[]) : [];
}

/** A breaker as PROVIDER_SCRIPT stores it (absent fields are null). */
export interface RawBreaker {
  failures?: number;
  window_end?: number;
  opened_at?: number;
  retry_at?: number;
  last_failure?: number;
  last_success?: number;
}

/** A breaker as the store interface has it: absent fields as null, no failures as 0. */
export function storedBreaker(raw: RawBreaker): StoredBreaker {
  return {
    failures: raw.failures ?? 0,
    window_end_ms: raw.window_end ?? null,
    opened_at_ms: raw.opened_at ?? null,
    retry_at_ms: raw.retry_at ?? null,
    last_failure_at_ms: raw.last_failure ?? null,
    last_success_at_ms: raw.last_success ?? null,
  };
}

/** A balance as the scripts return it: amounts as exact integer strings (cjson would round them). */
export interface RawBalance {
  spent: string;
  held: string;
  limit: string;
  holds: number;
}

/** A returned balance with its amounts as numbers (absent: zero). */
export function counted(raw: RawBalance | undefined): { spent: number; held: number; limit: number; holds: number } {
  return { spent: Number(raw?.spent ?? 0), held: Number(raw?.held ?? 0), limit: Number(raw?.limit ?? 0), holds: raw?.holds ?? 0 };
}

