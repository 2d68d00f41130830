/**
 * The one catalogue of codes a client, an operator or a policy can read: in deny bodies, in
 * native API errors, in logs, and in `input.identity.error.code`.
 *
 * Codes are stable: callers, dashboards and policies match on them, so a code is never renamed,
 * only added. Each has a one-line meaning; a code a client can receive also has the HTTP status
 * and gRPC status it is answered with and the message the client sees (never the cause, which
 * is logged). README.md's "Error codes" table lists exactly these; a test compares the two.
 */

/** gRPC status names (grpc-js `status` keys) the native API answers with. */
export type GrpcStatusName = 'INVALID_ARGUMENT' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'NOT_FOUND' | 'RESOURCE_EXHAUSTED' | 'UNAVAILABLE' | 'INTERNAL';

/** How a client receives a code. */
export interface ClientAnswer {
  readonly http: number;
  readonly grpc: GrpcStatusName;
  /** What the client reads, unless `ownMessage`. */
  readonly message: string;
  /**
   * The error's own message is shown instead: it is about the caller's own input (a malformed
   * report, a budget that is spent) and written for them, never a cause.
   */
  readonly ownMessage?: true;
}

/** One code's catalogue entry; README.md's "Error codes" table repeats `meaning` word for word (a test checks). */
export interface CodeEntry {
  readonly meaning: string;
  /** Absent for codes no client receives from Signalbox itself (logs, the CLI, policy input). */
  readonly client?: ClientAnswer;
}

/**
 * Every code Signalbox emits, with its meaning and, for codes a client can receive, how it is
 * answered. Add codes; never rename one.
 */
