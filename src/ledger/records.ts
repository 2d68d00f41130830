/**
 * What one audit record means to the ledger, and the upserts that apply it. Each upsert is keyed
 * by decision id and safe to repeat, and records of one decision may arrive in any order (from
 * other replicas' files, through a shared database): a decision record fills in who and what, a
 * settlement record the actual cost, a response record that the cost came from the answer's own
 * usage. A settlement replaces an expiry; an expiry never replaces a settlement. The door is the
 * one the request came through (the decision's), the model the one settled for when a report
 * named it.
 */
import { usdToMicro } from '../core/money.js';
import type { SqlClient } from './database.js';

type Json = Record<string, unknown>;

function object(value: unknown): Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}

function text(value: unknown): string | null {
  return typeof value === 'string' && value.length > 0 ? value : null;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

function micro(usd: unknown): number {
  return typeof usd === 'number' && Number.isFinite(usd) && usd >= 0 ? usdToMicro(usd, 'nearest') : 0;
}

/** The response record's `settlement` values that mean the hold was settled from the answer itself. */
const FROM_ANSWER = new Set(['provider_usage', 'counted', 'error_response']);

/** Whether a record concerns the ledger at all (cheap, before any SQL). */
export function ledgerRelevant(record: Json): boolean {
  if (typeof record.decision_id !== 'string') return false;
  if (record.type === 'settlement' || record.type === 'response') return true;
  if (record.type !== undefined) return false;
  const decision = object(record.decision);
  if (decision.allowed === false || object(record.enforcement).outcome === 'reserved') return true;
  // An allowed LLM call that reserved nothing (no budget named) may still be reported on.
  return decision.allowed === true && object(object(record.input).llm).api !== undefined;
}

/** Applies one audit record to the ledger through `db`. Returns true when it changed (or re-stated) something. */
export async function applyRecord(db: SqlClient, record: Json): Promise<boolean> {
  const id = record.decision_id as string;
  const time = text(record.timestamp);
  if (record.type === 'settlement') {
    const usage = object(record.usage);
    await db.query(
      `INSERT INTO ledger_entries (decision_id, state, cost_micro_usd, input_tokens, output_tokens, cached_input_tokens, late, model, provider, settled_at, door)
       VALUES ($1, 'settled', $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (decision_id) DO UPDATE SET state = 'settled', cost_micro_usd = EXCLUDED.cost_micro_usd,
         input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens, cached_input_tokens = EXCLUDED.cached_input_tokens,
         late = EXCLUDED.late OR ledger_entries.state = 'expired' OR ledger_entries.late,
         model = COALESCE(EXCLUDED.model, ledger_entries.model), provider = COALESCE(EXCLUDED.provider, ledger_entries.provider),
         settled_at = EXCLUDED.settled_at`,
      [id, micro(record.cost_usd), count(usage.input_tokens), count(usage.output_tokens), count(usage.cached_input_tokens), record.late === true, text(record.model), text(record.provider), time, text(record.door)],
    );
    await keep(db, id, record);
    return true;
  }
  if (record.type === 'response') {
    if (!FROM_ANSWER.has(String(record.settlement))) return false;
    await db.query(
      `INSERT INTO ledger_entries (decision_id, via_usage) VALUES ($1, true)
       ON CONFLICT (decision_id) DO UPDATE SET via_usage = true`,
      [id],
    );
    await keep(db, id, record);
    return true;
  }
  const input = object(record.input);
  const identity = object(input.identity);
  const llm = object(input.llm);
  const actor = object(input.actor);
  const decision = object(record.decision);
  const revision = text(object(object(record.bundles).signalbox).revision);
  const who = {
    user: text(identity.subject),
    team: text(identity.team),
    tenant: text(identity.tenant),
    door: text(record.door),
  };
  if (decision.allowed === false) {
    const reasons = Array.isArray(decision.reasons) ? decision.reasons.filter((r) => typeof r === 'string') : [];
    await db.query(
      `INSERT INTO ledger_denials (decision_id, time, door, user_id, team, reasons, http_status, revision)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (decision_id) DO NOTHING`,
      [id, time, who.door, who.user, who.team, JSON.stringify(reasons), count(decision.http_status), revision],
    );
    await keep(db, id, record);
    return true;
  }
  const enforcement = object(record.enforcement);
  const reserved = enforcement.outcome === 'reserved';
  if (!reserved && object(input.llm).api === undefined) return false;
  const actorName = text(actor.principal) ?? text(actor.subject) ?? text(actor.client_id) ?? text(actor.id);
  // A decision that reserved nothing is `unheld`: no hold to expire, and no spend until a report
  // for it (a settlement with hold: none) arrives, which it then becomes.
  await db.query(
    `INSERT INTO ledger_entries (decision_id, time, user_id, team, tenant, session_id, actor, door, model, provider, revision, reserved_micro_usd, state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (decision_id) DO UPDATE SET time = EXCLUDED.time, user_id = EXCLUDED.user_id, team = EXCLUDED.team, tenant = EXCLUDED.tenant,
       session_id = EXCLUDED.session_id, actor = EXCLUDED.actor, door = COALESCE(EXCLUDED.door, ledger_entries.door),
       model = COALESCE(ledger_entries.model, EXCLUDED.model), provider = COALESCE(ledger_entries.provider, EXCLUDED.provider),
       revision = EXCLUDED.revision, reserved_micro_usd = EXCLUDED.reserved_micro_usd`,
    [id, time, who.user, who.team, who.tenant, text(object(input.session).id), actorName, who.door, text(llm.model), text(llm.provider), revision, micro(enforcement.reserved_usd), reserved ? 'held' : 'unheld'],
  );
  const budgets = Array.isArray(enforcement.budgets) ? enforcement.budgets.map(object) : [];
  for (const budget of budgets) {
    const scope = text(budget.scope);
    const window = text(budget.window);
    const period = text(budget.period);
    if (!scope || !window || !period) continue;
    await db.query('INSERT INTO ledger_budgets (decision_id, scope, window_name, period) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [id, scope, window, period]);
  }
  await keep(db, id, record);
  return true;
}

/** Keeps the (already masked) record itself, for GET /v1/ledger/decisions/{id}; by its chain hash, so a replay adds nothing. */
async function keep(db: SqlClient, id: string, record: Json): Promise<void> {
  const hash = text(record.hash) ?? `${String(record.type ?? 'decision')}:${String(record.timestamp)}`;
  await db.query('INSERT INTO ledger_records (decision_id, hash, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [id, hash, JSON.stringify(record)]);
}

/**
 * Turns holds nobody settled within `holdTtlMs` of their decision into `expired` rows, costing
 * their estimate (`charge`) or nothing (`release`), as the budget store does. Returns how many.
 */
export async function expireHolds(db: SqlClient, nowMs: number, holdTtlMs: number, policy: 'charge' | 'release'): Promise<number> {
  const rows = await db.query(
    `UPDATE ledger_entries SET state = 'expired', cost_micro_usd = CASE WHEN $3 = 'charge' THEN reserved_micro_usd ELSE 0 END, settled_at = time + ($2 || ' milliseconds')::interval
     WHERE state = 'held' AND time IS NOT NULL AND time < $1::timestamptz - ($2 || ' milliseconds')::interval RETURNING decision_id`,
    [new Date(nowMs).toISOString(), String(holdTtlMs), policy],
  );
  return rows.length;
}
