/**
 * OPA's own builtin conformance cases (v1/test/cases/testdata/v1/<folder>/*.yaml in the pinned
 * OPA module), compiled with Signalbox's build and evaluated with Signalbox's engine.
 *
 * A case is a query, Rego modules, optional data and input, and what OPA expects: a result set
 * (want_result), definedness (want_defined) or an error (want_error, want_error_code). OPA's
 * runner compiles every case on its own, with its query as the entrypoint; `opa build -t wasm`
 * takes only rule entrypoints and is slow, so here every case of a folder goes into ONE bundle:
 * each case's packages are moved under `conformance.c<N>` (refs to `data.` rewritten to match,
 * its data put at `data.conformance.c<N>`), and its query becomes the body of a comprehension in
 * an entrypoint rule `conformance.c<N>.results` that marshals the bindings (a string, so
 * integers beyond 2^53 come back exact).
 *
 * The WASM engine has no strict builtin errors: as in OPA's own WASM runner, a case whose error
 * only shows with strict builtin errors (strict_error: true) expects an empty result set, and the
 * error Signalbox recorded for `signalbox eval` must carry OPA's message.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { readBundle } from '../../src/bundles/bundle.js';
import { buildBundle } from '../../src/bundles/build.js';
import { pinnedOpaVersion } from '../../src/core/paths.js';
import { PolicyEngine } from '../../src/policy/engine.js';
import { parseJsonExact, rawJson, toJsonText, type Json } from './exact-json.js';

/** One test case as OPA's v1/test/cases/cases.go defines it (the fields these folders use). */
export interface OpaCase {
  readonly folder: string;
  readonly file: string;
  readonly note: string;
  readonly query: string;
  readonly modules: readonly string[];
  readonly data?: Json;
  readonly input?: Json;
  readonly inputTerm?: string;
  readonly wantDefined?: boolean;
  readonly wantResult?: readonly { [name: string]: Json }[];
  readonly wantErrorCode?: string;
  readonly wantError?: string;
  readonly strictError: boolean;
  readonly sortBindings: boolean;
  readonly env?: Record<string, string>;
}

/** What became of one case. */
export type CaseStatus = 'pass' | 'wrong' | 'unsupported';

/** The outcome of one case, with the reason when it did not pass. */
export interface CaseOutcome {
  readonly case: OpaCase;
  readonly status: CaseStatus;
  readonly detail?: string;
}

/** The folder holding the pinned OPA's v1 cases, in the Go module cache `scripts/install-opa.sh` fills. */
export function opaCasesDir(): string {
  const version = pinnedOpaVersion();
  const modCache = execFileSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
  const dir = join(modCache, 'github.com', 'open-policy-agent', `opa@v${version}`, 'v1', 'test', 'cases', 'testdata', 'v1');
  if (!existsSync(dir)) throw new Error(`OPA's conformance cases are missing (${dir}): run "bash scripts/install-opa.sh"`);
  return dir;
}

/** YAML integers as OPA reads them: exact, as a number when safe and a BigInt beyond 2^53. */
function exactIntegers(value: unknown): Json {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value;
  if (Array.isArray(value)) return value.map(exactIntegers);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, exactIntegers(v)]));
  }
  return value as Json;
}

interface RawCase {
  note: string;
  query: string;
  modules?: string[];
  data?: unknown;
  input?: unknown;
  input_term?: string;
  want_defined?: boolean;
  want_result?: unknown[];
  want_error_code?: string;
  want_error?: string;
  strict_error?: boolean;
  sort_bindings?: boolean;
  env?: Record<string, string>;
}

/** Every case of every folder, in file order. */
export function loadAllCases(dir: string = opaCasesDir()): OpaCase[] {
  const cases: OpaCase[] = [];
  for (const folder of readdirSync(dir).sort()) {
    for (const file of readdirSync(join(dir, folder)).filter((f) => /\.ya?ml$/.test(f)).sort()) {
      const doc = parseYaml(readFileSync(join(dir, folder, file), 'utf8'), { intAsBigInt: true }) as { cases?: RawCase[] };
      for (const raw of doc.cases ?? []) {
        cases.push({
          folder,
          file,
          note: raw.note,
          query: raw.query,
          modules: raw.modules ?? [],
          ...(raw.data !== undefined ? { data: exactIntegers(raw.data) } : {}),
          ...(raw.input !== undefined ? { input: exactIntegers(raw.input) } : {}),
          ...(raw.input_term !== undefined ? { inputTerm: raw.input_term } : {}),
          ...(raw.want_defined !== undefined ? { wantDefined: raw.want_defined } : {}),
          ...(raw.want_result !== undefined ? { wantResult: exactIntegers(raw.want_result) as { [name: string]: Json }[] } : {}),
          ...(raw.want_error_code !== undefined ? { wantErrorCode: raw.want_error_code } : {}),
          ...(raw.want_error !== undefined ? { wantError: raw.want_error } : {}),
          strictError: raw.strict_error ?? false,
          sortBindings: raw.sort_bindings ?? false,
          ...(raw.env !== undefined ? { env: raw.env } : {}),
        });
      }
    }
  }
  return cases;
}

