/**
 * `signalbox test`: Rego unit tests (`opa test`, with coverage) and decision tables, run against
 * the compiled WASM bundle through the service's pipeline, with every case also evaluated by OPA
 * (topdown) so the two engines are compared. Produces one report (report.ts formats it).
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../config/load.js';
import type { SignalboxConfig } from '../config/schema.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { DecisionTrace } from '../decide/decide.js';
import type { ShortRequest } from './short-request.js';
import { Simulation, parseRfc3339Ns } from './simulate.js';
import { buildBundle } from '../bundles/build.js';
import { readBundle } from '../bundles/bundle.js';
import type { PolicyEngine } from '../policy/engine.js';
import { interpretResult } from '../policy/result.js';
import { actualDecision, compareExpectation, compareResults, failedDecision, type ActualDecision, type FieldDiff } from './expect.js';
import { loadSuite, TABLE_FILE, type LoadedSuite, type TableCase } from './suite.js';
import { evaluateTopdown, runRegoTests, staleSources, type RegoTestRun, type TopdownResult } from './topdown.js';
import { isJsonObject } from '../core/json-object.js';

/** How a case ended; `engine_mismatch` is a case that met its expectations but whose WASM and OPA results differ. */
export type CaseKind = 'passed' | 'failed' | 'error' | 'skipped' | 'engine_mismatch';

/** One decision-table case's result, with what the report needs to show why it failed. */
export interface CaseOutcome {
  readonly name: string;
  readonly kind: CaseKind;
  readonly durationMs: number;
  /** Expectations not met (kind failed). */
  readonly diffs: readonly FieldDiff[];
  /** Why the case errored or was skipped. */
  readonly message?: string;
  readonly code?: string;
  readonly actual?: ActualDecision;
  /** WASM and topdown disagreed: both raw results (or OPA's error). */
  readonly mismatch?: { readonly wasm: unknown; readonly topdown: unknown };
  /**
   * Where WASM and topdown agree but for order (arrays built from sets, keys in json.marshal
   * text): reported, and a mismatch only with `strictOrder`.
   */
  readonly orderOnly?: readonly string[];
}

/** The results of one decision-table file. */
export interface SuiteReport {
  /** The table file, relative to the working directory. */
  readonly file: string;
  readonly name: string;
  readonly now: string;
  readonly durationMs: number;
  readonly cases: readonly CaseOutcome[];
}

/** One policy folder's `opa test` run, with the coverage threshold it was held to. */
export interface RegoReport extends RegoTestRun {
  readonly threshold?: number;
}

/** Case tallies for a report's summary line; kept apart for tables and Rego tests. */
export interface TestCounts {
  passed: number;
  failed: number;
  errors: number;
  skipped: number;
  mismatches: number;
}

/** The whole result of `signalbox test`; `ok` is what the exit code follows. */
export interface TestReport {
  readonly suites: readonly SuiteReport[];
  readonly rego: readonly RegoReport[];
  readonly counts: TestCounts;
  readonly regoCounts: TestCounts;
  /** Things the run could not do (a comparison skipped), said once. */
  readonly notes: readonly string[];
  readonly ok: boolean;
  readonly durationMs: number;
}

/** What `signalbox test` runs: the paths and bundle, which checks to make, and what makes the run fail. */
export interface TestOptions {
  /** Policy folders (their `*_test.yaml` tables and Rego tests) or table files. */
  readonly paths: readonly string[];
  /** A prebuilt bundle to test instead of compiling each folder. */
  readonly bundle?: string;
  /** The base config file (identity claim mapping, prices, content...); suites merge their `config` over it. */
  readonly configFile?: string;
  /** The decision path, overriding the config's. */
  readonly decision?: string;
  /** Run `opa test` on each folder (default true). */
  readonly rego?: boolean;
  /** Evaluate every case with OPA too and report differences (default true). */
  readonly compare?: boolean;
  /** Treat results that differ only in array or JSON-key order as engine mismatches. */
  readonly strictOrder?: boolean;
  /** Minimum Rego line coverage, percent; below it the run fails. */
  readonly coverageThreshold?: number;
  /** Only cases whose "suite/case" name matches. */
  readonly filter?: RegExp;
  readonly logger: Logger;
}

interface Target {
  /** The policy folder the tables test (compiled unless a bundle is given). */
  readonly policyDir: string | undefined;
  readonly tables: string[];
}

