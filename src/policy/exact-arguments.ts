/**
 * Exact integer arguments for host builtins.
 *
 * opa-wasm calls a host builtin in three steps (its _builtinCall): it looks the implementation up
 * in our table, dumps each argument from WASM memory as JSON text and `JSON.parse`s it, then calls
 * the implementation. JSON.parse rounds every integer beyond 2^53 to a double, so a nanosecond
 * timestamp arrives off by up to 128 ns (512 ns near the int64 limits). The text itself is exact,
 * as OPA's WASM writes numbers verbatim, which is also why raw-text results (host-builtin.ts
 * rawJson) come back exact.
 *
 * So the table hands out each implementation through a getter: the lookup, which opa-wasm makes
 * just before dumping that call's arguments, starts a capture that wraps JSON.parse for exactly as
 * many parses as the builtin has parameters, keeping their texts; the call then reads them back,
 * and re-parses exactly the arguments whose value JSON.parse rounded. Everything runs
 * synchronously inside one builtin call, the wrapper returns exactly what JSON.parse returns, and
 * it removes itself after those parses (or at the call, whichever comes first), so no other
 * caller of JSON.parse is affected.
 */
import { JsonNumber, parseGoJson, type JsonValue } from '../core/go-json.js';

const nativeParse = JSON.parse;

/** The texts of the arguments of the call being dumped, in order. */
let captured: string[] = [];
let remaining = 0;

function capturingParse(this: unknown, text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown): unknown {
  captured.push(text);
  if (--remaining <= 0) JSON.parse = nativeParse;
  return nativeParse.call(JSON, text, reviver) as unknown;
}

/** Starts capturing the argument texts of the next call of a builtin with `arity` parameters. */
export function beginArgumentCapture(arity: number): void {
  captured = [];
  remaining = arity;
  JSON.parse = arity > 0 ? capturingParse : nativeParse;
}

/** Ends the capture and returns the texts it recorded (fewer than the arity if opa-wasm parsed none). */
export function endArgumentCapture(): readonly string[] {
  JSON.parse = nativeParse;
  remaining = 0;
  const texts = captured;
  captured = [];
  return texts;
}

/** Whether JSON.parse may have rounded a value: it holds an integral number beyond 2^53. */
function mayBeRounded(value: unknown): boolean {
  if (typeof value === 'number') return Number.isInteger(value) && !Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.some(mayBeRounded);
  if (value !== null && typeof value === 'object') return Object.values(value).some(mayBeRounded);
  return false;
}

/** A parsed value with integer literals beyond 2^53 as BigInt and every other number as JSON.parse reads it. */
function toExactValue(value: JsonValue): unknown {
  if (value instanceof JsonNumber) {
    const n = Number(value.text);
    return /^-?\d+$/.test(value.text) && !Number.isSafeInteger(n) ? BigInt(value.text) : n;
  }
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, toExactValue(v)]));
  if (Array.isArray(value)) return value.map(toExactValue);
  return value;
}

/**
 * The arguments as the builtin should see them: unchanged, except that an argument holding an
 * integer JSON.parse rounded is read again from its text, with that integer as an exact BigInt.
 */
export function exactArguments(args: readonly unknown[], texts: readonly string[]): unknown[] {
  return args.map((arg, i) => {
    const text = texts[i];
    if (text === undefined || !mayBeRounded(arg)) return arg;
    return toExactValue(parseGoJson(text));
  });
}
