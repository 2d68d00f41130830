/**
 * Prometheus metrics, served at `GET /metrics` in the text exposition format 0.0.4. No client
 * library: a handful of counters and one histogram, fed by the pipeline's and the report
 * service's observers (`onDecision`, `observe`), one registry per running Signalbox.
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
 *
 * Cardinality is bounded: label values come from code (doors, codes) or from policies and
 * reports (reason codes, provider names), and every label keeps at most
 * {@link MAX_LABEL_VALUES} distinct values; later ones are counted as `other`.
 */
import type { DecisionObservation } from '../decide/decide.js';
import type { ReportObservation } from '../enforce/report.js';
import type { BundleObservation } from '../bundles/source.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const MAX_LABEL_VALUES = 100;
export const OVERFLOW_LABEL = 'other';

/** Latency buckets in seconds: a decision is sub-millisecond to a few hundred ms (JWKS, Redis, DNS). */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatNumber(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isNaN(value)) return 'NaN';
  return String(value);
}

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

function labelText(names: readonly string[], labels: Labels, extra?: [string, string]): string {
  const parts = names.map((name) => `${name}="${escapeLabel(labels[name] ?? '')}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
}

class Counter {
  private readonly series = new Map<string, { labels: Labels; value: number }>();
  private readonly cap: LabelCap;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    limit: number,
  ) {
    this.cap = new LabelCap(limit);
  }

  inc(labels: Labels, by = 1): void {
    const capped: Record<string, string> = {};
    for (const name of this.labelNames) capped[name] = this.cap.value(name, labels[name] ?? '');
    const key = JSON.stringify(this.labelNames.map((n) => capped[n]));
    const entry = this.series.get(key);
    if (entry) entry.value += by;
    else this.series.set(key, { labels: capped, value: by });
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.series.values()) lines.push(`${this.name}${labelText(this.labelNames, labels)} ${formatNumber(value)}`);
    return lines;
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; buckets: number[]; sum: number; count: number }>();
  private readonly cap: LabelCap;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly bounds: readonly number[],
    limit: number,
  ) {
    this.cap = new LabelCap(limit);
  }

  observe(labels: Labels, value: number): void {
    const capped: Record<string, string> = {};
    for (const name of this.labelNames) capped[name] = this.cap.value(name, labels[name] ?? '');
    const key = JSON.stringify(this.labelNames.map((n) => capped[n]));
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labels: capped, buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, entry);
    }
    for (let i = 0; i < this.bounds.length; i++) if (value <= (this.bounds[i] as number)) entry.buckets[i] = (entry.buckets[i] as number) + 1;
    entry.sum += value;
    entry.count += 1;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const { labels, buckets, sum, count } of this.series.values()) {
      this.bounds.forEach((bound, i) => lines.push(`${this.name}_bucket${labelText(this.labelNames, labels, ['le', formatNumber(bound)])} ${buckets[i]}`));
      lines.push(`${this.name}_bucket${labelText(this.labelNames, labels, ['le', '+Inf'])} ${count}`);
      lines.push(`${this.name}_sum${labelText(this.labelNames, labels)} ${formatNumber(sum)}`);
      lines.push(`${this.name}_count${labelText(this.labelNames, labels)} ${count}`);
    }
    return lines;
  }
}

/** An info gauge: one series with value 1, whose labels say what is current (the active bundle revision). */
class Info {
  private labels: Labels | undefined;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  set(labels: Labels): void {
    this.labels = labels;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    if (this.labels) lines.push(`${this.name}${labelText(this.labelNames, this.labels)} 1`);
    return lines;
  }
}

/** One Signalbox's metrics. Observers never throw into the code they observe. */
export class Metrics {
  private readonly decisions: Counter;
  private readonly duration: Histogram;
  private readonly budgetDenials: Counter;
  private readonly storeErrors: Counter;
  private readonly reports: Counter;
  private readonly breaker: Counter;
  private readonly bundleLoads: Counter;
  private readonly bundleDownloads: Counter;
  private readonly bundleInfo: Info;

  constructor(limit = MAX_LABEL_VALUES) {
    this.decisions = new Counter('signalbox_decisions_total', 'Decisions by door, result and first reason code.', ['door', 'result', 'reason'], limit);
    this.duration = new Histogram('signalbox_decision_duration_seconds', 'Time to decide one request, by door.', ['door'], DURATION_BUCKETS, limit);
    this.budgetDenials = new Counter('signalbox_budget_denials_total', 'Allowed verdicts denied by enforcement (budgets, rate limits, loop detection), by reason.', ['reason'], limit);
    this.storeErrors = new Counter('signalbox_store_errors_total', 'Budget store failures, by operation.', ['operation'], limit);
    this.reports = new Counter('signalbox_usage_reports_total', 'Usage reports, by outcome or refusal code.', ['outcome'], limit);
    this.breaker = new Counter('signalbox_provider_breaker_transitions_total', 'Provider circuit breaker state changes.', ['provider', 'from', 'to'], limit);
    this.bundleLoads = new Counter('signalbox_bundle_loads_total', 'Policy bundle loads, by origin and result (activated, unchanged or the rejection code).', ['origin', 'result'], limit);
    this.bundleDownloads = new Counter('signalbox_bundle_downloads_total', 'Requests to the bundle server, by outcome.', ['outcome'], limit);
    this.bundleInfo = new Info('signalbox_bundle_info', 'The revision of the active policy bundle.', ['revision']);
  }

  /** The pipeline's `onDecision`. */
  readonly onDecision = (observation: DecisionObservation): void => {
    const { door, decision, enforcement, durationS } = observation;
    const result = decision.dryRunDenial ? 'dry_run_denied' : decision.allowed ? 'allowed' : 'denied';
    this.decisions.inc({ door, result, reason: decision.reasons[0] ?? 'none' });
    this.duration.observe({ door }, durationS);
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
    if (observation.revision !== undefined) this.bundleInfo.set({ revision: observation.revision });
  };

  /** The exposition text (format 0.0.4). */
  render(): string {
    const metrics = [this.decisions, this.duration, this.budgetDenials, this.storeErrors, this.reports, this.breaker, this.bundleLoads, this.bundleDownloads, this.bundleInfo];
    return `${metrics.flatMap((m) => m.render()).join('\n')}\n`;
  }
}
