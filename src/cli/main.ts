#!/usr/bin/env node
/**
 * The `signalbox` command: serve, build, eval, test, audit verify, spend, vault.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { verifyAuditFile } from '../audit/chain.js';
import { loadConfig } from '../config/load.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { projectRoot } from '../core/paths.js';
import { buildAllBundles, buildBundle, type SigningOptions } from '../bundles/build.js';
import { parseRfc3339Ns } from '../testing/simulate.js';
import { explainDecision, readRequestFile, textExplain } from '../testing/explain.js';
import { formatReport, textReport, type ReportFormat } from '../testing/report.js';
import { runPolicyTests } from '../testing/runner.js';
import type { ExplainMode } from '../testing/topdown.js';
import { startSignalbox } from '../app/app.js';
import { runVaultCommand } from '../vault/vault.js';

const USAGE = `usage: signalbox <command> [options]

commands:
  serve [--config FILE]                     run the gRPC (9191) and HTTP (8181) servers
  build [--policies DIR] [--bundles DIR]    compile every policies/<name>/ to bundles/<name>.tar.gz
  build --src DIR --out FILE [--entrypoint PATH ...] [--v0-compatible]
                                            compile one policy folder (entrypoints from -e or annotations)
  build ... --sign --signing-key PEM_FILE [--signing-alg RS256] [--key-id ID] [--scope S]
                                            also sign the bundle(s) in OPA's format (.signatures.json)
  eval (--input FILE | --request FILE) [--config FILE] [--bundle FILE] [--decision PATH]
       [--now RFC3339] [--explain rules|notes|fails|full [--src DIR]] [--format text|json]
                                            decide one request (a full input, or the short form
                                            through the service's pipeline) and explain it
  test [DIR|FILE ...] [--bundle FILE] [--config FILE] [--format text|json|junit] [--output FILE]
       [--run REGEX] [--coverage-threshold PCT] [--no-rego] [--no-compare] [--strict-order] [--verbose]
                                            run Rego tests (opa test) and decision tables
                                            (*_test.yaml) against the WASM bundle; exit 1 on failure
  audit verify FILE                         verify an audit log's hash chain; exit 1 at the first break
  spend [--url URL] [--scope SCOPE] [--window WINDOW] [--json]
                                            current spend and holds per budget, from a running
                                            Signalbox (default http://127.0.0.1:8181, or SIGNALBOX_URL)
  vault set|list|remove|rotate [--file PATH]
                                            manage the credential vault (signalbox vault --help)

The config file may also be given as SIGNALBOX_CONFIG.`;

class UsageError extends Error {}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } }, strict: true });
  const config = loadConfig(values.config ?? process.env.SIGNALBOX_CONFIG);
  const logger = createLogger(config.log.level);
  const running = await startSignalbox(config, logger);
  await new Promise<void>((done) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down: draining in-flight calls');
      running.close().then(done, done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

async function build(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      policies: { type: 'string' },
      bundles: { type: 'string' },
      src: { type: 'string' },
      out: { type: 'string' },
      entrypoint: { type: 'string', short: 'e', multiple: true },
      'v0-compatible': { type: 'boolean' },
      sign: { type: 'boolean' },
      'signing-key': { type: 'string' },
      'signing-alg': { type: 'string' },
      'key-id': { type: 'string' },
      scope: { type: 'string' },
    },
    strict: true,
  });
  const signingFlags = values['signing-alg'] !== undefined || values['key-id'] !== undefined || values.scope !== undefined;
  if ((values.sign || signingFlags) && !values['signing-key']) throw new UsageError('build --sign needs --signing-key PEM_FILE');
  let signing: SigningOptions | undefined;
  if (values['signing-key']) {
    let key: string;
    try {
      key = await readFile(values['signing-key'], 'utf8');
    } catch (error) {
      throw new SignalboxError('policy_build_failed', `cannot read --signing-key ${values['signing-key']}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
    }
    signing = {
      key,
      algorithm: values['signing-alg'] ?? 'RS256',
      ...(values['key-id'] ? { keyid: values['key-id'] } : {}),
      ...(values.scope ? { scope: values.scope } : {}),
    };
  }
  if (values.src || values.out) {
    if (!values.src || !values.out) throw new UsageError('build --src needs --out (and the other way round)');
    const built = await buildBundle(resolve(values.src), resolve(values.out), {
      entrypoints: values.entrypoint ?? [],
      v0Compatible: values['v0-compatible'] ?? false,
      ...(signing ? { signing } : {}),
    });
    print(built);
    return 0;
  }
  const root = projectRoot();
  const built = await buildAllBundles(
    resolve(values.policies ?? join(root, 'policies')),
    resolve(values.bundles ?? join(root, 'bundles')),
    signing ? { signing } : {},
  );
  print(built);
  return 0;
}

const FORMATS = ['text', 'json', 'junit'] as const;
const EXPLAIN_MODES: readonly ExplainMode[] = ['rules', 'notes', 'fails', 'full'];

/** Text on a terminal, JSON when piped (scripts read it), unless --format says. */
function outputFormat(value: string | undefined, allowed: readonly string[], fallback: string): string {
  const format = value ?? fallback;
  if (!allowed.includes(format)) throw new UsageError(`--format must be one of ${allowed.join(', ')}`);
  return format;
}

