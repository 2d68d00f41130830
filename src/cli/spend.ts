/**
 * `signalbox spend`: current spend and holds per budget, from a running Signalbox's /v1/spend;
 * `spend report` and `spend reconcile` ask its spend ledger (spend-report.ts).
 */
import { parseArgs } from 'node:util';
import { adminGet } from './admin-client.js';
import { print } from './command.js';

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
 * `signalbox spend [--url URL] [--scope SCOPE] [--window WINDOW] [--token-file PATH] [--json]`:
 * asks the Signalbox at `--url` (or SIGNALBOX_URL, default http://127.0.0.1:8181), with the admin
 * token from `--token-file` or SIGNALBOX_ADMIN_TOKEN, and prints a table, or its JSON. Returns 1
 * when it answers with an error (401 without a token); an unreachable one throws `budget_store_unavailable`.
 */
export async function spend(args: string[]): Promise<number> {
  if (args[0] === 'report' || args[0] === 'reconcile') return (await import('./spend-report.js')).spendLedger(args[0], args.slice(1));
  const { values } = parseArgs({
    args,
    options: { url: { type: 'string' }, scope: { type: 'string' }, window: { type: 'string' }, json: { type: 'boolean' }, 'token-file': { type: 'string' } },
    strict: true,
  });
  const answer = await adminGet<{ budgets: SpendRow[] }>('/v1/spend', { scope: values.scope, window: values.window }, { url: values.url, tokenFile: values['token-file'], unreachable: 'budget_store_unavailable' });
  if (!answer.ok || !answer.body.budgets) {
    process.stderr.write(`signalbox: ${answer.ok ? 'internal_error: no budgets in the answer' : `${answer.code}: ${answer.message}`}\n`);
    return 1;
  }
  const body = answer.body;
  if (values.json) print(body);
  else process.stdout.write(spendTable(body.budgets));
  return 0;
}
