/**
 * `signalbox test`: decision tables against the compiled WASM bundle through the service's
 * pipeline, Rego unit tests, the topdown comparison, and the three report formats.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../src/core/log.js';
import { junitReport, textReport } from '../src/testing/report.js';
import { runPolicyTests, type CaseOutcome, type TestReport } from '../src/testing/runner.js';
import { parseRfc3339Ns } from '../src/testing/simulate.js';

const root = join(import.meta.dirname, '..');
const clockFixture = join(root, 'test', 'fixtures', 'policy-tests', 'clock');

/** A copy of the clock fixture with its table replaced (and other files added). */
async function fixture(table: string, extra: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-tables-'));
  await cp(clockFixture, dir, { recursive: true });
  await writeFile(join(dir, 'clock_test.yaml'), table);
  for (const [name, text] of Object.entries(extra)) await writeFile(join(dir, name), text);
  return dir;
}

function run(paths: string[], options: Partial<Parameters<typeof runPolicyTests>[0]> = {}): Promise<TestReport> {
  return runPolicyTests({ paths, logger: silentLogger(), ...options });
}

function cases(report: TestReport): Record<string, CaseOutcome> {
  return Object.fromEntries(report.suites.flatMap((s) => s.cases).map((c) => [c.name, c]));
}

const HEADER = `suite: Runner
now: 2026-06-01T12:00:00Z
users:
  alice: { sub: alice, roles: [user] }
defaults: { user: alice, path: /v1/models, method: GET }
cases:
`;

