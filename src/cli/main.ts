#!/usr/bin/env node
/**
 * The `signalbox` command: serve, build, eval, test, audit verify, spend, vault, dev. This file
 * only dispatches; each command is a file of its own in src/cli/. `--help` (stdout, exit 0) and
 * `--version` work on every command; a usage error exits 2 with the usage text, a
 * SignalboxError 1 with its code.
 */
import { SignalboxError, describeCause } from '../core/errors.js';
import { UsageError, asksFor, packageVersion } from './command.js';

/**
 * Each command's module, loaded only when it runs: `serve`'s primary process then holds none of
 * what only workers, `test` or `eval` use (grpc-js, the pipeline, the test runner), and every
 * command starts faster.
 */
const COMMANDS: Readonly<Record<string, () => Promise<(args: string[]) => Promise<number>>>> = {
  serve: async () => (await import('./serve.js')).serve,
  build: async () => (await import('./build.js')).build,
  eval: async () => (await import('./eval.js')).evaluate,
  test: async () => (await import('./test.js')).test,
  audit: async () => (await import('./audit.js')).audit,
  spend: async () => (await import('./spend.js')).spend,
  vault: async () => (await import('./vault.js')).vault,
  dev: async () => (await import('./dev.js')).dev,
};

/**
 * Each command's synopsis: `signalbox CMD --help` prints its own, `signalbox --help` all of them.
 * Vault prints its longer help itself (src/cli/vault.ts).
 */
const HELP: Readonly<Record<string, string>> = {
  serve: `serve [--config FILE]                     run the gRPC (9191) and HTTP (8181) servers`,
  build: `build [--policies DIR] [--bundles DIR]    compile every policies/<name>/ to bundles/<name>.tar.gz
  build --src DIR --out FILE [--entrypoint PATH ...] [--v0-compatible]
                                            compile one policy folder (entrypoints from -e or annotations)
  build ... --sign --signing-key PEM_FILE [--signing-alg RS256] [--key-id ID] [--scope S]
                                            also sign the bundle(s) in OPA's format (.signatures.json)`,
  eval: `eval (--input FILE | --request FILE) [--config FILE] [--bundle FILE] [--decision PATH]
       [--now RFC3339] [--explain rules|notes|fails|full [--src DIR]] [--format text|json]
                                            decide one request (a full input, or the short form
                                            through the service's pipeline) and explain it`,
  test: `test [DIR|FILE ...] [--bundle FILE] [--config FILE] [--format text|json|junit] [--output FILE]
       [--run REGEX] [--coverage-threshold PCT] [--no-rego] [--no-compare] [--strict-order] [--verbose]
                                            run Rego tests (opa test) and decision tables
                                            (*_test.yaml) against the WASM bundle; exit 1 on failure`,
  audit: `audit verify FILE|DIR                     verify an audit log's hash chain; exit 1 at the first break`,
  spend: `spend [--url URL] [--scope SCOPE] [--window WINDOW] [--token-file PATH] [--json]
                                            current spend and holds per budget, from a running
                                            Signalbox (default http://127.0.0.1:8181, or SIGNALBOX_URL)
  spend report [--by team|user|model|provider|session] [--since ISO] [--until ISO]
       [--bucket hour|day] [--format table|csv|json] [--url URL] [--token-file PATH]
                                            spend from the ledger, grouped (README "Spend ledger")
  spend reconcile [--format table|json] [--url URL] [--token-file PATH]
                                            ledger totals against the live budget counters; exit 1
                                            when any differs`,
  vault: `vault set|list|remove|rotate [--file PATH]
                                            manage the credential vault (signalbox vault --help)`,
  dev: `dev keys DIR [--force]                    DEVELOPMENT ONLY: make an ES256 key pair, its JWKS and a
                                            config that trusts it (DIR/signalbox.yaml)
  dev token --key FILE --sub SUBJECT [--roles R,R] [--team T] [--tenant T] [--scope S]
            [--ttl 1h] [--config FILE]      DEVELOPMENT ONLY: print a token signed with that key`,
};

const CONFIG_NOTE = 'The config file may also be given as SIGNALBOX_CONFIG.';

const USAGE = `usage: signalbox <command> [options]
       signalbox <command> --help | --version

commands:
${Object.values(HELP)
  .map((text) => `  ${text}`)
  .join('\n')}

${CONFIG_NOTE}`;

/** `signalbox CMD --help`: that command's synopsis, and where its config may come from. */
function commandHelp(command: string): string {
  const note = ['serve', 'eval', 'test'].includes(command) ? `\n\n${CONFIG_NOTE}` : '';
  return `usage: signalbox ${HELP[command]}${note}`;
}

function printVersion(): number {
  process.stdout.write(`signalbox ${packageVersion()}\n`);
  return 0;
}

/** Runs the command `argv` names (the words after `signalbox`) and returns its exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    const load = command === undefined ? undefined : COMMANDS[command];
    if (load) {
      // Asked anywhere before `--`, these win over everything else on the line, so
      // `audit verify --help` never opens a file named "--help". Vault prints its own help.
      if (asksFor(args, ['--version'])) return printVersion();
      if (asksFor(args, ['--help', '-h']) && command !== 'vault') {
        process.stdout.write(`${commandHelp(command as string)}\n`);
        return 0;
      }
      return await (await load())(args);
    }
    // `signalbox help CMD` is `signalbox CMD --help`.
    if (command === 'help' && args[0] !== undefined && COMMANDS[args[0]]) return await main([args[0], '--help']);
    switch (command) {
      case '--version':
      case 'version':
        return printVersion();
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
      // The failing command's own synopsis is the useful part; the whole list for anything else.
      const usage = command !== undefined && command !== 'vault' && command in HELP ? commandHelp(command) : USAGE;
      process.stderr.write(`signalbox: ${(error as Error).message}\n\n${usage}\n`);
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
