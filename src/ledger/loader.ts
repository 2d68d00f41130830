/**
 * The ledger's loader: follows the audit files this process writes and applies what they gain
 * (records.ts), off the hot path, every `ledger.poll_ms`. It keeps one cursor per file in the
 * database (keyed by the file's first line, so rotation keeps it) and commits each batch of
 * records with its cursor in one transaction, so it resumes exactly where it stopped; a record
 * applied twice (a crash between the two, a replay, another replica) changes nothing.
 *
 * Replicas sharing a PostgreSQL server load at the same moments, and the records of one decision
 * sit in several replicas' files (the decision on one, its settlement on another), so two batches
 * would lock the same rows in crossing orders, which PostgreSQL ends as a deadlock. Every ledger
 * write therefore takes one advisory lock for its transaction: writers take turns, readers never
 * wait, and loading is off the hot path.
 */
import { hostname } from 'node:os';
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { auditFiles, fileHead, linesAfter, readLines } from './audit-files.js';
import type { LedgerDatabase, SqlClient } from './database.js';
import { applyRecord, expireHolds, ledgerRelevant } from './records.js';

/** What a loader needs. */
export interface LoaderOptions {
  readonly db: LedgerDatabase;
  /** `audit.path`: the loader follows it, its worker chains and their rotated files. */
  readonly auditPath: string;
  readonly pollMs: number;
  /** `budgets.hold_ttl_ms` and `budgets.expired_holds`: when and how unsettled holds become rows. */
  readonly holdTtlMs: number;
  readonly expiredHolds: 'charge' | 'release';
  readonly retentionDays?: number;
  readonly logger: Logger;
  readonly clock?: () => number;
}

/** The advisory lock every ledger write holds for its transaction (any constant no other code uses). */
const LEDGER_WRITE_LOCK = 7263012;

/** One followed file, as `/v1/ledger/status` shows it. */
export interface LoadedFile {
  readonly path: string;
  readonly offset: number;
  readonly records: number;
}

/** What one pass read and applied. */
export interface LoadPass {
  readonly records: number;
  readonly applied: number;
  readonly expired: number;
  /** Lines that were not JSON records (skipped; audit verify reports them). */
  readonly unreadable: number;
}

/** Follows the audit trail into the ledger database. */
export class LedgerLoader {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<LoadPass> | undefined;
  private lastLoadedAt: Date | null = null;
  private readonly clock: () => number;

  constructor(private readonly options: LoaderOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /** Starts polling (the first pass at once). A failed pass is logged and retried at the next tick. */
  start(): void {
    const tick = (): void => {
      this.loadOnce()
        .catch((error: unknown) => this.options.logger.warn({ code: 'ledger_unavailable', cause: describeCause(error) }, 'ledger load failed; retrying'))
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.options.pollMs).unref();
        });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  /** Stops polling and waits for a pass under way. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** When the last pass finished, or null. */
  get loadedAt(): Date | null {
    return this.lastLoadedAt;
  }

  /** Reads everything the files gained since the last pass, then derives expiries. Passes never overlap. */
  loadOnce(): Promise<LoadPass> {
    const previous = this.running ?? Promise.resolve(undefined);
    const pass = previous.catch(() => undefined).then(() => this.pass());
    this.running = pass;
    return pass;
  }

  private async pass(): Promise<LoadPass> {
    const { db } = this.options;
    let records = 0;
    let applied = 0;
    let unreadable = 0;
    for (const file of await auditFiles(this.options.auditPath)) {
      const head = await fileHead(file.path);
      if (!head) continue;
      const [cursor] = await db.query<{ byte_offset: unknown; records: unknown }>('SELECT byte_offset, records FROM ledger_cursors WHERE head = $1', [head]);
      let offset = Number(cursor?.byte_offset ?? 0);
      let count = Number(cursor?.records ?? 0);
      for (;;) {
        const read = await readLines(file.path, offset);
        if (read.next === offset) break;
        const result = await this.write(async (tx) => {
          let changed = 0;
          let bad = 0;
          for (const line of read.lines) {
            let record: unknown;
            try {
              record = JSON.parse(line);
            } catch {
              bad += 1;
              continue;
            }
            if (record === null || typeof record !== 'object') continue;
            const r = record as Record<string, unknown>;
            if (ledgerRelevant(r) && (await applyRecord(tx, r))) changed += 1;
          }
          await tx.query(
            `INSERT INTO ledger_cursors (head, path, byte_offset, records, loaded_at, instance) VALUES ($1, $2, $3, $4, now(), $5)
             ON CONFLICT (head) DO UPDATE SET path = EXCLUDED.path, byte_offset = EXCLUDED.byte_offset, records = EXCLUDED.records, loaded_at = now(), instance = EXCLUDED.instance`,
            [head, file.path, read.next, count + read.lines.length, hostname()],
          );
          return { changed, bad };
        });
        records += read.lines.length;
        applied += result.changed;
        unreadable += result.bad;
        count += read.lines.length;
        offset = read.next;
      }
    }
    const now = this.clock();
    const days = this.options.retentionDays ?? 0;
    const expired = await this.write(async (tx) => {
      const count = await expireHolds(tx, now, this.options.holdTtlMs, this.options.expiredHolds);
      if (days > 0) await prune(tx, now - days * 86_400_000);
      return count;
    });
    this.lastLoadedAt = new Date(now);
    return { records, applied, expired, unreadable };
  }

  /** Runs `work` in one transaction holding the ledger's write lock (see the file's comment). */
  private write<T>(work: (tx: SqlClient) => Promise<T>): Promise<T> {
    return this.options.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [LEDGER_WRITE_LOCK]);
      return work(tx);
    });
  }

  /** The files this loader follows, where it stands in each, and how many whole lines it has yet to read. */
  async files(): Promise<{ files: LoadedFile[]; lag: number }> {
    const files: LoadedFile[] = [];
    let lag = 0;
    for (const file of await auditFiles(this.options.auditPath)) {
      const head = await fileHead(file.path);
      const [cursor] = head ? await this.options.db.query<{ byte_offset: unknown; records: unknown }>('SELECT byte_offset, records FROM ledger_cursors WHERE head = $1', [head]) : [];
      const offset = Number(cursor?.byte_offset ?? 0);
      files.push({ path: file.path, offset, records: Number(cursor?.records ?? 0) });
      lag += await linesAfter(file.path, offset);
    }
    return { files, lag };
  }
}

/** Deletes what the retention window no longer keeps: rows and records of decisions before `beforeMs`. */
async function prune(tx: SqlClient, beforeMs: number): Promise<void> {
  const before = new Date(beforeMs).toISOString();
  await tx.query('DELETE FROM ledger_budgets WHERE decision_id IN (SELECT decision_id FROM ledger_entries WHERE time < $1)', [before]);
  await tx.query('DELETE FROM ledger_records WHERE decision_id IN (SELECT decision_id FROM ledger_entries WHERE time < $1 UNION SELECT decision_id FROM ledger_denials WHERE time < $1)', [before]);
  await tx.query('DELETE FROM ledger_entries WHERE time < $1', [before]);
  await tx.query('DELETE FROM ledger_denials WHERE time < $1', [before]);
}
