/**
 * The test report as text (for people: file → case → expected vs actual), JSON (for tools) and
 * JUnit XML (for CI dashboards).
 */
import type { FieldDiff } from './expect.js';
import type { CaseOutcome, RegoReport, TestCounts, TestReport } from './runner.js';

/** The `signalbox test --format` choices: text for people, JSON for tools, JUnit XML for CI. */
export type ReportFormat = 'text' | 'json' | 'junit';

function show(value: unknown): string {
  return value === undefined ? '(absent)' : JSON.stringify(value);
}

function diffLines(diff: FieldDiff): string[] {
  const lines = [`      ${diff.field}:`, `        expected: ${show(diff.expected)}`, `        actual:   ${show(diff.actual)}`];
  if (diff.note) lines.push(`        (${diff.note})`);
  return lines;
}

const MARK: Record<CaseOutcome['kind'], string> = { passed: 'ok  ', failed: 'FAIL', error: 'ERR ', skipped: 'skip', engine_mismatch: 'DIFF' };

function caseLines(outcome: CaseOutcome, verbose: boolean): string[] {
  if (outcome.kind === 'passed' && !verbose) return [];
  const order = outcome.orderOnly?.length
    ? [`      WASM and topdown agree except for order at: ${outcome.orderOnly.join(', ')} (sets become arrays in engine order; json.marshal keys)`]
    : [];
  const lines = [`  ${MARK[outcome.kind]} ${outcome.name}${outcome.kind === 'skipped' && outcome.message ? ` (${outcome.message})` : ''}`];
  if (outcome.kind === 'error') lines.push(`      ${outcome.code ?? 'error'}: ${outcome.message ?? ''}`);
  for (const diff of outcome.diffs) lines.push(...diffLines(diff));
  if (outcome.mismatch) {
    lines.push('      the WASM engine and OPA (topdown) disagree on the raw result:');
    lines.push(`        wasm:    ${show(outcome.mismatch.wasm)}`);
    lines.push(`        topdown: ${show(outcome.mismatch.topdown)}`);
  }
  if (verbose || outcome.mismatch) lines.push(...order);
  return lines;
}

function summary(counts: TestCounts): string {
  const parts = [`${counts.passed} passed`, `${counts.failed} failed`, `${counts.errors} errors`];
  if (counts.mismatches) parts.push(`${counts.mismatches} engine mismatches`);
  if (counts.skipped) parts.push(`${counts.skipped} skipped`);
  return parts.join(', ');
}

function coverageText(run: RegoReport): string {
  if (run.coverage === undefined) return '';
  const below = run.threshold !== undefined && run.coverage < run.threshold;
  return `, coverage ${run.coverage.toFixed(2)}%${run.threshold !== undefined ? ` (threshold ${run.threshold}%${below ? ': BELOW' : ''})` : ''}`;
}

/** Text: failures in full, passes counted (all listed with `verbose`). */
export function textReport(report: TestReport, options: { verbose?: boolean } = {}): string {
  const verbose = options.verbose ?? false;
  const lines: string[] = [];
  for (const run of report.rego) {
    const counts = { passed: 0, failed: 0, errors: 0, skipped: 0, mismatches: 0 };
    for (const t of run.tests) {
      if (t.outcome === 'passed') counts.passed++;
      else if (t.outcome === 'failed') counts.failed++;
      else if (t.outcome === 'error') counts.errors++;
      else counts.skipped++;
    }
    lines.push(`opa test ${run.dir}: ${run.error ? 'could not run' : summary(counts)}${coverageText(run)}`);
    if (run.error) lines.push(`  ERR  ${run.error}`);
    for (const t of run.tests) {
      if (t.outcome === 'passed' && !verbose) continue;
      const mark = t.outcome === 'passed' ? 'ok  ' : t.outcome === 'failed' ? 'FAIL' : t.outcome === 'error' ? 'ERR ' : 'skip';
      lines.push(`  ${mark} ${t.package}.${t.name} (${t.file}:${t.row})`);
      if (t.message) lines.push(...t.message.trimEnd().split('\n').map((l) => `      ${l}`));
    }
  }
  for (const suite of report.suites) {
    const counts = { passed: 0, failed: 0, errors: 0, skipped: 0, mismatches: 0 };
    for (const c of suite.cases) {
      if (c.kind === 'passed') counts.passed++;
      else if (c.kind === 'failed') counts.failed++;
      else if (c.kind === 'error') counts.errors++;
      else if (c.kind === 'skipped') counts.skipped++;
      else counts.mismatches++;
    }
    lines.push(`${suite.file}: ${suite.name}${suite.now ? ` (now ${suite.now})` : ''}: ${summary(counts)}`);
    for (const c of suite.cases) lines.push(...caseLines(c, verbose));
  }
  lines.push('');
  for (const note of report.notes) lines.push(`note: ${note}`);
  const ordered = report.suites.flatMap((suite) => suite.cases).filter((c) => c.orderOnly?.length && !c.mismatch).length;
  if (ordered > 0) lines.push(`note: ${ordered} cases agree with topdown only up to array or JSON-key order (shown with --verbose; a mismatch with --strict-order)`);
  lines.push(`decision tables: ${summary(report.counts)}`);
  if (report.rego.length > 0) lines.push(`rego tests: ${summary(report.regoCounts)}`);
  lines.push(report.ok ? 'PASS' : 'FAIL');
  return `${lines.join('\n')}\n`;
}

