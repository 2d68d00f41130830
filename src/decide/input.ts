/**
 * The policy input document: opa-envoy-plugin's (attributes, parsed_path, parsed_query,
 * parsed_body, truncated_body, version) plus Signalbox's own facts. Its schema is
 * src/policy/schema/input.schema.json.
 */
import type { VerifiedCaller } from '../identity/verifier.js';
import type { HttpFacts } from '../inspect/http.js';
import type { DecisionRequest } from './decision.js';
import type { LookedUpFacts, RequestFacts } from './request.js';
import type { CredentialLookup } from './route.js';

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
    credentials: credentials ? [...credentials.names()] : [],
    door: {
      name: request.door,
      can_rewrite_body: request.canRewriteBody === true,
      body_forwarded: request.bodyForwarded !== false,
      ...(request.peerPrincipal ? { peer_principal: request.peerPrincipal } : {}),
    },
  };
}