/** Whether a case calls (or mocks, with `with`) any of the named builtins. */
export function callsAny(c: OpaCase, builtins: readonly string[]): boolean {
  const text = [c.query, ...c.modules].join('\n');
  return builtins.some((name) => new RegExp(`(?<![\\w.])${name.replace(/\./g, '\\.')}\\s*\\(|with\\s+${name.replace(/\./g, '\\.')}\\s+as`).test(text));
}

// ---------------------------------------------------------------------------------------------
// Turning cases into one bundle.
// ---------------------------------------------------------------------------------------------

const namespace = (index: number): string => `conformance.c${index}`;

/** Moves a module or query under the case's namespace: its package, and every `data.` ref. */
function relocate(text: string, index: number): string {
  return text
    .replace(/^(\s*package\s+)/m, `$1${namespace(index)}.`)
    .replace(/(?<![\w.$"])data\./g, `data.${namespace(index)}.`);
}

/** The variables a query binds, when it is one or more `<ref> = <var>` expressions (all these folders use). */
function queryBindings(query: string): string[] | undefined {
  const expressions = query.split(/[;\n]/).map((e) => e.trim()).filter(Boolean);
  const names: string[] = [];
  for (const expression of expressions) {
    const m = /^data\.[\w.]+\s*=\s*([A-Za-z_]\w*)$/.exec(expression);
    if (!m) return undefined;
    names.push(m[1] as string);
  }
  return names;
}

/** The entrypoint of one case: its query's bindings, marshalled. */
function entrypointModule(c: OpaCase, index: number, names: readonly string[]): string {
  const bindings = `{${names.map((n) => `${JSON.stringify(n)}: ${n}`).join(', ')}}`;
  const body = relocate(c.query, index).trim().split(/[;\n]/).map((e) => e.trim()).filter(Boolean).join('; ');
  return [`package ${namespace(index)}`, '', '# METADATA', '# entrypoint: true', `results := json.marshal([${bindings} | ${body}])`, ''].join('\n');
}

/** Sorted-key text of a value, integers written alike whether number or BigInt. */
function canonical(value: Json): string {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k] as Json)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A result set as OPA's runner compares it: a set of binding objects (arrays sorted with sort_bindings). */
function resultSetKey(bindings: readonly { [name: string]: Json }[], sortBindings: boolean): string {
  const items = bindings.map((b) =>
    canonical(Object.fromEntries(Object.entries(b).map(([k, v]) => [k, sortBindings && Array.isArray(v) ? [...v].sort((x, y) => canonical(x).localeCompare(canonical(y))) : v]))),
  );
  return JSON.stringify([...new Set(items)].sort());
}

/** Cases that cannot run outside OPA's own test runner, by note, with the reason. */
export type Exclusions = Readonly<Record<string, string>>;

interface Prepared {
  readonly index: number;
  readonly case: OpaCase;
  readonly names: readonly string[];
}

const COMPILE_ERROR_CODES = new Set(['rego_type_error', 'rego_compile_error', 'rego_parse_error', 'rego_unsafe_var_error', 'rego_recursion_error']);

/** Compiles every runnable case of one folder into one bundle; cases that fail to compile come back with the compiler's message. */
async function buildFolder(prepared: readonly Prepared[]): Promise<{ engines: Map<number, PolicyEngine>; compileErrors: Map<number, string> }> {
  const compileErrors = new Map<number, string>();
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-conformance-'));
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      const usable = prepared.filter((p) => !compileErrors.has(p.index));
      if (usable.length === 0) return { engines: new Map(), compileErrors };
      const src = join(dir, `src-${attempt}`);
      const data: Record<string, Json> = {};
      for (const p of usable) {
        const caseDir = join(src, `c${p.index}`);
        await mkdir(caseDir, { recursive: true });
        for (const [i, module] of p.case.modules.entries()) await writeFile(join(caseDir, `module-${i}.rego`), relocate(module, p.index));
        await writeFile(join(caseDir, 'query.rego'), entrypointModule(p.case, p.index, p.names));
        data[`c${p.index}`] = p.case.data ?? {};
      }
      await writeFile(join(src, 'data.json'), toJsonText({ conformance: data }));
      const out = join(dir, `bundle-${attempt}.tar.gz`);
      try {
        await buildBundle(src, out);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        const before = compileErrors.size;
        for (const line of message.split('\n')) {
          const m = /(?:^|[\s/])c(\d+)\/(?:module-\d+|query)\.rego:\d+/.exec(line);
          if (m && !compileErrors.has(Number(m[1]))) compileErrors.set(Number(m[1]), line.trim());
        }
        if (compileErrors.size === before) throw error;
        continue;
      }
      const bundle = await readBundle(out);
      const engines = new Map<number, PolicyEngine>();
      // One engine per entrypoint: the engine evaluates the entrypoint it was created for.
      for (const p of usable) engines.set(p.index, await PolicyEngine.create(bundle, { entrypoint: `${namespace(p.index).replace('.', '/')}/results` }));
      return { engines, compileErrors };
    }
    throw new Error('conformance build did not converge');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function judge(c: OpaCase, got: { bindings: { [name: string]: Json }[]; builtinErrors: readonly string[] } | { error: string }): CaseOutcome {
  if ('error' in got) {
    // A non-strict error (a conflict, say) aborts the evaluation, in OPA and in WASM alike.
    if ((c.wantError !== undefined || c.wantErrorCode !== undefined) && !c.strictError) return { case: c, status: 'pass' };
    return { case: c, status: 'wrong', detail: `evaluation failed: ${got.error}` };
  }
  const shown = toJsonText(got.bindings).slice(0, 400);
  if (c.wantResult !== undefined) {
    const pass = resultSetKey(got.bindings, c.sortBindings) === resultSetKey(c.wantResult, c.sortBindings);
    return pass ? { case: c, status: 'pass' } : { case: c, status: 'wrong', detail: `got ${shown}, want ${toJsonText([...c.wantResult]).slice(0, 400)}` };
  }
  if (c.wantDefined !== undefined) {
    return (got.bindings.length > 0) === c.wantDefined ? { case: c, status: 'pass' } : { case: c, status: 'wrong', detail: `got ${shown}, want ${c.wantDefined ? 'defined' : 'undefined'}` };
  }
  if (c.strictError) {
    // A strict builtin error is undefined without strict mode: no bindings, and OPA's message recorded.
    if (got.bindings.length > 0) return { case: c, status: 'wrong', detail: `got ${shown}, want undefined (OPA's strict error: ${c.wantError ?? c.wantErrorCode})` };
    if (c.wantError !== undefined && !got.builtinErrors.some((e) => e.includes(c.wantError as string))) {
      return { case: c, status: 'wrong', detail: `error text ${JSON.stringify(got.builtinErrors)} lacks OPA's ${JSON.stringify(c.wantError)}` };
    }
    return { case: c, status: 'pass' };
  }
  return { case: c, status: 'wrong', detail: `got ${shown}, want an error (${c.wantErrorCode ?? ''} ${c.wantError ?? ''})` };
}

/** Runs a folder's cases: builds one bundle, evaluates each case's entrypoint, judges each result. */
export async function runFolder(cases: readonly OpaCase[], exclusions: Exclusions, nowNs: bigint): Promise<CaseOutcome[]> {
  const outcomes = new Map<number, CaseOutcome>();
  const prepared: Prepared[] = [];
  cases.forEach((c, index) => {
    const excluded = exclusions[c.note];
    const names = queryBindings(c.query);
    if (excluded !== undefined) outcomes.set(index, { case: c, status: 'unsupported', detail: `excluded: ${excluded}` });
    else if (names === undefined) outcomes.set(index, { case: c, status: 'unsupported', detail: `query shape not handled: ${c.query}` });
    else if (c.inputTerm !== undefined || c.env !== undefined) outcomes.set(index, { case: c, status: 'unsupported', detail: 'input_term or env' });
    else prepared.push({ index, case: c, names });
  });
  const { engines, compileErrors } = await buildFolder(prepared);
  for (const [index, message] of compileErrors) {
    const c = cases[index] as OpaCase;
    if (/undefined function/.test(message)) outcomes.set(index, { case: c, status: 'unsupported', detail: message });
    else if (c.wantErrorCode !== undefined && COMPILE_ERROR_CODES.has(c.wantErrorCode)) outcomes.set(index, { case: c, status: 'pass' });
    else outcomes.set(index, { case: c, status: 'wrong', detail: `compile error: ${message}` });
  }
  for (const [index, engine] of engines) {
    const c = cases[index] as OpaCase;
    let got: Parameters<typeof judge>[1];
    try {
      const evaluation = engine.evaluate(c.input === undefined ? undefined : rawJson(toJsonText(c.input)), nowNs);
      got = { bindings: parseJsonExact(evaluation.result as string) as { [name: string]: Json }[], builtinErrors: evaluation.builtinErrors };
    } catch (error) {
      got = { error: error instanceof Error ? error.message : String(error) };
    }
    outcomes.set(index, judge(c, got));
  }
  return cases.map((_, index) => outcomes.get(index) as CaseOutcome);
}

/** The per-folder pass / wrong / unsupported table, as printed by the test and quoted in the README. */
export function conformanceTable(outcomes: readonly CaseOutcome[]): string {
  const folders = [...new Set(outcomes.map((o) => o.case.folder))].sort();
  const rows = folders.map((folder) => {
    const of = outcomes.filter((o) => o.case.folder === folder);
    const count = (status: CaseStatus): number => of.filter((o) => o.status === status).length;
    return [folder, String(count('pass')), String(count('wrong')), String(count('unsupported'))];
  });
  const total = ['total', ...(['pass', 'wrong', 'unsupported'] as const).map((s) => String(outcomes.filter((o) => o.status === s).length))];
  const table = [['folder', 'pass', 'wrong', 'unsupported'], ...rows, total];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => (r[i] as string).length)));
  const line = (r: string[]): string => `| ${r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' | ')} |`;
  return [line(table[0]!), `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 2)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...table.slice(1).map(line)].join('\n');
}
