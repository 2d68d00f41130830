/**
 * The audit record of one decision: what was asked (the input, masked), what the policy
 * answered, what was decided and enforced, and how long it took. Every decision is recorded,
 * allowed or denied, errors included; a failed append never changes the decision.
 */
import { hash } from 'node:crypto';
import { noopAuditSink, type AuditSink } from '../audit/log.js';
import { maskedMembers } from '../audit/mask.js';
import type { TraceContext } from '../audit/otlp.js';
import { containsSecret } from '../inspect/content/detectors.js';
import { describeCause } from '../core/errors.js';
import { JsonText, type MemberwiseJson } from '../core/json-text.js';
import type { Logger } from '../core/log.js';
import { microToUsd } from '../core/money.js';
import type { EnforcementOutcome } from '../enforce/enforcer.js';
import type { Decision, DecisionRequest } from './decision.js';

/** Where records go, and what is masked and stamped on them. */
export interface RecordOptions {
  readonly audit: AuditSink;
  readonly logger: Logger;
  readonly maskHeaders: ReadonlySet<string>;
  /** What of the input a record keeps (`audit.input`): all of it, masked, or a summary. */
  readonly auditInput?: 'full' | 'summary';
  /** Labels stamped on every record (instance id, version). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** The last second formatted, so most records reuse its date and time (one Date per second, not per record). */
let formattedSecond = { second: -1n, text: '' };

function rfc3339Nano(ns: bigint): string {
  const second = ns / 1_000_000_000n;
  if (second !== formattedSecond.second) {
    formattedSecond = { second, text: new Date(Number(second) * 1000).toISOString().slice(0, 19) };
  }
  return `${formattedSecond.text}.${(ns - second * 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

/** What the audit trail keeps of enforcement: amounts and counters, never request content. */
function auditedEnforcement(outcome: EnforcementOutcome): Record<string, unknown> {
  switch (outcome.kind) {
    case 'reserved':
      return { outcome: 'reserved', reserved_usd: microToUsd(outcome.amountMicroUsd), budgets: outcome.budgets };
    case 'denied':
      return { outcome: 'denied', reason: outcome.reason, ...outcome.detail };
    case 'estimate_unavailable':
      return { outcome: 'estimate_unavailable' };
    case 'store_unavailable':
      return { outcome: 'store_unavailable', fail_open: outcome.failOpen };
  }
}

/**
 * What the policy was asked and answered: the input, its raw result (undefined when it never
 * ran), and the JSON text of each as the engine had it, when it did (the record reuses it).
 */
export interface PolicyExchange {
  readonly input: Record<string, unknown>;
  readonly inputJson?: MemberwiseJson | undefined;
  readonly result: unknown;
  readonly resultJson?: JsonText | undefined;
}

/**
 * The masked input: with the engine's text of the input, JSON text that reuses the text of every
 * member masking leaves alone; else (or should that fail) the masked copy, which the audit log
 * writes whole. Should masking itself ever fail, the record says why instead of being lost.
 */
function masked(exchange: PolicyExchange, maskHeaders: ReadonlySet<string>): unknown {
  let replaced: Record<string, unknown>;
  try {
    replaced = maskedMembers(exchange.input, maskHeaders, containsSecret);
  } catch (error) {
    return { omitted: `the input could not be masked: ${describeCause(error)}` };
  }
  if (exchange.inputJson) {
    try {
      return new JsonText(exchange.inputJson.textWith(replaced));
    } catch {
      // A masked member JSON cannot write: the log records what it can of the copy.
    }
  }
  return { ...exchange.input, ...replaced };
}

/** Picks the named members of an object that are present. */
function pick(value: unknown, keys: readonly string[]): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const out: Record<string, unknown> = {};
  for (const key of keys) if ((value as Record<string, unknown>)[key] !== undefined) out[key] = (value as Record<string, unknown>)[key];
  return out;
}

/**
 * The `summary` form of the input (`audit.input: summary`): who asked, through which door, for
 * what, and what the inspection found, under the same paths the full input has them, plus the
 * body's size and SHA-256 so a body kept elsewhere can be matched. Identity claims beyond the
 * named ones, headers, the parsed body, the spend view and provider states are left out. It
 * holds no value the detectors flag: tool arguments are reduced to their names, findings are
 * types, paths and counts.
 */
function summarised(input: Record<string, unknown>, body: Buffer): Record<string, unknown> {
  const attributes = input.attributes as { request?: { http?: Record<string, unknown> } } | undefined;
  const http = attributes?.request?.http;
  const toolCalls = Array.isArray(input.tool_calls) ? (input.tool_calls as Array<{ name?: unknown; source?: unknown }>).map((c) => ({ name: c.name, source: c.source })) : undefined;
  const destinations = Array.isArray(input.destinations)
    ? (input.destinations as unknown[]).map((d) => pick(d, ['path', 'host', 'port', 'private', 'reason']))
    : undefined;
  const summary: Record<string, unknown> = {
    summary: true,
    request: {
      method: typeof http?.method === 'string' ? http.method : null,
      path: typeof http?.path === 'string' ? http.path.split('?', 1)[0] : null,
      host: typeof http?.host === 'string' ? http.host : null,
      body_bytes: body.length,
      ...(body.length > 0 ? { body_sha256: hash('sha256', body, 'hex') } : {}),
    },
    identity: pick(input.identity, ['verified', 'subject', 'issuer', 'roles', 'team', 'tenant', 'error']),
    actor: input.actor,
    door: input.door,
  };
  for (const key of ['source_principal', 'session', 'llm', 'content'] as const) if (input[key] !== undefined) summary[key] = input[key];
  if (toolCalls) summary.tool_calls = toolCalls;
  if (destinations) summary.destinations = destinations;
  return summary;
}

/**
 * The policy result in a summary record: what it decided and asked to be enforced, without the
 * HTTP response it shaped (headers, body), which repeats the identity and the reasons.
 */
function summarisedResult(result: unknown): unknown {
  if (typeof result !== 'object' || result === null || Array.isArray(result)) return result;
  return pick(result, ['allowed', 'http_status', 'reasons', 'budgets', 'rate_limits', 'loop', 'cost_usd', 'on_store_error', 'route', 'redact']);
}

/**
 * Appends the decision's record. Returns when the record is as durable as the audit sink makes
 * it (at once for a buffered sink; on disk in fsync mode); rejects if it never will be. A failed
 * append is logged; whether it changes the answer is the caller's choice (only in fsync mode).
 */
export function recordDecision(
  options: RecordOptions,
  request: DecisionRequest,
  decisionPath: string,
  policy: PolicyExchange,
  decision: Decision,
  nowNs: bigint,
  enforcement: EnforcementOutcome | undefined,
  metrics: Record<string, number>,
  /** True when this denial was let through by dry-run. */
  dryRunPassed = false,
  /** The decision's trace, when spans are exported: the record names it. */
  trace?: TraceContext,
): Promise<void> {
  // A sink that drops everything (`signalbox eval`, tests, the benchmark's audit-off baseline)
  // needs no record: none is masked, built or written.
  if (options.audit === noopAuditSink) return Promise.resolve();
  try {
    const written = options.audit.append({
      decision_id: decision.decisionId,
      timestamp: rfc3339Nano(nowNs),
      path: decisionPath,
      door: request.door,
      bundles: { signalbox: { revision: decision.revision } },
      input: options.auditInput === 'summary' ? summarised(policy.input, request.body) : masked(policy, options.maskHeaders),
      result: policy.result === undefined ? null : options.auditInput === 'summary' ? summarisedResult(policy.result) : (policy.resultJson ?? policy.result),
      decision: {
        allowed: decision.allowed,
        http_status: decision.allowed ? 200 : decision.httpStatus,
        reasons: decision.reasons,
        ...(dryRunPassed ? { dry_run: true } : {}),
      },
      ...(decision.error ? { error: { code: decision.error } } : {}),
      ...(enforcement ? { enforcement: auditedEnforcement(enforcement) } : {}),
      metrics,
      labels: options.labels ?? {},
      ...(trace ? { trace_id: trace.traceId, span_id: trace.spanId } : {}),
    });
    return written ?? Promise.resolve();
  } catch (error) {
    // The sink logs its own write failures; this is a sink that broke its contract.
    options.logger.error({ code: 'audit_write_failed', cause: describeCause(error) }, 'audit append failed');
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
