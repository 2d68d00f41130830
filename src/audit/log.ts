/**
 * The audit log: an append-only JSON-lines file of hash-chained decision records.
 *
 * Records are chained synchronously, in decision order, and written in batches in the
 * background, so a slow disk delays the file, never the decision. A write failure is logged and
 * retried; it never changes a decision. On start a torn final write (a crash mid-append) is
 * moved aside and the chain continues from the file's last record (recover.ts).
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { chainRecord, writableRecord } from './chain.js';
import { recoverTail, type RecoveredTail } from './recover.js';

/** Where decision records go; the pipeline depends on this, not on files. */
export interface AuditSink {
  /**
   * Chains and queues one record; never throws, never blocks on I/O. The promise, when there is
   * one, resolves once the record is as durable as the sink promises (on disk, for a file log in
   * fsync mode) and rejects if it never will be (dropped, or the sink closed first).
   */
  append(record: Record<string, unknown>): Promise<void> | void;
  /** Resolves when everything appended so far is on disk (or has failed and been logged). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Appends a record whose durability the caller does not wait for (settlement and health
 * records): the sink logs its own failures, so its promise is only kept from going unhandled.
 */
export function appendInBackground(sink: AuditSink, record: Record<string, unknown>): void {
  const written = sink.append(record);
  if (written) written.catch(() => undefined);
}

/** An audit sink that drops everything, for tests and `signalbox eval`. */
export const noopAuditSink: AuditSink = {
  append: () => undefined,
  flush: async () => undefined,
  close: async () => undefined,
};

const MAX_QUEUED_LINES = 100_000;

/** How far a file log goes before a record counts as written (audit.durability). */
export type AuditDurability = 'buffered' | 'fsync';

/** Settles a record's durability promise. */
interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

const QUEUED: Promise<void> = Promise.resolve();

/**
 * The audit file: records chained in decision order, written in batches by one writer, fsynced
 * per batch in fsync mode; recovered after a crash on open (recover.ts).
 */
export class FileAuditLog implements AuditSink {
  private queue: string[] = [];
  /** In fsync mode, one per queued line, in the same order. */
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;
  private closed = false;
  private failures = 0;
  private dropped = 0;

  private constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
    private seq: number,
    private lastHash: string,
    private readonly logger: Logger,
    private readonly durability: AuditDurability,
  ) {}

  static async open(path: string, logger: Logger, durability: AuditDurability = 'buffered'): Promise<FileAuditLog> {
    let handle: FileHandle;
    try {
      await mkdir(dirname(path), { recursive: true });
      handle = await open(path, 'a+');
    } catch (error) {
      throw new SignalboxError('audit_write_failed', `cannot open audit log ${path}: ${describeCause(error)}`, { cause: error });
    }
    let tail: RecoveredTail;
    try {
      tail = await recoverTail(handle, path);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw new SignalboxError('audit_write_failed', `cannot recover the end of audit log ${path}: ${describeCause(error)}`, { cause: error });
    }
    if (tail.tornFile) {
      logger.warn({ code: 'audit_tail_torn', path, torn_file: tail.tornFile, bytes: tail.tornBytes }, 'the audit log ended in a torn write (a crash mid-append); moved it aside and continued the chain from the last record');
    }
    if (tail.lastLineBroken) {
      logger.error({ code: 'audit_chain_broken', path }, 'the last record of the audit log does not verify; continuing the chain after it (audit verify reports where)');
    }
    return new FileAuditLog(path, handle, tail.seq, tail.hash, logger, durability);
  }

  /** The number of failed write attempts so far (exported as a health signal). */
  get writeFailures(): number {
    return this.failures;
  }

  /** The number of records dropped so far (queue overflow, or appended after close). */
  get droppedRecords(): number {
    return this.dropped;
  }

  append(record: Record<string, unknown>): Promise<void> {
    if (this.closed) {
      this.logger.error({ code: 'audit_write_failed' }, 'audit record appended after close; dropped');
      this.dropped += 1;
      return Promise.reject(new SignalboxError('audit_write_failed', 'the audit log is closed'));
    }
    let chained: { line: string; hash: string };
    try {
      chained = chainRecord(record, this.seq + 1, this.lastHash);
    } catch {
      // Whatever a request carried, its decision is recorded: the fields that cannot be written
      // are replaced by why (writableRecord), never the whole record dropped.
      chained = chainRecord(writableRecord(record), this.seq + 1, this.lastHash);
    }
    this.seq += 1;
    const { line, hash } = chained;
    this.lastHash = hash;
    if (this.queue.length >= MAX_QUEUED_LINES) {
      // The disk has been failing for a long time; dropping makes the gap visible to `audit verify`.
      this.logger.error({ code: 'audit_write_failed', dropped: this.queue.length }, 'audit queue full; dropping queued records');
      this.dropped += this.queue.length;
      this.queue = [];
      const dropped = new SignalboxError('audit_write_failed', 'the audit queue overflowed');
      for (const waiter of this.waiters.splice(0)) waiter.reject(dropped);
    }
    this.queue.push(line);
    let written = QUEUED;
    if (this.durability === 'fsync') written = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.schedule();
    return written;
  }

  private schedule(): void {
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      if (this.queue.length > 0 && !this.closed) this.schedule();
    });
  }

  /**
   * Writes everything queued in one write, and in fsync mode flushes it to disk before settling
   * the batch's waiters: records that arrive while one batch is flushed form the next (group
   * commit), so one fsync serves many decisions.
   */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      const waiters = this.waiters;
      this.queue = [];
      this.waiters = [];
      try {
        await this.handle.write(batch.join(''));
        if (this.durability === 'fsync') await this.handle.datasync();
        for (const waiter of waiters) waiter.resolve();
      } catch (error) {
        this.failures += 1;
        this.logger.error({ code: 'audit_write_failed', path: this.path, cause: describeCause(error), records: batch.length }, 'audit write failed; will retry');
        this.queue = batch.concat(this.queue);
        this.waiters = waiters.concat(this.waiters);
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * this.failures)));
        if (this.closed) return;
      }
    }
  }

  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    const closed = new SignalboxError('audit_write_failed', 'the audit log closed before the record was written');
    for (const waiter of this.waiters.splice(0)) waiter.reject(closed);
    await this.handle.close().catch(() => undefined);
  }
}

