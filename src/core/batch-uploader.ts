/**
 * A bounded buffer of serialised items and the loop that uploads them in batches, for anything
 * that ships records off the host (decision logs, OpenTelemetry). It never blocks the caller:
 * when the buffer is full the oldest item is dropped and counted. Batches of at most
 * `batchLimitBytes` go out after a random delay between `minDelayMs` and `maxDelayMs`; a failed
 * upload keeps its items and is retried with OPA's backoff. Delivery is at least once.
 */
import { backoffDelayMs } from './backoff.js';
import { describeCause } from './errors.js';
import type { Logger } from './log.js';

/** What to upload, where to, and how much to hold. */
export interface BatchUploaderOptions {
  /** Sends one batch; resolves when the receiver acknowledged it, rejects otherwise. */
  readonly send: (items: readonly string[]) => Promise<void>;
  /** Names the destination in logs (an origin, never a URL with credentials). */
  readonly destination: string;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** The most bytes of items in one batch (a single larger item still goes alone). */
  readonly batchLimitBytes: number;
  /** The most items waiting; beyond it the oldest are dropped. */
  readonly bufferLimit: number;
  readonly logger: Logger;
  readonly random?: () => number;
}

/** Counts for metrics and tests. */
export interface UploaderCounts {
  readonly shipped: number;
  readonly dropped: number;
  readonly failedUploads: number;
}

/** One destination's buffer and upload loop. */
export class BatchUploader {
  #buffer: string[] = [];
  #shipped = 0;
  #dropped = 0;
  #failedUploads = 0;
  #retries = 0;
  #timer: NodeJS.Timeout | undefined;
  #uploading: Promise<void> | undefined;
  #stopped = false;

  constructor(private readonly options: BatchUploaderOptions) {}

  /** Items shipped, dropped and uploads that failed so far. */
  get counts(): UploaderCounts {
    return { shipped: this.#shipped, dropped: this.#dropped, failedUploads: this.#failedUploads };
  }

  /** Takes one serialised item; never blocks, never throws. */
  offer(item: string): void {
    if (this.#stopped) return;
    if (this.#buffer.length >= this.options.bufferLimit) {
      this.#buffer.shift();
      this.#dropped += 1;
    }
    this.#buffer.push(item);
    this.#schedule();
  }

  /** Uploads what is buffered now (one attempt), then stops. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#uploading;
    while (this.#buffer.length > 0 && !this.#stopped) {
      const before = this.#buffer.length;
      await this.#upload().catch(() => undefined);
      if (this.#buffer.length >= before) break;
    }
    this.#stopped = true;
  }

  #schedule(): void {
    if (this.#timer || this.#uploading || this.#stopped) return;
    const random = this.options.random ?? Math.random;
    const delay =
      this.#retries > 0
        ? backoffDelayMs(this.#retries - 1, this.options.maxDelayMs, random)
        : this.options.minDelayMs + Math.round(random() * (this.options.maxDelayMs - this.options.minDelayMs));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#uploading = this.#upload()
        .catch(() => undefined)
        .finally(() => {
          this.#uploading = undefined;
          if (this.#buffer.length > 0) this.#schedule();
        });
    }, delay);
    this.#timer.unref();
  }

  /** Sends the oldest items that fit one batch; they leave the buffer only once acknowledged. */
  async #upload(): Promise<void> {
    let bytes = 0;
    let count = 0;
    while (count < this.#buffer.length && (count === 0 || bytes + (this.#buffer[count] as string).length + 1 <= this.options.batchLimitBytes)) {
      bytes += (this.#buffer[count] as string).length + 1;
      count++;
    }
    if (count === 0) return;
    const items = this.#buffer.slice(0, count);
    try {
      await this.options.send(items);
    } catch (error) {
      this.#failedUploads += 1;
      this.#retries += 1;
      this.options.logger.warn({ code: 'audit_write_failed', destination: this.options.destination, records: count, cause: describeCause(error) }, 'upload failed; will retry');
      throw error;
    }
    this.#retries = 0;
    // The buffer may have dropped its oldest items meanwhile: remove what was sent, by identity.
    const sent = new Set(items);
    this.#buffer = this.#buffer.filter((item) => !sent.has(item));
    this.#shipped += count;
  }
}
