/**
 * Host builtins: the non-native OPA builtins Signalbox provides to policies compiled to WASM.
 *
 * opa-wasm calls these synchronously during evaluation with JSON-decoded arguments. Their
 * semantics follow OPA's topdown implementations (v1/topdown/time.go, tokens.go) and the Go
 * standard library functions those call. As in OPA with strict builtin errors off (the default,
 * and what opa-envoy-plugin runs), an error makes the call undefined rather than failing the whole
 * query; the error is recorded on the evaluation context for `signalbox eval`.
 *
 * Results that may hold integers beyond 2^53 (nanosecond timestamps, JWT claims) are returned as
 * raw JSON text, which opa-wasm loads verbatim. Arguments cannot get the same treatment: opa-wasm
 * hands them over through JSON.parse, so an argument integer beyond 2^53 arrives rounded.
 *
 * This file is the registry: each family of builtins lives in its own file (time-builtins.ts,
 * jwt-builtins.ts) and is listed here, where every builtin gets the same error handling.
 */
import type { EvaluationContext, HostBuiltin } from './host-builtin.js';
import { jwtBuiltins } from './jwt-builtins.js';
import { SDK_BUILTINS } from './sdk-builtins.js';
import { timeBuiltins } from './time-builtins.js';

/** Implementations keyed by OPA builtin name, closed over the evaluation context accessor. */
export function createHostBuiltins(context: () => EvaluationContext): Record<string, HostBuiltin> {
  const table: Record<string, HostBuiltin> = { ...timeBuiltins(context), ...jwtBuiltins(context) };
  const guarded: Record<string, HostBuiltin> = {};
  for (const [name, impl] of Object.entries(table)) {
    guarded[name] = (...args: unknown[]) => {
      try {
        return impl(...args);
      } catch (error) {
        // Undefined, as OPA's non-strict builtin errors; recorded so `eval` can explain it.
        context().builtinErrors.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      }
    };
  }
  return guarded;
}

/** Names of the builtins Signalbox itself provides to WASM policies. */
export const HOST_BUILTINS: readonly string[] = Object.freeze(
  Object.keys(createHostBuiltins(() => ({ nowNs: 0n, builtinErrors: [] }))).sort(),
);

/** Every non-native builtin the engine can satisfy: the SDK's JavaScript ones plus ours. */
export const ENGINE_PROVIDED_BUILTINS: readonly string[] = Object.freeze([...new Set([...SDK_BUILTINS, ...HOST_BUILTINS])].sort());
