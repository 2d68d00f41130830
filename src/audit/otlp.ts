/**
 * OpenTelemetry for decisions: one span per decision, with a child span per pipeline stage,
 * in the trace the gateway started (W3C `traceparent`), and the audit record as an OTLP log in
 * the same trace. Exported as OTLP/HTTP JSON (`/v1/traces`, `/v1/logs`) to a collector, through
 * the BatchUploader: it never blocks a decision. Written against the OTLP specification
 * rather than the SDK, which the hot path does not need.
 */
import { randomBytes } from 'node:crypto';
import { BatchUploader, type UploaderCounts } from '../core/batch-uploader.js';
import type { Logger } from '../core/log.js';
import type { AuditConfig } from './config.js';
import { postJson } from './ship-opa.js';

/** Where spans and logs go (audit.otlp). */
export interface OtlpOptions {
  /** The collector's OTLP/HTTP base URL (`http://collector:4318`). */
  readonly endpoint: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  readonly bufferLimit: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

/** The trace a decision belongs to, and its own span id. */
export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  /** The gateway's span, when it sent a `traceparent`. */
  readonly parentSpanId?: string;
}

/** One stage of a decision, timed (ns since the epoch). */
export interface StageSpan {
  readonly name: string;
  readonly startNs: bigint;
  readonly endNs: bigint;
}

/** A finished decision, as a span. */
export interface DecisionSpan {
  readonly trace: TraceContext;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly stages: readonly StageSpan[];
  readonly attributes: Readonly<Record<string, string | number | boolean | readonly string[]>>;
  readonly error: boolean;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** The trace context for a request: the gateway's `traceparent` when valid, else a new trace. */
export function traceContext(traceparent: string | undefined): TraceContext {
  const spanId = randomBytes(8).toString('hex');
  const match = traceparent ? TRACEPARENT.exec(traceparent.trim().toLowerCase()) : null;
  if (match && match[1] !== ZERO_TRACE && match[2] !== ZERO_SPAN) return { traceId: match[1] as string, spanId, parentSpanId: match[2] as string };
  return { traceId: randomBytes(16).toString('hex'), spanId };
}

function attribute(key: string, value: string | number | boolean | readonly string[]): unknown {
  if (Array.isArray(value)) return { key, value: { arrayValue: { values: value.map((v) => ({ stringValue: v })) } } };
  if (typeof value === 'boolean') return { key, value: { boolValue: value } };
  if (typeof value === 'number') return { key, value: Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value } };
  return { key, value: { stringValue: value } };
}

/** The exporter: decision spans to /v1/traces, audit records to /v1/logs. */
export class OtlpExporter {
  readonly #traces: BatchUploader;
  readonly #logs: BatchUploader;
  readonly #resource: unknown;
  readonly #scope = { name: 'signalbox' };

  constructor(options: OtlpOptions) {
    this.#resource = { attributes: [attribute('service.name', options.serviceName)] };
    const uploader = (path: string, wrap: (items: readonly string[]) => string) =>
      new BatchUploader({
        send: (items) => postJson(`${options.endpoint.replace(/\/$/, '')}${path}`, options.headers, wrap(items), false, options.requestTimeoutMs),
        destination: new URL(options.endpoint).origin,
        minDelayMs: options.minDelayMs,
        maxDelayMs: options.maxDelayMs,
        batchLimitBytes: 1024 * 1024,
        bufferLimit: options.bufferLimit,
        logger: options.logger,
      });
    this.#traces = uploader('/v1/traces', (spans) => `{"resourceSpans":[{"resource":${JSON.stringify(this.#resource)},"scopeSpans":[{"scope":${JSON.stringify(this.#scope)},"spans":[${spans.join(',')}]}]}]}`);
    this.#logs = uploader('/v1/logs', (records) => `{"resourceLogs":[{"resource":${JSON.stringify(this.#resource)},"scopeLogs":[{"scope":${JSON.stringify(this.#scope)},"logRecords":[${records.join(',')}]}]}]}`);
  }

  /** The exporter audit.otlp describes. */
  static fromConfig(section: NonNullable<AuditConfig['otlp']>, logger: Logger): OtlpExporter {
    return new OtlpExporter({
      endpoint: section.endpoint,
      headers: section.headers,
      serviceName: section.service_name,
      minDelayMs: section.min_delay_ms,
      maxDelayMs: section.max_delay_ms,
      bufferLimit: section.buffer_size_limit,
      requestTimeoutMs: section.timeout_ms,
      logger,
    });
  }

  /** Spans and log records shipped, dropped and failed uploads, together. */
  get counts(): UploaderCounts {
    const a = this.#traces.counts;
    const b = this.#logs.counts;
    return { shipped: a.shipped + b.shipped, dropped: a.dropped + b.dropped, failedUploads: a.failedUploads + b.failedUploads };
  }

  /** Queues a decision's span and its stage spans; never blocks, never throws. */
  span(decision: DecisionSpan): void {
    const { trace } = decision;
    const root = {
      traceId: trace.traceId,
      spanId: trace.spanId,
      ...(trace.parentSpanId ? { parentSpanId: trace.parentSpanId } : {}),
      name: 'signalbox.decision',
      kind: 2, // SPAN_KIND_SERVER
      startTimeUnixNano: String(decision.startNs),
      endTimeUnixNano: String(decision.endNs),
      attributes: Object.entries(decision.attributes).map(([key, value]) => attribute(key, value)),
      status: { code: decision.error ? 2 : 1 }, // STATUS_CODE_ERROR, STATUS_CODE_OK
    };
    this.#traces.offer(JSON.stringify(root));
    for (const stage of decision.stages) {
      this.#traces.offer(
        JSON.stringify({
          traceId: trace.traceId,
          spanId: randomBytes(8).toString('hex'),
          parentSpanId: trace.spanId,
          name: `signalbox.${stage.name}`,
          kind: 1, // SPAN_KIND_INTERNAL
          startTimeUnixNano: String(stage.startNs),
          endTimeUnixNano: String(stage.endNs),
        }),
      );
    }
  }

  /** Queues an audit record's line as an OTLP log in its decision's trace. */
  log(line: string, timeNs: bigint, trace: TraceContext | undefined, decisionId: string | undefined): void {
    this.#logs.offer(
      JSON.stringify({
        timeUnixNano: String(timeNs),
        severityNumber: 9, // INFO
        severityText: 'INFO',
        body: { stringValue: line.endsWith('\n') ? line.slice(0, -1) : line },
        attributes: decisionId ? [attribute('signalbox.decision_id', decisionId)] : [],
        ...(trace ? { traceId: trace.traceId, spanId: trace.spanId } : {}),
      }),
    );
  }

  /** Ships what is buffered, then stops. */
  async stop(): Promise<void> {
    await Promise.all([this.#traces.stop(), this.#logs.stop()]);
  }
}
