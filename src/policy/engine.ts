/**
 * The policy engine: one compiled bundle, evaluated with @open-policy-agent/opa-wasm.
 *
 * Evaluation is synchronous and single-threaded (opa-wasm resets its heap per call), so one
 * instance serves every request of the process. The engine never decides on its own: it returns
 * the raw result, and `interpretResult` (result.ts) turns it into a verdict or an error.
 */
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { SignalboxError, describeCause } from '../core/errors.js';
import { JsonText } from '../core/json-text.js';
import type { PolicyBundle } from './compiled.js';
import { createHostBuiltins } from './builtins.js';
import { limitViolation } from './result-schema.js';
import type { EvaluationContext } from './host-builtin.js';
import { fastEvaluate, supportsFastEval } from './wasm-eval.js';

/**
 * How {@link PolicyEngine.create} loads a bundle: which decision to evaluate, and how much memory
 * the policy may use.
 */
export interface EngineOptions {
  /** The decision path, as in OPA's manifest: "signalbox/authz/decision". */
  readonly entrypoint: string;
  /** Upper bound on WASM linear memory, in MiB; a policy that needs more fails (and denies). */
  readonly maxMemoryMiB?: number;
}

/** The raw outcome of one evaluation, before `interpretResult` (result.ts) checks its shape. */
export interface Evaluation {
  /** False when the decision rule is undefined for this input. */
  readonly defined: boolean;
  readonly result: unknown;
  /** The result's JSON text as the module wrote it, when the evaluation took the fast path (the audit record reuses it). */
  readonly resultJson?: JsonText | undefined;
  /** Wall time spent inside the WASM evaluation, in nanoseconds. */
  readonly evalNs: number;
  /** Errors host builtins swallowed (they made a call undefined, as OPA's non-strict mode). */
  readonly builtinErrors: readonly string[];
}

type LoadedPolicy = Awaited<ReturnType<typeof loadPolicy>>;

const PAGE_BYTES = 64 * 1024;

/**
 * One loaded policy bundle, ready to evaluate; a reload builds a new engine and swaps it in rather
 * than changing this one.
 */
export class PolicyEngine {
  private current: EvaluationContext = { nowNs: 0n, builtinErrors: [] };
  /** The entrypoint's id, when the module takes the single-call fast path (wasm-eval.ts). */
  private readonly fastEntrypoint: number | undefined;

  private constructor(
    private readonly policy: LoadedPolicy,
    readonly bundle: PolicyBundle,
    readonly entrypoint: string,
  ) {
    const id = (policy.entrypoints as Record<string, number>)[entrypoint];
    this.fastEntrypoint = supportsFastEval(policy) && typeof id === 'number' ? id : undefined;
  }

  /** The revision of the bundle this engine evaluates (from its .manifest). */
  get revision(): string {
    return this.bundle.manifest.revision;
  }

