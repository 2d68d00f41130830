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
