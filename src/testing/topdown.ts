/**
 * OPA's own evaluator (topdown, through the pinned `opa` CLI) beside the WASM engine: the same
 * bundle's Rego sources and data, evaluated on the same inputs at the same frozen time, so a
 * policy that behaves differently in the two is reported instead of hidden. Also `opa test`
 * (unit tests and coverage) and `opa eval --explain` (the trace WASM cannot give).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignalboxError } from '../core/errors.js';
import type { PolicyBundle } from '../policy/compiled.js';
import { sourceRevision } from '../bundles/build.js';
import { runOpa } from '../bundles/opa-cli.js';

/**
 * Arguments that load a policy folder as `opa build` compiles it: the folder as a bundle (-b, so
 * only data.json/data.yaml are data), without the Rego tests. (The bundle's own Rego copies are
 * no use here: `opa build -t wasm` strips the entrypoint rules the WASM module serves.)
 */
export function sourceArgs(dir: string): string[] {
  return ['--ignore', '*_test.rego', '-b', dir];
}

/**
 * Why the sources in `dir` may not be what `bundle` was built from (its revision is derived
 * from them), or undefined when they match.
 */
export async function staleSources(dir: string, bundle: PolicyBundle): Promise<string | undefined> {
  const revision = await sourceRevision(dir);
  return revision === bundle.manifest.revision
    ? undefined
    : `${dir} (revision ${revision}) is not the source of ${bundle.source} (revision ${bundle.manifest.revision}); the trace is of the sources`;
}

/** `data["a"]["b"]` for the decision path "a/b". */
export function decisionRef(entrypoint: string): string {
  return `data${entrypoint
    .split('/')
    .map((segment) => `[${JSON.stringify(segment)}]`)
    .join('')}`;
}

/** One input to evaluate with OPA, at the frozen time the WASM engine used. */
export interface TopdownCase {
  readonly input: unknown;
  readonly nowNs: bigint;
}

/** Per case: the result (undefined when the rule is undefined), or the error OPA reported. */
export type TopdownResult = { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly error: string };

const HARNESS_PACKAGE = 'signalbox_topdown_harness';

function opaErrorText(stdout: string, stderr: string): string {
  try {
    const parsed = JSON.parse(stdout) as { errors?: { message?: string; code?: string }[] };
    if (parsed.errors?.length) return parsed.errors.map((e) => `${e.code ?? 'error'}: ${e.message ?? ''}`).join('; ');
  } catch {
    // not JSON: fall through to the raw text
  }
  return `${stdout}\n${stderr}`.trim().slice(0, 2000);
}

function casesDocument(cases: readonly TopdownCase[]): string {
  // ns timestamps exceed 2^53: written as JSON integers by hand, so OPA reads them exactly.
  return `{"cases":[${cases.map((c) => `{"now":${c.nowNs.toString()},"input":${JSON.stringify(c.input ?? null)}}`).join(',')}]}`;
}

async function evaluateBatch(sourcesDir: string, work: string, entrypoint: string, cases: readonly TopdownCase[]): Promise<{ results?: Map<number, unknown>; error?: string }> {
  const harness = join(work, 'harness.rego');
  await writeFile(
    harness,
    `package ${HARNESS_PACKAGE}\n\nresults := {i: r |\n\tsome i, c in input.cases\n\tr := ${decisionRef(entrypoint)} with input as c.input with time.now_ns as c.now\n}\n`,
  );
  const inputFile = join(work, 'cases.json');
  await writeFile(inputFile, casesDocument(cases));
  const run = await runOpa(['eval', '--format', 'json', ...sourceArgs(sourcesDir), '-d', harness, '-i', inputFile, `data.${HARNESS_PACKAGE}.results`]);
  if (run.exitCode !== 0) return { error: opaErrorText(run.stdout, run.stderr) };
  const parsed = JSON.parse(run.stdout) as { result?: { expressions: { value: Record<string, unknown> }[] }[] };
  const value = parsed.result?.[0]?.expressions[0]?.value ?? {};
  return { results: new Map(Object.entries(value).map(([k, v]) => [Number(k), v])) };
}

/**
 * Evaluates every case with OPA in one `opa eval` (one process per suite); when that fails (one
 * case makes OPA raise an error), each case alone, so the error lands on the case that caused it.
 */
