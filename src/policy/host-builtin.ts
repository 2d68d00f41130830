/**
 * What every family of host builtins shares: the per-evaluation context they read, the shape of
 * a builtin as opa-wasm calls it, the error that makes a call undefined, and raw JSON results.
 */

/** Per-evaluation state the builtins read: OPA fixes `time.now_ns()` for one whole query. */
export interface EvaluationContext {
  readonly nowNs: bigint;
  readonly builtinErrors: string[];
}

/** A host builtin as opa-wasm calls it: synchronously, with JSON-decoded arguments. */
export type HostBuiltin = (...args: unknown[]) => unknown;

/** An error of a host builtin: the call is undefined and the message recorded for `signalbox eval`. */
export class BuiltinError extends Error {}

/** Raw JSON text as the ArrayBuffer opa-wasm loads verbatim (a JS value would go through JSON.stringify). */
export function rawJson(text: string): ArrayBuffer {
  const bytes = new TextEncoder().encode(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** OPA's name of a JSON value's type, as its operand errors print it. */
export function opaTypeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'bigint') return 'number';
  return typeof value === 'object' ? 'object' : typeof value;
}

/** OPA's operand type error: "operand 1 must be string but got number". */
export function operandTypeError(position: number, value: unknown, expected: string): BuiltinError {
  return new BuiltinError(`operand ${position} must be ${expected} but got ${opaTypeName(value)}`);
}
