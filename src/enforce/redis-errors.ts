/**
 * Redis client errors as they reach logs: the ioredis cause (timeout, ECONNREFUSED, READONLY...)
 * kept, every password the store was configured with masked.
 */
import { describeCause } from '../core/errors.js';

/** Where a store's passwords come from: the standalone URL and the Cluster password. */
export interface RedisSecretSources {
  readonly url?: string;
  readonly password?: string;
}

/**
 * The passwords a client error could echo (ioredis puts none in its messages today; a URL in a
 * future one must still not reach a log), in the forms they could appear.
 */
export function secretsOf(options: RedisSecretSources): string[] {
  const secrets: string[] = [];
  if (options.password) secrets.push(options.password);
  if (options.url) {
    try {
      const password = new URL(options.url).password;
      if (password) secrets.push(password, decodeURIComponent(password));
    } catch {
      // The config schema checked the scheme; an unparsable URL has no password to find.
    }
  }
  return secrets.filter((s) => s.length > 0);
}

/** The ioredis error as one log line: its message and error code (ECONNREFUSED, READONLY...). */
export function clientCause(error: unknown): string {
  const text = describeCause(error);
  const code = error instanceof Error ? (error as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
}

/** Replaces every one of `secrets` in `text` by ***. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let masked = text;
  for (const secret of secrets) masked = masked.split(secret).join('***');
  return masked;
}
