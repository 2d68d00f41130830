/**
 * `signalbox spend report` and `signalbox spend reconcile`: the spend ledger, asked through a
 * running Signalbox's admin API (/v1/ledger/report, /v1/ledger/reconcile) like `signalbox
 * spend`, so the CLI needs the admin token, never the database's credentials.
 */
import { parseArgs } from 'node:util';
import { adminGet } from './admin-client.js';
import { outputFormat, print } from './command.js';

interface ReportRow {
  key: string;
  bucket?: string;
  cost_usd: number;
  cost_micro_usd: number;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  requests: number;
}

interface ReconcileRow {
  scope: string;
  window: string;
  period: string;
  counter_spent_micro_usd: number;
  ledger_micro_usd: number;
  difference_micro_usd: number;
  counter_held_micro_usd: number;
  ledger_open_holds: number;
}

interface Reconciliation {
  counters: ReconcileRow[];
  mismatches: number;
  ledger_only: { scope: string; window: string; period: string; ledger_micro_usd: number }[];
  notes: string[];
}

/** Micro-USD as USD with all six decimals (exact: amounts are integers). */
function usd(micro: number): string {
  const sign = micro < 0 ? '-' : '';
  const abs = Math.abs(micro);
  return `${sign}${Math.floor(abs / 1_000_000)}.${String(abs % 1_000_000).padStart(6, '0')}`;
}

/** An aligned text table; columns from `numericFrom` on are right-aligned. */
function table(rows: readonly string[][], numericFrom: number): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i >= numericFrom ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** RFC 4180: quoted when it holds a comma, quote or line break. */
function csvCell(cell: string): string {
  return /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
}

function reportText(rows: readonly ReportRow[], by: string, format: string): string {
  const bucketed = rows.some((r) => r.bucket !== undefined);
  const header = [by.toUpperCase(), ...(bucketed ? ['BUCKET'] : []), 'COST_USD', 'COST_MICRO_USD', 'INPUT_TOKENS', 'OUTPUT_TOKENS', 'CACHED_INPUT_TOKENS', 'REQUESTS'];
  const cells = rows.map((r) => [r.key, ...(bucketed ? [r.bucket ?? ''] : []), usd(r.cost_micro_usd), String(r.cost_micro_usd), String(r.input_tokens), String(r.output_tokens), String(r.cached_input_tokens), String(r.requests)]);
  if (format === 'csv') return [header, ...cells].map((row) => row.map(csvCell).join(',')).join('\n') + '\n';
  if (rows.length === 0) return 'no spend in the ledger for this period\n';
  const total = rows.reduce((sum, r) => sum + r.cost_micro_usd, 0);
  return table([header, ...cells], bucketed ? 2 : 1) + `TOTAL ${usd(total)} USD (${total} micro-USD)\n`;
}

function reconcileText(result: Reconciliation): string {
  const lines: string[] = [];
  if (result.counters.length === 0) lines.push('no live budget counters to compare');
  else {
    const rows = result.counters.map((r) => [r.scope, r.window, r.period, usd(r.counter_spent_micro_usd), usd(r.ledger_micro_usd), usd(r.difference_micro_usd), usd(r.counter_held_micro_usd), String(r.ledger_open_holds)]);
    lines.push(table([['SCOPE', 'WINDOW', 'PERIOD', 'COUNTER_SPENT_USD', 'LEDGER_USD', 'DIFFERENCE_USD', 'HELD_USD', 'OPEN_HOLDS'], ...rows], 3).trimEnd());
  }
  lines.push(result.mismatches === 0 ? 'reconciled: every counter equals the ledger' : `${result.mismatches} counter(s) differ from the ledger`);
  for (const only of result.ledger_only) lines.push(`not compared (no live counter): ${only.scope} ${only.window} ${only.period} ledger ${usd(only.ledger_micro_usd)} USD`);
  for (const note of result.notes) lines.push(`note: ${note}`);
  return lines.join('\n') + '\n';
}

/**
 * `spend report --by team|user|model|provider|session [--since ISO] [--until ISO] [--bucket hour|day]
 * [--format table|csv|json]` and `spend reconcile [--format table|json]`, both with `--url` and
 * `--token-file`. Returns 1 when the server answers with an error, or when reconcile finds a
 * difference.
 */
export async function spendLedger(command: 'report' | 'reconcile', args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      'token-file': { type: 'string' },
      format: { type: 'string' },
      by: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      bucket: { type: 'string' },
    },
    strict: true,
  });
  const connection = { url: values.url, tokenFile: values['token-file'], unreachable: 'ledger_unavailable' as const };
  if (command === 'report') {
    const format = outputFormat(values.format, ['table', 'csv', 'json'], 'table');
    const by = values.by ?? 'team';
    const answer = await adminGet<{ rows: ReportRow[] }>('/v1/ledger/report', { by, since: values.since, until: values.until, bucket: values.bucket, fresh: '1' }, connection);
    if (!answer.ok) return failed(answer);
    if (format === 'json') print(answer.body);
    else process.stdout.write(reportText(answer.body.rows, by, format));
    return 0;
  }
  const format = outputFormat(values.format, ['table', 'json'], 'table');
  const answer = await adminGet<Reconciliation>('/v1/ledger/reconcile', { fresh: '1' }, connection);
  if (!answer.ok) return failed(answer);
  if (format === 'json') print(answer.body);
  else process.stdout.write(reconcileText(answer.body));
  return answer.body.mismatches === 0 ? 0 : 1;
}

function failed(answer: { code: string; message: string }): number {
  process.stderr.write(`signalbox: ${answer.code}: ${answer.message}\n`);
  return 1;
}