async function findTables(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && TABLE_FILE.test(e.name) && !join(e.parentPath, e.name).split(/[\\/]/).includes('node_modules'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

async function holdsRego(dir: string): Promise<boolean> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries.some((name) => name.endsWith('.rego') && !name.endsWith('_test.rego'));
}

async function targets(paths: readonly string[]): Promise<Target[]> {
  const byDir = new Map<string, Target>();
  const add = (policyDir: string | undefined, tables: string[]): void => {
    const key = policyDir ?? '';
    const existing = byDir.get(key);
    if (existing) existing.tables.push(...tables.filter((t) => !existing.tables.includes(t)));
    else byDir.set(key, { policyDir, tables: [...tables] });
  };
  for (const path of paths) {
    const full = resolve(path);
    const info = await stat(full).catch(() => undefined);
    if (!info) throw new SignalboxError('test_suite_invalid', `${path}: no such file or folder`);
    if (info.isDirectory()) add(full, await findTables(full));
    else add((await holdsRego(dirname(full))) ? dirname(full) : undefined, [full]);
  }
  return [...byDir.values()];
}

function display(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = isJsonObject(value) && isJsonObject(out[key]) ? merge(out[key] as Record<string, unknown>, value) : value;
  return out;
}

/** The base config (file or defaults) with a suite's `config` merged over it; validated like the service's. */
export async function suiteConfig(configFile: string | undefined, overrides: Record<string, unknown> | undefined, source: string): Promise<SignalboxConfig> {
  let base: Record<string, unknown> = {};
  if (configFile) {
    let text: string;
    try {
      text = await readFile(configFile, 'utf8');
    } catch (error) {
      throw new SignalboxError('config_invalid', `cannot read config file ${configFile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
    }
    const parsed: unknown = parseYaml(text);
    base = isJsonObject(parsed) ? parsed : {};
  }
  const merged = overrides ? merge(base, overrides) : base;
  return parseConfig(JSON.stringify(merged), process.env, source);
}

/** The decision for a full input: the engine alone, failing closed exactly as the pipeline does. */
function evaluateInput(engine: PolicyEngine, input: unknown, nowNs: bigint): { actual: ActualDecision; result: unknown; error?: { code: string; message: string } } {
  let result: unknown = null;
  try {
    const evaluation = engine.evaluate(input, nowNs);
    result = evaluation.result ?? null;
    const verdict = interpretResult(evaluation);
    return { actual: actualDecision({ ...verdict, decisionId: '', revision: engine.revision }, result), result };
  } catch (caught) {
    const error = caught instanceof SignalboxError ? caught : new SignalboxError('internal_error', describeCause(caught));
    return { actual: failedDecision(error.code), result, error: { code: error.code, message: error.message } };
  }
}

/** Errors that mean the policy (not the request) is broken: an error outcome unless the case expects them. */
const POLICY_ERRORS = new Set(['policy_eval_failed', 'policy_result_invalid', 'internal_error']);

interface Comparable {
  readonly outcome: number;
  readonly input: unknown;
  readonly nowNs: bigint;
  readonly wasm: { ok: true; result: unknown } | { ok: false; error: string };
}

function withMismatch(outcome: CaseOutcome, wasm: Comparable['wasm'], topdown: TopdownResult, strictOrder: boolean): CaseOutcome {
  let orderOnly: string[] | undefined;
  if (wasm.ok && topdown.ok) {
    const compared = compareResults(wasm.result ?? null, topdown.result ?? null);
    if (compared.kind === 'equal') return outcome;
    if (compared.kind === 'order') {
      if (!strictOrder) return { ...outcome, orderOnly: compared.paths };
      orderOnly = compared.paths;
    }
  } else if (!wasm.ok && !topdown.ok) {
    return outcome;
  }
  const mismatch = {
    wasm: wasm.ok ? (wasm.result ?? null) : { error: wasm.error },
    topdown: topdown.ok ? (topdown.result ?? null) : { error: topdown.error },
  };
  return {
    ...outcome,
    kind: outcome.kind === 'passed' ? 'engine_mismatch' : outcome.kind,
    mismatch,
    ...(orderOnly ? { orderOnly } : {}),
    ...(outcome.kind === 'passed' ? { code: 'policy_engine_mismatch' } : {}),
  };
}

async function runCase(sim: Simulation, loaded: LoadedSuite, c: TableCase): Promise<{ outcome: CaseOutcome; comparable?: Omit<Comparable, 'outcome'> }> {
  const started = performance.now();
  const nowNs = parseRfc3339Ns(c.now ?? loaded.suite.now);
  sim.setNow(nowNs);
  const elapsed = (): number => performance.now() - started;
  let actual: ActualDecision;
  let comparable: Omit<Comparable, 'outcome'> | undefined;
  let errorMessage: string | undefined;
  if (c.input !== undefined) {
    const evaluated = evaluateInput(sim.engine, c.input, nowNs);
    actual = evaluated.actual;
    errorMessage = evaluated.error?.message;
    comparable = { input: c.input, nowNs, wasm: evaluated.error?.code === 'policy_eval_failed' ? { ok: false, error: evaluated.error.message } : { ok: true, result: evaluated.result } };
  } else {
    let trace: DecisionTrace;
    try {
      trace = await sim.decide(c.request as ShortRequest);
    } catch (error) {
      const code = error instanceof SignalboxError ? error.code : 'internal_error';
      return { outcome: { name: c.name, kind: 'error', durationMs: elapsed(), diffs: [], code, message: describeCause(error) } };
    }
    actual = actualDecision(trace.decision, trace.result);
    const error = trace.decision.error;
    if (error && POLICY_ERRORS.has(error)) errorMessage = evaluateInput(sim.engine, trace.input, nowNs).error?.message ?? error;
    const evaluated = trace.result !== null || error === 'policy_eval_failed' || error === 'policy_result_invalid';
    if (evaluated) {
      comparable = { input: trace.input, nowNs, wasm: error === 'policy_eval_failed' ? { ok: false, error: errorMessage ?? error } : { ok: true, result: trace.result } };
    }
  }
  const diffs = compareExpectation(c.expect, actual);
  if (actual.error && POLICY_ERRORS.has(actual.error) && c.expect.error === undefined) {
    return { outcome: { name: c.name, kind: 'error', durationMs: elapsed(), diffs, code: actual.error, message: errorMessage ?? actual.error, actual }, ...(comparable ? { comparable } : {}) };
  }
  return { outcome: { name: c.name, kind: diffs.length > 0 ? 'failed' : 'passed', durationMs: elapsed(), diffs, actual }, ...(comparable ? { comparable } : {}) };
}

function suiteError(file: string, name: string, error: unknown): SuiteReport {
  const code = error instanceof SignalboxError ? error.code : 'internal_error';
  return { file: display(file), name, now: '', durationMs: 0, cases: [{ name: '(suite)', kind: 'error', durationMs: 0, diffs: [], code, message: error instanceof Error ? error.message : String(error) }] };
}

async function runSuite(file: string, bundlePath: string, entrypoints: readonly string[], sourcesDir: string | undefined, options: TestOptions, builtHere: boolean): Promise<SuiteReport> {
  const started = performance.now();
  let loaded: LoadedSuite;
  try {
    loaded = await loadSuite(file);
  } catch (error) {
    return suiteError(file, display(file), error);
  }
  const suite = loaded.suite;
  const selected = loaded.cases.filter((c) => !options.filter || options.filter.test(`${suite.suite}/${c.ok ? c.case.name : c.name}`));
  if (selected.length === 0) return { file: display(file), name: suite.suite, now: suite.now, durationMs: 0, cases: [] };
  let sim: Simulation;
  let decision: string;
  try {
    const config = await suiteConfig(options.configFile, suite.config, `${display(file)}: config`);
    // A bundle with one entrypoint needs no decision path, unless the config's is in it.
    const only = entrypoints.length === 1 && !entrypoints.includes(config.policy.decision) ? entrypoints[0] : undefined;
    decision = options.decision ?? suite.decision ?? only ?? config.policy.decision;
    const policy = { ...config.policy, bundle: bundlePath, decision, ...(builtHere ? { verification: undefined } : {}) };
    sim = await Simulation.create({ ...config, policy }, options.logger, {
      nowNs: parseRfc3339Ns(suite.now),
      users: suite.users,
      dns: suite.dns,
      credentials: suite.credentials,
    });
  } catch (error) {
    return suiteError(file, suite.suite, error);
  }
  const outcomes: CaseOutcome[] = [];
  const comparables: Comparable[] = [];
  try {
    for (const loadedCase of selected) {
      if (!loadedCase.ok) {
        outcomes.push({ name: loadedCase.name, kind: 'error', durationMs: 0, diffs: [], code: 'test_suite_invalid', message: `${display(file)}: ${loadedCase.message}` });
        continue;
      }
      const c = loadedCase.case;
      if (c.skip) {
        outcomes.push({ name: c.name, kind: 'skipped', durationMs: 0, diffs: [], ...(typeof c.skip === 'string' ? { message: c.skip } : {}) });
        continue;
      }
      const { outcome, comparable } = await runCase(sim, loaded, c);
      if (comparable) comparables.push({ ...comparable, outcome: outcomes.length });
      outcomes.push(outcome);
    }
  } finally {
    await sim.close();
  }
  if (options.compare !== false && sourcesDir && comparables.length > 0) {
    try {
      const topdown = await evaluateTopdown(
        sourcesDir,
        decision,
        comparables.map((c) => ({ input: c.input, nowNs: c.nowNs })),
      );
      comparables.forEach((c, i) => {
        outcomes[c.outcome] = withMismatch(outcomes[c.outcome] as CaseOutcome, c.wasm, topdown[i] as TopdownResult, options.strictOrder ?? false);
      });
    } catch (error) {
      outcomes.push({ name: '(topdown comparison)', kind: 'error', durationMs: 0, diffs: [], code: 'policy_build_failed', message: describeCause(error) });
    }
  }
  return { file: display(file), name: suite.suite, now: suite.now, durationMs: performance.now() - started, cases: outcomes };
}

function count(outcomes: readonly { kind: string }[]): TestCounts {
  const counts: TestCounts = { passed: 0, failed: 0, errors: 0, skipped: 0, mismatches: 0 };
  for (const o of outcomes) {
    if (o.kind === 'passed') counts.passed++;
    else if (o.kind === 'failed') counts.failed++;
    else if (o.kind === 'error') counts.errors++;
    else if (o.kind === 'skipped') counts.skipped++;
    else if (o.kind === 'engine_mismatch') counts.mismatches++;
  }
  return counts;
}

/** Runs everything the options name; never throws for a failing or malformed test, only reports it. */
export async function runPolicyTests(options: TestOptions): Promise<TestReport> {
  const started = performance.now();
  const suites: SuiteReport[] = [];
  const rego: RegoReport[] = [];
  const notes: string[] = [];
  for (const target of await targets(options.paths)) {
    if (target.policyDir && options.rego !== false) {
      const run = await runRegoTests(target.policyDir, { coverage: true }).catch((error: unknown): RegoTestRun => ({ dir: target.policyDir as string, tests: [], error: describeCause(error) }));
      rego.push({ ...run, dir: display(run.dir), tests: run.tests.map((t) => ({ ...t, file: display(t.file) })), ...(options.coverageThreshold !== undefined ? { threshold: options.coverageThreshold } : {}) });
    }
    if (target.tables.length === 0) continue;
    const work = await mkdtemp(join(tmpdir(), 'signalbox-test-'));
    try {
      let bundlePath: string;
      let entrypoints: string[] = [];
      let sourcesDir = options.compare === false ? undefined : target.policyDir;
      try {
        if (options.bundle) bundlePath = resolve(options.bundle);
        else if (target.policyDir) bundlePath = (await buildBundle(target.policyDir, join(work, 'bundle.tar.gz'))).output;
        else throw new SignalboxError('test_suite_invalid', `${display(target.tables[0] as string)}: no policy beside it; give the policy folder or --bundle FILE`);
        const bundle = await readBundle(bundlePath);
        entrypoints = bundle.manifest.wasm.map((w) => w.entrypoint);
        if (options.bundle && target.policyDir && options.compare !== false) {
          const stale = await staleSources(target.policyDir, bundle);
          if (stale) {
            notes.push(`no topdown comparison: ${stale}`);
            sourcesDir = undefined;
          }
        }
      } catch (error) {
        for (const file of target.tables) suites.push(suiteError(file, display(file), error));
        continue;
      }
      for (const file of target.tables) suites.push(await runSuite(file, bundlePath, entrypoints, sourcesDir, options, !options.bundle));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  const counts = count(suites.flatMap((s) => s.cases));
  const regoCounts = count(rego.flatMap((r) => r.tests.map((t) => ({ kind: t.outcome }))));
  regoCounts.errors += rego.filter((r) => r.error).length;
  const coverageOk = rego.every((r) => r.threshold === undefined || (r.coverage ?? 0) >= r.threshold);
  const ok =
    counts.failed + counts.errors + counts.mismatches === 0 && regoCounts.failed + regoCounts.errors === 0 && coverageOk && (suites.length > 0 || rego.length > 0);
  return { suites, rego, counts, regoCounts, notes, ok, durationMs: performance.now() - started };
}