/** JSON: the report as it is, stable keys. */
export function jsonReport(report: TestReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

// XML 1.0 allows tab, newline, carriage return and U+0020 upwards (minus surrogates and U+FFFE/F).
// eslint-disable-next-line no-control-regex
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/**
 * Escapes text for JUnit XML, replacing characters XML 1.0 cannot hold at all, so a control
 * character in a policy's output cannot break the report.
 */
export function xmlEscape(text: string): string {
  return text
    .replace(INVALID_XML, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function attrs(values: Record<string, string | number>): string {
  return Object.entries(values)
    .map(([k, v]) => ` ${k}="${xmlEscape(String(v))}"`)
    .join('');
}

const seconds = (ms: number): string => (ms / 1000).toFixed(3);

function caseDetail(outcome: CaseOutcome): string {
  return caseLines(outcome, true).slice(1).map((l) => l.replace(/^ {6}/, '')).join('\n');
}

interface JunitCase {
  classname: string;
  name: string;
  timeMs: number;
  kind: 'passed' | 'failed' | 'error' | 'skipped';
  message?: string;
  type?: string;
  detail?: string;
}

function junitSuite(name: string, file: string, cases: readonly JunitCase[], timeMs: number, timestamp: string): string {
  const failures = cases.filter((c) => c.kind === 'failed').length;
  const errors = cases.filter((c) => c.kind === 'error').length;
  const skipped = cases.filter((c) => c.kind === 'skipped').length;
  const body = cases.map((c) => {
    const open = `    <testcase${attrs({ classname: c.classname, name: c.name, time: seconds(c.timeMs), file })}`;
    if (c.kind === 'passed') return `${open}/>`;
    if (c.kind === 'skipped') return `${open}>\n      <skipped${attrs({ message: c.message ?? '' })}/>\n    </testcase>`;
    const tag = c.kind === 'failed' ? 'failure' : 'error';
    return `${open}>\n      <${tag}${attrs({ message: c.message ?? '', type: c.type ?? tag })}>${xmlEscape(c.detail ?? '')}</${tag}>\n    </testcase>`;
  });
  return [
    `  <testsuite${attrs({ name, tests: cases.length, failures, errors, skipped, time: seconds(timeMs), timestamp, file })}>`,
    ...body,
    '  </testsuite>',
  ].join('\n');
}

/**
 * JUnit XML (the schema Jenkins, GitLab and GitHub reporters read): one testsuite per table file
 * and one per `opa test` folder; an engine mismatch is a failure of type policy_engine_mismatch,
 * coverage under the threshold a failing "coverage" case.
 */
export function junitReport(report: TestReport, now: Date = new Date()): string {
  const timestamp = now.toISOString().slice(0, 19);
  const suites: string[] = [];
  let tests = 0;
  let failures = 0;
  let errors = 0;
  let skipped = 0;
  const add = (name: string, file: string, cases: JunitCase[], timeMs: number): void => {
    tests += cases.length;
    failures += cases.filter((c) => c.kind === 'failed').length;
    errors += cases.filter((c) => c.kind === 'error').length;
    skipped += cases.filter((c) => c.kind === 'skipped').length;
    suites.push(junitSuite(name, file, cases, timeMs, timestamp));
  };
  for (const run of report.rego) {
    const cases: JunitCase[] = run.tests.map((t) => ({
      classname: t.package,
      name: t.name,
      timeMs: t.durationMs,
      kind: t.outcome,
      ...(t.outcome === 'failed' ? { message: `${t.name} failed`, type: 'opa_test_failed', detail: `${t.file}:${t.row}\n${t.message ?? ''}` } : {}),
      ...(t.outcome === 'error' ? { message: t.message ?? 'error', type: 'opa_test_error', detail: `${t.file}:${t.row}\n${t.message ?? ''}` } : {}),
    }));
    if (run.error) cases.push({ classname: run.dir, name: '(opa test)', timeMs: 0, kind: 'error', message: 'opa test could not run', type: 'policy_build_failed', detail: run.error });
    if (run.threshold !== undefined) {
      const below = (run.coverage ?? 0) < run.threshold;
      cases.push({
        classname: run.dir,
        name: 'coverage',
        timeMs: 0,
        kind: below ? 'failed' : 'passed',
        ...(below ? { message: `coverage ${run.coverage ?? 0}% is below ${run.threshold}%`, type: 'coverage' } : {}),
      });
    }
    add(`opa test ${run.dir}`, run.dir, cases, run.tests.reduce((sum, t) => sum + t.durationMs, 0));
  }
  for (const suite of report.suites) {
    const cases: JunitCase[] = suite.cases.map((c) => {
      const kind = c.kind === 'engine_mismatch' ? 'failed' : c.kind;
      const message =
        c.kind === 'failed'
          ? `${c.diffs.map((d) => d.field).join(', ')} not as expected`
          : c.kind === 'engine_mismatch'
            ? 'WASM and topdown results differ'
            : (c.message ?? '');
      const type = c.kind === 'failed' ? 'expectation' : c.kind === 'engine_mismatch' ? 'policy_engine_mismatch' : (c.code ?? 'error');
      return { classname: `${suite.file}: ${suite.name}`, name: c.name, timeMs: c.durationMs, kind, message, type, detail: caseDetail(c) };
    });
    add(suite.name, suite.file, cases, suite.durationMs);
  }
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites${attrs({ name: 'signalbox test', tests, failures, errors, skipped, time: seconds(report.durationMs) })}>`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}

/** Formats a test report in the chosen format; `verbose` lists passed cases in the text format too. */
export function formatReport(report: TestReport, format: ReportFormat, options: { verbose?: boolean } = {}): string {
  if (format === 'json') return jsonReport(report);
  if (format === 'junit') return junitReport(report);
  return textReport(report, options);
}
