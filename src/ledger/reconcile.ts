/**
 * Reconciliation: the ledger's totals against the live budget counters. Only some things are
 * comparable, and the answer says so: a counter exists only for the scopes and windows a policy
 * named (and only while its window lives), so the ledger is compared per counter (scope, window,
 * period) over the decisions that reserved against it; a hold still open is in neither the
 * counter's spent nor the ledger; and the ledger sees only the audit files loaded into it (every
 * replica's, with a shared PostgreSQL; this process's, embedded).
 */
import { microToUsd, usdToMicro } from '../core/money.js';
import type { SqlClient } from './database.js';

/** A live counter as the budget store reports it (`/v1/spend`'s rows). */
export interface CounterView {
  readonly scope: string;
  readonly window: string;
  readonly period: string;
  readonly spent_usd: number;
  readonly held_usd: number;
}

/** One counter compared. `difference_micro_usd` is counter minus ledger: 0 when they agree. */
export interface ReconcileRow {
  readonly scope: string;
  readonly window: string;
  readonly period: string;
  readonly counter_spent_micro_usd: number;
  readonly ledger_micro_usd: number;
  readonly difference_micro_usd: number;
  readonly difference_usd: number;
  /** Held on the counter now: not spent, and not in the ledger either. */
  readonly counter_held_micro_usd: number;
  /** Holds the ledger has seen reserved against this counter and not yet settled or expired. */
  readonly ledger_open_holds: number;
}

/** The comparison, with what was left out and why. */
export interface Reconciliation {
  readonly counters: ReconcileRow[];
  readonly mismatches: number;
  /** Ledger groups with no live counter (its window ended and was forgotten, or another store): not comparable. */
  readonly ledger_only: { scope: string; window: string; period: string; ledger_micro_usd: number }[];
  readonly notes: string[];
}

const NOTES = [
  'Compared per live budget counter (scope, window, period): counters exist only for budgets a policy named, while their window lives.',
  'Holds still open are neither spent on the counter nor rows in the ledger; they are shown, not compared.',
  'The ledger holds what it has loaded: run again after ledger.poll_ms if records are still being loaded (see /v1/ledger/status lag_records).',
];

/** Compares every counter in `counters` with the ledger's total for it. */
export async function reconcile(db: SqlClient, counters: readonly CounterView[]): Promise<Reconciliation> {
  const rows = await db.query<Record<string, unknown>>(
    `SELECT b.scope, b.window_name, b.period,
       COALESCE(sum(e.cost_micro_usd) FILTER (WHERE e.state IN ('settled', 'expired')), 0)::float8 AS cost,
       count(*) FILTER (WHERE e.state = 'held')::float8 AS open
     FROM ledger_budgets b JOIN ledger_entries e ON e.decision_id = b.decision_id
     GROUP BY 1, 2, 3`,
  );
  const ledger = new Map(rows.map((r) => [`${String(r.scope)}\u0000${String(r.window_name)}\u0000${String(r.period)}`, { cost: Number(r.cost), open: Number(r.open), row: r }]));
  const compared: ReconcileRow[] = counters.map((c) => {
    const key = `${c.scope}\u0000${c.window}\u0000${c.period}`;
    const found = ledger.get(key);
    ledger.delete(key);
    const spent = usdToMicro(c.spent_usd, 'nearest');
    const cost = found?.cost ?? 0;
    return {
      scope: c.scope,
      window: c.window,
      period: c.period,
      counter_spent_micro_usd: spent,
      ledger_micro_usd: cost,
      difference_micro_usd: spent - cost,
      difference_usd: microToUsd(spent - cost),
      counter_held_micro_usd: usdToMicro(c.held_usd, 'nearest'),
      ledger_open_holds: found?.open ?? 0,
    };
  });
  const ledgerOnly = [...ledger.values()].map(({ cost, row }) => ({ scope: String(row.scope), window: String(row.window_name), period: String(row.period), ledger_micro_usd: cost }));
  return { counters: compared, mismatches: compared.filter((r) => r.difference_micro_usd !== 0).length, ledger_only: ledgerOnly, notes: NOTES };
}
