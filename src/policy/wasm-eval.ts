/**
 * One evaluation through the opa-wasm ABI 1.2 single call (`opa_eval`), with the JSON round trip
 * done once and natively: the input is serialised straight into the module's linear memory
 * (no intermediate byte array), and the result is found with a native search for its NUL
 * terminator and decoded with a shared decoder. `LoadedPolicy.evaluate` does the same call with
 * a fresh TextEncoder and TextDecoder and a byte-by-byte loop in JavaScript per evaluation; on
 * the hot path that was measurable. The module, its data and its heap layout stay opa-wasm's:
 * this reads the fields its `evaluate` reads, and falls back to it for older ABIs.
 */
import type { loadPolicy } from '@open-policy-agent/opa-wasm';
import { JsonText } from '../core/json-text.js';

type LoadedPolicy = Awaited<ReturnType<typeof loadPolicy>>;

/** The LoadedPolicy fields `evaluate` uses; opa-wasm's typings do not declare them. */
interface PolicyInternals {
  readonly minorVersion: number;
  readonly mem: WebAssembly.Memory;
  readonly dataAddr: number;
  readonly dataHeapPtr: number;
  readonly wasmInstance: { readonly exports: { opa_eval(reserved: number, entrypoint: number, data: number, input: number, inputLength: number, heap: number, format: number): number } };
}

const PAGE_BYTES = 64 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** True when `policy` exposes the single-call ABI this fast path drives (opa-wasm ABI ≥ 1.2). */
export function supportsFastEval(policy: LoadedPolicy): boolean {
  const internals = policy as unknown as Partial<PolicyInternals>;
  return (
    typeof internals.minorVersion === 'number' &&
    internals.minorVersion >= 2 &&
    internals.mem instanceof WebAssembly.Memory &&
    typeof internals.dataAddr === 'number' &&
    typeof internals.dataHeapPtr === 'number' &&
    typeof internals.wasmInstance?.exports.opa_eval === 'function'
  );
}

/** Writes `pieces` one after another as UTF-8 at `address`, growing the memory first; returns the bytes written. */
function writeText(memory: WebAssembly.Memory, address: number, pieces: readonly string[]): number {
  // UTF-8 takes at most 3 bytes per UTF-16 unit; grow first so the write cannot fall short.
  let room = 0;
  for (const piece of pieces) room += piece.length * 3;
  const missing = address + room - memory.buffer.byteLength;
  if (missing > 0) memory.grow(Math.ceil(missing / PAGE_BYTES));
  const bytes = new Uint8Array(memory.buffer);
  let written = 0;
  for (const piece of pieces) written += encoder.encodeInto(piece, bytes.subarray(address + written)).written;
  return written;
}

/**
 * Evaluates `entrypoint` (its numeric id) for `input` (a value, or its JSON text as an
 * ArrayBuffer or a {@link JsonText}) and returns the result set's JSON text as the module wrote
 * it (`LoadedPolicy.evaluate` returns it parsed). Only for a policy {@link supportsFastEval}
 * accepts.
 */
export function fastEvaluate(policy: LoadedPolicy, entrypoint: number, input: unknown): string {
  const internals = policy as unknown as PolicyInternals;
  const memory = internals.mem;
  const inputAddr = internals.dataHeapPtr;
  let inputLength = 0;
  if (input instanceof ArrayBuffer) {
    // Already JSON text, as opa-wasm accepts it (exact integers beyond 2^53, say).
    const missing = inputAddr + input.byteLength - memory.buffer.byteLength;
    if (missing > 0) memory.grow(Math.ceil(missing / PAGE_BYTES));
    new Uint8Array(memory.buffer).set(new Uint8Array(input), inputAddr);
    inputLength = input.byteLength;
  } else if (input instanceof JsonText) {
    inputLength = writeText(memory, inputAddr, input.pieces);
  } else if (input !== undefined && input !== null) {
    inputLength = writeText(memory, inputAddr, [JSON.stringify(input)]);
  }
  const resultAddr = internals.wasmInstance.exports.opa_eval(0, entrypoint, internals.dataAddr, inputAddr, inputLength, inputAddr + inputLength, 0);
  const bytes = new Uint8Array(memory.buffer);
  const end = bytes.indexOf(0, resultAddr);
  return decoder.decode(bytes.subarray(resultAddr, end < 0 ? bytes.length : end));
}
