/**
 * The decision pipeline, transport-free: identity → inspect → policy → audit, for one request.
 *
 * Every adapter (Envoy gRPC, the native API, later the HTTP doors) builds a DecisionRequest and
 * maps the Decision back to its wire format. Everything fails closed: a malformed request, a
 * policy error or a result of the wrong shape is a deny with a reason code, and every decision,
 * allowed or denied, is audited.
 */
import { randomUUID } from 'node:crypto';
import { SignalboxError, describeCause, type ErrorCode } from '../errors.js';
import type { AuditSink } from '../audit/log.js';
import { maskInput } from '../audit/mask.js';
import type { IdentityVerifier, VerifiedCaller } from '../identity/verifier.js';
import { httpFacts, type HttpFacts } from '../inspect/http.js';
import type { Logger } from '../log.js';
import type { PolicyEngine } from '../policy/engine.js';
import { interpretResult, type HeaderEntry, type PolicyVerdict } from '../policy/result.js';

export const DECISION_ID_HEADER = 'x-signalbox-decision-id';

/** One request to decide, as every adapter presents it. */
export interface DecisionRequest {
  /** Which door it came through ("envoy.ext_authz.grpc", "signalbox.v1.grpc"). */
  readonly door: string;
  /** Envoy's AttributeContext in JSON names: what the policy sees as `input.attributes`. */
  readonly attributes: Readonly<Record<string, unknown>>;
  /** The original request path, query included. */
  readonly path: string;
  /** Request headers, names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** The calling workload's mTLS identity (Envoy's source.principal), when known. */
  readonly sourcePrincipal?: string;
}

export interface Decision extends PolicyVerdict {
  readonly decisionId: string;
  /** The bundle revision that decided. */
  readonly revision: string;
  /** Set when the decision is a fail-closed error rather than the policy's answer. */
  readonly error?: ErrorCode;
}

export interface PipelineOptions {
  /** Returns the engine to use now (a getter, so a reloaded bundle is picked up per request). */
  readonly engine: () => PolicyEngine;
  readonly identity: IdentityVerifier;
  readonly audit: AuditSink;
  readonly logger: Logger;
  readonly maskHeaders: ReadonlySet<string>;
  /** Nanoseconds since the epoch; tests freeze it. */
  readonly clock?: () => bigint;
  /** Labels stamped on every audit record (instance id, version). */
  readonly labels?: Readonly<Record<string, string>>;
}

const ERROR_STATUS: Partial<Record<ErrorCode, number>> = {
  request_malformed: 400,
  body_malformed: 400,
  internal_error: 500,
};

const ERROR_MESSAGES: Partial<Record<ErrorCode, string>> = {
  request_malformed: 'the request could not be read',
  body_malformed: 'the request body could not be parsed',
  policy_eval_failed: 'the request was denied because the policy could not be evaluated',
  policy_result_invalid: 'the request was denied because the policy returned an invalid result',
  internal_error: 'the request was denied because of an internal error',
};

function withDecisionId(headers: readonly HeaderEntry[], decisionId: string): HeaderEntry[] {
  return [...headers.filter((h) => h.key.toLowerCase() !== DECISION_ID_HEADER), { key: DECISION_ID_HEADER, value: decisionId }];
}