export const CODE_CATALOGUE = {
  config_invalid: {
    meaning: 'The configuration file or an environment override is missing, malformed or fails validation.',
  },
  bundle_unreadable: {
    meaning: 'A policy bundle file could not be read or is not a gzip-compressed tar archive.',
  },
  bundle_invalid: {
    meaning: 'A policy bundle is missing policy.wasm, data.json or .manifest, or one of them is malformed.',
  },
  bundle_entrypoint_missing: {
    meaning: 'The configured decision path is not an entrypoint of the policy bundle.',
  },
  policy_build_failed: {
    meaning: 'opa build (or opa test) failed on the Rego sources.',
  },
  policy_unsupported_builtin: {
    meaning: 'A policy calls a builtin function the WASM engine does not provide.',
  },
  policy_eval_failed: {
    meaning: 'Evaluating the policy raised an error; the request is denied.',
    client: { http: 403, grpc: 'PERMISSION_DENIED', message: 'the request was denied because the policy could not be evaluated' },
  },
  policy_result_invalid: {
    meaning: 'The policy result is undefined or not of the documented shape; the request is denied.',
    client: { http: 403, grpc: 'PERMISSION_DENIED', message: 'the request was denied because the policy returned an invalid result' },
  },
  request_malformed: {
    meaning: 'The request could not be mapped to a decision input (missing attributes, bad encoding).',
    client: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'the request could not be read' },
  },
  body_malformed: {
    meaning: 'The request body declares JSON or form encoding but cannot be parsed; the request is denied.',
    client: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'the request body could not be parsed' },
  },
  token_missing: {
    meaning: 'No bearer token was presented in the configured header.',
  },
  token_malformed: {
    meaning: 'The bearer token is not a well-formed compact JWS.',
  },
  token_expired: {
    meaning: 'The token is past its exp claim (beyond the clock tolerance).',
  },
  token_not_yet_valid: {
    meaning: 'The token is before its nbf claim (beyond the clock tolerance).',
  },
  token_signature_invalid: {
    meaning: 'The token signature does not verify against the key it names.',
  },
  token_algorithm_not_allowed: {
    meaning: 'The token uses an algorithm outside the allowed list (none and HMAC are never allowed by default).',
  },
  token_issuer_mismatch: {
    meaning: 'The token iss claim is not one of the configured issuers.',
  },
  token_audience_mismatch: {
    meaning: 'The token aud claim does not include a configured audience.',
  },
  token_claims_invalid: {
    meaning: 'A required claim is missing or of the wrong type.',
  },
  token_key_not_found: {
    meaning: 'No key in the JWKS matches the token kid and algorithm, even after a refresh.',
  },
  jwks_unavailable: {
    meaning: 'The JWKS endpoint could not be fetched or returned an invalid key set: an identity-provider outage, not the caller\'s fault. The default policy denies it with 503 `identity.provider_unavailable`; `/ready` names it while the JWKS has never been fetched.',
  },
  identity_not_configured: {
    meaning: 'A token was presented but no JWKS source is configured, so it cannot be verified.',
  },
  server_not_serving: {
    meaning: 'Named by `/ready` (503) and answered as NOT_SERVING by gRPC health while the listeners are starting or shutting down.',
  },
  response_blocked: {
    meaning: 'An answer (Envoy ext_proc) was stopped: buffered, the client gets the response rule\'s error instead; streamed, the stream ends with an error event carrying the rule\'s first reason (or this code).',
    client: { http: 403, grpc: 'PERMISSION_DENIED', message: 'the answer was stopped because it carries content that may not be returned' },
  },
  response_event_too_large: {
    meaning: 'A streamed answer (Envoy ext_proc) sent one event larger than the guard holds (4 MiB); the stream ends with an error event, since what it cannot scan does not pass.',
    client: { http: 502, grpc: 'INTERNAL', message: 'the answer could not be checked' },
  },
  audit_write_failed: {
    meaning: 'An audit record could not be written. With audit.durability buffered the decision stands and the failure is logged; with fsync the request is denied, since its record is not on disk.',
    client: { http: 503, grpc: 'UNAVAILABLE', message: 'the request was denied because its audit record could not be written; retry shortly' },
  },
  audit_tail_torn: {
    meaning: 'The audit file ends in a partial record: a crash interrupted a write. At start-up the fragment is moved aside to <file>.torn-<time> and the chain continues; audit verify reports a torn tail with this code, an edit with audit_chain_broken.',
  },
  audit_chain_broken: {
    meaning: 'An audit file fails hash-chain verification (edited, deleted or reordered record).',
  },
  audit_file_missing: {
    meaning: 'audit verify was given a path that does not exist (no such file or directory): nothing was verified, and nothing is known to be broken.',
  },
  budget_store_unavailable: {
    meaning: 'The budget store (Redis) did not answer; requests that need a reservation are denied with 503 unless the policy opts to fail open, and `/ready` names it while the store is unreachable.',
    client: { http: 503, grpc: 'UNAVAILABLE', message: 'budgets could not be checked because the budget store did not answer; retry shortly' },
  },
  budget_estimate_unavailable: {
    meaning: 'The policy named budgets but the request cost could not be estimated (unpriced model or unknown API); the request is denied.',
    client: { http: 403, grpc: 'PERMISSION_DENIED', message: 'the request was denied because its cost could not be estimated for the budgets that apply' },
  },
  budget_exceeded: {
    meaning: 'A budget the policy named has no room for this request\'s estimate (reason `budget.exceeded`); the body names the budget and `retry-after` when it resets.',
    client: { http: 429, grpc: 'RESOURCE_EXHAUSTED', message: 'the request was denied because a budget that applies to it is spent', ownMessage: true },
  },
  rate_limit_exceeded: {
    meaning: 'A rate limit the policy named has no headroom for this request (reason `rate_limit.exceeded`); `retry-after` says when it will.',
    client: { http: 429, grpc: 'RESOURCE_EXHAUSTED', message: 'the request was denied because a rate limit that applies to it is reached', ownMessage: true },
  },
  loop_repeated_call: {
    meaning: 'The agent repeats a tool call already seen `max_repeats` times in its session window (reason `loop.repeated_call`).',
    client: { http: 429, grpc: 'RESOURCE_EXHAUSTED', message: 'the request was denied because the agent repeats the same tool call', ownMessage: true },
  },
  loop_ping_pong: {
    meaning: 'The agent alternates between two tool calls (A→B→A→B) past the policy\'s `ping_pong` (reason `loop.ping_pong`).',
    client: { http: 429, grpc: 'RESOURCE_EXHAUSTED', message: 'the request was denied because the agent alternates between the same two tool calls', ownMessage: true },
  },
  store_clock_skew: {
    meaning: 'Logged when a replica connects to Redis and their clocks differ by more than 1 s: hold expiry, budget windows and rate-limit refills follow the replica clock, so replicas must be kept in sync (NTP). Counter lifetimes in Redis are relative and are not affected.',
  },
  store_persistence_unsafe: {
    meaning: 'A Redis server could lose holds and settlements in a crash (append-only file off, `appendfsync no`, or its persistence cannot be read), so a cap could be spent twice. Start-up is refused, and while a reconnected server is unsafe its reservations are refused (503 `budget_store_unavailable`), unless `store.unsafe_persistence: warn`, which only logs it.',
  },
  report_malformed: {
    meaning: 'A usage report or spend query is missing a field or has a value of the wrong type.',
    client: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'the usage report or spend query is malformed', ownMessage: true },
  },
  hold_not_found: {
    meaning: 'A usage report names a decision with no budget hold (never reserved, or past its retention); its usage is still recorded for the spend ledger.',
    client: { http: 404, grpc: 'NOT_FOUND', message: 'no budget hold exists for this decision', ownMessage: true },
  },
  ledger_unavailable: {
    meaning: 'The spend ledger\'s database cannot be opened or did not answer (or the ledger is not enabled); ledger endpoints answer 503 and the loader retries at its next poll.',
    client: { http: 503, grpc: 'UNAVAILABLE', message: 'the spend ledger is not available; retry shortly' },
  },
  ledger_query_malformed: {
    meaning: 'A ledger report or listing was asked with a parameter it does not take (an unknown `by`, a time that is not ISO 8601, a bad `limit`).',
    client: { http: 400, grpc: 'INVALID_ARGUMENT', message: 'the ledger query is malformed', ownMessage: true },
  },
  ledger_not_found: {
    meaning: 'The ledger keeps no audit record for the decision id asked for (never loaded, pruned, or a decision the ledger does not keep).',
    client: { http: 404, grpc: 'NOT_FOUND', message: 'the ledger keeps no record of this decision' },
  },
  admin_unauthenticated: {
    meaning: 'An administrative endpoint (usage reports, spend, LiteLLM\'s usage log) was called without a valid admin credential: no or a wrong bearer token and no allow-listed mTLS identity, or none is configured (server.admin).',
    client: { http: 401, grpc: 'UNAUTHENTICATED', message: 'an admin credential is required', ownMessage: true },
  },
  admin_forbidden: {
    meaning: 'An administrative endpoint was called with a verified mTLS client identity that server.admin.principals does not list, and no valid bearer token.',
    client: { http: 403, grpc: 'PERMISSION_DENIED', message: 'this client identity is not allowed to call administrative endpoints', ownMessage: true },
  },
  tls_invalid: {
    meaning: 'A TLS file (server.tls: certificate, key or client CA) cannot be read, does not parse, is outside its validity period or does not match its key. At start-up Signalbox refuses to start; on a reload the previous certificate keeps serving.',
  },
  vault_key_invalid: {
    meaning: 'The vault master key (SIGNALBOX_VAULT_KEY or SIGNALBOX_VAULT_OLD_KEYS) is missing, malformed or not 32 bytes.',
  },
  vault_file_invalid: {
    meaning: 'The credential vault file cannot be read or is malformed.',
  },
  vault_key_unknown: {
    meaning: 'A vault entry is encrypted under a key id that is neither the current key nor one of the old keys.',
  },
  vault_decrypt_failed: {
    meaning: 'A vault entry fails authentication: the key configured for its key id is not the one it was written with, or the entry was modified.',
  },
  vault_write_failed: {
    meaning: 'The credential vault file could not be written; it is left as it was.',
  },
  redaction_unsupported: {
    meaning: 'The policy asked to redact the body, but the door the request came through cannot rewrite bodies (Envoy ext_authz, nginx, Caddy) or the body could not be parsed; the request is denied rather than sent unmasked.',
    client: { http: 403, grpc: 'PERMISSION_DENIED', message: 'the request was denied because its body had to be redacted and this gateway cannot rewrite it' },
  },
  credential_unavailable: {
    meaning: 'The policy routed to a credential the vault does not hold, or no vault is open (SIGNALBOX_VAULT_KEY unset); the request is denied with 503.',
    client: { http: 503, grpc: 'UNAVAILABLE', message: 'the request was denied because the provider credential for its route is not available' },
  },
  bundle_signature_missing: {
    meaning: 'Bundle verification is configured (policy.verification) but the bundle has no .signatures.json.',
  },
  bundle_signature_invalid: {
    meaning: 'A bundle signature does not verify: wrong or unknown key, key id or scope, an unsupported algorithm, or a file that is modified, missing or not covered by the signature.',
  },
  bundle_download_failed: {
    meaning: 'The bundle server (policy.service) could not be reached, timed out, answered with an unexpected status or sent a body over policy.service.max_bundle_bytes; the previous bundle keeps serving.',
  },
  test_suite_invalid: {
    meaning: 'A decision-table file or one of its cases (signalbox test), or a --request file (signalbox eval), is malformed or names something undefined.',
  },
  policy_engine_mismatch: {
    meaning: 'The WASM engine and OPA (topdown) return different results for the same input; signalbox test reports the case as failed.',
  },
  internal_error: {
    meaning: 'An unexpected error inside Signalbox; the request is denied and the cause is logged.',
    client: { http: 500, grpc: 'INTERNAL', message: 'the request was denied because of an internal error' },
  },
} as const satisfies Record<string, CodeEntry>;

