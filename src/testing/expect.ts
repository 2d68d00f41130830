/**
 * What a decision looked like, field by field, and how it differs from a case's expectations.
 * A field the case does not name is not checked.
 */
import type { Decision } from '../decide/decision.js';
import type { Expectation } from './suite.js';
import { isJsonObject } from '../core/json-object.js';

/** The decision as a table sees it. */
export interface ActualDecision {
  readonly allowed: boolean;
  readonly http_status: number;
  readonly reasons: readonly string[];
  /** Lower-cased header name → value, or a list for a repeated header. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Lower-cased names of the request headers removed before forwarding. */
  readonly headers_removed: readonly string[];
  readonly route: Record<string, unknown> | null;
  readonly budgets: readonly Record<string, unknown>[];
  readonly rate_limits: readonly Record<string, unknown>[];
  readonly loop: Record<string, unknown> | null;
  readonly body: string;
  readonly error: string | null;
}

/** One expectation a case did not meet, as the report prints it: the field, both values, and a note when needed. */
export interface FieldDiff {
  readonly field: string;
  readonly expected: unknown;
  readonly actual: unknown;
  /** Set when "expected X, got Y" does not say it all (a missing list entry, a subset). */
  readonly note?: string;
}

/** JSON with sorted keys, for order-insensitive object comparison. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    isJsonObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : typeof v === 'bigint' ? v.toString() : v,
  );
}

/** Structural equality that ignores object key order, since JSON objects are unordered. */
export function deepEqual(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function sortedCanonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedCanonical).sort((a, b) => (canonical(a) < canonical(b) ? -1 : canonical(a) > canonical(b) ? 1 : 0));
  if (isJsonObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, sortedCanonical(v)]));
  if (typeof value === 'string' && /^[[{]/.test(value)) {
    try {
      // A JSON text (json.marshal output): the same document with keys in another order is the same.
      return { 'json-text': sortedCanonical(JSON.parse(value)) };
    } catch {
      return value;
    }
  }
  return value;
}

/**
 * How two results differ: 'equal', 'order' (only in the order of array elements or of the keys
 * inside JSON text, e.g. a set turned into an array, which WASM iterates in another order than
 * topdown), or 'different'. Returns the paths where only the order differs.
 */
export function compareResults(a: unknown, b: unknown): { kind: 'equal' | 'order' | 'different'; paths: string[] } {
  if (deepEqual(a, b)) return { kind: 'equal', paths: [] };
  if (!deepEqual(sortedCanonical(a), sortedCanonical(b))) return { kind: 'different', paths: [] };
  const paths: string[] = [];
  const walk = (x: unknown, y: unknown, path: string): void => {
    if (deepEqual(x, y)) return;
    if (isJsonObject(x) && isJsonObject(y)) {
      for (const key of Object.keys(x)) walk(x[key], y[key], path ? `${path}.${key}` : key);
      return;
    }
    paths.push(path || '(result)');
  };
  walk(a, b, '');
  return { kind: 'order', paths };
}

/** True when every key of `expected` is in `actual` with a matching value (objects recursively). */
export function isSubset(expected: unknown, actual: unknown): boolean {
  if (isJsonObject(expected)) {
    if (!isJsonObject(actual)) return false;
    return Object.entries(expected).every(([key, value]) => key in actual && isSubset(value, actual[key]));
  }
  return deepEqual(expected, actual);
}

function headerMap(entries: readonly { key: string; value: string }[]): Record<string, string | string[]> {
  const map: Record<string, string | string[]> = {};
  for (const { key, value } of entries) {
    const name = key.toLowerCase();
    const existing = map[name];
    map[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  return map;
}

function listOfObjects(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter(isJsonObject) : [];
}

/** The table's view of a decision, with the limits the policy's raw result named. */
export function actualDecision(decision: Decision, result: unknown): ActualDecision {
  const raw = isJsonObject(result) ? result : {};
  return {
    allowed: decision.allowed,
    http_status: decision.allowed ? 200 : decision.httpStatus,
    reasons: [...decision.reasons],
    headers: headerMap(decision.headers),
    headers_removed: decision.requestHeadersToRemove.map((name) => name.toLowerCase()),
    route: decision.route ? { ...decision.route } : isJsonObject(raw.route) && decision.allowed ? raw.route : null,
    budgets: listOfObjects(raw.budgets),
    rate_limits: listOfObjects(raw.rate_limits),
    loop: isJsonObject(raw.loop) ? raw.loop : null,
    body: decision.body,
    error: decision.error ?? null,
  };
}

/** The table's view of an evaluation that failed closed with `code` before any verdict. */
export function failedDecision(code: string): ActualDecision {
  return { allowed: false, http_status: 403, reasons: [code], headers: {}, headers_removed: [], route: null, budgets: [], rate_limits: [], loop: null, body: '', error: code };
}

function partialListDiff(field: string, expected: readonly Record<string, unknown>[] | null, actual: readonly Record<string, unknown>[]): FieldDiff[] {
  if (expected === null) return actual.length === 0 ? [] : [{ field, expected: null, actual, note: 'expected none' }];
  const missing = expected.filter((want) => !actual.some((have) => isSubset(want, have)));
  return missing.length === 0 ? [] : [{ field, expected, actual, note: `not named: ${missing.map((m) => canonical(m)).join(', ')}` }];
}

/** Every expectation the decision does not meet; empty when the case passes. */
export function compareExpectation(expect: Expectation, actual: ActualDecision): FieldDiff[] {
  const diffs: FieldDiff[] = [];
  if (expect.allowed !== undefined && expect.allowed !== actual.allowed) diffs.push({ field: 'allowed', expected: expect.allowed, actual: actual.allowed });
  if (expect.http_status !== undefined && expect.http_status !== actual.http_status) {
    diffs.push({ field: 'http_status', expected: expect.http_status, actual: actual.http_status });
  }
  if (expect.reasons !== undefined) {
    if (Array.isArray(expect.reasons)) {
      if (!deepEqual(expect.reasons, actual.reasons)) diffs.push({ field: 'reasons', expected: expect.reasons, actual: actual.reasons });
    } else {
      const missing = (expect.reasons.contains ?? []).filter((r) => !actual.reasons.includes(r));
      const present = (expect.reasons.excludes ?? []).filter((r) => actual.reasons.includes(r));
      if (missing.length > 0 || present.length > 0) {
        const notes = [...(missing.length ? [`missing ${missing.join(', ')}`] : []), ...(present.length ? [`unexpected ${present.join(', ')}`] : [])];
        diffs.push({ field: 'reasons', expected: expect.reasons, actual: actual.reasons, note: notes.join('; ') });
      }
    }
  }
  for (const [name, want] of Object.entries(expect.headers ?? {})) {
    const have = actual.headers[name.toLowerCase()];
    if (want === null ? have !== undefined : !deepEqual(want, have)) {
      diffs.push({ field: `headers.${name.toLowerCase()}`, expected: want, actual: have ?? null, ...(want === null ? { note: 'expected absent' } : {}) });
    }
  }
  if (expect.headers_removed !== undefined) {
    const missing = expect.headers_removed.filter((name) => !actual.headers_removed.includes(name.toLowerCase()));
    if (missing.length > 0) diffs.push({ field: 'headers_removed', expected: expect.headers_removed, actual: actual.headers_removed, note: `not removed: ${missing.join(', ')}` });
  }
  if (expect.route !== undefined) {
    const ok = expect.route === null ? actual.route === null : isSubset(expect.route, actual.route);
    if (!ok) diffs.push({ field: 'route', expected: expect.route, actual: actual.route });
  }
  if (expect.budgets !== undefined) diffs.push(...partialListDiff('budgets', expect.budgets, actual.budgets));
  if (expect.rate_limits !== undefined) diffs.push(...partialListDiff('rate_limits', expect.rate_limits, actual.rate_limits));
  if (expect.loop !== undefined) {
    const ok = expect.loop === null ? actual.loop === null : isSubset(expect.loop, actual.loop);
    if (!ok) diffs.push({ field: 'loop', expected: expect.loop, actual: actual.loop });
  }
  if (expect.body !== undefined) {
    if (typeof expect.body === 'string') {
      if (expect.body !== actual.body) diffs.push({ field: 'body', expected: expect.body, actual: actual.body });
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(actual.body);
      } catch {
        parsed = actual.body;
      }
      if (!isSubset(expect.body, parsed)) diffs.push({ field: 'body', expected: expect.body, actual: parsed });
    }
  }
  if (expect.error !== undefined && expect.error !== actual.error) diffs.push({ field: 'error', expected: expect.error, actual: actual.error });
  return diffs;
}
