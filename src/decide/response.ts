/**
 * The response side of the pipeline (doors that see the answer: Envoy ext_proc): the policy's
 * verdict on what came back, the MCP tools a caller may be offered, the settlement of the hold
 * from the usage the answer reports, and the audit record of it all. Transport-free like the
 * request side (decide.ts); the door feeds it facts and maps its verdicts to the wire.
 *
 * The request's input document, as it was decided, is the policy's view of who asked and for
 * what; the response rule sees it plus `input.response`, so a rule can depend on both.
 */
import { SignalboxError, describeCause } from '../core/errors.js';
import type { ErrorCode } from '../core/codes.js';
import type { Logger } from '../core/log.js';
import { appendInBackground, type AuditSink } from '../audit/log.js';
import type { ReportService } from '../enforce/report.js';
import type { ContentFacts } from '../inspect/content/facts.js';
import type { FindingType } from '../inspect/content/detectors.js';
import type { PolicyEngine } from '../policy/engine.js';
import { interpretResult, type HeaderEntry } from '../policy/result.js';

/** What the request side left for the response side of one request. */
export interface ResponseContext {
  readonly decisionId: string;
  readonly door: string;
  /** The request's input document as the policy saw it. */
  readonly input: Readonly<Record<string, unknown>>;
  /** True when the request's decision reserved budget, so the answer must settle it. */
  readonly held: boolean;
}

/** What the policy sees as `input.response`. */
export interface ResponseFacts {
  readonly status: number;
  /** The API dialect of the answer (`openai.chat`, `anthropic.messages`, `mcp`...), or null. */
  readonly api: string | null;
  readonly stream: boolean;
  readonly content: Pick<ContentFacts, 'scanned' | 'truncated' | 'findings'>;
}

/** The response rule's input: the request's input as decided, plus `input.response`. */
export function responseInput(context: ResponseContext, facts: ResponseFacts): Record<string, unknown> {
  return { ...context.input, response: facts };
}

/** The policy's verdict on an answer. */
export interface ResponseVerdict {
  readonly allowed: boolean;
  readonly reasons: readonly string[];
  /** Finding types to mask (`'all'`: every type); undefined when nothing is to be masked. */
  readonly redact?: ReadonlySet<FindingType> | 'all';
  /** When blocked: what the client gets instead. */
  readonly httpStatus: number;
  readonly headers: readonly HeaderEntry[];
  readonly body: string;
  /** Set when the verdict is a fail-closed error rather than the policy's answer. */
  readonly error?: ErrorCode;
}

/** How one answer ended, for its audit record. */
export interface ResponseOutcome {
  readonly status: number;
  readonly api: string | null;
  readonly stream: boolean;
  /** `passed`, `redacted`, `blocked`, `filtered` (a tools/list with tools removed), or `aborted`. */
  readonly action: 'passed' | 'redacted' | 'blocked' | 'filtered' | 'aborted';
  readonly reasons: readonly string[];
  readonly findings: ContentFacts['findings'];
  readonly redactions?: number;
  readonly toolsRemoved?: readonly string[];
  /** How the hold was settled: from the provider's usage, counted, at zero, or not at all. */
  readonly settlement?: 'provider_usage' | 'counted' | 'error_response' | 'none' | 'failed';
}

/** What a {@link ResponsePipeline} needs, wired once at start-up. */
export interface ResponsePipelineOptions {
  readonly engine: () => PolicyEngine;
  /** The response rule (`policy.response`); a bundle without it passes answers unjudged. */
  readonly entrypoint: string;
  readonly reports: ReportService;
  readonly audit: AuditSink;
  readonly logger: Logger;
  /** Nanoseconds since the epoch; tests freeze it. */
  readonly clock?: () => bigint;
  readonly labels?: Readonly<Record<string, string>>;
}

const BLOCKED_STATUS = 502;
const FAIL_CLOSED_BODY = JSON.stringify({ error: { code: 'policy_eval_failed', message: 'the answer could not be checked' } });

/** Judges, filters, settles and records answers; one per server, holding no per-request state. */
export class ResponsePipeline {
  private readonly clock: () => bigint;

  constructor(private readonly options: ResponsePipelineOptions) {
    this.clock = options.clock ?? (() => BigInt(Date.now()) * 1_000_000n);
  }

  /** True when the bundle has a response rule: without one, answers pass unjudged (still settled and recorded). */
  judges(): boolean {
    return this.options.engine().hasEntrypoint(this.options.entrypoint);
  }

