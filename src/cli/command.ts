/**
 * What the `signalbox` commands share: the usage error main.ts answers with the usage text and
 * exit 2, `--help` and `--version`, the `--format` choice, and JSON on stdout.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../core/paths.js';

/** A mistake on the command line: main.ts prints its message with the usage and exits 2. */
export class UsageError extends Error {}

/** Prints a value as indented JSON on stdout (what scripts read). */
export function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Text on a terminal, JSON when piped (scripts read it), unless --format says. */
export function outputFormat(value: string | undefined, allowed: readonly string[], fallback: string): string {
  const format = value ?? fallback;
  if (!allowed.includes(format)) throw new UsageError(`--format must be one of ${allowed.join(', ')}`);
  return format;
}

/** Whether one of `flags` is among `args` before a `--` (after it, every word is an operand). */
export function asksFor(args: readonly string[], flags: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((arg) => flags.includes(arg));
}

/** The version in the installed package.json: what `signalbox --version` prints. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
