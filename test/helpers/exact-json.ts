/**
 * Exact JSON for tests that compare with OPA: integers beyond 2^53 (nanosecond timestamps,
 * int64 bounds) travel as BigInt in both directions instead of being rounded to a double.
 */

/** A JSON value whose unsafe integers are BigInt. */
export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

const BIGINT_TAG = '$bigint';

/** JSON.stringify that writes BigInt values as bare integer literals (no rounding, no quotes). */
export function toJsonText(value: Json): string {
  const marker = '\u0000bigint:';
  const text = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? `${marker}${v.toString()}` : v));
  // JSON.stringify escapes the NUL of the marker, so it cannot collide with ordinary text.
  return text.replace(/"\\u0000bigint:(-?\d+)"/g, '$1');
}

function isBigintTag(value: unknown): value is { [BIGINT_TAG]: string } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 1 && typeof (value as Record<string, unknown>)[BIGINT_TAG] === 'string';
}

/** JSON.parse that keeps integers outside the safe range exact, as BigInt. */
export function parseJsonExact(text: string): Json {
  // Strings are matched first so digits inside them are left alone.
  const tagged = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (token) =>
    /^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token)) ? `{"${BIGINT_TAG}":"${token}"}` : token,
  );
  return JSON.parse(tagged, (_key, v: unknown) => (isBigintTag(v) ? BigInt(v[BIGINT_TAG]) : v)) as Json;
}

/** Raw JSON text as the ArrayBuffer opa-wasm loads verbatim (a JS object would be stringified lossily). */
export function rawJson(text: string): ArrayBuffer {
  const bytes = new TextEncoder().encode(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
