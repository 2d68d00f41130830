/**
 * The ledger's schema, as numbered migrations applied once each, in order, recorded in
 * `ledger_migrations`. A migration is never edited once released: a change is a new one. Every
 * replica sharing a PostgreSQL server migrates at start; an advisory lock makes them take turns.
 */
import type { LedgerDatabase } from './database.js';

/** One schema step. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Every migration, oldest first. Amounts are integer micro-USD (bigint), as the budget store keeps them. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'entries, denials, records, cursors',
    sql: `
      CREATE TABLE ledger_entries (
        decision_id text PRIMARY KEY,
        time timestamptz,
        user_id text, team text, tenant text, session_id text, actor text, door text,
        model text, provider text, revision text,
        reserved_micro_usd bigint NOT NULL DEFAULT 0,
        state text NOT NULL DEFAULT 'held',
        cost_micro_usd bigint NOT NULL DEFAULT 0,
        input_tokens bigint NOT NULL DEFAULT 0,
        output_tokens bigint NOT NULL DEFAULT 0,
        cached_input_tokens bigint NOT NULL DEFAULT 0,
        late boolean NOT NULL DEFAULT false,
        via_usage boolean NOT NULL DEFAULT false,
        settled_at timestamptz
      );
      CREATE INDEX ledger_entries_time ON ledger_entries (time);
      CREATE TABLE ledger_budgets (
        decision_id text NOT NULL,
        scope text NOT NULL,
        window_name text NOT NULL,
        period text NOT NULL,
        PRIMARY KEY (decision_id, scope, window_name)
      );
      CREATE INDEX ledger_budgets_scope ON ledger_budgets (scope, window_name, period);
      CREATE TABLE ledger_denials (
        decision_id text PRIMARY KEY,
        time timestamptz NOT NULL,
        door text, user_id text, team text,
        reasons jsonb NOT NULL,
        http_status integer NOT NULL,
        revision text
      );
      CREATE INDEX ledger_denials_time ON ledger_denials (time DESC);
      CREATE TABLE ledger_records (
        decision_id text NOT NULL,
        hash text NOT NULL,
        record jsonb NOT NULL,
        PRIMARY KEY (decision_id, hash)
      );
      CREATE TABLE ledger_cursors (
        head text PRIMARY KEY,
        path text NOT NULL,
        byte_offset bigint NOT NULL,
        records bigint NOT NULL,
        loaded_at timestamptz NOT NULL
      );`,
  },
  {
    version: 2,
    name: 'who loaded what: the cursor names the process that follows its file',
    sql: `
      ALTER TABLE ledger_cursors ADD COLUMN instance text;
      CREATE INDEX ledger_entries_state ON ledger_entries (state, time);`,
  },
];

/** The advisory lock replicas take turns on while they migrate (a constant no other code uses). */
const MIGRATION_LOCK = 7263011;

/**
 * Creates the table of applied migrations when it is missing, under the migration lock:
 * PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against itself, and of replicas starting
 * together on a fresh database all but one failed on pg_type's unique index.
 */
async function ensureMigrationsTable(db: LedgerDatabase): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query('CREATE TABLE IF NOT EXISTS ledger_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
  });
}

/** The schema version a database is at (0: empty). */
export async function schemaVersion(db: LedgerDatabase): Promise<number> {
  await ensureMigrationsTable(db);
  const [row] = await db.query<{ version: number | null }>('SELECT max(version) AS version FROM ledger_migrations');
  return row?.version ?? 0;
}

/**
 * Applies the migrations `db` lacks, up to `upTo` (all by default), each in its own transaction
 * under an advisory lock, so replicas starting together apply each exactly once. Returns the
 * versions applied.
 */
export async function migrate(db: LedgerDatabase, upTo = MIGRATIONS.at(-1)?.version ?? 0): Promise<number[]> {
  await ensureMigrationsTable(db);
  const applied: number[] = [];
  for (const migration of MIGRATIONS) {
    if (migration.version > upTo) break;
    const done = await db.transaction(async (tx) => {
      // Held to the end of the transaction: a second replica waits here, then sees the row.
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const seen = await tx.query('SELECT 1 FROM ledger_migrations WHERE version = $1', [migration.version]);
      if (seen.length > 0) return false;
      for (const statement of migration.sql.split(';').map((s) => s.trim()).filter((s) => s.length > 0)) await tx.query(statement);
      await tx.query('INSERT INTO ledger_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      return true;
    });
    if (done) applied.push(migration.version);
  }
  return applied;
}