function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function rfc3339Nano(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

export class DecisionPipeline {
  private readonly clock: () => bigint;

  constructor(private readonly options: PipelineOptions) {
    this.clock = options.clock ?? wallClockNs;
  }

  /** Decides one request. Never throws: every failure is a deny with a reason code. */
  async decide(request: DecisionRequest): Promise<Decision> {
    const decisionId = randomUUID();
    const started = process.hrtime.bigint();
    const nowNs = this.clock();
    const engine = this.options.engine();
    let input: Record<string, unknown> = { attributes: request.attributes };
    let result: unknown = null;
    let evalNs = 0;
    let decision: Decision;
    try {
      let facts: HttpFacts;
      try {
        facts = httpFacts(request.path, request.headers, request.body);
      } catch (error) {
        throw error instanceof SignalboxError ? error : new SignalboxError('request_malformed', 'the request could not be parsed', { cause: error });
      }
      const caller = await this.options.identity.verify(request.headers, Number(nowNs / 1_000_000n));
      input = this.buildInput(request, facts, caller);
      const evaluation = engine.evaluate(input, nowNs);
      evalNs = evaluation.evalNs;
      result = evaluation.result;
      if (evaluation.builtinErrors.length > 0) {
        this.options.logger.debug({ decision_id: decisionId, builtin_errors: evaluation.builtinErrors }, 'builtin errors during evaluation');
      }
      const verdict = interpretResult(evaluation);
      decision = this.finish(verdict, decisionId, engine.revision);
    } catch (error) {
      decision = this.failClosed(error, decisionId, engine.revision);
    }
    this.audit(request, engine.entrypoint, input, result, decision, nowNs, {
      timer_rego_query_eval_ns: evalNs,
      timer_server_handler_ns: Number(process.hrtime.bigint() - started),
    });
    return decision;
  }

  /**
   * A deny for a request that never reached the pipeline (it could not be mapped from the wire,
   * or a bug escaped `decide`). It is audited like any other decision.
   */
  rejectUnreadable(door: string, error: unknown): Decision {
    const engine = this.options.engine();
    const nowNs = this.clock();
    const cause = error instanceof SignalboxError ? error : new SignalboxError('request_malformed', 'the request could not be mapped', { cause: error });
    const decision = this.failClosed(cause, randomUUID(), engine.revision);
    const request: DecisionRequest = { door, attributes: {}, path: '', headers: {}, body: Buffer.alloc(0) };
    this.audit(request, engine.entrypoint, {}, null, decision, nowNs, { timer_rego_query_eval_ns: 0, timer_server_handler_ns: 0 });
    return decision;
  }

  /** The policy input: opa-envoy-plugin's document plus Signalbox's own facts. */
  private buildInput(request: DecisionRequest, facts: HttpFacts, caller: VerifiedCaller): Record<string, unknown> {
    return {
      attributes: request.attributes,
      parsed_path: facts.parsed_path,
      parsed_query: facts.parsed_query,
      parsed_body: facts.parsed_body,
      truncated_body: facts.truncated_body,
      version: { encoding: 'protojson', ext_authz: 'v3' },
      ...(request.sourcePrincipal ? { source_principal: request.sourcePrincipal } : {}),
      identity: caller.identity,
      actor: { ...caller.actor, ...(request.sourcePrincipal ? { principal: request.sourcePrincipal } : {}) },
    };
  }

  private finish(verdict: PolicyVerdict, decisionId: string, revision: string): Decision {
    const dynamicMetadata = { ...verdict.dynamicMetadata, decision_id: decisionId };
    if (verdict.allowed) {
      return {
        ...verdict,
        dynamicMetadata,
        headers: withDecisionId(verdict.headers, decisionId),
        responseHeadersToAdd: withDecisionId(verdict.responseHeadersToAdd, decisionId),
        decisionId,
        revision,
      };
    }
    return { ...verdict, dynamicMetadata, headers: withDecisionId(verdict.headers, decisionId), decisionId, revision };
  }

  private failClosed(error: unknown, decisionId: string, revision: string): Decision {
    const code: ErrorCode = error instanceof SignalboxError ? error.code : 'internal_error';
    const log = { decision_id: decisionId, code, cause: describeCause(error) };
    if (code === 'internal_error') this.options.logger.error(log, 'decision failed; denied');
    else this.options.logger.warn(log, 'decision failed closed; denied');
    return {
      allowed: false,
      bare: false,
      httpStatus: ERROR_STATUS[code] ?? 403,
      body: JSON.stringify({ error: { code, message: ERROR_MESSAGES[code] ?? 'the request was denied', decision_id: decisionId } }),
      headers: withDecisionId([{ key: 'content-type', value: 'application/json' }], decisionId),
      requestHeadersToRemove: [],
      responseHeadersToAdd: [],
      queryParametersToSet: [],
      queryParametersToRemove: [],
      dynamicMetadata: { decision_id: decisionId },
      reasons: [code],
      decisionId,
      revision,
      error: code,
    };
  }

  private audit(
    request: DecisionRequest,
    decisionPath: string,
    input: Record<string, unknown>,
    result: unknown,
    decision: Decision,
    nowNs: bigint,
    metrics: Record<string, number>,
  ): void {
    try {
      this.options.audit.append({
        decision_id: decision.decisionId,
        timestamp: rfc3339Nano(nowNs),
        path: decisionPath,
        door: request.door,
        bundles: { signalbox: { revision: decision.revision } },
        input: maskInput(input, this.options.maskHeaders),
        result: result === undefined ? null : result,
        decision: { allowed: decision.allowed, http_status: decision.allowed ? 200 : decision.httpStatus, reasons: decision.reasons },
        ...(decision.error ? { error: { code: decision.error } } : {}),
        metrics,
        labels: this.options.labels ?? {},
      });
    } catch (error) {
      // Auditing must never change the decision; the sink logs its own write failures.
      this.options.logger.error({ code: 'audit_write_failed', cause: describeCause(error) }, 'audit append failed');
    }
  }
}
