/**
 * Identity: verifies the caller's bearer JWT with jose and maps its claims to `input.identity`.
 *
 * It verifies, it never trusts: signature against a key from the configured JWKS, `iss`, `aud`,
 * `exp`, `nbf`, and an explicit list of asymmetric algorithms (never `none`, never HMAC, so a
 * public key can never be abused as an HMAC secret). A failure is not thrown: it becomes a
 * machine-readable error code in the identity, and the policy decides (the default denies 401,
 * or 503 when the code is jwks_unavailable: the identity provider is down, not the token bad).
 * Where the keys come from, and how a JWKS file is reloaded, is keys.ts.
 */
import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { jwtVerify, type JWTPayload } from 'jose';
import type { ErrorCode } from '../core/codes.js';
import type { Logger } from '../core/log.js';
import { frozenForJson } from '../core/json-text.js';
import type { IdentityConfig } from './config.js';
import { KeySource, type KeyWatchOptions } from './keys.js';

/** What the policy sees as `input.identity`. Never contains the token itself. */
export interface Identity {
  readonly verified: boolean;
  readonly subject?: string;
  readonly issuer?: string;
  readonly audience?: string | string[];
  readonly roles: string[];
  readonly scopes: string[];
  readonly team?: string;
  readonly tenant?: string;
  readonly expires_at?: number;
  readonly claims?: JWTPayload;
  readonly error?: { readonly code: ErrorCode; readonly message: string };
}

/** What the policy sees as `input.actor`: the agent or client acting for the user. */
export interface Actor {
  readonly subject?: string;
  readonly client_id?: string;
}

/**
 * The outcome of verifying a request's token: `input.identity` and `input.actor`, or an identity
 * carrying the failure's code.
 */
export interface VerifiedCaller {
  readonly identity: Identity;
  readonly actor: Actor;
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_TOKEN_BYTES = 16 * 1024;
const CACHE_LIMIT = 10_000;
const CACHE_TTL_MS = 60_000;

function failure(code: ErrorCode, message: string): VerifiedCaller {
  return { identity: { verified: false, roles: [], scopes: [], error: { code, message } }, actor: {} };
}

/** Reads a dotted claim path ("realm_access.roles") from a payload. */
function claimAt(payload: JWTPayload, path: string): unknown {
  let node: unknown = payload;
  for (const segment of path.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[segment];
  }
  return node;
}

function stringList(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(Boolean);
  return [];
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Maps jose's error codes to ours; anything unexpected is a malformed token, logged by the caller. */
function classify(error: unknown): { code: ErrorCode; message: string } {
  const code = (error as { code?: string })?.code;
  const claim = (error as { claim?: string })?.claim;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return { code: 'token_expired', message: 'token has expired' };
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claim === 'iss') return { code: 'token_issuer_mismatch', message: 'token issuer is not accepted' };
      if (claim === 'aud') return { code: 'token_audience_mismatch', message: 'token audience is not accepted' };
      if (claim === 'nbf' || claim === 'iat') return { code: 'token_not_yet_valid', message: 'token is not yet valid' };
      return { code: 'token_claims_invalid', message: `token claim "${claim ?? 'unknown'}" is missing or invalid` };
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return { code: 'token_signature_invalid', message: 'token signature is invalid' };
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return { code: 'token_algorithm_not_allowed', message: 'token algorithm is not allowed' };
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return { code: 'token_malformed', message: 'token is malformed' };
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return { code: 'token_key_not_found', message: 'no key matches the token' };
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      return { code: 'jwks_unavailable', message: 'the key set could not be loaded' };
    default:
      if (error instanceof TypeError || (error as { name?: string })?.name === 'AbortError' || code === 'ERR_JOSE_GENERIC') {
        return { code: 'jwks_unavailable', message: 'the key set could not be loaded' };
      }
      return { code: 'token_malformed', message: 'token could not be verified' };
  }
}

/**
 * Verifies bearer JWTs against the configured JWKS and maps their claims for the policy. One per
 * running server; it caches successful verifications, so share it across requests.
 */
export class IdentityVerifier {
  /**
   * Successful verifications by token hash, so a hot token is not re-verified on every call; the
   * least recently used go first when it is full. Expiry is checked against the caller's clock
   * (`nowMs`), never the cache's own, so a frozen test clock and a real one never meet.
   */
  private readonly cache = new LRUCache<string, { caller: VerifiedCaller; validUntilMs: number }>({ max: CACHE_LIMIT });

  /** The request header the token is read from (lower case). */
  get tokenHeader(): string {
    return this.config.header;
  }

  private constructor(
    private readonly config: IdentityConfig,
    /** The configured JWKS (file or URL); undefined when none is, and every token is then `identity_not_configured`. */
    readonly keys: KeySource | undefined,
    private readonly logger: Logger,
  ) {
    // A rotated key file may have removed a key: verifications cached under it must not outlive it.
    keys?.onReload(() => this.cache.clear());
  }

