/**
 * Host builtins: the non-native OPA builtins Signalbox provides to policies compiled to WASM.
 *
 * opa-wasm calls these synchronously during evaluation with JSON-decoded arguments. Their
 * semantics follow OPA's topdown implementations (v1/topdown/time.go, tokens.go) and the Go
 * standard library functions those call. As in OPA with strict builtin errors off (the default,
 * and what opa-envoy-plugin runs), an error makes the call undefined rather than failing the whole
 * query; the error is recorded on the evaluation context for `signalbox eval`.
 *
 * Integers beyond 2^53 (nanosecond timestamps, JWT claims) are exact both ways: results that may
 * hold them are returned as raw JSON text, which opa-wasm loads verbatim, and an argument that
 * JSON.parse rounded is read again from its text, the integer as a BigInt (exact-arguments.ts).
 *
 * This file is the registry: each family of builtins lives in its own file (time-builtins.ts,
 * jwt-builtins.ts, encoding-builtins.ts) and is listed here, where every builtin gets the same
 * error handling and exact arguments.
 */
import { encodingBuiltins } from './encoding-builtins.js';
import { beginArgumentCapture, endArgumentCapture, exactArguments } from './exact-arguments.js';
import type { EvaluationContext, HostBuiltin } from './host-builtin.js';
import { jwtBuiltins } from './jwt-builtins.js';
import { SDK_BUILTINS } from './sdk-builtins.js';
import { timeBuiltins } from './time-builtins.js';

/**
 * Implementations keyed by OPA builtin name, closed over the evaluation context accessor. Each is
 * a getter, so opa-wasm's lookup, just before it parses the call's arguments, can start capturing
 * their exact text (exact-arguments.ts).
 */
export function createHostBuiltins(context: () => EvaluationContext): Record<string, HostBuiltin> {
  const table: Record<string, HostBuiltin> = { ...timeBuiltins(context), ...jwtBuiltins(context), ...encodingBuiltins() };
  const guarded: Record<string, HostBuiltin> = {};
  for (const [name, impl] of Object.entries(table)) {
    const call: HostBuiltin = (...args: unknown[]) => {
      const exact = exactArguments(args, endArgumentCapture());
      try {
        return impl(...exact);
      } catch (error) {
        // Undefined, as OPA's non-strict builtin errors; recorded so `eval` can explain it.
        context().builtinErrors.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      }
    };
    Object.defineProperty(guarded, name, {
      enumerable: true,
      get: () => {
        beginArgumentCapture(impl.length);
        return call;
      },
    });
  }
  return guarded;
}

/** Names of the builtins Signalbox itself provides to WASM policies. */
export const HOST_BUILTINS: readonly string[] = Object.freeze(
  Object.keys(createHostBuiltins(() => ({ nowNs: 0n, builtinErrors: [] }))).sort(),
);

/** Every non-native builtin the engine can satisfy: the SDK's JavaScript ones plus ours. */
export const ENGINE_PROVIDED_BUILTINS: readonly string[] = Object.freeze([...new Set([...SDK_BUILTINS, ...HOST_BUILTINS])].sort());
