/**
 * The one catalogue of error codes Signalbox returns, logs and hands to policies.
 *
 * Codes are stable: callers, dashboards and policies match on them, so a code is never renamed,
 * only added. Each code carries a one-line meaning; README.md's "Error codes" table must list
 * exactly these (a test compares the two).
 */
export const ERROR_CATALOGUE = {
  config_invalid: 'The configuration file or an environment override is missing, malformed or fails validation.',
  bundle_unreadable: 'A policy bundle file could not be read or is not a gzip-compressed tar archive.',
  bundle_invalid: 'A policy bundle is missing policy.wasm, data.json or .manifest, or one of them is malformed.',
  bundle_entrypoint_missing: 'The configured decision path is not an entrypoint of the policy bundle.',
  policy_build_failed: 'opa build (or opa test) failed on the Rego sources.',
  policy_unsupported_builtin: 'A policy calls a builtin function the WASM engine does not provide.',
  policy_eval_failed: 'Evaluating the policy raised an error; the request is denied.',
  policy_result_invalid: 'The policy result is undefined or not of the documented shape; the request is denied.',
  request_malformed: 'The request could not be mapped to a decision input (missing attributes, bad encoding).',
  body_malformed: 'The request body declares JSON or form encoding but cannot be parsed; the request is denied.',
  token_missing: 'No bearer token was presented in the configured header.',
  token_malformed: 'The bearer token is not a well-formed compact JWS.',
  token_expired: 'The token is past its exp claim (beyond the clock tolerance).',
  token_not_yet_valid: 'The token is before its nbf claim (beyond the clock tolerance).',
  token_signature_invalid: 'The token signature does not verify against the key it names.',
  token_algorithm_not_allowed: 'The token uses an algorithm outside the allowed list (none and HMAC are never allowed by default).',
  token_issuer_mismatch: 'The token iss claim is not one of the configured issuers.',
  token_audience_mismatch: 'The token aud claim does not include a configured audience.',
  token_claims_invalid: 'A required claim is missing or of the wrong type.',
  token_key_not_found: 'No key in the JWKS matches the token kid and algorithm, even after a refresh.',
  jwks_unavailable: 'The JWKS endpoint could not be fetched or returned an invalid key set.',
  identity_not_configured: 'A token was presented but no JWKS source is configured, so it cannot be verified.',
  audit_write_failed: 'An audit record could not be written; the decision stands and the failure is logged.',
  audit_chain_broken: 'An audit file fails hash-chain verification (edited, deleted or reordered record).',
  budget_store_unavailable: 'The budget store (Redis) did not answer; requests that need a reservation are denied with 503 unless the policy opts to fail open.',
  budget_estimate_unavailable: 'The policy named budgets but the request cost could not be estimated (unpriced model or unknown API); the request is denied.',
  store_clock_skew: 'Logged when a replica connects to Redis and their clocks differ by more than 1 s: hold expiry, budget windows and rate-limit refills follow the replica clock, so replicas must be kept in sync (NTP). Counter lifetimes in Redis are relative and are not affected.',
  report_malformed: 'A usage report or spend query is missing a field or has a value of the wrong type.',
  hold_not_found: 'A usage report names a decision with no budget hold (never reserved, or past its retention).',
  vault_key_invalid: 'The vault master key (SIGNALBOX_VAULT_KEY or SIGNALBOX_VAULT_OLD_KEYS) is missing, malformed or not 32 bytes.',
  vault_file_invalid: 'The credential vault file cannot be read or is malformed.',
  vault_key_unknown: 'A vault entry is encrypted under a key id that is neither the current key nor one of the old keys.',
  vault_decrypt_failed: 'A vault entry fails authentication: the key configured for its key id is not the one it was written with, or the entry was modified.',
  vault_write_failed: 'The credential vault file could not be written; it is left as it was.',
  redaction_unsupported: 'The policy asked to redact the body, but the door the request came through cannot rewrite bodies (Envoy ext_authz, nginx, Caddy) or the body could not be parsed; the request is denied rather than sent unmasked.',
  credential_unavailable: 'The policy routed to a credential the vault does not hold, or no vault is open (SIGNALBOX_VAULT_KEY unset); the request is denied with 503.',
  bundle_signature_missing: 'Bundle verification is configured (policy.verification) but the bundle has no .signatures.json.',
  bundle_signature_invalid: 'A bundle signature does not verify: wrong or unknown key, key id or scope, an unsupported algorithm, or a file that is modified, missing or not covered by the signature.',
  bundle_download_failed: 'The bundle server (policy.service) could not be reached, timed out, answered with an unexpected status or sent a body over policy.service.max_bundle_bytes; the previous bundle keeps serving.',
  test_suite_invalid: 'A decision-table file or one of its cases (signalbox test), or a --request file (signalbox eval), is malformed or names something undefined.',
  policy_engine_mismatch: 'The WASM engine and OPA (topdown) return different results for the same input; signalbox test reports the case as failed.',
  internal_error: 'An unexpected error inside Signalbox; the request is denied and the cause is logged.',
} as const;

/** A stable, machine-readable error code. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/**
 * Base class for every error Signalbox raises on purpose. `message` is safe to show to an
 * operator; `details` holds structured fields for logs; `cause` keeps the underlying error for
 * logs only and is never returned to a caller.
 */
export class SignalboxError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SignalboxError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

export function isSignalboxError(error: unknown): error is SignalboxError {
  return error instanceof SignalboxError;
}

/** Normalises anything thrown (including the strings opa-wasm throws) into a SignalboxError. */
export function asSignalboxError(error: unknown, fallback: ErrorCode, message: string): SignalboxError {
  if (error instanceof SignalboxError) return error;
  return new SignalboxError(fallback, message, { cause: error });
}

/** A short description of a thrown value for logs, never for callers. */
export function describeCause(error: unknown): string {
  if (error instanceof Error) {
    // A SignalboxError wraps what actually failed (an ioredis timeout, a refused connection):
    // the log needs both, so follow the cause chain a few levels.
    const parts = [error.message];
    let cause: unknown = error.cause;
    for (let depth = 0; depth < 3 && cause !== undefined && cause !== null; depth++) {
      parts.push(cause instanceof Error ? cause.message : String(cause));
      cause = cause instanceof Error ? cause.cause : undefined;
    }
    return parts.join(': ');
  }
  if (typeof error === 'string') return error;
  if (error && typeof error === 'object' && 'message' in error) return String((error as { message: unknown }).message);
  return String(error);
}
