/**
 * The facts about one request beyond HTTP, gathered before the policy runs: what it will cost,
 * which tools it calls, its session and content findings (request facts), and what needs a
 * round trip (look-ups): the caller's spend and provider health from the store, and where the
 * tool calls point, from DNS.
 */
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Enforcer } from '../enforce/enforcer.js';
import type { ProviderHealth } from '../enforce/store.js';
import type { VerifiedCaller } from '../identity/verifier.js';
import { contentFacts, type ContentFacts, type ContentOptions } from '../inspect/content/facts.js';
import { findDestinations, type Destination, type DestinationOptions } from '../inspect/destinations.js';
import type { HttpFacts } from '../inspect/http.js';
import { llmFacts, type LlmFacts, type LlmOptions } from '../inspect/llm.js';
import { latestToolCalls, type ToolCallFact } from '../inspect/llm/tool-calls.js';
import type { DecisionRequest } from './decision.js';

/** Facts about the request beyond HTTP: what it will cost and which tools it calls. */
export interface RequestFacts {
  readonly llm: LlmFacts | undefined;
  readonly toolCalls: ToolCallFact[];
  readonly session: string | undefined;
  readonly content: ContentFacts;
}

/** Facts that need a round trip (the store, DNS), gathered at once. */
export interface LookedUpFacts {
  readonly spend: Record<string, unknown> | undefined;
  readonly providers: Record<string, ProviderHealth> | undefined;
  readonly destinations: Destination[] | undefined;
}

/** What gathering the request facts needs. */
export interface RequestFactOptions {
  readonly llm: LlmOptions;
  readonly sessionHeaders: readonly string[];
  readonly content: ContentOptions;
}

/** What the look-ups need. */
export interface LookUpOptions {
  readonly enforcer: Enforcer;
  readonly destinations: DestinationOptions;
  readonly logger: Logger;
}

/** The request facts: cost estimate, tool calls, session, content findings. */
export function requestFacts(request: DecisionRequest, facts: HttpFacts, options: RequestFactOptions): RequestFacts {
  const body = facts.parsed_body;
  const path = request.path.split('?', 1)[0] ?? '';
  const llm = body === undefined ? undefined : llmFacts(path, body, options.llm);
  const toolCalls = body === undefined ? [] : latestToolCalls(path, body);
  let session: string | undefined;
  for (const name of options.sessionHeaders) {
    const value = request.headers[name];
    if (value) {
      session = value;
      break;
    }
  }
  const content: ContentFacts =
    request.bodyForwarded === false
      ? { scanned: false, truncated: false, findings: [], scanned_bytes: 0 }
      : contentFacts(facts.parsed_body, request.body, facts.truncated_body, options.content);
  return { llm, toolCalls, session, content };
}

/** The look-ups, at once: spend, provider health and tool destinations. */
export async function lookUp(caller: VerifiedCaller, facts: RequestFacts, nowMs: number, decisionId: string, options: LookUpOptions): Promise<LookedUpFacts> {
  const [spend, providers, destinations] = await Promise.all([
    callerSpend(caller, facts, nowMs, decisionId, options),
    providerHealth(facts, nowMs, decisionId, options),
    toolDestinations(facts, options),
  ]);
  return { spend, providers, destinations };
}

/** Breaker state per provider, for LLM requests only (tool calls and other traffic are not routed). */
async function providerHealth(facts: RequestFacts, nowMs: number, decisionId: string, options: LookUpOptions): Promise<Record<string, ProviderHealth> | undefined> {
  if (!facts.llm) return undefined;
  try {
    const health = await options.enforcer.providerHealth(nowMs);
    return Object.fromEntries(health.map((h) => [h.provider, h]));
  } catch (error) {
    // Unknown health reads as healthy: routing is availability, not a control. A store that is
    // down also fails the reservation that follows, which decides.
    options.logger.debug({ decision_id: decisionId, code: 'budget_store_unavailable', cause: describeCause(error) }, 'provider health lookup failed');
    return undefined;
  }
}

/** Where the turn's tool calls point, resolved and classified (`input.destinations`). */
async function toolDestinations(facts: RequestFacts, options: LookUpOptions): Promise<Destination[] | undefined> {
  if (facts.toolCalls.length === 0) return undefined;
  return findDestinations(
    facts.toolCalls.map((call, i) => ({ path: `$.tool_calls[${i}].arguments`, arguments: call.arguments })),
    options.destinations,
  );
}

/**
 * The caller's current spend, so a policy can route by remaining budget. Only for verified
 * callers (an unverified one is denied anyway). A store failure leaves `input.spend` out: the
 * reservation that follows meets the same failure and decides.
 */
async function callerSpend(caller: VerifiedCaller, facts: RequestFacts, nowMs: number, decisionId: string, options: LookUpOptions): Promise<Record<string, unknown> | undefined> {
  if (!caller.identity.verified) return undefined;
  const identity = caller.identity;
  try {
    return await options.enforcer.spendFor(
      { subject: identity.subject, team: identity.team, tenant: identity.tenant, session: facts.session, client_id: caller.actor.client_id },
      identity.tenant,
      nowMs,
    );
  } catch (error) {
    // Debug only: the reservation that follows fails the same way and logs the decision.
    options.logger.debug({ decision_id: decisionId, code: 'budget_store_unavailable', cause: describeCause(error) }, 'spend lookup failed');
    return undefined;
  }
}
