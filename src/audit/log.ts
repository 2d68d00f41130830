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
import { chainRecordInto, writableRecord, type ChainedLine } from './chain.js';
import { LineChunks } from './line-chunks.js';
import { recoverTail, type RecoveredTail } from './recover.js';
import { applyRetention, newestRotatedTail, rotatedPath, rotationRecord } from './rotation.js';
import { commitFile } from '../core/atomic-file.js';

/** Where decision records go; the pipeline depends on this, not on files. */
export interface AuditSink {
  /**
   * Queues one record; never throws, never blocks on I/O. A file log serialises and chains it
   * with the rest of its next batch, so the record must not change once appended. The promise,
   * when there is one, resolves once the record is as durable as the sink promises (on disk,
   * for a file log in fsync mode) and rejects if it never will be (dropped, or the sink closed
   * first).
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

/** Buffered mode writes at once, without waiting out flushMs, when this many records are waiting. */
const FLUSH_RECORDS = 128;

/** How far a file log goes before a record counts as written (audit.durability). */
export type AuditDurability = 'buffered' | 'fsync';

/** Settles a record's durability promise. */
interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

/** A queued line's bytes (with its waiter in fsync mode), or the point where the file is rotated. */
type Entry = { readonly bytes: Buffer; readonly waiter?: Waiter } | { readonly rotateAfter: number };

/** Size rotation and retention (audit.rotate_bytes, audit.keep_files); 0 turns each off. */
export interface AuditRotation {
  readonly maxBytes: number;
  readonly keepFiles: number;
}

/** How a file log is opened. */
export interface FileAuditLogOptions {
  readonly durability?: AuditDurability;
  /**
   * Buffered mode: how long the first queued record waits for others before the batch is
   * written (audit.flush_ms; 0 writes as soon as the previous write finished). Each write costs a
   * thread-pool round trip and a system call; under load, a batch per write instead of a few
   * records measured 3–10% less CPU per decision with one core (bench/peer header-rbac, pinned).
   * fsync mode never waits: its fsync already gathers the next group.
   */
  readonly flushMs?: number;
  readonly rotation?: AuditRotation;
  /** Called with every record's line (and the record) as it is queued, to ship it elsewhere; must not throw or block. */
  readonly onLine?: (line: string, record: Readonly<Record<string, unknown>>) => void;
}

const QUEUED: Promise<void> = Promise.resolve();

/**
 * The lines as few buffers as possible: lines encoded one after another into the same chunk
 * are one range of it, so a batch is usually one buffer, at most one per chunk it spans.
 */
function contiguous(lines: readonly Buffer[]): Buffer[] {
  const ranges: Buffer[] = [];
  let first: Buffer | undefined;
  let length = 0;
  for (const line of lines) {
    if (first && first.buffer === line.buffer && first.byteOffset + length === line.byteOffset) {
      length += line.length;
      continue;
    }
    if (first) ranges.push(Buffer.from(first.buffer, first.byteOffset, length));
    first = line;
    length = line.length;
  }
  if (first) ranges.push(Buffer.from(first.buffer, first.byteOffset, length));
  return ranges;
}

/** Writes every byte of `buffers` at the end of the file, however many calls the system takes. */
async function writeAll(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let pending = buffers;
  while (pending.length > 0) {
    let { bytesWritten } = await handle.writev(pending);
    if (bytesWritten === 0) throw new Error('the file took no bytes');
    const rest: Buffer[] = [];
    for (const buffer of pending) {
      if (bytesWritten >= buffer.length) {
        bytesWritten -= buffer.length;
      } else {
        rest.push(buffer.subarray(bytesWritten));
        bytesWritten = 0;
      }
    }
    pending = rest;
  }
}

/**
 * The audit file: records chained in decision order, written in batches by one writer, fsynced
 * per batch in fsync mode; recovered after a crash on open (recover.ts).
 */
export class FileAuditLog implements AuditSink {
  private queue: Entry[] = [];
  private writing: Promise<void> | undefined;
  private closed = false;
  private failures = 0;
  private dropped = 0;

  private readonly durability: AuditDurability;
  private readonly flushMs: number;
  /** The timer that writes the queued batch once flushMs has passed (buffered mode). */
  private flushTimer: NodeJS.Timeout | undefined;
  /** Records appended and not chained yet (with their waiters in fsync mode): the next batch. */
  private pending: { readonly record: Readonly<Record<string, unknown>>; readonly waiter?: Waiter }[] = [];
  /** Where lines are encoded, once, before they are hashed and written. */
  private readonly chunks = new LineChunks();
  private readonly rotation: AuditRotation;
  private readonly onLine: ((line: string, record: Readonly<Record<string, unknown>>) => void) | undefined;

