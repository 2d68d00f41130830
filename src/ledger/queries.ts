/**
 * What the ledger answers: spend reports (optionally bucketed by hour or day, for charts),
 * recent denials, the audit records of one decision, and where the loader stands. Only rows
 * that are settled or expired count; a hold still open is neither spent nor in a report.
 */
import { SignalboxError } from '../core/errors.js';
import { microToUsd } from '../core/money.js';
import type { SqlClient } from './database.js';

/** What a report groups by. */
export const REPORT_KEYS = ['team', 'user', 'model', 'provider', 'session'] as const;
/** A report's grouping. */
export type ReportKey = (typeof REPORT_KEYS)[number];

const COLUMN: Readonly<Record<ReportKey, string>> = { team: 'team', user: 'user_id', model: 'model', provider: 'provider', session: 'session_id' };

/** A report's question. */
export interface ReportQuery {
  readonly by: ReportKey;
  readonly since?: Date;
  readonly until?: Date;
  readonly bucket?: 'hour' | 'day';
}

/** One report row: a key (and bucket), its cost and tokens, how many settled or expired requests. */
export interface ReportRow {
  readonly key: string;
  readonly bucket?: string;
  readonly cost_usd: number;
  readonly cost_micro_usd: number;
  readonly input_tokens: number;
  readonly output_tokens: number;
  readonly cached_input_tokens: number;
  readonly requests: number;
}

/** The key shown for rows without one (no team claim, no session). */
export const NO_KEY = '(none)';

/** Checks a report's parameters as the HTTP API and the CLI receive them; throws ledger_query_malformed. */
export function parseReportQuery(params: { by?: string | null; since?: string | null; until?: string | null; bucket?: string | null }): ReportQuery {
  const by = params.by ?? 'team';
  if (!(REPORT_KEYS as readonly string[]).includes(by)) throw new SignalboxError('ledger_query_malformed', `by must be one of ${REPORT_KEYS.join(', ')}`);
  const date = (name: string, value: string | null | undefined): Date | undefined => {
    if (value === null || value === undefined || value === '') return undefined;
    const parsed = new Date(value);
    if (Number.isNaN(parsed.getTime())) throw new SignalboxError('ledger_query_malformed', `${name} must be an ISO 8601 time`);
    return parsed;
  };
  const bucket = params.bucket ?? undefined;
  if (bucket !== undefined && bucket !== '' && bucket !== 'hour' && bucket !== 'day') throw new SignalboxError('ledger_query_malformed', 'bucket must be hour or day');
  const since = date('since', params.since);
  const until = date('until', params.until);
  return { by: by as ReportKey, ...(since ? { since } : {}), ...(until ? { until } : {}), ...(bucket ? { bucket } : {}) };
}

/** Spend grouped by `query.by` (and bucket), largest cost first; `since` inclusive, `until` exclusive, on the decision's time. */
export async function report(db: SqlClient, query: ReportQuery): Promise<ReportRow[]> {
  const column = COLUMN[query.by];
  const bucket = query.bucket ? `date_trunc('${query.bucket}', COALESCE(time, settled_at) AT TIME ZONE 'UTC')` : 'NULL';
  const rows = await db.query<Record<string, unknown>>(
    `SELECT COALESCE(${column}, $3) AS key, ${bucket} AS bucket,
       sum(cost_micro_usd)::float8 AS cost, sum(input_tokens)::float8 AS input, sum(output_tokens)::float8 AS output,
       sum(cached_input_tokens)::float8 AS cached, count(*)::float8 AS requests
     FROM ledger_entries
     WHERE state IN ('settled', 'expired') AND time IS NOT NULL
       AND ($1::timestamptz IS NULL OR COALESCE(time, settled_at) >= $1) AND ($2::timestamptz IS NULL OR COALESCE(time, settled_at) < $2)
     GROUP BY 1, 2 ORDER BY ${query.bucket ? '2, 3 DESC, 1' : '3 DESC, 1'}`,
    [query.since?.toISOString() ?? null, query.until?.toISOString() ?? null, NO_KEY],
  );
  return rows.map((r) => {
    const cost = Number(r.cost);
    return {
      key: String(r.key),
      ...(query.bucket ? { bucket: utcIso(r.bucket) } : {}),
      cost_usd: microToUsd(cost),
      cost_micro_usd: cost,
      input_tokens: Number(r.input),
      output_tokens: Number(r.output),
      cached_input_tokens: Number(r.cached),
      requests: Number(r.requests),
    };
  });
}

/** A `timestamp` (without zone, already UTC) as the drivers return it, as ISO 8601 UTC. */
function utcIso(value: unknown): string {
  if (value instanceof Date) {
    // Drivers read a zoneless timestamp as local time; its fields are the UTC ones.
    return new Date(Date.UTC(value.getFullYear(), value.getMonth(), value.getDate(), value.getHours(), value.getMinutes(), value.getSeconds())).toISOString();
  }
  return new Date(`${String(value).replace(' ', 'T')}Z`).toISOString();
}

