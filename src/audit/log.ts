/**
 * The audit log: an append-only JSON-lines file of hash-chained decision records.
 *
 * Records are chained synchronously, in decision order, and written in batches in the
 * background, so a slow disk delays the file, never the decision. A write failure is logged and
 * retried; it never changes a decision. On start the chain continues from the file's last record.
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { GENESIS_HASH, chainRecord, recordHash, writableRecord } from './chain.js';

/** Where decision records go; the pipeline depends on this, not on files. */
export interface AuditSink {
  /** Chains and queues one record; never throws, never blocks on I/O. */
  append(record: Record<string, unknown>): void;
  /** Resolves when everything appended so far is on disk (or has failed and been logged). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** An audit sink that drops everything, for tests and `signalbox eval`. */
export const noopAuditSink: AuditSink = {
  append: () => undefined,
  flush: async () => undefined,
  close: async () => undefined,
};

const TAIL_BYTES = 1024 * 1024;
const MAX_QUEUED_LINES = 100_000;

/** Finds the last intact record of an existing file, to continue its chain. */
async function readTail(handle: FileHandle): Promise<{ seq: number; hash: string; intact: boolean }> {
  const { size } = await handle.stat();
  if (size === 0) return { seq: 0, hash: GENESIS_HASH, intact: true };
  const length = Math.min(size, TAIL_BYTES);
  const buffer = Buffer.alloc(length);
  await handle.read(buffer, 0, length, size - length);
  const lines = buffer.toString('utf8').split('\n').filter((l) => l.trim() !== '');
  const endsCleanly = buffer[length - 1] === 0x0a;
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const record = JSON.parse(lines[i] as string) as { seq?: unknown; hash?: unknown };
      if (typeof record.seq === 'number' && typeof record.hash === 'string' && recordHash(record) === record.hash) {
        return { seq: record.seq, hash: record.hash, intact: endsCleanly && i === lines.length - 1 };
      }
    } catch {
      // A torn last line (crash mid-write): keep looking backwards.
    }
  }
  return { seq: 0, hash: GENESIS_HASH, intact: false };
}

export class FileAuditLog implements AuditSink {
  private queue: string[] = [];
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
  ) {}

  static async open(path: string, logger: Logger): Promise<FileAuditLog> {
    let handle: FileHandle;
    try {
      await mkdir(dirname(path), { recursive: true });
      handle = await open(path, 'a+');
    } catch (error) {
      throw new SignalboxError('audit_write_failed', `cannot open audit log ${path}: ${describeCause(error)}`, { cause: error });
    }
    const tail = await readTail(handle);
    if (!tail.intact) {
      logger.error({ code: 'audit_chain_broken', path }, 'audit log does not end with an intact record; continuing the chain from the last intact one');
      await handle.write('\n');
    }
    return new FileAuditLog(path, handle, tail.seq, tail.hash, logger);
  }

  /** The number of failed write attempts so far (exported as a health signal). */
  get writeFailures(): number {
    return this.failures;
  }

  /** The number of records dropped so far (queue overflow, or appended after close). */
  get droppedRecords(): number {
    return this.dropped;
  }

  append(record: Record<string, unknown>): void {
    if (this.closed) {
      this.logger.error({ code: 'audit_write_failed' }, 'audit record appended after close; dropped');
      this.dropped += 1;
      return;
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
    }
    this.queue.push(line);
    this.schedule();
  }

  private schedule(): void {
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      if (this.queue.length > 0 && !this.closed) this.schedule();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await this.handle.write(batch.join(''));
      } catch (error) {
        this.failures += 1;
        this.logger.error({ code: 'audit_write_failed', path: this.path, cause: describeCause(error), records: batch.length }, 'audit write failed; will retry');
        this.queue = batch.concat(this.queue);
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
    await this.handle.close().catch(() => undefined);
  }
}

