/**
 * The ledger's database: one small interface over PGlite (embedded Postgres in WASM, the
 * default) and a PostgreSQL server (`pg`), so both run the very same SQL. Each driver is loaded
 * only when chosen.
 */
import { mkdir } from 'node:fs/promises';
import { SignalboxError, describeCause } from '../core/errors.js';

/** A row as the drivers return it. */
export type Row = Record<string, unknown>;

/** What the ledger asks of a database: parameterised queries, transactions, and closing. */
export interface SqlClient {
  query<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
}

/** An open ledger database. */
export interface LedgerDatabase extends SqlClient {
  /** `embedded` or `postgres`, as `/v1/ledger/status` shows it. */
  readonly kind: 'embedded' | 'postgres';
  /** Runs `work` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (client: SqlClient) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A database error as the ledger reports it: the cause is logged by whoever catches it, never shown to callers. */
function unavailable(what: string, error: unknown): SignalboxError {
  return new SignalboxError('ledger_unavailable', `${what}: ${describeCause(error)}`, { cause: error });
}

/** Opens PGlite with its data in `dir` (created when missing); `memory://` keeps it in memory (tests). */
export async function openEmbedded(dir: string): Promise<LedgerDatabase> {
  const { PGlite } = await import('@electric-sql/pglite');
  if (!dir.startsWith('memory://')) await mkdir(dir, { recursive: true });
  let db: InstanceType<typeof PGlite>;
  try {
    db = await PGlite.create(dir);
  } catch (error) {
    throw unavailable(`the embedded ledger database in ${dir} cannot be opened (is another process using it?)`, error);
  }
  const query = async <T extends Row>(sql: string, params: readonly unknown[] = []): Promise<T[]> => (await db.query<T>(sql, [...params])).rows;
  return {
    kind: 'embedded',
    query,
    // PGlite is one connection: its own transaction() serialises them.
    transaction: (work) => db.transaction((tx) => work({ query: async <T extends Row>(sql: string, params: readonly unknown[] = []) => (await tx.query<T>(sql, [...params])).rows })),
    close: () => db.close(),
  };
}

/** Connects to the PostgreSQL server at `url` (a pool; the first query proves it answers). */
export async function openPostgres(url: string): Promise<LedgerDatabase> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
  // An idle client's error (the server restarted) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const query = async <T extends Row>(sql: string, params: readonly unknown[] = []): Promise<T[]> => {
    try {
      return (await pool.query(sql, [...params])).rows as T[];
    } catch (error) {
      throw unavailable('the ledger database query failed', error);
    }
  };
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => undefined);
    // The message names no URL: it may carry a password.
    throw unavailable('the ledger PostgreSQL server cannot be reached', error);
  }
  return {
    kind: 'postgres',
    query,
    async transaction(work) {
      const client = await pool.connect().catch((error: unknown) => {
        throw unavailable('the ledger PostgreSQL server cannot be reached', error);
      });
      try {
        await client.query('BEGIN');
        const result = await work({ query: async <T extends Row>(sql: string, params: readonly unknown[] = []) => (await client.query(sql, [...params])).rows as T[] });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error instanceof SignalboxError ? error : unavailable('a ledger transaction failed', error);
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