describe('decision tables', () => {
  it('passes a suite whose expectations hold, and runs the Rego tests beside it', async () => {
    const report = await run([clockFixture]);
    expect(report.counts).toEqual({ passed: 5, failed: 0, errors: 0, skipped: 0, mismatches: 0 });
    expect(report.regoCounts.passed).toBe(1);
    expect(report.rego[0]?.coverage).toBeGreaterThan(0);
    expect(report.ok).toBe(true);
  });

  it('decides with the compiled bundle even when the config names a bundle server', async () => {
    // Nothing listens on port 9 of loopback: a download would fail, and the suite with it.
    const config = join(await mkdtemp(join(tmpdir(), 'signalbox-config-')), 'signalbox.yaml');
    await writeFile(config, 'policy:\n  service:\n    url: http://127.0.0.1:9/bundles/signalbox.tar.gz\n    persist_file: null\n');
    const report = await run([clockFixture], { configFile: config });
    expect(report.counts).toEqual({ passed: 5, failed: 0, errors: 0, skipped: 0, mismatches: 0 });
  });

  it('tests what the policy decides, not a deployment in dry-run', async () => {
    const config = join(await mkdtemp(join(tmpdir(), 'signalbox-config-')), 'signalbox.yaml');
    await writeFile(config, 'policy:\n  dry_run: true\n');
    const report = await run([clockFixture], { configFile: config });
    expect(report.counts).toEqual({ passed: 5, failed: 0, errors: 0, skipped: 0, mismatches: 0 });
  });

  it('fails each field that does not match, with expected and actual', async () => {
    const dir = await fixture(`${HEADER}
  - { name: allowed, request: {}, expect: { allowed: false } }
  - { name: status, request: {}, expect: { http_status: 403 } }
  - { name: reasons, request: {}, expect: { reasons: [nope] } }
  - { name: reasons contains, request: {}, expect: { reasons: { contains: [ok, missing], excludes: [ok] } } }
  - { name: headers, request: {}, expect: { headers: { x-user: bob, x-absent: null } } }
  - { name: header absent, request: {}, expect: { headers: { x-user: null } } }
  - { name: route, request: {}, expect: { route: { provider: anthropic } } }
  - { name: budgets, request: {}, expect: { budgets: [{ scope: user:bob }] } }
  - { name: no budgets, request: {}, expect: { budgets: null } }
  - { name: body, request: { user: null }, expect: { body: "other" } }
  - { name: removed, request: {}, expect: { headers_removed: [x-signalbox-upstream, Authorization] } }
`);
    const report = await run([dir], { rego: false });
    const byName = cases(report);
    expect(report.counts.failed).toBe(11);
    expect(report.ok).toBe(false);
    expect(byName.allowed?.diffs).toEqual([{ field: 'allowed', expected: false, actual: true }]);
    expect(byName.status?.diffs).toEqual([{ field: 'http_status', expected: 403, actual: 200 }]);
    expect(byName.reasons?.diffs).toEqual([{ field: 'reasons', expected: ['nope'], actual: ['ok'] }]);
    expect(byName['reasons contains']?.diffs[0]?.note).toBe('missing missing; unexpected ok');
    expect(byName.headers?.diffs).toEqual([{ field: 'headers.x-user', expected: 'bob', actual: 'alice' }]);
    expect(byName['header absent']?.diffs[0]).toMatchObject({ field: 'headers.x-user', note: 'expected absent' });
    expect(byName.route?.diffs[0]).toMatchObject({ field: 'route', expected: { provider: 'anthropic' }, actual: { provider: 'openai', model: 'gpt-4o-mini' } });
    expect(byName.budgets?.diffs[0]).toMatchObject({ field: 'budgets', note: 'not named: {"scope":"user:bob"}' });
    expect(byName['no budgets']?.diffs[0]).toMatchObject({ field: 'budgets', expected: null });
    expect(byName.body?.diffs).toEqual([{ field: 'body', expected: 'other', actual: 'denied' }]);
    // The routed request drops the caller's routing headers, but this policy never removes authorization.
    expect(byName.removed?.diffs[0]).toMatchObject({ field: 'headers_removed', note: 'not removed: Authorization' });
    const text = textReport(report);
    expect(text).toContain('FAIL allowed');
    expect(text).toMatch(/http_status:\n\s+expected: 403\n\s+actual:\s+200/);
  });

  it('refuses a suite time that does not exist rather than rolling it over', () => {
    expect(() => parseRfc3339Ns('2026-02-30T00:00:00Z')).toThrow(expect.objectContaining({ code: 'test_suite_invalid' }));
    expect(() => parseRfc3339Ns('2025-02-29T00:00:00Z')).toThrow(expect.objectContaining({ code: 'test_suite_invalid' }));
    expect(parseRfc3339Ns('2024-02-29T23:59:59.5-05:30')).toBe(BigInt(Date.parse('2024-03-01T05:29:59Z')) * 1_000_000n + 500_000_000n);
  });

  it('does not assert a field the case leaves out', async () => {
    const dir = await fixture(`${HEADER}
  - { name: only allowed, request: {}, expect: { allowed: true } }
  - { name: nothing at all, request: {}, expect: {} }
`);
    const report = await run([dir], { rego: false });
    expect(report.counts).toMatchObject({ passed: 2, failed: 0 });
  });

  it('honours the frozen clock: time.now_ns() and token expiry at the suite time, per-case overrides', async () => {
    const report = await run([clockFixture], { rego: false });
    const byName = cases(report);
    // The wall clock is past 2026-06-01 + 60 s: the token verifies only at the frozen time.
    expect(byName['a token valid only at the frozen time verifies']?.kind).toBe('passed');
    expect(byName['expired at the frozen time']?.actual?.reasons).toEqual(['identity.token_expired']);
    expect(byName['denied once the frozen clock passes it']?.actual?.reasons).toEqual(['policy.expired']);
    // The same suite a year later: every case now sees the policy's end date.
    const later = await fixture((await readFile(join(clockFixture, 'clock_test.yaml'), 'utf8')).replace('now: 2026-06-01T12:00:00Z', 'now: 2027-06-01T12:00:00Z'));
    const laterReport = await run([later], { rego: false });
    expect(cases(laterReport)['allowed before the policy\'s end date']?.actual?.reasons).toEqual(['policy.expired']);
  });

  it('reports a malformed file as an error naming the file, and runs nothing from it', async () => {
    const dir = await fixture('suite: [unclosed\n');
    const report = await run([dir], { rego: false });
    expect(report.counts.errors).toBe(1);
    const outcome = report.suites[0]?.cases[0];
    expect(outcome).toMatchObject({ kind: 'error', code: 'test_suite_invalid' });
    expect(outcome?.message).toContain('clock_test.yaml');
    expect(report.ok).toBe(false);
  });

  it('reports an unknown key as an error on that case, naming file, case and key; the other cases run', async () => {
    const dir = await fixture(`${HEADER}
  - { name: fine, request: {}, expect: { allowed: true } }
  - { name: typo, request: {}, expect: { allowd: true } }
  - { name: bad request, request: { methd: GET }, expect: {} }
  - { name: undefined user, request: { user: zoe }, expect: {} }
`);
    const report = await run([dir], { rego: false });
    const byName = cases(report);
    expect(byName.fine?.kind).toBe('passed');
    expect(byName.typo).toMatchObject({ kind: 'error', code: 'test_suite_invalid' });
    expect(byName.typo?.message).toMatch(/clock_test\.yaml: cases\[1\]\.expect: unknown key\(s\) allowd/);
    expect(byName['bad request']?.message).toMatch(/cases\[2\]\.request: unknown key\(s\) methd/);
    expect(byName['undefined user']).toMatchObject({ kind: 'error', code: 'test_suite_invalid' });
    expect(byName['undefined user']?.message).toContain('user "zoe" is not defined');
  });

  it('reports a policy that does not compile as an error on its tables, and OPA test errors', async () => {
    const dir = await fixture(`${HEADER}  - { name: any, request: {}, expect: {} }\n`, { 'policy.rego': 'package fixture\n\ndecision := {\n' });
    const report = await run([dir]);
    expect(report.suites[0]?.cases[0]).toMatchObject({ kind: 'error', code: 'policy_build_failed' });
    expect(report.rego[0]?.error).toBeTruthy();
    expect(report.ok).toBe(false);
  });

  it('reports a policy evaluation error as an error, not a failure, unless the case expects it', async () => {
    const conflict = `package fixture

# METADATA
# entrypoint: true
decision := {"allowed": true} if input.identity.verified

decision := {"allowed": false} if input.identity.subject
`;
    const dir = await fixture(
      `${HEADER}
  - { name: conflict, request: {}, expect: { allowed: true } }
  - { name: expected failure, request: {}, expect: { allowed: false, error: policy_eval_failed, reasons: [policy_eval_failed] } }
`,
      { 'policy.rego': conflict, 'policy_test.rego': 'package fixture_test\n\ntest_nothing if true\n' },
    );
    const report = await run([dir], { rego: false });
    const byName = cases(report);
    expect(byName.conflict).toMatchObject({ kind: 'error', code: 'policy_eval_failed' });
    expect(byName.conflict?.message).toMatch(/policy evaluation failed/);
    expect(byName['expected failure']?.kind).toBe('passed');
  });

  it('skips cases marked skip and filters by --run', async () => {
    const dir = await fixture(`${HEADER}
  - { name: first, request: {}, expect: { allowed: true } }
  - { name: second, skip: not today, request: {}, expect: { allowed: false } }
`);
    const report = await run([dir], { rego: false });
    expect(cases(report).second).toMatchObject({ kind: 'skipped', message: 'not today' });
    const filtered = await run([dir], { rego: false, filter: /first/ });
    expect(filtered.suites[0]?.cases.map((c) => c.name)).toEqual(['first']);
  });

  it('fails a coverage threshold the Rego tests do not reach', async () => {
    const report = await run([clockFixture], { coverageThreshold: 99.5 });
    expect(report.rego[0]?.coverage).toBeLessThan(99.5);
    expect(report.ok).toBe(false);
    expect(textReport(report)).toContain('BELOW');
  });
});