  /**
   * The response rule's verdict. Never throws: an evaluation error or a result of the wrong
   * shape blocks the answer (fail closed), with the code in `error`.
   */
  judge(context: ResponseContext, facts: ResponseFacts): ResponseVerdict {
    const engine = this.options.engine();
    if (!engine.hasEntrypoint(this.options.entrypoint)) return { allowed: true, reasons: [], httpStatus: 200, headers: [], body: '' };
    try {
      const input = responseInput(context, facts);
      const verdict = interpretResult(engine.evaluateEntrypoint(this.options.entrypoint, input, this.clock()));
      const types = verdict.redact?.types;
      return {
        allowed: verdict.allowed,
        reasons: verdict.reasons,
        ...(verdict.redact ? { redact: types === undefined ? ('all' as const) : new Set(types) } : {}),
        httpStatus: verdict.httpStatus,
        headers: verdict.headers,
        body: verdict.body,
      };
    } catch (error) {
      const code: ErrorCode = error instanceof SignalboxError ? error.code : 'internal_error';
      this.options.logger.error({ code, decision_id: context.decisionId, cause: describeCause(error) }, 'response rule failed; the answer is blocked');
      return {
        allowed: false,
        reasons: [code],
        httpStatus: BLOCKED_STATUS,
        headers: [{ key: 'content-type', value: 'application/json' }],
        body: FAIL_CLOSED_BODY,
        error: code,
      };
    }
  }

  /**
   * The MCP tools of a tools/list answer the caller may be offered: those for which a tools/call
   * naming the tool would be allowed by the decision rule, evaluated on the request's own input
   * with the call in place of the list. Nothing is reserved: only the policy is asked. A tool
   * whose evaluation fails is not offered.
   */
  offeredTools(context: ResponseContext, names: readonly string[]): Set<string> {
    const engine = this.options.engine();
    const offered = new Set<string>();
    const nowNs = this.clock();
    for (const name of names) {
      const body = { jsonrpc: '2.0', id: 0, method: 'tools/call', params: { name, arguments: {} } };
      const input = {
        ...context.input,
        parsed_body: body,
        tool_calls: [{ name, source: 'mcp', arguments: {} }],
      };
      try {
        if (interpretResult(engine.evaluate(input, nowNs)).allowed) offered.add(name);
      } catch (error) {
        this.options.logger.warn({ decision_id: context.decisionId, cause: describeCause(error) }, 'tool not offered: the decision rule failed for it');
      }
    }
    return offered;
  }

  /**
   * Settles the request's hold from what the answer reported (a provider usage block, or usage
   * counted from what was delivered); for a request that holds nothing, records that usage for
   * the spend ledger. Never throws: a settlement that fails is logged, and the hold then expires
   * as it would without a report. True when settled or recorded.
   */
  async settle(context: ResponseContext, report: { usage: Record<string, unknown>; model?: string | null; outcome: 'completed' | 'failed'; upstreamStatus: number }): Promise<boolean> {
    // Without a hold (the policy named no budget) the report still records what the call cost,
    // priced for the model the request was estimated for, so the ledger counts it.
    const llm = context.input.llm as { price_model?: unknown; model?: unknown } | undefined;
    const model = report.model ?? (context.held ? null : typeof llm?.price_model === 'string' ? llm.price_model : typeof llm?.model === 'string' ? llm.model : null);
    try {
      await this.options.reports.report(context.door, {
        decision_id: context.decisionId,
        usage: report.usage,
        ...(model ? { model } : {}),
        outcome: report.outcome,
      });
      return true;
    } catch (error) {
      const code = error instanceof SignalboxError ? error.code : 'internal_error';
      // No hold to settle: the report service recorded the usage for the ledger instead.
      if (!context.held && code === 'hold_not_found') return true;
      this.options.logger.warn({ decision_id: context.decisionId, door: context.door, code, cause: describeCause(error) }, 'the answer did not settle its hold');
      return false;
    }
  }

  /** Appends the answer's audit record: what was found (types and counts), what was done. */
  record(context: ResponseContext, outcome: ResponseOutcome): void {
    appendInBackground(this.options.audit, {
      type: 'response',
      decision_id: context.decisionId,
      timestamp: new Date(Number(this.clock() / 1_000_000n)).toISOString(),
      door: context.door,
      status: outcome.status,
      api: outcome.api,
      stream: outcome.stream,
      action: outcome.action,
      reasons: outcome.reasons,
      findings: outcome.findings.map((f) => ({ type: f.type, path: f.path, count: f.count })),
      ...(outcome.redactions !== undefined ? { redactions: outcome.redactions } : {}),
      ...(outcome.toolsRemoved ? { tools_removed: outcome.toolsRemoved } : {}),
      settlement: outcome.settlement ?? 'none',
      ...(this.options.labels ? { labels: this.options.labels } : {}),
    });
  }
}