  private constructor(
    private readonly path: string,
    private handle: FileHandle,
    private seq: number,
    private lastHash: string,
    private readonly logger: Logger,
    options: FileAuditLogOptions,
    /** Bytes in the live file, queued lines included. */
    private fileBytes: number,
  ) {
    this.durability = options.durability ?? 'buffered';
    this.flushMs = this.durability === 'fsync' ? 0 : (options.flushMs ?? 0);
    this.rotation = options.rotation ?? { maxBytes: 0, keepFiles: 0 };
    this.onLine = options.onLine;
  }

  static async open(path: string, logger: Logger, options: FileAuditLogOptions = {}): Promise<FileAuditLog> {
    let handle: FileHandle;
    try {
      await mkdir(dirname(path), { recursive: true });
      handle = await open(path, 'a+');
    } catch (error) {
      throw new SignalboxError('audit_write_failed', `cannot open audit log ${path}: ${describeCause(error)}`, { cause: error });
    }
    let tail: RecoveredTail;
    let previous: Awaited<ReturnType<typeof newestRotatedTail>>;
    try {
      tail = await recoverTail(handle, path);
      // A live file with no record yet after a rotation: the chain continues from the last file.
      previous = tail.seq === 0 ? await newestRotatedTail(path) : undefined;
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
    const { size } = await handle.stat();
    const log = previous
      ? new FileAuditLog(path, handle, previous.seq, previous.hash, logger, options, size)
      : new FileAuditLog(path, handle, tail.seq, tail.hash, logger, options, size);
    if (previous) {
      log.pending.push({ record: rotationRecord(previous.file, previous.seq, previous.hash, new Date()) });
      log.schedule();
    }
    return log;
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
    if (this.pending.length + this.queue.length >= MAX_QUEUED_LINES) this.overflow();
    if (this.durability !== 'fsync') {
      this.pending.push({ record });
      this.schedule();
      return QUEUED;
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ record, waiter: { resolve, reject } });
      this.schedule();
    });
  }

  /**
   * The disk has been failing for a long time: every queued line is dropped. The records not yet
   * chained are chained first, so the loss is a gap in `seq` that `audit verify` shows.
   */
  private overflow(): void {
    this.chainPending();
    const lines = this.queue.filter((entry) => 'bytes' in entry);
    this.logger.error({ code: 'audit_write_failed', dropped: lines.length }, 'audit queue full; dropping queued records');
    this.dropped += lines.length;
    this.queue = this.queue.filter((entry) => !('bytes' in entry));
    const dropped = new SignalboxError('audit_write_failed', 'the audit queue overflowed');
    for (const entry of lines) entry.waiter?.reject(dropped);
  }

  /**
   * Chains the appended records, in order, into queued lines. This is the writer's work, done
   * per batch rather than per decision: serialising, hashing and encoding a batch back to back
   * measured less CPU than the same work spread between decisions, and none of it delays an
   * answer in buffered mode. A rotation point goes in wherever the live file fills.
   */
  private chainPending(): void {
    const pending = this.pending;
    this.pending = [];
    for (const { record, waiter } of pending) {
      if (this.rotation.maxBytes > 0 && this.fileBytes >= this.rotation.maxBytes) {
        // The live file is full: it is rotated after what is queued, and the next file opens
        // with a record naming it.
        this.queue.push({ rotateAfter: this.seq });
        this.fileBytes = 0;
        const opening = rotationRecord(rotatedPath(this.path, this.seq), this.seq, this.lastHash, new Date());
        this.enqueue(this.chain(opening), undefined, opening);
      }
      this.enqueue(this.chainWritable(record), waiter, record);
    }
  }

  /**
   * Chains a record whatever it holds: the fields that cannot be written are replaced by why
   * (writableRecord), never the whole record dropped; should even that fail, a record of the
   * failure takes its place (with the decision id), so the decision still has its line.
   */
  private chainWritable(record: Readonly<Record<string, unknown>>): ChainedLine {
    try {
      return this.chain(record);
    } catch {
      try {
        return this.chain(writableRecord(record));
      } catch (error) {
        this.logger.error({ code: 'audit_write_failed', cause: describeCause(error) }, 'audit record could not be written; recorded the failure in its place');
        return this.chain({ type: 'unwritable', decision_id: typeof record.decision_id === 'string' ? record.decision_id : null, reason: describeCause(error) });
      }
    }
  }

  /** Links a record in as the next one (seq and lastHash move on only when it is queued). */
  private chain(record: Readonly<Record<string, unknown>>): ChainedLine {
    return chainRecordInto(this.chunks, record, this.seq + 1, this.lastHash);
  }

  /** Queues a chained line for the writer. */
  private enqueue(chained: ChainedLine, waiter: Waiter | undefined, record: Readonly<Record<string, unknown>>): void {
    this.seq += 1;
    this.lastHash = chained.hash;
    this.fileBytes += chained.bytes.length;
    this.queue.push(waiter ? { bytes: chained.bytes, waiter } : { bytes: chained.bytes });
    // Shipping wants the line as text; decoded only when something ships it.
    if (this.onLine) {
      try {
        this.onLine(chained.bytes.toString('utf8'), record);
      } catch (error) {
        // A shipper that breaks its contract must not stop the writer.
        this.logger.error({ code: 'internal_error', cause: describeCause(error) }, 'shipping an audit record failed');
      }
    }
  }

  /** Starts the writer now, or once flushMs has passed unless the batch is already large. */
  private schedule(): void {
    if (this.writing) return;
    if (this.flushMs > 0 && this.pending.length < FLUSH_RECORDS) {
      this.flushTimer ??= setTimeout(() => this.startWriting(), this.flushMs);
      return;
    }
    this.startWriting();
  }

  private startWriting(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      if ((this.pending.length > 0 || this.queue.length > 0) && !this.closed) this.schedule();
    });
  }

  /**
   * Chains what was appended and writes everything queued in one write, and in fsync mode
   * flushes it to disk before settling the batch's waiters: records that arrive while one batch
   * is flushed form the next (group commit), so one fsync serves many decisions.
   */
  private async drain(): Promise<void> {
    for (;;) {
      // Between writes nothing queued holds chunk bytes (they are written): encode over them.
      if (this.queue.length === 0) this.chunks.reuse();
      this.chainPending();
      const head = this.queue[0];
      if (head === undefined) return;
      if ('rotateAfter' in head) {
        try {
          await this.rotate(head.rotateAfter);
          this.queue.shift();
        } catch (error) {
          if (await this.failed(error, 0)) return;
        }
        continue;
      }
      // Everything up to the next rotation point, in one write.
      const end = this.queue.findIndex((entry) => 'rotateAfter' in entry);
      const batch = this.queue.splice(0, end < 0 ? this.queue.length : end) as { bytes: Buffer; waiter?: Waiter }[];
      try {
        await writeAll(this.handle, contiguous(batch.map((entry) => entry.bytes)));
        if (this.durability === 'fsync') await this.handle.datasync();
        for (const entry of batch) entry.waiter?.resolve();
        // What arrived meanwhile waits for its own batch (schedule), rather than a write of its own now.
        if (this.flushMs > 0) return;
      } catch (error) {
        this.queue = [...batch, ...this.queue];
        if (await this.failed(error, batch.length)) return;
      }
    }
  }

  /** Logs a failed write and backs off before the retry; true when the log closed meanwhile. */
  private async failed(error: unknown, records: number): Promise<boolean> {
    this.failures += 1;
    this.logger.error({ code: 'audit_write_failed', path: this.path, cause: describeCause(error), records }, 'audit write failed; will retry');
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * this.failures)));
    return this.closed;
  }

  /** Closes the full live file under its rotated name and opens a new one; then applies retention. */
  private async rotate(lastSeq: number): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    const rotated = rotatedPath(this.path, lastSeq);
    await commitFile(this.path, rotated);
    this.handle = await open(this.path, 'a+');
    for (const removed of await applyRetention(this.path, this.rotation.keepFiles)) {
      this.logger.info({ path: removed }, 'audit file removed by retention (audit.keep_files)');
    }
  }

  async flush(): Promise<void> {
    for (;;) {
      // A batch waiting out flushMs is written now.
      if (!this.writing && this.flushTimer !== undefined) this.startWriting();
      if (!this.writing) return;
      await this.writing;
    }
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    const closed = new SignalboxError('audit_write_failed', 'the audit log closed before the record was written');
    for (const entry of this.queue.splice(0)) if ('bytes' in entry) entry.waiter?.reject(closed);
    await this.handle.close().catch(() => undefined);
  }
}

