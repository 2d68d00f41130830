/**
 * `signalbox test`: Rego tests (`opa test`) and decision tables (`*_test.yaml`) against the
 * WASM bundle.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../core/log.js';
import { projectRoot } from '../core/paths.js';
import { formatReport, textReport, type ReportFormat } from '../testing/report.js';
import { runPolicyTests } from '../testing/runner.js';
import { UsageError, outputFormat } from './command.js';

const FORMATS = ['text', 'json', 'junit'] as const;

/**
 * `signalbox test [DIR|FILE ...]` (default: every folder of policies/): runs the tests and
 * prints the report (`--format`, `--output`). Returns 0 when everything passed, 1 otherwise.
 */
export async function test(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      bundle: { type: 'string' },
      config: { type: 'string' },
      decision: { type: 'string' },
      format: { type: 'string' },
      output: { type: 'string', short: 'o' },
      run: { type: 'string' },
      'no-rego': { type: 'boolean' },
      'no-compare': { type: 'boolean' },
      'strict-order': { type: 'boolean' },
      'coverage-threshold': { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
    },
    allowPositionals: true,
    strict: true,
  });
  const format = outputFormat(values.format, FORMATS, 'text') as ReportFormat;
  let threshold: number | undefined;
  if (values['coverage-threshold'] !== undefined) {
    threshold = Number(values['coverage-threshold']);
    if (!Number.isFinite(threshold) || threshold < 0 || threshold > 100) throw new UsageError('--coverage-threshold must be a percentage from 0 to 100');
  }
  let filter: RegExp | undefined;
  if (values.run !== undefined) {
    try {
      filter = new RegExp(values.run);
    } catch {
      throw new UsageError(`--run ${values.run} is not a regular expression`);
    }
  }
  let paths = positionals;
  if (paths.length === 0) {
    const root = join(projectRoot(), 'policies');
    paths = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => join(root, e.name));
  }
  const configFile = values.config ?? process.env.SIGNALBOX_CONFIG;
  // Quiet: the pipeline logs every fail-closed decision, which a test run makes on purpose.
  const logger = createLogger('silent');
  const report = await runPolicyTests({
    paths,
    ...(values.bundle ? { bundle: values.bundle } : {}),
    ...(configFile ? { configFile } : {}),
    ...(values.decision ? { decision: values.decision } : {}),
    rego: !values['no-rego'],
    compare: !values['no-compare'],
    strictOrder: values['strict-order'] ?? false,
    ...(threshold !== undefined ? { coverageThreshold: threshold } : {}),
    ...(filter ? { filter } : {}),
    logger,
  });
  const text = formatReport(report, format, { verbose: values.verbose ?? false });
  if (values.output) {
    await writeFile(values.output, text);
    if (format !== 'text') process.stdout.write(textReport(report));
  } else {
    process.stdout.write(text);
  }
  return report.ok ? 0 : 1;
}
