/**
 * The policy input document: opa-envoy-plugin's (attributes, parsed_path, parsed_query,
 * parsed_body, truncated_body, version) plus Signalbox's own facts. Its schema is
 * src/policy/schema/input.schema.json.
 */
import { SignalboxError, describeCause } from '../core/errors.js';
import { MemberwiseJson, frozenForJson } from '../core/json-text.js';
import { MASKED_MEMBERS } from '../audit/mask.js';
import type { VerifiedCaller } from '../identity/verifier.js';
import type { HttpFacts } from '../inspect/http.js';
import type { DecisionRequest } from './decision.js';
import type { LookedUpFacts, RequestFacts } from './request.js';
import type { CredentialLookup } from './route.js';

/** `input.version`, the same in every input. */
const VERSION = frozenForJson({ encoding: 'protojson', ext_authz: 'v3' });

/** The policy input: opa-envoy-plugin's document plus Signalbox's own facts. */
export function buildInput(
  request: DecisionRequest,
  facts: HttpFacts,
  caller: VerifiedCaller,
  requestFacts: RequestFacts,
  looked: LookedUpFacts,
  credentials: CredentialLookup | undefined,
): Record<string, unknown> {
  return {
    attributes: request.attributes,
    parsed_path: facts.parsed_path,
    parsed_query: facts.parsed_query,
    parsed_body: facts.parsed_body,
    truncated_body: facts.truncated_body,
    version: VERSION,
    ...(request.sourcePrincipal ? { source_principal: request.sourcePrincipal } : {}),
    identity: caller.identity,
    actor: request.sourcePrincipal ? { ...caller.actor, principal: request.sourcePrincipal } : caller.actor,
    ...(requestFacts.llm ? { llm: requestFacts.llm } : {}),
    ...(requestFacts.toolCalls.length > 0
      ? { tool_calls: requestFacts.toolCalls.map((c) => ({ name: c.name, source: c.source, arguments: c.arguments })) }
      : {}),
    ...(requestFacts.session ? { session: { id: requestFacts.session } } : {}),
    ...(looked.spend ? { spend: looked.spend } : {}),
    content: requestFacts.content,
    ...(looked.destinations ? { destinations: looked.destinations } : {}),
    ...(looked.providers ? { providers: looked.providers } : {}),
    credentials: credentials ? [...credentials.names()] : [],
    door: {
      name: request.door,
      can_rewrite_body: request.canRewriteBody === true,
      body_forwarded: request.bodyForwarded !== false,
      ...(request.peerPrincipal ? { peer_principal: request.peerPrincipal } : {}),
    },
  };
}

/**
 * The input's JSON text, written once: the engine evaluates it, and the audit record reuses the
 * text of the members masking leaves alone (written as one group, apart from those it may
 * replace). An input JSON cannot write (a body nested past the stack) fails the evaluation, as
 * it would inside the engine.
 */
export function serialiseInput(input: Readonly<Record<string, unknown>>): MemberwiseJson {
  try {
    return MemberwiseJson.of(input, MASKED_MEMBERS);
  } catch (error) {
    throw new SignalboxError('policy_eval_failed', `policy evaluation failed: the input cannot be written as JSON: ${describeCause(error)}`, { cause: error });
  }
}
