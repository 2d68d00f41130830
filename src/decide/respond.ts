/**
 * Turning a verdict into the decision a door answers with: the decision id on every answer, an
 * enforcement refusal as a 429 with its catalogue code, an error as a fail-closed deny with its
 * catalogue status and message, and what dry-run lets pass instead of a policy denial.
 */
import { ENFORCEMENT_CODE } from '../core/codes.js';
import { SignalboxError, answerFor, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { microToUsd } from '../core/money.js';
import type { EnforcementOutcome } from '../enforce/enforcer.js';
import type { HeaderEntry, PolicyVerdict } from '../policy/result.js';
import { DECISION_ID_HEADER, type Decision, type DecisionRequest } from './decision.js';
import { ROUTE_HEADERS } from './route.js';

/** What a dry-run pass needs to know: the headers that carry the caller's credentials. */
export interface DryRunOptions {
  readonly logger: Logger;
  /** The header the caller's token comes in. */
  readonly tokenHeader: string;
  /** Caller credential headers never sent upstream. */
  readonly stripHeaders: readonly string[];
}

/** The headers with the decision id set (a caller's own copy is replaced). */
export function withDecisionId(headers: readonly HeaderEntry[], decisionId: string): HeaderEntry[] {
  return [...headers.filter((h) => h.key.toLowerCase() !== DECISION_ID_HEADER), { key: DECISION_ID_HEADER, value: decisionId }];
}

/** The decision for a verdict as it stands: the decision id and the revision stamped on it. */
export function finish(verdict: PolicyVerdict, decisionId: string, revision: string): Decision {
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

/** A deny for an error: its catalogue status and message, never its cause (which is logged). */
export function failClosed(error: unknown, decisionId: string, revision: string, logger: Logger): Decision {
  const answer = answerFor(error);
  const code = answer.code;
  const log = { decision_id: decisionId, code, cause: describeCause(error) };
  if (code === 'internal_error') logger.error(log, 'decision failed; denied');
  else logger.warn(log, 'decision failed closed; denied');
  return {
    allowed: false,
    bare: false,
    httpStatus: answer.http,
    body: JSON.stringify({ error: { code, message: answer.text, decision_id: decisionId } }),
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

/** An allowed verdict after enforcement: kept, turned into a 429, or failed closed. */
export function enforced(verdict: PolicyVerdict, outcome: EnforcementOutcome, decisionId: string, revision: string, logger: Logger): Decision {
  switch (outcome.kind) {
    case 'reserved': {
      const decision = finish(verdict, decisionId, revision);
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
      return finish(
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
      return failClosed(
        new SignalboxError('budget_estimate_unavailable', 'the policy named budgets but the request cost could not be estimated'),
        decisionId,
        revision,
        logger,
      );
    case 'store_unavailable': {
      if (!outcome.failOpen) {
        // A bug surfaced by the store (internal_error) stays one; anything else is the store.
        const internal = outcome.error instanceof SignalboxError && outcome.error.code === 'internal_error';
        const error = internal ? outcome.error : new SignalboxError('budget_store_unavailable', 'the budget store did not answer', { cause: outcome.error });
        return failClosed(error, decisionId, revision, logger);
      }
      logger.warn({ decision_id: decisionId, code: 'budget_store_unavailable', cause: describeCause(outcome.error) }, 'budget store unavailable; allowed unenforced as the policy chose');
      const decision = finish(verdict, decisionId, revision);
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
export function dryRunPass(denied: Decision, request: DecisionRequest, options: DryRunOptions): Decision {
  options.logger.info(
    { decision_id: denied.decisionId, door: request.door, http_status: denied.httpStatus, reasons: denied.reasons, revision: denied.revision },
    'dry-run: policy denial not enforced',
  );
  const forged = Object.keys(request.headers).filter((name) => name.startsWith('x-signalbox-'));
  const credentials = [options.tokenHeader, ...options.stripHeaders];
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
