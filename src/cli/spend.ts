/**
 * `signalbox spend`: current spend and holds per budget, from a running Signalbox's /v1/spend.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SignalboxError, describeCause } from '../core/errors.js';
import { UsageError, print } from './command.js';

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

/**
 * The admin token to send: the first in `--token-file`, else the first in SIGNALBOX_ADMIN_TOKEN
 * (the server's default `server.admin.token_env`); undefined when neither is given.
 */
function adminToken(tokenFile: string | undefined): string | undefined {
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

/**
 * `signalbox spend [--url URL] [--scope SCOPE] [--window WINDOW] [--token-file PATH] [--json]`:
 * asks the Signalbox at `--url` (or SIGNALBOX_URL, default http://127.0.0.1:8181), with the admin
 * token from `--token-file` or SIGNALBOX_ADMIN_TOKEN, and prints a table, or its JSON. Returns 1
 * when it answers with an error (401 without a token); an unreachable one throws `budget_store_unavailable`.
 */
export async function spend(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { url: { type: 'string' }, scope: { type: 'string' }, window: { type: 'string' }, json: { type: 'boolean' }, 'token-file': { type: 'string' } },
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
  const token = adminToken(values['token-file']);
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(10_000), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
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
