/**
 * Shaping an allowed request on its way upstream: routing headers and the provider credential
 * (`route`), the masked body (`redact`), and a body naming the routed model.
 */
import { SignalboxError } from '../core/errors.js';
import { maskedBody, rewritableAs } from '../inspect/content/facts.js';
import type { HttpFacts } from '../inspect/http.js';
import type { PolicyVerdict } from '../policy/result.js';
import type { DecisionRequest } from './decision.js';
import { ROUTE_HEADERS, routeEffect, type CredentialLookup, type RoutingOptions } from './route.js';
import { isJsonObject } from '../core/json-object.js';

/** What an allowed verdict changes on the upstream request beyond the policy's own keys. */
export interface Shaping {
  readonly verdict: PolicyVerdict;
  readonly upstreamBody: string | undefined;
}

/**
 * Applies what an allowed verdict asks of the upstream request: routing headers and the
 * provider credential (`route`), the masked body (`redact`), and a body naming the routed
 * model. Throws credential_unavailable or redaction_unsupported, and the request is denied.
 */
export function shape(verdict: PolicyVerdict, request: DecisionRequest, facts: HttpFacts, credentials: CredentialLookup | undefined, routing: RoutingOptions): Shaping {
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
  if (route?.model !== undefined && request.canRewriteBody && kind === 'json' && isJsonObject(body) && typeof body.model === 'string' && body.model !== route.model) {
    body = { ...body, model: route.model };
    rewritten = true;
  }
  if (rewritten) upstreamBody = JSON.stringify(body);

  const effect = route ? routeEffect(route, credentials, routing) : { headers: [], remove: [], credentialInjected: false };
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
