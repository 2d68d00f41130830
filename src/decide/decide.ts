/**
 * The decision pipeline, transport-free: request → evaluate → shape → respond → record, for one
 * request. Each step has its file in decide/: the request facts and look-ups (request.ts), the
 * policy input (input.ts), shaping an allowed request (shape.ts), the decision a door answers
 * with (respond.ts) and the audit record (record.ts).
 *
 * Every door builds a DecisionRequest and maps the Decision back to its wire format (decision.ts).
 * Everything fails closed: a malformed request, a policy error or a result of the wrong shape is
 * a deny with a reason code, and every decision, allowed or denied, is audited.
 */
import { randomUUID } from 'node:crypto';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { JsonText, MemberwiseJson } from '../core/json-text.js';
import type { Logger } from '../core/log.js';
import type { AuditSink } from '../audit/log.js';
import { traceContext, type DecisionSpan, type StageSpan, type TraceContext } from '../audit/otlp.js';
import type { Enforcer, EnforcementOutcome } from '../enforce/enforcer.js';
import type { IdentityVerifier } from '../identity/verifier.js';
import type { ContentOptions } from '../inspect/content/facts.js';
import type { DestinationOptions } from '../inspect/destinations.js';
import { httpFacts, type HttpFacts } from '../inspect/http.js';
import type { LlmOptions } from '../inspect/llm.js';
import type { PolicyEngine } from '../policy/engine.js';
import { interpretResult } from '../policy/result.js';
import type { Decision, DecisionRequest } from './decision.js';
import { buildInput, serialiseInput } from './input.js';
import { recordDecision } from './record.js';
import { lookUp, requestFacts } from './request.js';
import { dryRunPass, enforced, failClosed, finish } from './respond.js';
import type { CredentialLookup, RoutingOptions } from './route.js';
import { shape } from './shape.js';

/** Everything a {@link DecisionPipeline} needs, wired once at start-up (src/app/app.ts) and shared by every door. */
export interface PipelineOptions {
  /** Returns the engine to use now (a getter, so a reloaded bundle is picked up per request). */
  readonly engine: () => PolicyEngine;
  readonly identity: IdentityVerifier;
  readonly audit: AuditSink;
  readonly logger: Logger;
  readonly maskHeaders: ReadonlySet<string>;
  /** What of the input a record keeps (`audit.input`). */
  readonly auditInput?: 'full' | 'summary';
  /** Nanoseconds since the epoch; tests freeze it. */
  readonly clock?: () => bigint;
  /** Labels stamped on every audit record (instance id, version). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Budgets, rate limits and loop detection, against the configured store. */
  readonly enforcer: Enforcer;
  /** Prices and defaults for the cost estimate (`input.llm`). */
  readonly llm: LlmOptions;
  /** Request headers naming the agent session, first present wins (`input.session`). */
  readonly sessionHeaders: readonly string[];
  /** PII and secret scanning of the body (`input.content`). */
  readonly content: ContentOptions;
  /** Look-ups of the hosts tool calls target (`input.destinations`); `resolve` is injectable for tests. */
  readonly destinations: DestinationOptions;
  /** Credential schemes and the caller headers stripped when a credential is injected. */
  readonly routing: RoutingOptions;
  /** The vault, when one is open; `route.credential` names its entries. */
  readonly credentials?: CredentialLookup;
  /** Called once per finished decision (metrics); it must not throw, and a throw is ignored. */
  readonly onDecision?: (observation: DecisionObservation) => void;
  /**
   * Dry-run (policy.dry_run): a policy denial is logged and audited as a denial but the request
   * passes. Errors and enforcement (budgets, rate limits, loops) still deny.
   */
  readonly dryRun?: boolean;
  /**
   * audit.durability fsync: a decision is answered only once its record is on disk; past
   * `timeoutMs` (or if the record is lost) the answer is a 503 audit_write_failed deny instead.
   */
  readonly durableAudit?: { readonly timeoutMs: number };
  /** OpenTelemetry: a span per decision, its stages as children, in the gateway's trace. */
  readonly telemetry?: { span(decision: DecisionSpan): void };
}

/**
 * A decision with everything that led to it (`explain`): the input document the policy saw, its
 * raw result, and what enforcement did. The input is the unmasked one; it never leaves the
 * process through the service, only through the CLI's explain and test commands.
 */
export interface DecisionTrace {
  readonly decision: Decision;
  readonly entrypoint: string;
  readonly input: Record<string, unknown>;
  /** The policy's raw result, or null when evaluation never ran or failed. */
  readonly result: unknown;
  readonly enforcement: EnforcementOutcome | undefined;
  /** Time `time.now_ns()` returned during evaluation. */
  readonly nowNs: bigint;
}

