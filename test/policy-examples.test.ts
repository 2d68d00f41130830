/**
 * The example policies users copy must stay correct: each builds to a WASM bundle with the
 * engine's capabilities, declares the decision the README names, and passes its own Rego tests
 * and decision tables under `signalbox test` (WASM and OPA agreeing).
 */
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../src/core/paths.js';
import { buildBundle } from '../src/bundles/build.js';
import { runOpa } from '../src/bundles/opa-cli.js';
import { textReport } from '../src/testing/report.js';
import { runPolicyTests } from '../src/testing/runner.js';
import { silentLogger } from '../src/core/log.js';

const EXAMPLES = join(projectRoot(), 'examples', 'policies');

const DECISIONS: Record<string, string> = {
  'model-allowlist': 'models/decision',
  'agent-tools': 'agents/decision',
  'team-budgets': 'team_budgets/decision',
};

describe('example policies', async () => {
  const folders = (await readdir(EXAMPLES, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);

  it('are the ones the README lists', () => {
    expect(folders.sort()).toEqual(Object.keys(DECISIONS).sort());
  });

  for (const folder of folders) {
    it(`${folder} builds to WASM with its decision entrypoint and passes its Rego tests`, async () => {
      const out = join(await mkdtemp(join(tmpdir(), 'signalbox-example-')), `${folder}.tar.gz`);
      const built = await buildBundle(join(EXAMPLES, folder), out);
      expect(built.entrypoints).toEqual([DECISIONS[folder]]);
      const run = await runOpa(['test', '--format', 'json', join(EXAMPLES, folder)]);
      const results = JSON.parse(run.stdout) as { name: string; fail?: boolean; error?: unknown }[];
      expect(results.length).toBeGreaterThanOrEqual(5);
      expect(results.filter((r) => r.fail || r.error).map((r) => r.name)).toEqual([]);
      expect(run.exitCode).toBe(0);
    });

    it(`${folder} passes its decision tables, with WASM and OPA agreeing`, async () => {
      const report = await runPolicyTests({ paths: [join(EXAMPLES, folder)], logger: silentLogger() });
      expect(report.ok, textReport(report)).toBe(true);
      expect(report.suites.length).toBe(1);
      expect(report.counts.passed).toBeGreaterThanOrEqual(5);
      expect(report.counts).toMatchObject({ failed: 0, errors: 0, skipped: 0, mismatches: 0 });
    });
  }
});
