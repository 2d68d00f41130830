/**
 * Prometheus metrics, served at `GET /metrics` in the text exposition format 0.0.4, with
 * prom-client: one registry per running Signalbox, fed by the pipeline's, the report service's
 * and the policy source's observers, plus Node's own process metrics (CPU, memory, GC pauses,
 * event-loop lag: evaluation runs on the event loop, so lag is decision latency).
 *
 * | metric | type | labels |
 * | --- | --- | --- |
 * | `signalbox_decisions_total` | counter | `door`, `result` (`allowed`/`denied`/`dry_run_denied`), `reason` (the decision's first reason code; `none` when it has none) |
 * | `signalbox_decision_duration_seconds` | histogram | `door` |
 * | `signalbox_budget_denials_total` | counter | `reason` (`budget.exceeded`, `rate_limit.exceeded`, `loop.repeated_call`, `loop.ping_pong`) |
 * | `signalbox_store_errors_total` | counter | `operation` (`reserve`, `report`) |
 * | `signalbox_usage_reports_total` | counter | `outcome` (`settled`, `already_settled`, `health_only`, or the error code of a refused report) |
 * | `signalbox_provider_breaker_transitions_total` | counter | `provider`, `from`, `to` |
 * | `signalbox_bundle_loads_total` | counter | `origin` (`file`, `service`, `persisted`), `result` (`activated`, `unchanged`, or the error code of a rejected bundle) |
 * | `signalbox_bundle_downloads_total` | counter | `outcome` (`activated`, `unchanged`, `not_modified`, `rejected`, `failed`) |
 * | `signalbox_bundle_info` | gauge | `revision` of the active bundle (one series, value 1) |
 * | `signalbox_audit_write_failures_total` | counter | none: failed writes to the audit file (each is retried) |
 * | `signalbox_audit_records_dropped_total` | counter | none: audit records dropped (queue full after a long disk failure, or appended after close) |
 * | `signalbox_decision_logs_shipped_total`, `_dropped_total`, `_failed_uploads_total` | counter | none: shipping to a decision-log service (audit.decision_logs) |
 * | `signalbox_worker_restarts_total` | counter | none: workers the primary restarted after they died (server.workers > 1) |
 * | `process_*`, `nodejs_*` | | prom-client's default metrics |
 *
 * With several workers (src/app/cluster.ts) each worker and the primary keep their own registry,
 * and `GET /metrics` on any worker answers the sum over all of them, aggregated by prom-client's
 * cluster support ({@link aggregateSnapshots}); the primary counts what only it does (bundle
 * loads and downloads, worker restarts).
 *
 * Cardinality is bounded: label values come from code (doors, codes) or from policies and
 * reports (reason codes, provider names), and every label keeps at most
 * {@link MAX_LABEL_VALUES} distinct values; later ones are counted as `other`.
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { DecisionObservation } from '../decide/decide.js';
import type { ReportObservation } from '../enforce/report.js';
import type { BundleObservation } from '../bundles/source.js';
import type { ShipperCounts } from '../audit/ship-opa.js';

/** The Content-Type of `GET /metrics`: Prometheus text exposition format 0.0.4. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/**
 * Distinct values kept per label before later ones are counted as {@link OVERFLOW_LABEL}, so a
 * policy or report cannot blow up cardinality.
 */
export const MAX_LABEL_VALUES = 100;
/** The label value that stands for every value past {@link MAX_LABEL_VALUES}. */
export const OVERFLOW_LABEL = 'other';

/** Latency buckets in seconds: a decision is sub-millisecond to a few hundred ms (JWKS, Redis, DNS). */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

/** Keeps at most `limit` distinct values per label; the rest become "other". */
class LabelCap {
  private readonly seen = new Map<string, Set<string>>();
  constructor(private readonly limit: number) {}

  value(label: string, value: string): string {
    let values = this.seen.get(label);
    if (!values) {
      values = new Set();
      this.seen.set(label, values);
    }
    if (values.has(value)) return value;
    if (values.size >= this.limit) return OVERFLOW_LABEL;
    values.add(value);
    return value;
  }
}

type Labels = Readonly<Record<string, string>>;

/** The audit sink's counts, read at each scrape. */
export interface AuditCounts {
  readonly writeFailures: number;
  readonly droppedRecords: number;
}

/** A prom-client counter whose label values are capped (see the module comment). */
class CappedCounter {
  private readonly cap: LabelCap;
  constructor(private readonly counter: Counter, limit: number) {
    this.cap = new LabelCap(limit);
  }

  inc(labels: Labels): void {
    const capped: Record<string, string> = {};
    for (const [name, value] of Object.entries(labels)) capped[name] = this.cap.value(name, value);
    this.counter.inc(capped);
  }
}

/** One process's metrics as prom-client JSON, to be aggregated with other processes'. */
export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

/** The exposition text of several processes' metrics summed (prom-client's cluster aggregation). */
export function aggregateSnapshots(snapshots: readonly MetricsSnapshot[]): Promise<string> {
  return AggregatorRegistry.aggregate(snapshots as MetricsSnapshot[]).metrics();
}

/** One Signalbox's metrics. Observers never throw into the code they observe. */
export class Metrics {
  private readonly registry = new Registry();
  private readonly decisions: CappedCounter;
  private readonly duration: Histogram;
  private readonly durationDoors: LabelCap;
  private readonly budgetDenials: CappedCounter;
  private readonly storeErrors: CappedCounter;
  private readonly reports: CappedCounter;
  private readonly breaker: CappedCounter;
  private readonly bundleLoads: CappedCounter;
  private readonly bundleDownloads: CappedCounter;
  private readonly bundleInfo: Gauge;
  private readonly restarts: Counter;
  private readonly aggregate: (() => Promise<string>) | undefined;

