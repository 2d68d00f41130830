/**
 * `signalbox vault`: the credential vault's command (set, list, remove, rotate). Argument
 * parsing, printing and exit codes are here; the vault itself (encryption, the file, the
 * keyring) is src/vault/.
 *
 * A value is never taken from the command line (shell history, `ps`), and never echoed: an
 * unknown argument is refused without repeating it, since it may be a value someone tried to pass.
 */
import { resolve } from 'node:path';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { DEFAULT_VAULT_FILE } from '../vault/file.js';
import { VAULT_KEY_ENV, VAULT_OLD_KEYS_ENV, keyringFromEnv } from '../vault/keyring.js';
import { Vault } from '../vault/vault.js';
import { UsageError } from './command.js';

const MAX_STDIN_BYTES = 64 * 1024;

/** Where the command reads and writes: the process, or a test's stand-ins. */
export interface VaultCommandIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  readonly stdin: AsyncIterable<Buffer | string> & { readonly isTTY?: boolean };
  /** Where the default vault/credentials.json is resolved from. Default: process.cwd(). */
  readonly cwd?: string;
  readonly logger?: Logger;
}

/** The help of `signalbox vault`, printed on --help and after a usage error. */
export const VAULT_USAGE = `usage: signalbox vault <command> [--file PATH]

commands:
  set <name> [--from-env VAR]   store a credential; the value is read from stdin, or from the
                                environment variable VAR (never from the command line)
  list                          entry names, key ids and last change (never values)
  remove <name>                 delete an entry
  rotate                        re-encrypt every entry under the current key

options:
  --file PATH                   the vault file (default: ${DEFAULT_VAULT_FILE} in the current directory)

keys: ${VAULT_KEY_ENV}=<kid>:<base64 of 32 bytes> (current),
      ${VAULT_OLD_KEYS_ENV}=<kid>:<base64>,... (still accepted for decryption during a rotation)`;


interface ParsedCommand {
  command: string | undefined;
  positionals: string[];
  file: string | undefined;
  fromEnv: string | undefined;
  help: boolean;
}

/** A small parser of our own: node's parseArgs echoes unknown arguments, which may be secrets. */
function parseCommand(args: readonly string[]): ParsedCommand {
  const rest = args[0] === 'vault' ? args.slice(1) : [...args];
  const parsed: ParsedCommand = { command: undefined, positionals: [], file: undefined, fromEnv: undefined, help: false };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (flag === '--file' || flag === '--from-env') {
      const value = inline ?? rest[++i];
      if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
      if (flag === '--file') parsed.file = value;
      else parsed.fromEnv = value;
    } else if (flag === '-h' || flag === '--help') {
      parsed.help = true;
    } else if (flag.startsWith('-') && flag !== '-') {
      // Not echoed: an unknown "option" may be a value someone tried to pass (--sk-..., --value=...).
      throw new UsageError('unknown option (the options are --file, --from-env and --help)');
    } else if (parsed.command === undefined) {
      parsed.command = arg;
    } else {
      parsed.positionals.push(arg);
    }
  }
  return parsed;
}

async function readStdin(stdin: VaultCommandIo['stdin']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    size += buffer.length;
    if (size > MAX_STDIN_BYTES) throw new UsageError(`the value on stdin is longer than ${MAX_STDIN_BYTES} bytes`);
    chunks.push(buffer);
  }
  const all = Buffer.concat(chunks);
  const text = all.toString('utf8').replace(/\r?\n$/, '');
  all.fill(0);
  return text;
}

/**
 * `signalbox vault ...`: `args` are the words after `vault` (a leading "vault" is also
 * accepted). Returns the exit code: 0 done, 1 failed (or `remove` found nothing), 2 usage.
 */
