/**
 * The decision pipeline, transport-free: identity → inspect → policy → audit, for one request.
 *
 * Every adapter (Envoy gRPC, the native API, later the HTTP doors) builds a DecisionRequest and
 * maps the Decision back to its wire format. Everything fails closed: a malformed request, a
 * policy error or a result of the wrong shape is a deny with a reason code, and every decision,
 * allowed or denied, is audited.
 */
import { randomUUID } from 'node:crypto';
import { ENFORCEMENT_CODE, clientAnswer, type ErrorCode } from '../core/codes.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { AuditSink } from '../audit/log.js';
import { maskInput } from '../audit/mask.js';
import type { Enforcer, EnforcementOutcome } from '../enforce/enforcer.js';
import { microToUsd } from '../core/money.js';
import type { IdentityVerifier, VerifiedCaller } from '../identity/verifier.js';
import type { ProviderHealth } from '../enforce/store.js';
import { contentFacts, maskedBody, rewritableAs, type ContentFacts, type ContentOptions } from '../inspect/content/facts.js';
import { findDestinations, type Destination, type DestinationOptions } from '../inspect/destinations.js';
import { httpFacts, type HttpFacts } from '../inspect/http.js';
import { latestToolCalls, llmFacts, type LlmFacts, type LlmOptions, type ToolCallFact } from '../inspect/llm.js';
import type { Logger } from '../core/log.js';
import type { PolicyEngine } from '../policy/engine.js';
import { interpretResult, type HeaderEntry, type PolicyVerdict, type RouteClaim } from '../policy/result.js';
import { ROUTE_HEADERS, routeEffect, type CredentialLookup, type RoutingOptions } from './route.js';

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
  /** True when the door can hand the gateway a rewritten body (the native API, LiteLLM), so `redact` can be honoured. */
  readonly canRewriteBody?: boolean;
  /**
   * False when the door never forwards the request body (nginx auth_request, Caddy forward_auth):
   * the body facts are empty rather than "truncated", and `input.content.scanned` is false.
   */
  readonly bodyForwarded?: boolean;
}