  /**
   * @param audit the audit sink's counts, when it keeps them (the file log does).
   * @param processMetrics false leaves out Node's process metrics (unit tests, the primary of several workers).
   * @param aggregate what {@link render} answers instead of this registry: every worker's metrics, from the primary.
   */
  constructor(
    options: { limit?: number; audit?: () => AuditCounts; shipped?: () => ShipperCounts; processMetrics?: boolean; aggregate?: () => Promise<string> } = {},
  ) {
    this.aggregate = options.aggregate;
    const limit = options.limit ?? MAX_LABEL_VALUES;
    const registers = [this.registry];
    const counter = (name: string, help: string, labelNames: string[]) => new CappedCounter(new Counter({ name, help, labelNames, registers }), limit);
    this.decisions = counter('signalbox_decisions_total', 'Decisions by door, result and first reason code.', ['door', 'result', 'reason']);
    this.duration = new Histogram({ name: 'signalbox_decision_duration_seconds', help: 'Time to decide one request, by door.', labelNames: ['door'], buckets: [...DURATION_BUCKETS], registers });
    this.durationDoors = new LabelCap(limit);
    this.budgetDenials = counter('signalbox_budget_denials_total', 'Allowed verdicts denied by enforcement (budgets, rate limits, loop detection), by reason.', ['reason']);
    this.storeErrors = counter('signalbox_store_errors_total', 'Budget store failures, by operation.', ['operation']);
    this.reports = counter('signalbox_usage_reports_total', 'Usage reports, by outcome or refusal code.', ['outcome']);
    this.breaker = counter('signalbox_provider_breaker_transitions_total', 'Provider circuit breaker state changes.', ['provider', 'from', 'to']);
    this.bundleLoads = counter('signalbox_bundle_loads_total', 'Policy bundle loads, by origin and result (activated, unchanged or the rejection code).', ['origin', 'result']);
    this.bundleDownloads = counter('signalbox_bundle_downloads_total', 'Requests to the bundle server, by outcome.', ['outcome']);
    this.bundleInfo = new Gauge({ name: 'signalbox_bundle_info', help: 'The revision of the active policy bundle.', labelNames: ['revision'], registers });
    this.restarts = new Counter({ name: 'signalbox_worker_restarts_total', help: 'Workers restarted after they died unexpectedly.', registers });
    // Counted by their owners; these counters catch up with them at each scrape.
    const mirror = (name: string, help: string, read: () => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers,
        collect() {
          const now = read();
          if (now > seen) this.inc(now - seen);
          seen = Math.max(seen, now);
        },
      });
    };
    const audit = options.audit;
    if (audit) {
      mirror('signalbox_audit_write_failures_total', 'Failed writes to the audit file (each is retried).', () => audit().writeFailures);
      mirror('signalbox_audit_records_dropped_total', 'Audit records dropped: the queue overflowed during a long disk failure, or a record came after close.', () => audit().droppedRecords);
    }
    const shipped = options.shipped;
    if (shipped) {
      mirror('signalbox_decision_logs_shipped_total', 'Audit records delivered to the decision-log service.', () => shipped().shipped);
      mirror('signalbox_decision_logs_dropped_total', 'Audit records dropped from the shipping buffer while the decision-log service was unreachable.', () => shipped().dropped);
      mirror('signalbox_decision_logs_failed_uploads_total', 'Uploads to the decision-log service that failed (each is retried).', () => shipped().failedUploads);
    }
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** The pipeline's `onDecision`. */
  readonly onDecision = (observation: DecisionObservation): void => {
    const { door, decision, enforcement, durationS } = observation;
    const result = decision.dryRunDenial ? 'dry_run_denied' : decision.allowed ? 'allowed' : 'denied';
    this.decisions.inc({ door, result, reason: decision.reasons[0] ?? 'none' });
    this.duration.observe({ door: this.durationDoors.value('door', door) }, durationS);
    if (enforcement?.kind === 'denied') this.budgetDenials.inc({ reason: enforcement.reason });
    if (enforcement?.kind === 'store_unavailable') this.storeErrors.inc({ operation: 'reserve' });
  };

  /** The report service's `observe`. */
  readonly onReport = (observation: ReportObservation): void => {
    if (observation.type === 'breaker') {
      this.breaker.inc({ provider: observation.provider, from: observation.from, to: observation.to });
      return;
    }
    this.reports.inc({ outcome: observation.outcome });
    if (observation.outcome === 'budget_store_unavailable') this.storeErrors.inc({ operation: 'report' });
  };

  /** The policy source's `observe`. */
  readonly onBundle = (observation: BundleObservation): void => {
    if (observation.type === 'download') {
      this.bundleDownloads.inc({ outcome: observation.outcome });
      return;
    }
    this.bundleLoads.inc({ origin: observation.origin, result: observation.result });
    if (observation.revision !== undefined) {
      this.bundleInfo.reset();
      this.bundleInfo.set({ revision: observation.revision }, 1);
    }
  };

  /** The primary restarted a worker. */
  readonly workerRestarted = (): void => {
    this.restarts.inc();
  };

  /** The exposition text (format 0.0.4): this process's, or every worker's when aggregated. */
  render(): Promise<string> {
    return this.aggregate ? this.aggregate() : this.registry.metrics();
  }

  /** This process's metrics alone, for the primary to aggregate. */
  snapshot(): Promise<MetricsSnapshot> {
    return this.registry.getMetricsAsJSON();
  }
}