  /**
   * Instantiates the bundle's WASM module, loads its data, checks the entrypoint and runs one
   * smoke evaluation so that a broken bundle fails at start-up (or reload), not on a request.
   */
  static async create(bundle: PolicyBundle, options: EngineOptions): Promise<PolicyEngine> {
    const declared = bundle.manifest.wasm.map((w) => w.entrypoint);
    if (!declared.includes(options.entrypoint)) {
      throw new SignalboxError(
        'bundle_entrypoint_missing',
        `bundle ${bundle.source} has no entrypoint "${options.entrypoint}" (it has: ${declared.join(', ') || 'none'})`,
        { details: { entrypoint: options.entrypoint, declared } },
      );
    }
    const maximumPages = Math.ceil(((options.maxMemoryMiB ?? 512) * 1024 * 1024) / PAGE_BYTES);
    let engine: PolicyEngine | undefined;
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm, { initial: 16, maximum: maximumPages }, createHostBuiltins(() => engine!.current));
      policy.setData(bundle.data as object);
    } catch (error) {
      throw new SignalboxError('bundle_invalid', `bundle ${bundle.source}: cannot load policy.wasm: ${describeCause(error)}`, { cause: error });
    }
    if (!Object.prototype.hasOwnProperty.call(policy.entrypoints, options.entrypoint)) {
      throw new SignalboxError('bundle_entrypoint_missing', `policy.wasm in ${bundle.source} does not export entrypoint "${options.entrypoint}"`);
    }
    engine = new PolicyEngine(policy, bundle, options.entrypoint);
    let smoke: Evaluation;
    try {
      smoke = engine.evaluate({}, BigInt(Date.now()) * 1_000_000n);
    } catch (error) {
      throw new SignalboxError('bundle_invalid', `bundle ${bundle.source}: smoke evaluation failed: ${describeCause(error)}`, { cause: error });
    }
    // A limit beyond what the store counts exactly would fail every request it applies to: when
    // the smoke evaluation already shows one, refuse the bundle now, naming it. (Other faults of
    // the result are left to the request, where the input may make it valid.)
    const beyond = smoke.defined ? limitViolation(smoke.result) : undefined;
    if (beyond) throw new SignalboxError('bundle_invalid', `bundle ${bundle.source}: the decision for an empty input names a limit out of range: ${beyond}`);
    return engine;
  }

  /**
   * Evaluates the decision rule for `input`, with `time.now_ns()` fixed at `nowNs` for the whole
   * query. Throws `policy_eval_failed` when evaluation traps (conflicts, memory, host errors).
   */
  evaluate(input: unknown, nowNs: bigint): Evaluation {
    return this.evaluateRule(this.entrypoint, this.fastEntrypoint, input, nowNs);
  }

  /** True when the bundle declares `entrypoint` (the response rule is optional in a bundle). */
  hasEntrypoint(entrypoint: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.policy.entrypoints, entrypoint);
  }

  /**
   * Evaluates another entrypoint of the same bundle (the response rule) as {@link evaluate} does.
   * Throws `bundle_entrypoint_missing` when the bundle does not declare it.
   */
  evaluateEntrypoint(entrypoint: string, input: unknown, nowNs: bigint): Evaluation {
    if (entrypoint === this.entrypoint) return this.evaluate(input, nowNs);
    if (!this.hasEntrypoint(entrypoint)) throw new SignalboxError('bundle_entrypoint_missing', `the bundle has no entrypoint "${entrypoint}"`);
    const id = (this.policy.entrypoints as Record<string, number>)[entrypoint];
    return this.evaluateRule(entrypoint, this.fastEntrypoint !== undefined && typeof id === 'number' ? id : undefined, input, nowNs);
  }

  private evaluateRule(entrypoint: string, fastId: number | undefined, input: unknown, nowNs: bigint): Evaluation {
    this.current = { nowNs, builtinErrors: [] };
    const started = process.hrtime.bigint();
    let resultSet: unknown;
    let resultSetText: string | undefined;
    try {
      if (fastId !== undefined) {
        resultSetText = fastEvaluate(this.policy, fastId, input);
        resultSet = JSON.parse(resultSetText);
      } else {
        resultSet = this.policy.evaluate(input, entrypoint);
      }
    } catch (error) {
      throw new SignalboxError('policy_eval_failed', `policy evaluation failed: ${describeCause(error)}`, { cause: error });
    }
    const evalNs = Number(process.hrtime.bigint() - started);
    const builtinErrors = this.current.builtinErrors;
    if (!Array.isArray(resultSet)) {
      throw new SignalboxError('policy_eval_failed', 'policy evaluation returned no result set');
    }
    if (resultSet.length === 0) return { defined: false, result: undefined, evalNs, builtinErrors };
    if (resultSet.length > 1) {
      throw new SignalboxError('policy_eval_failed', `policy evaluation returned ${resultSet.length} results; a decision rule must be complete`);
    }
    const first = resultSet[0] as { result?: unknown };
    const resultJson = resultSetText === undefined ? undefined : resultText(resultSetText, first);
    return { defined: first.result !== undefined, result: first.result, ...(resultJson ? { resultJson } : {}), evalNs, builtinErrors };
  }
}

/** What the module writes around a one-result set: `[{"result":` … `}]`. */
const RESULT_SET_OPENING = '[{"result":';

/**
 * The text of the result inside a result set's text, when the set is written compactly with
 * `result` as the only member of its one element (as opa-wasm writes it); else undefined.
 */
function resultText(setText: string, first: object): JsonText | undefined {
  if (!setText.startsWith(RESULT_SET_OPENING) || !setText.endsWith('}]') || Object.keys(first).length !== 1) return undefined;
  return new JsonText(setText.slice(RESULT_SET_OPENING.length, -2));
}