export interface Decision extends PolicyVerdict {
  readonly decisionId: string;
  /** The bundle revision that decided. */
  readonly revision: string;
  /** Set when the decision is a fail-closed error rather than the policy's answer. */
  readonly error?: ErrorCode;
  /** On allow: the body to send upstream instead of the caller's (findings masked, model rerouted). */
  readonly upstreamBody?: string;
  /** On allow: where the policy routed the request. */
  readonly route?: RouteClaim;
  /** Set when dry-run let a policy denial pass: the denial that was not enforced. */
  readonly dryRunDenial?: { readonly httpStatus: number; readonly reasons: readonly string[] };
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

/** Facts about the request beyond HTTP: what it will cost and which tools it calls. */
interface RequestFacts {
  readonly llm: LlmFacts | undefined;
  readonly toolCalls: ToolCallFact[];
  readonly session: string | undefined;
  readonly content: ContentFacts;
}

/** Facts that need a round trip (the store, DNS), gathered at once. */
interface LookedUpFacts {
  readonly spend: Record<string, unknown> | undefined;
  readonly providers: Record<string, ProviderHealth> | undefined;
  readonly destinations: Destination[] | undefined;
}

/** What an allowed verdict changes on the upstream request beyond the policy's own keys. */
interface Shaping {
  readonly verdict: PolicyVerdict;
  readonly upstreamBody: string | undefined;
}

function withDecisionId(headers: readonly HeaderEntry[], decisionId: string): HeaderEntry[] {
  return [...headers.filter((h) => h.key.toLowerCase() !== DECISION_ID_HEADER), { key: DECISION_ID_HEADER, value: decisionId }];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function rfc3339Nano(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
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
    const decisionId = randomUUID();
    const started = process.hrtime.bigint();
    const nowNs = this.clock();
    const engine = this.options.engine();
    let input: Record<string, unknown> = { attributes: request.attributes };
    let result: unknown = null;
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
      const caller = await this.options.identity.verify(request.headers, nowMs);
      const requestFacts = this.requestFacts(request, facts);
      const [spend, providers, destinations] = await Promise.all([
        this.spend(caller, requestFacts, nowMs, decisionId),
        this.providers(requestFacts, nowMs, decisionId),
        this.destinations(requestFacts),
      ]);
      input = this.buildInput(request, facts, caller, requestFacts, { spend, providers, destinations });
      const evaluation = engine.evaluate(input, nowNs);
      evalNs = evaluation.evalNs;
      result = evaluation.result;
      if (evaluation.builtinErrors.length > 0) {
        this.options.logger.debug({ decision_id: decisionId, builtin_errors: evaluation.builtinErrors }, 'builtin errors during evaluation');
      }
      const policyVerdict = interpretResult(evaluation);
      policyDenied = !policyVerdict.allowed;
      // Route and redaction first: a missing credential or a body that cannot be masked denies
      // before anything is reserved.
      const shaping = policyVerdict.allowed ? this.shape(policyVerdict, request, facts) : { verdict: policyVerdict, upstreamBody: undefined };
      const verdict = shaping.verdict;
      if (verdict.allowed && verdict.enforcement) {
        enforcement = await this.options.enforcer.reserve(
          decisionId,
          verdict.enforcement,
          { llm: requestFacts.llm, toolCalls: requestFacts.toolCalls, tenant: caller.identity.tenant },
          nowMs,
        );
        decision = this.enforced(verdict, enforcement, decisionId, engine.revision);
      } else {
        decision = this.finish(verdict, decisionId, engine.revision);
      }
      if (decision.allowed) {
        decision = {
          ...decision,
          ...(shaping.upstreamBody !== undefined ? { upstreamBody: shaping.upstreamBody } : {}),
          ...(verdict.route ? { route: verdict.route } : {}),
        };
      }
    } catch (error) {
      decision = this.failClosed(error, decisionId, engine.revision);
    }
    const handlerNs = Number(process.hrtime.bigint() - started);
    // Only the policy's own denials pass in dry-run: an error or an enforcement denial (which
    // follows a policy allow) never does.
    const dryRunPasses = this.options.dryRun === true && policyDenied && !decision.allowed && decision.error === undefined;
    this.audit(request, engine.entrypoint, input, result, decision, nowNs, enforcement, {
      timer_rego_query_eval_ns: evalNs,
      timer_server_handler_ns: handlerNs,
    }, dryRunPasses);
    if (dryRunPasses) decision = this.dryRunPass(decision, request);
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
    const decision = this.failClosed(cause, randomUUID(), engine.revision);
    const request: DecisionRequest = { door, attributes: {}, path: '', headers: {}, body: Buffer.alloc(0) };
    this.audit(request, engine.entrypoint, {}, null, decision, nowNs, undefined, { timer_rego_query_eval_ns: 0, timer_server_handler_ns: 0 });
    this.observe({ door, decision, enforcement: undefined, durationS: 0 });
    return decision;
  }

  private observe(observation: DecisionObservation): void {
    try {
      this.options.onDecision?.(observation);
    } catch (error) {
      this.options.logger.error({ code: 'internal_error', cause: describeCause(error) }, 'decision observer failed');
    }
  }

  private requestFacts(request: DecisionRequest, facts: HttpFacts): RequestFacts {
    const body = facts.parsed_body;
    const path = request.path.split('?', 1)[0] ?? '';
    const llm = body === undefined ? undefined : llmFacts(path, body, this.options.llm);
    const toolCalls = body === undefined ? [] : latestToolCalls(path, body);
    let session: string | undefined;
    for (const name of this.options.sessionHeaders) {
      const value = request.headers[name];
      if (value) {
        session = value;
        break;
      }
    }
    const content: ContentFacts =
      request.bodyForwarded === false
        ? { scanned: false, truncated: false, findings: [], scanned_bytes: 0 }
        : contentFacts(facts.parsed_body, request.body, facts.truncated_body, this.options.content);
    return { llm, toolCalls, session, content };
  }

