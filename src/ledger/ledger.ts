/**
 * The spend ledger as the rest of Signalbox sees it: opens the configured database, migrates it,
 * follows the audit trail into it (loader.ts) and answers reports, denials, decisions, status
 * and reconciliation (queries.ts, reconcile.ts).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SignalboxError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { LedgerConfig } from './config.js';
import { openEmbedded, openPostgres, type LedgerDatabase } from './database.js';
import { LedgerLoader, type LoadedFile, type LoadPass } from './loader.js';
import { migrate } from './migrations.js';
import { decisionRecords, denials, entry, report, rowCounts, type DenialRow, type EntryRow, type ReportQuery, type ReportRow } from './queries.js';
import { reconcile, type CounterView, type Reconciliation } from './reconcile.js';

/** Where the ledger loads from and how holds expire (the `audit` and `budgets` sections). */
export interface LedgerOptions {
  readonly auditPath: string;
  readonly holdTtlMs: number;
  readonly expiredHolds: 'charge' | 'release';
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** False: serve queries but do not load (a worker other than the first, with PostgreSQL). */
  readonly load?: boolean;
  readonly clock?: () => number;
}

/** `/v1/ledger/status`. */
export interface LedgerStatus {
  readonly database: 'embedded' | 'postgres';
  readonly rows: number;
  readonly open_holds: number;
  readonly last_loaded_at: string | null;
  readonly files: LoadedFile[];
  readonly lag_records: number;
}

/** The PostgreSQL URL from `postgres_url_file` or the `postgres_url_env` variable; never logged. */
async function postgresUrl(config: LedgerConfig, env: NodeJS.ProcessEnv): Promise<string> {
  if (config.postgres_url_file) {
    const text = await readFile(config.postgres_url_file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new SignalboxError('config_invalid', `ledger.postgres_url_file ${config.postgres_url_file} cannot be read: ${error.code ?? 'error'}`);
    });
    const url = text.split('\n')[0]?.trim();
    if (url) return url;
    throw new SignalboxError('config_invalid', `ledger.postgres_url_file ${config.postgres_url_file} is empty`);
  }
  const url = env[config.postgres_url_env]?.trim();
  if (!url) throw new SignalboxError('config_invalid', `ledger.database is postgres but ${config.postgres_url_env} is not set (or set ledger.postgres_url_file)`);
  return url;
}

/** Opens the database `config` names (migrated to the newest schema). */
export async function openLedgerDatabase(config: LedgerConfig, env: NodeJS.ProcessEnv = process.env): Promise<LedgerDatabase> {
  const db = config.database === 'postgres' ? await openPostgres(await postgresUrl(config, env)) : await openEmbedded(config.dir.startsWith('memory://') ? config.dir : resolve(config.dir));
  try {
    await migrate(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error instanceof SignalboxError ? error : new SignalboxError('ledger_unavailable', 'the ledger database could not be migrated', { cause: error });
  }
  return db;
}

/**
 * What the ledger answers, wherever it runs: the process's own {@link SpendLedger}, or (a worker
 * over the embedded database, which only the primary opens) a client that asks the primary.
 */
export type LedgerView = Pick<SpendLedger, 'loadNow' | 'report' | 'denials' | 'decision' | 'entry' | 'reconcile' | 'status'>;

/** The running ledger. */
export class SpendLedger {
  private constructor(
    private readonly db: LedgerDatabase,
    private readonly loader: LedgerLoader,
  ) {}

  /** Opens the database, migrates it and, unless `options.load` is false, starts loading. */
  static async open(config: LedgerConfig, options: LedgerOptions): Promise<SpendLedger> {
    const db = await openLedgerDatabase(config, options.env);
    return SpendLedger.over(db, config, options);
  }

  /** A ledger over an open database (tests choose theirs); starts loading unless `options.load` is false. */
  static over(db: LedgerDatabase, config: Pick<LedgerConfig, 'poll_ms' | 'retention_days'>, options: LedgerOptions): SpendLedger {
    const loader = new LedgerLoader({
      db,
      auditPath: resolve(options.auditPath),
      pollMs: config.poll_ms,
      holdTtlMs: options.holdTtlMs,
      expiredHolds: options.expiredHolds,
      retentionDays: config.retention_days,
      logger: options.logger,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    if (options.load !== false) loader.start();
    return new SpendLedger(db, loader);
  }

  /** Loads what the audit files gained now, rather than at the next poll (tests, and `?fresh=1`). */
  loadNow(): Promise<LoadPass> {
    return this.loader.loadOnce();
  }

  /** Spend grouped as `query` asks. */
  report(query: ReportQuery): Promise<ReportRow[]> {
    return report(this.db, query);
  }

  /** The most recent denials. */
  denials(limit: number): Promise<DenialRow[]> {
    return denials(this.db, limit);
  }

  /** The masked audit records of one decision; ledger_not_found when none are kept. */
  async decision(decisionId: string): Promise<unknown[]> {
    const records = await decisionRecords(this.db, decisionId);
    if (records.length === 0) throw new SignalboxError('ledger_not_found', 'the ledger keeps no record of this decision');
    return records;
  }

  /** A decision's ledger row (with how it settled), or null when it has none (a denial, a call without a hold). */
  async entry(decisionId: string): Promise<EntryRow | null> {
    return (await entry(this.db, decisionId)) ?? null;
  }

  /** The ledger's totals against live counters. */
  reconcile(counters: readonly CounterView[]): Promise<Reconciliation> {
    return reconcile(this.db, counters);
  }

  /** Where the ledger stands. */
  async status(): Promise<LedgerStatus> {
    const counts = await rowCounts(this.db);
    // Also on a process that does not load (worker 2..n): the files and cursors are the same ones.
    const { files, lag } = await this.loader.files();
    return {
      database: this.db.kind,
      rows: counts.rows,
      open_holds: counts.open_holds,
      last_loaded_at: this.loader.loadedAt?.toISOString() ?? null,
      files,
      lag_records: lag,
    };
  }

  /** Stops loading (finishing a pass under way) and closes the database. */
  async close(): Promise<void> {
    await this.loader.stop();
    await this.db.close();
  }
}
