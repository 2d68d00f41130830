/**
 * Shipping audit records to a decision-log service with OPA's Decision Log Service API, so they
 * reach whatever a team already runs for OPA (Styra DAS, an OPA-compatible collector):
 * `POST <url>` with `Content-Type: application/json`, `Content-Encoding: gzip`, and a gzip
 * compressed JSON array of events. Each event is the audit record as written (the fields of an
 * OPA decision-log event, masked, plus the chain fields).
 *
 * It never blocks a decision: records wait in a bounded buffer (the oldest are dropped, and
 * counted, when it is full), go out in uploads of at most `uploadLimitBytes`, on a randomised
 * delay between `minDelayMs` and `maxDelayMs`, and a failed upload is retried with OPA's backoff
 * while the buffer keeps filling. Delivery is at least once: an upload the server took but did
 * not acknowledge is sent again.
 */
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { backoffDelayMs } from '../core/backoff.js';
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';

const gzipAsync = promisify(gzip);

/** Where and how to ship (audit.decision_logs). */
export interface DecisionLogShipperOptions {
  /** The full URL to POST to (OPA's service URL joined with its `resource`, `/logs` by default). */
  readonly url: string;
  /** Extra request headers (an Authorization header, for example); values are never logged. */
  readonly headers: Readonly<Record<string, string>>;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** The most bytes of events (before compression) one upload carries. */
  readonly uploadLimitBytes: number;
  /** The most records waiting; beyond it the oldest are dropped. */
  readonly bufferLimit: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  readonly random?: () => number;
}

/** Counts for metrics and tests. */
export interface ShipperCounts {
  readonly shipped: number;
  readonly dropped: number;
  readonly failedUploads: number;
}

/** One decision-log destination: a bounded buffer and the upload loop that drains it. */
export class DecisionLogShipper {
  #buffer: string[] = [];
  #shipped = 0;
  #dropped = 0;
  #failedUploads = 0;
  #retries = 0;
  #timer: NodeJS.Timeout | undefined;
  #uploading: Promise<void> | undefined;
  #stopped = false;

  constructor(private readonly options: DecisionLogShipperOptions) {}

  /** Records shipped, dropped and uploads that failed so far. */
  get counts(): ShipperCounts {
    return { shipped: this.#shipped, dropped: this.#dropped, failedUploads: this.#failedUploads };
  }

  /** Takes one record's JSON line (as the audit file has it); never blocks, never throws. */
  offer(line: string): void {
    if (this.#stopped) return;
    if (this.#buffer.length >= this.options.bufferLimit) {
      this.#buffer.shift();
      this.#dropped += 1;
    }
    this.#buffer.push(line.endsWith('\n') ? line.slice(0, -1) : line);
    this.#schedule();
  }

  /** Ships what is buffered now (bounded by the request timeout), then stops. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#uploading;
    if (this.#buffer.length > 0) await this.#upload().catch(() => undefined);
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

  /** Sends the oldest records that fit one upload; they leave the buffer only once acknowledged. */
  async #upload(): Promise<void> {
    let bytes = 2;
    let count = 0;
    while (count < this.#buffer.length && (count === 0 || bytes + (this.#buffer[count] as string).length + 1 <= this.options.uploadLimitBytes)) {
      bytes += (this.#buffer[count] as string).length + 1;
      count++;
    }
    if (count === 0) return;
    const events = this.#buffer.slice(0, count);
    const body = await gzipAsync(Buffer.from(`[${events.join(',')}]`, 'utf8'));
    try {
      const response = await fetch(this.options.url, {
        method: 'POST',
        headers: { ...this.options.headers, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body,
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
    } catch (error) {
      this.#failedUploads += 1;
      this.#retries += 1;
      // Log the host, never the headers (they may carry a token).
      this.options.logger.warn({ code: 'audit_write_failed', destination: new URL(this.options.url).origin, records: count, cause: describeCause(error) }, 'decision log upload failed; will retry');
      throw error;
    }
    this.#retries = 0;
    // The buffer may have dropped its oldest records meanwhile: remove what was sent, by value.
    const sent = new Set(events);
    this.#buffer = this.#buffer.filter((line) => !sent.has(line));
    this.#shipped += count;
  }
}