/** A recent denial, as the console lists it. */
export interface DenialRow {
  readonly time: string;
  readonly decision_id: string;
  readonly door: string | null;
  readonly user: string | null;
  readonly team: string | null;
  readonly reasons: string[];
  readonly http_status: number;
  readonly revision: string | null;
}

/** The `limit` most recent denials, newest first. */
export async function denials(db: SqlClient, limit: number): Promise<DenialRow[]> {
  const rows = await db.query<Record<string, unknown>>(
    'SELECT decision_id, time, door, user_id, team, reasons, http_status, revision FROM ledger_denials ORDER BY time DESC, decision_id LIMIT $1',
    [limit],
  );
  return rows.map((r) => ({
    time: new Date(r.time as string | Date).toISOString(),
    decision_id: String(r.decision_id),
    door: (r.door as string | null) ?? null,
    user: (r.user_id as string | null) ?? null,
    team: (r.team as string | null) ?? null,
    reasons: (typeof r.reasons === 'string' ? JSON.parse(r.reasons) : r.reasons) as string[],
    http_status: Number(r.http_status),
    revision: (r.revision as string | null) ?? null,
  }));
}

/** The masked audit records kept for a decision (decision, settlement, response), in time order. */
export async function decisionRecords(db: SqlClient, decisionId: string): Promise<unknown[]> {
  const rows = await db.query<{ record: unknown }>('SELECT record FROM ledger_records WHERE decision_id = $1', [decisionId]);
  const records = rows.map((r) => (typeof r.record === 'string' ? JSON.parse(r.record) : r.record) as Record<string, unknown>);
  return records.sort((a, b) => String(a.timestamp).localeCompare(String(b.timestamp)));
}

/** How many rows the ledger holds (settled or expired), and holds still open. */
export async function rowCounts(db: SqlClient): Promise<{ rows: number; open_holds: number }> {
  const [r] = await db.query<Record<string, unknown>>(
    "SELECT count(*) FILTER (WHERE state IN ('settled', 'expired'))::float8 AS rows, count(*) FILTER (WHERE state = 'held')::float8 AS open FROM ledger_entries",
  );
  return { rows: Number(r?.rows ?? 0), open_holds: Number(r?.open ?? 0) };
}

/** A decision's ledger row, as `GET /v1/ledger/decisions/{id}` shows it. */
export interface EntryRow {
  readonly decision_id: string;
  readonly time: string | null;
  readonly user: string | null;
  readonly team: string | null;
  readonly tenant: string | null;
  readonly session: string | null;
  readonly actor: string | null;
  readonly door: string | null;
  readonly model: string | null;
  readonly provider: string | null;
  readonly revision: string | null;
  readonly input_tokens: number;
  readonly output_tokens: number;
  readonly cached_input_tokens: number;
  readonly cost_usd: number;
  readonly cost_micro_usd: number;
  readonly reserved_micro_usd: number;
  /** `held` (not settled yet), `unreported` (nothing held, nothing reported), `reported`, `usage` (from the answer itself), `expired` or `late`. */
  readonly settled_as: 'held' | 'unreported' | 'reported' | 'usage' | 'expired' | 'late';
}

/** How a row settled, from what its records said (in whatever order they came). */
const SETTLED_AS = `CASE WHEN state = 'held' THEN 'held' WHEN state = 'unheld' THEN 'unreported' WHEN state = 'expired' THEN 'expired' WHEN late THEN 'late' WHEN via_usage THEN 'usage' ELSE 'reported' END`;

/** The ledger row of one decision, or undefined. */
export async function entry(db: SqlClient, decisionId: string): Promise<EntryRow | undefined> {
  const [r] = await db.query<Record<string, unknown>>(`SELECT *, ${SETTLED_AS} AS settled_as FROM ledger_entries WHERE decision_id = $1`, [decisionId]);
  if (!r) return undefined;
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const cost = Number(r.cost_micro_usd);
  return {
    decision_id: String(r.decision_id),
    time: r.time === null || r.time === undefined ? null : new Date(r.time as string | Date).toISOString(),
    user: str(r.user_id),
    team: str(r.team),
    tenant: str(r.tenant),
    session: str(r.session_id),
    actor: str(r.actor),
    door: str(r.door),
    model: str(r.model),
    provider: str(r.provider),
    revision: str(r.revision),
    input_tokens: Number(r.input_tokens),
    output_tokens: Number(r.output_tokens),
    cached_input_tokens: Number(r.cached_input_tokens),
    cost_usd: microToUsd(cost),
    cost_micro_usd: cost,
    reserved_micro_usd: Number(r.reserved_micro_usd),
    settled_as: r.settled_as as EntryRow['settled_as'],
  };
}