/** What a finished decision tells observers: the door, the decision, enforcement, and how long it took. */
export interface DecisionObservation {
  readonly door: string;
  readonly decision: Decision;
  readonly enforcement: EnforcementOutcome | undefined;
  readonly durationS: number;
}

/** Undefined when `promise` resolves within `ms`; else why not (its error, or the timeout). */
async function settledWithin(promise: Promise<void>, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`not written within ${ms} ms`), ms);
  });
  try {
    return await Promise.race([promise.then(() => undefined, (error: unknown) => describeCause(error)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Times a decision's stages for its span: each stage runs from the end of the one before. Times
 * are on the pipeline's clock at the start, advanced by the monotonic clock.
 */
class StageClock {
  readonly spans: StageSpan[] = [];
  #last: bigint;

  constructor(
    readonly startNs: bigint,
    private readonly startedHr: bigint,
  ) {
    this.#last = startNs;
  }

  nowNs(): bigint {
    return this.startNs + (process.hrtime.bigint() - this.startedHr);
  }

  end(name: string): void {
    const now = this.nowNs();
    this.spans.push({ name, startNs: this.#last, endNs: now });
    this.#last = now;
  }
}

function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/**
 * Decides requests for every door: one instance per running server, holding no per-request state,
 * so concurrent requests share it.
 */
export class DecisionPipeline {
  private readonly clock: () => bigint;

  constructor(private readonly options: PipelineOptions) {
    this.clock = options.clock ?? wallClockNs;
  }

  /** Decides one request. Never throws: every failure is a deny with a reason code. */
  async decide(request: DecisionRequest): Promise<Decision> {
    return (await this.explain(request)).decision;
  }

  /** Decides one request exactly as `decide` does (audited, enforced), and returns how. */
  async explain(request: DecisionRequest): Promise<DecisionTrace> {
    const options = this.options;
    const decisionId = randomUUID();
    const started = process.hrtime.bigint();
    const nowNs = this.clock();
    const trace = options.telemetry ? traceContext(request.headers.traceparent) : undefined;
    const stages = trace ? new StageClock(nowNs, started) : undefined;
    const engine = options.engine();
    let input: Record<string, unknown> = { attributes: request.attributes };
    let inputJson: MemberwiseJson | undefined;
    let result: unknown = null;
    let resultJson: JsonText | undefined;
    let evalNs = 0;
    let decision: Decision;
    let enforcement: EnforcementOutcome | undefined;
    let policyDenied = false;
    try {
      let facts: HttpFacts;
      try {
        // A door without a body says nothing about it: a content-length there is not a truncation.
        facts = request.bodyForwarded === false ? httpFacts(request.path, {}, Buffer.alloc(0)) : httpFacts(request.path, request.headers, request.body);
      } catch (error) {
        throw error instanceof SignalboxError ? error : new SignalboxError('request_malformed', 'the request could not be parsed', { cause: error });
      }
      const nowMs = Number(nowNs / 1_000_000n);
      const caller = await options.identity.verify(request.headers, nowMs);
      stages?.end('identity');
      const gathered = requestFacts(request, facts, options);
      const looked = await lookUp(caller, gathered, nowMs, decisionId, options);
      input = buildInput(request, facts, caller, gathered, looked, options.credentials);
      stages?.end('inspect');
      inputJson = serialiseInput(input);
      const evaluation = engine.evaluate(inputJson, nowNs);
      evalNs = evaluation.evalNs;
      result = evaluation.result;
      resultJson = evaluation.resultJson;
      if (evaluation.builtinErrors.length > 0) {
        options.logger.debug({ decision_id: decisionId, builtin_errors: evaluation.builtinErrors }, 'builtin errors during evaluation');
      }
      const policyVerdict = interpretResult(evaluation);
      policyDenied = !policyVerdict.allowed;
      stages?.end('policy');
      // Route and redaction first: a missing credential or a body that cannot be masked denies
      // before anything is reserved.
      const shaping = policyVerdict.allowed ? shape(policyVerdict, request, facts, options.credentials, options.routing) : { verdict: policyVerdict, upstreamBody: undefined };
      const verdict = shaping.verdict;
      if (verdict.allowed && verdict.enforcement) {
        enforcement = await options.enforcer.reserve(decisionId, verdict.enforcement, { llm: gathered.llm, toolCalls: gathered.toolCalls, tenant: caller.identity.tenant }, nowMs);
        decision = enforced(verdict, enforcement, decisionId, engine.revision, options.logger);
      } else {
        decision = finish(verdict, decisionId, engine.revision);
      }
      if (decision.allowed) {
        decision = {
          ...decision,
          ...(shaping.upstreamBody !== undefined ? { upstreamBody: shaping.upstreamBody } : {}),
          ...(verdict.route ? { route: verdict.route } : {}),
        };
      }
      stages?.end('enforce');
    } catch (error) {
      decision = failClosed(error, decisionId, engine.revision, options.logger);
    }
    const handlerNs = Number(process.hrtime.bigint() - started);
    // Only the policy's own denials pass in dry-run: an error or an enforcement denial (which
    // follows a policy allow) never does.
    const dryRunPasses = options.dryRun === true && policyDenied && !decision.allowed && decision.error === undefined;
    const written = recordDecision(options, request, engine.entrypoint, { input, inputJson, result, resultJson }, decision, nowNs, enforcement, {
      timer_rego_query_eval_ns: evalNs,
      timer_server_handler_ns: handlerNs,
    }, dryRunPasses, trace);
    if (options.durableAudit) {
      const problem = await settledWithin(written, options.durableAudit.timeoutMs);
      if (problem !== undefined) {
        // The record may still reach the disk later; the gateway is told no, so nothing passes
        // that the trail cannot show.
        return this.unrecorded(request, decision, problem, enforcement, nowNs, handlerNs, engine.entrypoint, input, result);
      }
    } else {
      written.catch(() => undefined); // a buffered sink logs its own failures
    }
    if (dryRunPasses) decision = dryRunPass(decision, request, { logger: options.logger, tokenHeader: options.identity.tokenHeader, stripHeaders: options.routing.stripHeaders });
    stages?.end('record');
    if (trace && stages) this.exportSpan(trace, stages, request, decision);
    this.observe({ door: request.door, decision, enforcement, durationS: handlerNs / 1e9 });
    return { decision, entrypoint: engine.entrypoint, input, result: result === undefined ? null : result, enforcement, nowNs };
  }

  /**
   * A deny for a request that never reached the pipeline (it could not be mapped from the wire,
   * or a bug escaped `decide`). It is audited like any other decision.
   */
  rejectUnreadable(door: string, error: unknown): Decision {
    const engine = this.options.engine();
    const nowNs = this.clock();
    const cause = error instanceof SignalboxError ? error : new SignalboxError('request_malformed', 'the request could not be mapped', { cause: error });
    const decision = failClosed(cause, randomUUID(), engine.revision, this.options.logger);
    const request: DecisionRequest = { door, attributes: {}, path: '', headers: {}, body: Buffer.alloc(0) };
    // Already a deny: waiting for its record could not make the answer any safer.
    recordDecision(this.options, request, engine.entrypoint, { input: {}, result: null }, decision, nowNs, undefined, { timer_rego_query_eval_ns: 0, timer_server_handler_ns: 0 }).catch(() => undefined);
    this.observe({ door, decision, enforcement: undefined, durationS: 0 });
    return decision;
  }

  /** The answer when a durable record did not reach the disk in time: a 503 deny, observed. */
  private unrecorded(
    request: DecisionRequest,
    decision: Decision,
    problem: string,
    enforcement: EnforcementOutcome | undefined,
    nowNs: bigint,
    handlerNs: number,
    entrypoint: string,
    input: Record<string, unknown>,
    result: unknown,
  ): DecisionTrace {
    const denied = failClosed(new SignalboxError('audit_write_failed', `the decision's audit record is not on disk: ${problem}`, { details: { allowed: decision.allowed } }), decision.decisionId, decision.revision, this.options.logger);
    this.observe({ door: request.door, decision: denied, enforcement, durationS: handlerNs / 1e9 });
    return { decision: denied, entrypoint, input, result: result === undefined ? null : result, enforcement, nowNs };
  }

  /** Hands the decision's span to telemetry; a failure there never reaches the decision. */
  private exportSpan(trace: TraceContext, stages: StageClock, request: DecisionRequest, decision: Decision): void {
    try {
      this.options.telemetry?.span({
        trace,
        startNs: stages.startNs,
        endNs: stages.nowNs(),
        stages: stages.spans,
        attributes: {
          'signalbox.decision_id': decision.decisionId,
          'signalbox.door': request.door,
          'signalbox.allowed': decision.allowed,
          'signalbox.reasons': decision.reasons,
          'signalbox.policy_revision': decision.revision,
          'http.response.status_code': decision.allowed ? 200 : decision.httpStatus,
        },
        error: decision.error !== undefined,
      });
    } catch (error) {
      this.options.logger.error({ code: 'internal_error', cause: describeCause(error) }, 'telemetry failed');
    }
  }

  private observe(observation: DecisionObservation): void {
    try {
      this.options.onDecision?.(observation);
    } catch (error) {
      this.options.logger.error({ code: 'internal_error', cause: describeCause(error) }, 'decision observer failed');
    }
  }
}
