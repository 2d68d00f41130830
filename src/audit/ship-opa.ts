/**
 * Shipping audit records to a decision-log service with OPA's Decision Log Service API, so they
 * reach whatever a team already runs for OPA (Styra DAS, an OPA-compatible collector):
 * `POST <url>` with `Content-Type: application/json`, `Content-Encoding: gzip`, and a gzip
 * compressed JSON array of events. Each event is the audit record as written (the fields of an
 * OPA decision-log event, masked, plus the chain fields). Buffering, batching and retries are
 * the BatchUploader's: it never blocks a decision.
 */
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { BatchUploader, type UploaderCounts } from '../core/batch-uploader.js';
import type { Logger } from '../core/log.js';
import type { AuditConfig } from './config.js';

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
export type ShipperCounts = UploaderCounts;

/** POSTs a JSON body (gzip-compressed when asked) and fails on anything but a 2xx answer. */
export async function postJson(url: string, headers: Readonly<Record<string, string>>, json: string, compress: boolean, timeoutMs: number): Promise<void> {
  const body = compress ? await gzipAsync(Buffer.from(json, 'utf8')) : Buffer.from(json, 'utf8');
  const response = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', ...(compress ? { 'content-encoding': 'gzip' } : {}) },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

/** One decision-log destination. */
export class DecisionLogShipper {
  readonly #uploader: BatchUploader;

  constructor(options: DecisionLogShipperOptions) {
    this.#uploader = new BatchUploader({
      send: (events) => postJson(options.url, options.headers, `[${events.join(',')}]`, true, options.requestTimeoutMs),
      destination: new URL(options.url).origin,
      minDelayMs: options.minDelayMs,
      maxDelayMs: options.maxDelayMs,
      batchLimitBytes: options.uploadLimitBytes,
      bufferLimit: options.bufferLimit,
      logger: options.logger,
      ...(options.random ? { random: options.random } : {}),
    });
  }

  /** The shipper audit.decision_logs describes. */
  static fromConfig(section: NonNullable<AuditConfig['decision_logs']>, logger: Logger): DecisionLogShipper {
    return new DecisionLogShipper({
      url: section.url,
      headers: section.headers,
      minDelayMs: section.min_delay_ms,
      maxDelayMs: section.max_delay_ms,
      uploadLimitBytes: section.upload_size_limit_bytes,
      bufferLimit: section.buffer_size_limit,
      requestTimeoutMs: section.timeout_ms,
      logger,
    });
  }

  /** Records shipped, dropped and uploads that failed so far. */
  get counts(): ShipperCounts {
    return this.#uploader.counts;
  }

  /** Takes one record's JSON line (as the audit file has it); never blocks, never throws. */
  offer(line: string): void {
    this.#uploader.offer(line.endsWith('\n') ? line.slice(0, -1) : line);
  }

  /** Ships what is buffered now (one attempt), then stops. */
  stop(): Promise<void> {
    return this.#uploader.stop();
  }
}