describe('WASM and topdown', () => {
  it('reports a policy that decides differently in the two engines as engine_mismatch', async () => {
    // OPA's WASM numbers are int64 or double (open-policy-agent/opa#3711): past int64, WASM's
    // arithmetic rounds where topdown's is exact.
    const diverging = `package fixture

# METADATA
# entrypoint: true
decision := {"allowed": true, "reasons": [sprintf("%v", [to_number("9223372036854775807") + 1])]}
`;
    const dir = await fixture(`${HEADER}  - { name: diverges, request: {}, expect: { allowed: true } }\n`, { 'policy.rego': diverging, 'policy_test.rego': 'package fixture_test\n\ntest_nothing if true\n' });
    const report = await run([dir], { rego: false });
    const outcome = report.suites[0]?.cases[0];
    expect(outcome).toMatchObject({ kind: 'engine_mismatch', code: 'policy_engine_mismatch' });
    expect(outcome?.mismatch).toEqual({ wasm: { allowed: true, reasons: ['9223372036854776000'] }, topdown: { allowed: true, reasons: ['9223372036854775808'] } });
    expect(report.counts.mismatches).toBe(1);
    expect(report.ok).toBe(false);
    expect(textReport(report)).toContain('the WASM engine and OPA (topdown) disagree');
    // --no-compare turns the check off.
    expect((await run([dir], { rego: false, compare: false })).ok).toBe(true);
  });

  it('treats a difference in array order only as agreement, reported, unless strict', async () => {
    const ordered = `package fixture

# METADATA
# entrypoint: true
decision := {"allowed": true, "reasons": [r | some r in {"b-reason", "a-reason", "c-reason"}]}
`;
    const dir = await fixture(`${HEADER}  - { name: set order, request: {}, expect: { allowed: true } }\n`, { 'policy.rego': ordered, 'policy_test.rego': 'package fixture_test\n\ntest_nothing if true\n' });
    const report = await run([dir], { rego: false });
    const outcome = report.suites[0]?.cases[0];
    // WASM iterates the set in another order than topdown (which sorts): agreement up to order.
    expect(outcome?.kind).toBe('passed');
    expect(outcome?.orderOnly).toEqual(['reasons']);
    expect(textReport(report)).toContain('1 cases agree with topdown only up to array or JSON-key order');
    expect((await run([dir], { rego: false, strictOrder: true })).suites[0]?.cases[0]?.kind).toBe('engine_mismatch');
  });
});