export async function evaluateTopdown(sourcesDir: string, entrypoint: string, cases: readonly TopdownCase[]): Promise<TopdownResult[]> {
  if (cases.length === 0) return [];
  const work = await mkdtemp(join(tmpdir(), 'signalbox-topdown-'));
  try {
    const batch = await evaluateBatch(sourcesDir, work, entrypoint, cases);
    if (batch.results) {
      const results = batch.results;
      return cases.map((_, i) => ({ ok: true, result: results.get(i) }));
    }
    if (cases.length === 1) return [{ ok: false, error: batch.error ?? 'opa eval failed' }];
    const results: TopdownResult[] = [];
    for (const c of cases) {
      const single = await evaluateBatch(sourcesDir, work, entrypoint, [c]);
      results.push(single.results ? { ok: true, result: single.results.get(0) } : { ok: false, error: single.error ?? 'opa eval failed' });
    }
    return results;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** One Rego unit test's result as `opa test` reported it. */
export interface RegoTest {
  readonly package: string;
  readonly name: string;
  readonly file: string;
  readonly row: number;
  readonly outcome: 'passed' | 'failed' | 'error' | 'skipped';
  readonly durationMs: number;
  readonly message?: string;
}

/**
 * One folder's `opa test` run: the tests, the policy modules' line coverage, or the error that
 * kept the tests from running.
 */
export interface RegoTestRun {
  readonly dir: string;
  readonly tests: readonly RegoTest[];
  /** Line coverage of the policy modules (test files excluded), percent; undefined when not measured. */
  readonly coverage?: number;
  /** Set when OPA could not run the tests at all (a compile error). */
  readonly error?: string;
}

interface OpaTestResult {
  location?: { file?: string; row?: number };
  package?: string;
  name?: string;
  fail?: boolean;
  skip?: boolean;
  error?: { code?: string; message?: string } | string;
  duration?: number;
  output?: string;
}

/**
 * `opa test -b DIR` (per-test results) and `opa test --coverage -b DIR` (the percentage), as the
 * folder is built: Rego files and data.json/data.yaml only, tests beside them.
 */
export async function runRegoTests(dir: string, options: { coverage: boolean }): Promise<RegoTestRun> {
  const run = await runOpa(['test', '--format', 'json', '-b', dir]);
  let parsed: OpaTestResult[];
  try {
    parsed = JSON.parse(run.stdout) as OpaTestResult[];
    if (!Array.isArray(parsed)) throw new Error('not a list');
  } catch {
    return { dir, tests: [], error: opaErrorText(run.stdout, run.stderr) || `opa test exited with ${run.exitCode}` };
  }
  const tests = parsed.map((t): RegoTest => {
    const error = typeof t.error === 'string' ? t.error : t.error ? `${t.error.code ?? 'error'}: ${t.error.message ?? ''}` : undefined;
    const outcome = error ? 'error' : t.fail ? 'failed' : t.skip ? 'skipped' : 'passed';
    return {
      package: t.package ?? '',
      name: t.name ?? '',
      file: t.location?.file ?? '',
      row: t.location?.row ?? 0,
      outcome,
      durationMs: (t.duration ?? 0) / 1e6,
      ...(error ? { message: error } : t.fail && t.output ? { message: t.output } : {}),
    };
  });
  if (!options.coverage) return { dir, tests };
  const covered = await runOpa(['test', '--coverage', '--format', 'json', '-b', dir]);
  try {
    const report = JSON.parse(covered.stdout) as { coverage?: number; files?: Record<string, { coverage?: number; covered_lines?: number; not_covered_lines?: number }> };
    // OPA's total counts the test files too; count the policy modules only.
    let coveredLines = 0;
    let notCovered = 0;
    for (const [file, stats] of Object.entries(report.files ?? {})) {
      if (file.endsWith('_test.rego')) continue;
      coveredLines += stats.covered_lines ?? 0;
      notCovered += stats.not_covered_lines ?? 0;
    }
    const total = coveredLines + notCovered;
    const coverage = total > 0 ? Math.round((coveredLines / total) * 10_000) / 100 : report.coverage;
    return { dir, tests, ...(coverage !== undefined ? { coverage } : {}) };
  } catch {
    return { dir, tests };
  }
}

/**
 * How much of OPA's trace `signalbox eval --explain` shows: `rules` lists the rules that
 * succeeded; the others are `opa eval --explain` modes.
 */
export type ExplainMode = 'rules' | 'notes' | 'fails' | 'full';

/** The rules that succeeded, in evaluation order, from a pretty trace ("file:row" relative to `dir`). */
export function contributingRules(trace: string, dir = ''): { rule: string; location: string }[] {
  const seen = new Set<string>();
  const rules: { rule: string; location: string }[] = [];
  const prefix = dir ? `${dir.replace(/\/+$/, '')}/` : '';
  for (const line of trace.split('\n')) {
    const match = /^(\S+:\d+)\s+(?:\|\s)*Exit (data\..+?)(?: early)?\s*$/.exec(line);
    if (!match || match[1]!.startsWith('query:') || match[2]!.startsWith(`data.${HARNESS_PACKAGE}`)) continue;
    const location = prefix && match[1]!.startsWith(prefix) ? match[1]!.slice(prefix.length) : match[1]!;
    const key = `${location} ${match[2]}`;
    if (seen.has(key)) continue;
    seen.add(key);
    rules.push({ location, rule: match[2]! });
  }
  return rules;
}

/**
 * `opa eval --explain` of the decision on `input` at `nowNs`: the trace OPA prints (for
 * `rules`, the full trace reduced to the rules that succeeded).
 */
export async function explainTrace(sourcesDir: string, entrypoint: string, input: unknown, nowNs: bigint, mode: ExplainMode): Promise<{ trace: string; rules: { rule: string; location: string }[] }> {
  const work = await mkdtemp(join(tmpdir(), 'signalbox-explain-'));
  try {
    const inputFile = join(work, 'input.json');
    await writeFile(inputFile, JSON.stringify(input));
    const query = `${decisionRef(entrypoint)} with time.now_ns as ${nowNs.toString()}`;
    const run = await runOpa(['eval', '--format', 'pretty', '--explain', mode === 'rules' ? 'full' : mode, ...sourceArgs(sourcesDir), '-i', inputFile, query]);
    if (run.exitCode !== 0) throw new SignalboxError('policy_eval_failed', `opa eval --explain failed: ${opaErrorText(run.stdout, run.stderr)}`);
    const trace = run.stdout;
    return { trace: mode === 'rules' ? '' : trace, rules: contributingRules(trace, sourcesDir) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