  /** Breaker state per provider, for LLM requests only (tool calls and other traffic are not routed). */
  private async providers(facts: RequestFacts, nowMs: number, decisionId: string): Promise<Record<string, ProviderHealth> | undefined> {
    if (!facts.llm) return undefined;
    try {
      const health = await this.options.enforcer.providerHealth(nowMs);
      return Object.fromEntries(health.map((h) => [h.provider, h]));
    } catch (error) {
      // Unknown health reads as healthy: routing is availability, not a control. A store that is
      // down also fails the reservation that follows, which decides.
      this.options.logger.debug({ decision_id: decisionId, code: 'budget_store_unavailable', cause: describeCause(error) }, 'provider health lookup failed');
      return undefined;
    }
  }

  /** Where the turn's tool calls point, resolved and classified (`input.destinations`). */
  private async destinations(facts: RequestFacts): Promise<Destination[] | undefined> {
    if (facts.toolCalls.length === 0) return undefined;
    return findDestinations(
      facts.toolCalls.map((call, i) => ({ path: `$.tool_calls[${i}].arguments`, arguments: call.arguments })),
      this.options.destinations,
    );
  }

  /**
   * Applies what an allowed verdict asks of the upstream request: routing headers and the
   * provider credential (`route`), the masked body (`redact`), and a body naming the routed
   * model. Throws credential_unavailable or redaction_unsupported, and the request is denied.
   */
  private shape(verdict: PolicyVerdict, request: DecisionRequest, facts: HttpFacts): Shaping {
    let body: unknown = facts.parsed_body;
    let rewritten = false;
    const kind = rewritableAs(request.headers['content-type'], facts.parsed_body);
    let upstreamBody: string | undefined;
    if (verdict.redact) {
      if (!request.canRewriteBody || facts.truncated_body || kind === undefined) {
        throw new SignalboxError(
          'redaction_unsupported',
          request.canRewriteBody ? 'the policy asked to redact a body that cannot be rewritten (truncated, form or multipart)' : `the policy asked to redact, but ${request.door} cannot rewrite bodies`,
          { details: { door: request.door } },
        );
      }
      const types = verdict.redact.types ? new Set(verdict.redact.types) : undefined;
      const masked = maskedBody(kind, facts.parsed_body, request.body, types);
      if (masked !== undefined && kind === 'json') {
        body = masked;
        rewritten = true;
      } else if (masked !== undefined) {
        upstreamBody = masked as string;
      }
    }
    const route = verdict.route;
    if (route?.model !== undefined && request.canRewriteBody && kind === 'json' && isObject(body) && typeof body.model === 'string' && body.model !== route.model) {
      body = { ...body, model: route.model };
      rewritten = true;
    }
    if (rewritten) upstreamBody = JSON.stringify(body);

    const effect = route ? routeEffect(route, this.options.credentials, this.options.routing) : { headers: [], remove: [], credentialInjected: false };
    const setNames = new Set(effect.headers.map((h) => h.key));
    // A routed request carries only the routing headers Signalbox set: a caller's own copy must
    // never reach a gateway that routes on it. (Without a route the response is exactly the
    // policy's, as in opa-envoy-plugin; the default policy strips them itself.)
    const remove = new Set([...verdict.requestHeadersToRemove, ...effect.remove, ...(route ? ROUTE_HEADERS : [])]);
    for (const name of setNames) remove.delete(name);
    return {
      verdict: {
        ...verdict,
        headers: [...verdict.headers.filter((h) => !setNames.has(h.key.toLowerCase())), ...effect.headers],
        requestHeadersToRemove: [...remove],
      },
      upstreamBody,
    };
  }