/** A stable, machine-readable error code. */
export type ErrorCode = keyof typeof CODE_CATALOGUE;

/** Every code as a list, for checks that a code met in a response body or a policy input is a catalogued one. */
export const ERROR_CODES = Object.keys(CODE_CATALOGUE) as ErrorCode[];

/** The codes a client can receive, with how. */
export type ClientCode = { [K in ErrorCode]: (typeof CODE_CATALOGUE)[K] extends { client: ClientAnswer } ? K : never }[ErrorCode];

/** What a client receives for an error: a code it can receive, with its status and message. */
export function clientAnswer(code: ErrorCode): ClientAnswer & { readonly code: ClientCode } {
  const entry: CodeEntry = CODE_CATALOGUE[code];
  if (entry.client) return { code: code as ClientCode, ...entry.client };
  // An operator-only code that reached a response is a bug: the client sees an internal error.
  return { code: 'internal_error', ...CODE_CATALOGUE.internal_error.client };
}

/**
 * The reasons Signalbox itself puts in a decision (policies add their own, any string): the
 * enforcement denials, and a fail-closed decision's error code.
 */
export type EnforcementReason = 'budget.exceeded' | 'rate_limit.exceeded' | 'loop.repeated_call' | 'loop.ping_pong';
/** Any reason Signalbox itself puts in a decision: an enforcement denial or a fail-closed error code. */
export type SignalboxReason = EnforcementReason | ErrorCode;

/** The code in the response body of an enforcement denial. */
export const ENFORCEMENT_CODE: Readonly<Record<EnforcementReason, ClientCode>> = {
  'budget.exceeded': 'budget_exceeded',
  'rate_limit.exceeded': 'rate_limit_exceeded',
  'loop.repeated_call': 'loop_repeated_call',
  'loop.ping_pong': 'loop_ping_pong',
};