export async function runVaultCommand(args: string[], io: VaultCommandIo): Promise<number> {
  let parsed: ParsedCommand;
  try {
    parsed = parseCommand(args);
  } catch (error) {
    io.stderr.write(`signalbox vault: ${(error as Error).message}\n\n${VAULT_USAGE}\n`);
    return 2;
  }
  if (parsed.help || parsed.command === undefined || parsed.command === 'help') {
    (parsed.help || parsed.command === 'help' ? io.stdout : io.stderr).write(`${VAULT_USAGE}\n`);
    return parsed.command === undefined && !parsed.help ? 2 : 0;
  }
  const usage = (message: string): number => {
    io.stderr.write(`signalbox vault: ${message}\n\n${VAULT_USAGE}\n`);
    return 2;
  };
  const { command, positionals } = parsed;
  const arity: Record<string, number> = { set: 1, list: 0, remove: 1, rotate: 0 };
  const expected = arity[command];
  if (expected === undefined) return usage('unknown command (the commands are set, list, remove and rotate)');
  if (command === 'set' && positionals.length > 1) {
    return usage('vault set never takes the value as an argument (it would be kept in shell history and shown by ps): pipe it on stdin or use --from-env VAR');
  }
  if (positionals.length !== expected) return usage(expected === 0 ? `vault ${command} takes no arguments` : `vault ${command} needs an entry name`);
  if (parsed.fromEnv !== undefined && command !== 'set') return usage('--from-env only applies to vault set');

  const path = resolve(io.cwd ?? process.cwd(), parsed.file ?? DEFAULT_VAULT_FILE);
  try {
    const vault = await Vault.open(path, keyringFromEnv(io.env), io.logger ? { logger: io.logger } : {});
    switch (command) {
      case 'set': {
        const name = positionals[0] as string;
        let value: string;
        if (parsed.fromEnv !== undefined) {
          const fromEnv = io.env[parsed.fromEnv];
          if (fromEnv === undefined || fromEnv === '') {
            io.stderr.write(`signalbox vault: environment variable ${parsed.fromEnv.slice(0, 64)} is not set or empty\n`);
            return 1;
          }
          value = fromEnv;
        } else {
          if (io.stdin.isTTY) io.stderr.write(`enter the value for "${name}", then press Ctrl-D (it is echoed; prefer a pipe or --from-env):\n`);
          value = await readStdin(io.stdin);
          if (value === '') {
            io.stderr.write('signalbox vault: no value on stdin; pipe the value in, or use --from-env VAR\n');
            return 1;
          }
        }
        await vault.set(name, value);
        io.stdout.write(`stored "${name}" under key id "${vault.toJSON().kid}" in ${vault.path}\n`);
        return 0;
      }
      case 'list': {
        const entries = vault.list();
        if (entries.length === 0) io.stderr.write(`vault ${vault.path} has no entries\n`);
        for (const entry of entries) io.stdout.write(`${entry.name}\t${entry.kid}\t${entry.updated_at}\n`);
        return 0;
      }
      case 'remove': {
        const name = positionals[0] as string;
        if (await vault.remove(name)) {
          io.stdout.write(`removed "${name}" from ${vault.path}\n`);
          return 0;
        }
        io.stderr.write(`signalbox vault: no entry named "${name}" in ${vault.path}\n`);
        return 1;
      }
      default: {
        const count = await vault.rotate();
        io.stdout.write(`re-encrypted ${count} ${count === 1 ? 'entry' : 'entries'} under key id "${vault.toJSON().kid}"\n`);
        return 0;
      }
    }
  } catch (error) {
    if (error instanceof UsageError) return usage(error.message);
    const message = error instanceof SignalboxError ? `${error.code}: ${error.message}` : `internal_error: ${describeCause(error)}`;
    io.stderr.write(`signalbox vault: ${message}\n`);
    return 1;
  }
}

/**
 * `signalbox vault ...` with the real process: keys from the environment, the value (for set)
 * from stdin. stdin is only touched when a value is read from it, so the other commands do not
 * wait on, or hold open, a terminal or pipe they never read.
 */
export async function vault(args: string[]): Promise<number> {
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