  /**
   * Builds a verifier; a local JWKS file is read (and validated) now and then watched unless
   * `watch: false`, a remote one is fetched on first use (or when readiness asks). Call
   * {@link close} to stop the file watch.
   */
  static async create(config: IdentityConfig, logger: Logger, options: KeyWatchOptions = {}): Promise<IdentityVerifier> {
    return new IdentityVerifier(config, await KeySource.open(config, logger, options), logger);
  }

  /** Stops watching the JWKS file. */
  async close(): Promise<void> {
    await this.keys?.close();
  }

  /** Extracts the bearer token from the request headers (lower-cased names). */
  private token(headers: Readonly<Record<string, string>>): { token?: string; error?: VerifiedCaller } {
    const raw = headers[this.config.header];
    if (raw === undefined || raw.trim() === '') return { error: failure('token_missing', `no token in the ${this.config.header} header`) };
    let token = raw.trim();
    if (this.config.scheme) {
      const [scheme, value, ...rest] = token.split(/\s+/);
      if (!scheme || scheme.toLowerCase() !== this.config.scheme.toLowerCase() || !value || rest.length > 0) {
        return { error: failure('token_malformed', `the ${this.config.header} header is not "${this.config.scheme} <token>"`) };
      }
      token = value;
    }
    if (token.length > MAX_TOKEN_BYTES || !COMPACT_JWS.test(token)) {
      return { error: failure('token_malformed', 'token is not a compact JWS') };
    }
    return { token };
  }

  /** Verifies the caller; never throws for a bad token, only reports it. */
  async verify(headers: Readonly<Record<string, string>>, nowMs: number): Promise<VerifiedCaller> {
    const extracted = this.token(headers);
    if (extracted.error) return extracted.error;
    const token = extracted.token as string;
    if (!this.keys) return failure('identity_not_configured', 'no JWKS is configured to verify tokens');

    // One-shot: a Hash object per request was about 2% of a worker's CPU under load.
    const cacheKey = hash('sha256', token, 'base64url');
    const cached = this.cache.get(cacheKey);
    if (cached && cached.validUntilMs > nowMs) return cached.caller;
    if (cached) this.cache.delete(cacheKey);

    try {
      const { payload } = await jwtVerify(token, this.keys.getKey, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: this.config.algorithms,
        clockTolerance: this.config.clock_tolerance_s,
        requiredClaims: this.config.required_claims,
        currentDate: new Date(nowMs),
      });
      const caller = this.map(payload);
      this.remember(cacheKey, caller, payload, nowMs);
      return caller;
    } catch (error) {
      const classified = classify(error);
      if (classified.code === 'jwks_unavailable' || classified.message === 'token could not be verified') {
        this.logger.warn({ code: classified.code, cause: (error as Error)?.message }, 'token verification failed');
      }
      return failure(classified.code, classified.message);
    }
  }

  private remember(key: string, caller: VerifiedCaller, payload: JWTPayload, nowMs: number): void {
    // Every request with this token shares the caller: frozen, its JSON is written once.
    frozenForJson(caller.identity);
    frozenForJson(caller.actor);
    const expiresMs = typeof payload.exp === 'number' ? payload.exp * 1000 : nowMs + CACHE_TTL_MS;
    const validUntilMs = Math.min(expiresMs, nowMs + CACHE_TTL_MS);
    this.cache.set(key, { caller, validUntilMs });
  }

  private map(payload: JWTPayload): VerifiedCaller {
    const mapping = this.config.claims;
    const act = payload.act as { sub?: unknown } | undefined;
    const team = optionalString(claimAt(payload, mapping.team));
    const tenant = optionalString(claimAt(payload, mapping.tenant));
    const subject = optionalString(claimAt(payload, mapping.subject));
    const actorSubject = optionalString(act?.sub);
    const clientId = optionalString(claimAt(payload, mapping.client_id));
    return {
      identity: {
        verified: true,
        ...(subject ? { subject } : {}),
        ...(payload.iss ? { issuer: payload.iss } : {}),
        ...(payload.aud ? { audience: payload.aud } : {}),
        roles: stringList(claimAt(payload, mapping.roles)),
        scopes: stringList(claimAt(payload, mapping.scopes)),
        ...(team ? { team } : {}),
        ...(tenant ? { tenant } : {}),
        ...(typeof payload.exp === 'number' ? { expires_at: payload.exp } : {}),
        claims: payload,
      },
      actor: {
        ...(actorSubject ? { subject: actorSubject } : {}),
        ...(clientId ? { client_id: clientId } : {}),
      },
    };
  }
}
