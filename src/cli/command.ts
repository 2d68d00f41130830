/**
 * What the `signalbox` commands share: the usage error main.ts answers with the usage text and
 * exit 2, the `--format` choice, and JSON on stdout.
 */

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
