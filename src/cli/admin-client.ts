/**
 * Calling a running Signalbox's administrative HTTP API from the command line (`spend`, `spend
 * report`, `spend reconcile`): where it is (`--url`, SIGNALBOX_URL, default
 * http://127.0.0.1:8181) and the admin token (`--token-file`, else SIGNALBOX_ADMIN_TOKEN).
 */
import { readFileSync } from 'node:fs';
import { SignalboxError, describeCause } from '../core/errors.js';
import { UsageError } from './command.js';

/**
 * The admin token to send: the first in `--token-file`, else the first in SIGNALBOX_ADMIN_TOKEN
 * (the server's default `server.admin.token_env`); undefined when neither is given.
 */
export function adminToken(tokenFile: string | undefined): string | undefined {
  let text = process.env.SIGNALBOX_ADMIN_TOKEN ?? '';
  if (tokenFile) {
    try {
      text = readFileSync(tokenFile, 'utf8');
    } catch (error) {
      throw new UsageError(`--token-file ${tokenFile} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
    }
  }
  return text.split(/[\s,]+/).find((t) => t.length > 0);
}

/** An answer from the admin API: the body when it succeeded, else the error it named. */
export type AdminAnswer<T> = { readonly ok: true; readonly body: T } | { readonly ok: false; readonly code: string; readonly message: string };

/**
 * GETs `path` with `params` from the Signalbox at `base` (or SIGNALBOX_URL), with the admin token.
 * An unreachable server throws `unreachable` (a catalogue code naming what could not be reached).
 */
export async function adminGet<T>(path: string, params: Readonly<Record<string, string | undefined>>, options: { url?: string | undefined; tokenFile?: string | undefined; unreachable: 'budget_store_unavailable' | 'ledger_unavailable' }): Promise<AdminAnswer<T>> {
  const base = options.url ?? process.env.SIGNALBOX_URL ?? 'http://127.0.0.1:8181';
  let url: URL;
  try {
    url = new URL(path, base);
  } catch (error) {
    throw new UsageError(`--url ${base} is not a URL`, { cause: error });
  }
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(name, value);
  const token = adminToken(options.tokenFile);
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(30_000), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  } catch (error) {
    throw new SignalboxError(options.unreachable, `cannot reach Signalbox at ${url.origin}: ${describeCause(error)}`, { cause: error });
  }
  const body = (await response.json().catch(() => ({}))) as T & { error?: { code: string; message: string } };
  if (!response.ok) return { ok: false, code: body.error?.code ?? 'internal_error', message: body.error?.message ?? `HTTP ${response.status}` };
  return { ok: true, body };
}