  /**
   * The caller's current spend, so a policy can route by remaining budget. Only for verified
   * callers (an unverified one is denied anyway). A store failure leaves `input.spend` out: the
   * reservation that follows meets the same failure and decides.
   */
  private async spend(caller: VerifiedCaller, facts: RequestFacts, nowMs: number, decisionId: string): Promise<Record<string, unknown> | undefined> {
    if (!caller.identity.verified) return undefined;
    const identity = caller.identity;
    try {
      return await this.options.enforcer.spendFor(
        { subject: identity.subject, team: identity.team, tenant: identity.tenant, session: facts.session, client_id: caller.actor.client_id },
        identity.tenant,
        nowMs,
      );
    } catch (error) {
      // Debug only: the reservation that follows fails the same way and logs the decision.
      this.options.logger.debug({ decision_id: decisionId, code: 'budget_store_unavailable', cause: describeCause(error) }, 'spend lookup failed');
      return undefined;
    }
  }

  /** The policy input: opa-envoy-plugin's document plus Signalbox's own facts. */
  private buildInput(
    request: DecisionRequest,
    facts: HttpFacts,
    caller: VerifiedCaller,
    requestFacts: RequestFacts,
    looked: LookedUpFacts,
  ): Record<string, unknown> {
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
      ...(requestFacts.llm ? { llm: requestFacts.llm } : {}),
      ...(requestFacts.toolCalls.length > 0
        ? { tool_calls: requestFacts.toolCalls.map((c) => ({ name: c.name, source: c.source, arguments: c.arguments })) }
        : {}),
      ...(requestFacts.session ? { session: { id: requestFacts.session } } : {}),
      ...(looked.spend ? { spend: looked.spend } : {}),
      content: requestFacts.content,
      ...(looked.destinations ? { destinations: looked.destinations } : {}),
      ...(looked.providers ? { providers: looked.providers } : {}),
      credentials: this.options.credentials ? [...this.options.credentials.names()] : [],
      door: { name: request.door, can_rewrite_body: request.canRewriteBody === true, body_forwarded: request.bodyForwarded !== false },
    };
  }

  /** An allowed verdict after enforcement: kept, turned into a 429, or failed closed. */
  private enforced(verdict: PolicyVerdict, outcome: EnforcementOutcome, decisionId: string, revision: string): Decision {
    switch (outcome.kind) {
      case 'reserved': {
        const decision = this.finish(verdict, decisionId, revision);
        if (outcome.budgets.length === 0) return decision;
        return {
          ...decision,
          dynamicMetadata: { ...decision.dynamicMetadata, reserved_usd: microToUsd(outcome.amountMicroUsd) },
        };
      }
      case 'denied': {
        const headers = [{ key: 'content-type', value: 'application/json' }];
        if (outcome.retryAfterS !== null) headers.push({ key: 'retry-after', value: String(outcome.retryAfterS) });
        const code = ENFORCEMENT_CODE[outcome.reason];
        return this.finish(
          {
            ...verdict,
            allowed: false,
            httpStatus: outcome.status,
            headers,
            body: JSON.stringify({ error: { code, message: outcome.message, ...outcome.detail, decision_id: decisionId } }),
            reasons: [outcome.reason],
            requestHeadersToRemove: [],
            responseHeadersToAdd: [],
            queryParametersToSet: [],
            queryParametersToRemove: [],
          },
          decisionId,
          revision,
        );
      }
      case 'estimate_unavailable':
        return this.failClosed(
          new SignalboxError('budget_estimate_unavailable', 'the policy named budgets but the request cost could not be estimated'),
          decisionId,
          revision,
        );
      case 'store_unavailable': {
        if (!outcome.failOpen) {
          // A bug surfaced by the store (internal_error) stays one; anything else is the store.
          const internal = outcome.error instanceof SignalboxError && outcome.error.code === 'internal_error';
          const error = internal ? outcome.error : new SignalboxError('budget_store_unavailable', 'the budget store did not answer', { cause: outcome.error });
          return this.failClosed(error, decisionId, revision);
        }
        this.options.logger.warn({ decision_id: decisionId, code: 'budget_store_unavailable', cause: describeCause(outcome.error) }, 'budget store unavailable; allowed unenforced as the policy chose');
        const decision = this.finish(verdict, decisionId, revision);
        return { ...decision, reasons: [...decision.reasons, 'budget_store_unavailable'] };
      }
    }
  }

  /**
   * What a dry-run answers instead of a policy denial: a pass that sets nothing and removes what
   * must never travel on. The policy never vouched for this caller, so no identity or routing
   * headers are set, and any x-signalbox-* header the caller sent is removed, so an upstream that
   * trusts those headers never sees a forged one; the caller's token and credential headers are
   * removed as the default policy's allow removes them, so they never reach a provider.
   */
  private dryRunPass(denied: Decision, request: DecisionRequest): Decision {
    this.options.logger.info(
      { decision_id: denied.decisionId, door: request.door, http_status: denied.httpStatus, reasons: denied.reasons, revision: denied.revision },
      'dry-run: policy denial not enforced',
    );
    const forged = Object.keys(request.headers).filter((name) => name.startsWith('x-signalbox-'));
    const credentials = [this.options.identity.tokenHeader, ...this.options.routing.stripHeaders];
    // The decision id header is set here, so a caller's copy is replaced, not removed after it.
    const remove = new Set([...forged, ...ROUTE_HEADERS, ...credentials]);
    remove.delete(DECISION_ID_HEADER);
    return {
      allowed: true,
      bare: denied.bare,
      httpStatus: 200,
      body: '',
      headers: withDecisionId([], denied.decisionId),
      requestHeadersToRemove: [...remove],
      responseHeadersToAdd: withDecisionId([], denied.decisionId),
      queryParametersToSet: [],
      queryParametersToRemove: [],
      dynamicMetadata: { decision_id: denied.decisionId, policy_revision: denied.revision, dry_run: true },
      reasons: denied.reasons,
      decisionId: denied.decisionId,
      revision: denied.revision,
      dryRunDenial: { httpStatus: denied.httpStatus, reasons: denied.reasons },
    };
  }

  private finish(verdict: PolicyVerdict, decisionId: string, revision: string): Decision {
    const dynamicMetadata = { ...verdict.dynamicMetadata, decision_id: decisionId, policy_revision: revision };
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
    const answer = clientAnswer(error instanceof SignalboxError ? error.code : 'internal_error');
    const code = answer.code;
    const log = { decision_id: decisionId, code, cause: describeCause(error) };
    if (code === 'internal_error') this.options.logger.error(log, 'decision failed; denied');
    else this.options.logger.warn(log, 'decision failed closed; denied');
    return {
      allowed: false,
      bare: false,
      httpStatus: answer.http,
      body: JSON.stringify({ error: { code, message: answer.message, decision_id: decisionId } }),
      headers: withDecisionId([{ key: 'content-type', value: 'application/json' }], decisionId),
      requestHeadersToRemove: [],
      responseHeadersToAdd: [],
      queryParametersToSet: [],
      queryParametersToRemove: [],
      dynamicMetadata: { decision_id: decisionId, policy_revision: revision },
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
    enforcement: EnforcementOutcome | undefined,
    metrics: Record<string, number>,
    /** True when this denial was let through by dry-run. */
    dryRunPassed = false,
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
        decision: {
          allowed: decision.allowed,
          http_status: decision.allowed ? 200 : decision.httpStatus,
          reasons: decision.reasons,
          ...(dryRunPassed ? { dry_run: true } : {}),
        },
        ...(decision.error ? { error: { code: decision.error } } : {}),
        ...(enforcement ? { enforcement: auditedEnforcement(enforcement) } : {}),
        metrics,
        labels: this.options.labels ?? {},
      });
    } catch (error) {
      // Auditing must never change the decision; the sink logs its own write failures.
      this.options.logger.error({ code: 'audit_write_failed', cause: describeCause(error) }, 'audit append failed');
    }
  }
}