async function evaluate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      input: { type: 'string' },
      request: { type: 'string' },
      config: { type: 'string' },
      bundle: { type: 'string' },
      decision: { type: 'string' },
      now: { type: 'string' },
      explain: { type: 'string' },
      src: { type: 'string' },
      format: { type: 'string' },
    },
    strict: true,
  });
  if ((values.input === undefined) === (values.request === undefined)) throw new UsageError('eval needs --input FILE (a full input) or --request FILE (the short form)');
  if (values.explain !== undefined && !EXPLAIN_MODES.includes(values.explain as ExplainMode)) {
    throw new UsageError(`--explain must be one of ${EXPLAIN_MODES.join(', ')}`);
  }
  const format = outputFormat(values.format, ['text', 'json'], process.stdout.isTTY ? 'text' : 'json');
  const config = loadConfig(values.config ?? process.env.SIGNALBOX_CONFIG);
  let input: unknown;
  if (values.input !== undefined) {
    try {
      input = JSON.parse(await readFile(values.input, 'utf8'));
    } catch (error) {
      throw new SignalboxError('request_malformed', `--input ${values.input} is not a readable JSON document`, { cause: error });
    }
  }
  const request = values.request !== undefined ? await readRequestFile(values.request) : undefined;
  let nowNs = BigInt(Date.now()) * 1_000_000n;
  if (values.now !== undefined) {
    try {
      nowNs = parseRfc3339Ns(values.now);
    } catch {
      throw new UsageError(`--now ${values.now} is not an RFC 3339 timestamp (2026-11-22T10:00:00Z)`);
    }
  }
  const report = await explainDecision({
    config,
    // stderr, errors only: stdout is the report, and a fail-closed decision is what eval shows.
    logger: createLogger('error', process.stderr),
    ...(input !== undefined ? { input } : {}),
    ...(request ? { request } : {}),
    ...(values.bundle ? { bundle: values.bundle } : {}),
    ...(values.decision ? { decision: values.decision } : {}),
    nowNs,
    ...(values.explain ? { explain: values.explain as ExplainMode } : {}),
    ...(values.src ? { src: resolve(values.src) } : {}),
  });
  if (format === 'json') print(report);
  else process.stdout.write(textExplain(report));
  return 0;
}

async function test(args: string[]): Promise<number> {
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

async function audit(args: string[]): Promise<number> {
  const [sub, file, ...rest] = args;
  if (sub !== 'verify' || !file || rest.length > 0) throw new UsageError('usage: signalbox audit verify FILE');
  let report;
  try {
    report = await verifyAuditFile(file);
  } catch (error) {
    throw new SignalboxError('audit_chain_broken', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? describeCause(error)}`, { cause: error });
  }
  if (report.ok) {
    process.stdout.write(`ok: ${report.records} records, chain intact, last hash ${report.lastHash}\n`);
    return 0;
  }
  const brk = report.firstBreak!;
  process.stdout.write(
    `audit_chain_broken: line ${brk.line}${brk.seq === null ? '' : ` (seq ${brk.seq})`}: ${brk.problem}: ${brk.detail}; ${report.records} records verified before it\n`,
  );
  return 1;
}

interface SpendRow {
  scope: string;
  window: string;
  period: string;
  limit_usd: number;
  spent_usd: number;
  held_usd: number;
  remaining_usd: number;
  holds: number;
}

/** Formats spend rows as an aligned text table. */
function spendTable(rows: readonly SpendRow[]): string {
  if (rows.length === 0) return 'no budget counters\n';
  const usd = (n: number): string => n.toFixed(6);
  const table = [
    ['SCOPE', 'WINDOW', 'PERIOD', 'LIMIT_USD', 'SPENT_USD', 'HELD_USD', 'REMAINING_USD', 'HOLDS'],
    ...rows.map((r) => [r.scope, r.window, r.period, usd(r.limit_usd), usd(r.spent_usd), usd(r.held_usd), usd(r.remaining_usd), String(r.holds)]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((cell, i) => (i >= 3 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

async function spend(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { url: { type: 'string' }, scope: { type: 'string' }, window: { type: 'string' }, json: { type: 'boolean' } },
    strict: true,
  });
  const base = values.url ?? process.env.SIGNALBOX_URL ?? 'http://127.0.0.1:8181';
  let url: URL;
  try {
    url = new URL('/v1/spend', base);
  } catch (error) {
    throw new UsageError(`--url ${base} is not a URL`, { cause: error });
  }
  if (values.scope) url.searchParams.set('scope', values.scope);
  if (values.window) url.searchParams.set('window', values.window);
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new SignalboxError('budget_store_unavailable', `cannot reach Signalbox at ${url.origin}: ${describeCause(error)}`, { cause: error });
  }
  const body = (await response.json().catch(() => ({}))) as { budgets?: SpendRow[]; error?: { code: string; message: string } };
  if (!response.ok || !body.budgets) {
    process.stderr.write(`signalbox: ${body.error?.code ?? 'internal_error'}: ${body.error?.message ?? `HTTP ${response.status}`}\n`);
    return 1;
  }
  if (values.json) print(body);
  else process.stdout.write(spendTable(body.budgets));
  return 0;
}

/**
 * `signalbox vault ...` with the real process: keys from the environment, the value (for set)
 * from stdin. stdin is only touched when a value is read from it, so the other commands do not
 * wait on, or hold open, a terminal or pipe they never read.
 */
async function vault(args: string[]): Promise<number> {
  return runVaultCommand(args, {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: {
      get isTTY() {
        return process.stdin.isTTY;
      },
      [Symbol.asyncIterator]: () => process.stdin[Symbol.asyncIterator](),
    },
  });
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(args);
      case 'build':
        return await build(args);
      case 'eval':
        return await evaluate(args);
      case 'test':
        return await test(args);
      case 'audit':
        return await audit(args);
      case 'spend':
        return await spend(args);
      case 'vault':
        return await vault(args);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`signalbox: ${(error as Error).message}\n\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof SignalboxError) {
      process.stderr.write(`signalbox: ${error.code}: ${error.message}\n`);
      return 1;
    }
    process.stderr.write(`signalbox: internal_error: ${describeCause(error)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  () => {
    process.exitCode = 1;
  },
);