describe('reports', () => {
  it('writes JUnit XML that parses back with the right counts, names and escaped details', async () => {
    const dir = await fixture(`${HEADER}
  - { name: passes, request: {}, expect: { allowed: true } }
  - { name: "fails <&> \\"quoted\\"", request: {}, expect: { reasons: ["<script>"] } }
  - { name: errs, request: {}, expect: { bogus: 1 } }
  - { name: skipped, skip: true, request: {}, expect: {} }
`);
    const report = await run([dir]);
    const xml = junitReport(report);
    expect(XMLValidator.validate(xml)).toBe(true);
    const parsed = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => ['testsuite', 'testcase'].includes(name) }).parse(xml) as {
      testsuites: { tests: string; failures: string; errors: string; skipped: string; testsuite: { name: string; tests: string; testcase: Record<string, unknown>[] }[] };
    };
    const suites = parsed.testsuites.testsuite;
    expect(parsed.testsuites).toMatchObject({ tests: '5', failures: '1', errors: '1', skipped: '1' });
    expect(suites.map((s) => s.name)).toEqual([expect.stringMatching(/^opa test /), 'Runner']);
    const table = suites[1]!.testcase;
    expect(table.map((c) => c.name)).toEqual(['passes', 'fails <&> "quoted"', 'errs', 'skipped']);
    expect(table[0]).not.toHaveProperty('failure');
    expect(table[1]?.failure).toMatchObject({ message: 'reasons not as expected', type: 'expectation' });
    expect(String((table[1]?.failure as { '#text': string })['#text'])).toContain('expected: ["<script>"]');
    expect(table[2]?.error).toMatchObject({ type: 'test_suite_invalid' });
    expect(table[3]).toHaveProperty('skipped');
    expect(suites[0]!.testcase[0]).toMatchObject({ classname: 'data.fixture_test', name: 'test_allows_users' });
  });
});

describe('signalbox test (the CLI)', () => {
  const cli = (args: string[]) =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'test', ...args], { cwd: root }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it('exits 0 when everything passes, 1 on a failure, 2 on a usage error', async () => {
    const pass = await cli([clockFixture]);
    expect(pass.stdout).toContain('PASS');
    expect(pass.code).toBe(0);

    const dir = await fixture(`${HEADER}  - { name: wrong, request: {}, expect: { allowed: false } }\n`);
    const fail = await cli([dir, '--format', 'json']);
    expect(fail.code).toBe(1);
    expect((JSON.parse(fail.stdout) as TestReport).counts.failed).toBe(1);

    const out = join(dir, 'report.xml');
    const junit = await cli([dir, '--format', 'junit', '--output', out]);
    expect(junit.code).toBe(1);
    expect(XMLValidator.validate(await readFile(out, 'utf8'))).toBe(true);
    expect(junit.stdout).toContain('FAIL wrong');

    const usage = await cli([clockFixture, '--format', 'yaml']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--format must be one of text, json, junit');
  }, 60_000);

  it('the default policy passes its own decision tables and Rego tests', async () => {
    const report = await run([join(root, 'policies', 'signalbox')]);
    const failing = report.suites.flatMap((s) => s.cases).filter((c) => c.kind !== 'passed' && c.kind !== 'skipped');
    expect(failing.map((c) => `${c.name}: ${c.message ?? JSON.stringify(c.diffs ?? c.mismatch)}`)).toEqual([]);
    expect(report.counts.passed).toBeGreaterThanOrEqual(25);
    expect(report.ok).toBe(true);
  }, 60_000);
});
