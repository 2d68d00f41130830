/**
 * Simulated requests: the short form policy tests and `signalbox eval --request` are written in
 * (a user, a route, a model, a body; short-request.ts), expanded to the DecisionRequest a real
 * gateway's request would become (door-request.ts), and decided by the service's own pipeline
 * (`createPipeline`), with a frozen clock, an in-memory store, a DNS table and an ephemeral
 * signing key.
 *
 * Nothing here is a second implementation of the service: the request goes through the adapters'
 * mappings (`decisionRequestFromHttp`, `fromCheckRequest`), the token is a real JWT verified by
 * the real IdentityVerifier against a JWKS of the ephemeral key, and the input document is the
 * one `DecisionPipeline.explain` builds. What is simulated is only what lies outside the process:
 * the clock, DNS, the store (empty at the start of every case), the vault (names only) and the
 * identity provider.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import type { ForwardedRequest } from '../transport/doors/http-request.js';
import type { AuditSink } from '../audit/log.js';
import type { SignalboxConfig } from '../config/schema.js';
import { MemoryStore } from '../enforce/memory-store.js';
import type { EnforcementStore } from '../enforce/store.js';
import { SignalboxError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { PolicyEngine } from '../policy/engine.js';
import { createPipeline } from '../app/app.js';
import type { DecisionPipeline, DecisionTrace } from '../decide/decide.js';
import type { DecisionRequest } from '../decide/decision.js';
import type { CredentialLookup } from '../decide/route.js';
import { defaultPath, doorRequest, shortBody } from './door-request.js';
import type { ShortRequest, SimulatedUser, TokenShape } from './short-request.js';

/** Issuer and audience of simulated tokens when the config names none. */
export const SIMULATED_ISSUER = 'https://issuer.signalbox.test';
/** Audience of simulated tokens when the config names none. */
export const SIMULATED_AUDIENCE = 'signalbox';

/** What lies outside the process, as a simulation fixes it: the clock, users, DNS, vault names, audit. */
export interface SimulationSettings {
  /** Frozen time, ns since the epoch; `setNow` changes it between requests. */
  readonly nowNs: bigint;
  /** Named users the short form may reference. */
  readonly users?: Readonly<Record<string, SimulatedUser>>;
  /**
   * Host → addresses for `input.destinations`; a host not listed is unresolvable, and nothing
   * touches the network. Without a table, destinations resolve as the config says (`eval`).
   */
  readonly dns?: Readonly<Record<string, readonly string[]>>;
  /** Vault entry names the simulated vault holds (values are placeholders). */
  readonly credentials?: readonly string[];
  /** Receives every decision record (default: dropped). */
  readonly audit?: AuditSink;
}

/** An audit sink that keeps records in memory. */
export class CapturingAuditSink implements AuditSink {
  readonly records: Record<string, unknown>[] = [];
  append(record: Record<string, unknown>): void {
    this.records.push(record);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

/** A vault that holds names only; the values are fixed placeholders, never real keys. */
function placeholderVault(names: readonly string[]): CredentialLookup {
  const held = [...new Set(names)].sort();
  return { get: (name) => (held.includes(name) ? `simulated-${name}-key` : undefined), names: () => held };
}

/** The store the pipeline holds; every case gets an empty one behind it. */
function resettableStore(config: SignalboxConfig): { store: EnforcementStore; reset(): Promise<void> } {
  let current = new MemoryStore(config.budgets.expired_holds);
  const store = new Proxy({} as EnforcementStore, {
    get(_target, property) {
      const value = (current as unknown as Record<PropertyKey, unknown>)[property];
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(current) : value;
    },
  });
  return {
    store,
    async reset() {
      await current.close();
      current = new MemoryStore(config.budgets.expired_holds);
    },
  };
}

function setClaim(payload: Record<string, unknown>, path: string, value: unknown): void {
  const segments = path.split('.');
  let node = payload;
  for (const segment of segments.slice(0, -1)) {
    const next = node[segment];
    node = (node[segment] = next && typeof next === 'object' && !Array.isArray(next) ? next : {}) as Record<string, unknown>;
  }
  node[segments[segments.length - 1] as string] = value;
}
/**
 * The service's pipeline under test conditions. One per suite (the bundle is loaded once); the
 * store is emptied before every request, so cases do not see each other's reservations.
 */
export class Simulation {
  private constructor(
    private readonly config: SignalboxConfig,
    readonly pipeline: DecisionPipeline,
    /** The engine the pipeline evaluates (for full-input cases, evaluated directly). */
    readonly engine: PolicyEngine,
    private readonly key: { privateKey: CryptoKey; kid: string; alg: string },
    private readonly untrusted: CryptoKey,
    private readonly store: { reset(): Promise<void> },
    private readonly users: Readonly<Record<string, SimulatedUser>>,
    private readonly tempDir: string,
    /** The frozen clock the pipeline reads. */
    private readonly clock: { ns: bigint },
  ) {}

  /**
   * Builds the pipeline `config` describes (its bundle, decision path, identity claim mapping,
   * prices, content and routing settings), with the identity provider replaced by an ephemeral
   * ES256 key: tokens are verified against a JWKS file of that key, for the config's issuer and
   * audience (or the simulated ones when it names none).
   */
  static async create(config: SignalboxConfig, logger: Logger, settings: SimulationSettings): Promise<Simulation> {
    const tempDir = await mkdtemp(join(tmpdir(), 'signalbox-sim-'));
    try {
      const alg = 'ES256';
      const kid = 'signalbox-simulation';
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const untrusted = (await generateKeyPair(alg)).privateKey;
      const jwksFile = join(tempDir, 'jwks.json');
      await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }] }));
      const identity = {
        ...config.identity,
        jwks_url: undefined,
        jwks_file: jwksFile,
        issuer: config.identity.issuer.length > 0 ? config.identity.issuer : [SIMULATED_ISSUER],
        audience: config.identity.audience.length > 0 ? config.identity.audience : [SIMULATED_AUDIENCE],
        algorithms: [alg],
      };
      // Always the bundle file the caller named (a table's compiled bundle, eval's --bundle):
      // never a bundle server's download, and no watching. Never dry-run: a test or an explanation
      // is about what the policy decides, not about the rollout mode of a deployment.
      const { service: _bundleServer, ...fileBundle } = config.policy;
      const simulated: SignalboxConfig = { ...config, identity, policy: { ...fileBundle, watch: false, dry_run: false } };
      const { store, reset } = resettableStore(config);
      const clock = { ns: settings.nowNs };
      const dns = settings.dns;
      const { pipeline, engine } = await createPipeline(simulated, logger, settings.audit ?? new CapturingAuditSink(), {
        clock: () => clock.ns,
        store,
        ...(dns ? { resolve: async (host: string) => [...(dns[host.toLowerCase()] ?? dns[host] ?? [])] } : {}),
        credentials: placeholderVault(settings.credentials ?? []),
      });
      return new Simulation(simulated, pipeline, engine, { privateKey, kid, alg }, untrusted, { reset }, settings.users ?? {}, tempDir, clock);
    } catch (error) {
      await rm(tempDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Freezes the clock at `ns` for the requests that follow. */
  setNow(ns: bigint): void {
    this.clock.ns = ns;
  }

  get now(): bigint {
    return this.clock.ns;
  }

  /** The header that carries the token, and the scheme before it. */
  get tokenHeader(): { header: string; scheme: string } {
    return { header: this.config.identity.header, scheme: this.config.identity.scheme };
  }

  /** Mints the token the short form's user would present, at the frozen time. */
  async mint(user: SimulatedUser, shape: TokenShape = {}, extra: { agent?: string; clientId?: string } = {}): Promise<string> {
    const mapping = this.config.identity.claims;
    const { sub, roles, team, tenant, scope, ...claims } = user;
    const payload: Record<string, unknown> = { ...claims };
    setClaim(payload, mapping.subject, sub);
    if (roles !== undefined) setClaim(payload, mapping.roles, roles);
    if (team !== undefined) setClaim(payload, mapping.team, team);
    if (tenant !== undefined) setClaim(payload, mapping.tenant, tenant);
    if (scope !== undefined) setClaim(payload, mapping.scopes, Array.isArray(scope) ? scope.join(' ') : scope);
    if (extra.agent) payload.act = { sub: extra.agent };
    if (extra.clientId) setClaim(payload, mapping.client_id, extra.clientId);
    const nowS = Number(this.clock.ns / 1_000_000_000n);
    const jwt = new SignJWT(payload as JWTPayload)
      .setProtectedHeader({ alg: this.key.alg, kid: shape.unknown_kid ? `${this.key.kid}-unknown` : this.key.kid, typ: 'JWT' })
      .setIssuer(shape.issuer ?? (this.config.identity.issuer[0] as string))
      .setAudience(shape.audience ?? (this.config.identity.audience[0] as string))
      .setIssuedAt(Math.min(nowS, nowS + (shape.not_before_in ?? 0)))
      .setExpirationTime(nowS + (shape.expires_in ?? 300));
    if (shape.not_before_in !== undefined) jwt.setNotBefore(nowS + shape.not_before_in);
    return jwt.sign(shape.untrusted_key ? this.untrusted : this.key.privateKey);
  }

  private resolveUser(user: ShortRequest['user']): SimulatedUser | undefined {
    if (user === undefined || typeof user !== 'string') return user;
    const named = this.users[user];
    if (!named) {
      const known = Object.keys(this.users);
      throw new SignalboxError('test_suite_invalid', `user "${user}" is not defined in users (${known.length > 0 ? known.join(', ') : 'none defined'})`);
    }
    return named;
  }

  /**
   * Expands the short form to the DecisionRequest the named door would build for the same HTTP
   * request. Throws test_suite_invalid for a user that is not defined.
   */
  async request(short: ShortRequest): Promise<DecisionRequest> {
    const path = defaultPath(short);
    const body = shortBody(short, path);
    const bodyBytes = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8');
    const headers: Record<string, string> = {};
    if (bodyBytes && typeof body !== 'string') headers['content-type'] = 'application/json';
    if (bodyBytes) headers['content-length'] = String(bodyBytes.length);
    const user = this.resolveUser(short.user);
    const { header, scheme } = this.tokenHeader;
    const bearer = (token: string): string => (scheme ? `${scheme} ${token}` : token);
    if (typeof short.token === 'string') headers[header] = bearer(short.token);
    else if (user && short.token !== null) {
      headers[header] = bearer(await this.mint(user, short.token ?? {}, { ...(short.agent ? { agent: short.agent } : {}), ...(short.client_id ? { clientId: short.client_id } : {}) }));
    }
    if (short.session) headers[this.config.identity.session_headers[0] ?? 'x-signalbox-session'] = short.session;
    for (const [name, value] of Object.entries(short.headers ?? {})) headers[name.toLowerCase()] = value;
    const host = short.host ?? 'gateway.signalbox.test';
    headers.host ??= host;
    const forwarded: ForwardedRequest = {
      method: (short.method ?? (bodyBytes ? 'POST' : 'GET')).toUpperCase(),
      path,
      host,
      scheme: 'https',
      protocol: 'HTTP/1.1',
      headers,
      ...(bodyBytes ? { body: bodyBytes } : {}),
      ...(short.source_address ? { sourceAddress: short.source_address } : {}),
      ...(short.source_principal ? { sourcePrincipal: short.source_principal } : {}),
      ...(short.context_extensions ? { contextExtensions: short.context_extensions } : {}),
    };
    return doorRequest(short.door ?? 'native', forwarded, this.clock.ns);
  }

  /** Decides a short-form request at the frozen time, against an empty store. */
  async decide(short: ShortRequest): Promise<DecisionTrace> {
    const request = await this.request(short);
    await this.store.reset();
    return this.pipeline.explain(request);
  }

  async close(): Promise<void> {
    await this.store.reset();
    await rm(this.tempDir, { recursive: true, force: true });
  }
}

/** The UTC offset of an RFC 3339 zone ("Z", "+02:00", "-05:30") in milliseconds. */
function offsetMs(zone: string): number {
  if (zone.toUpperCase() === 'Z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const [hours, minutes] = zone.slice(1).split(':').map(Number);
  return sign * ((hours ?? 0) * 60 + (minutes ?? 0)) * 60_000;
}

/** Parses an RFC 3339 timestamp to ns since the epoch (fractional seconds to the nanosecond). */
export function parseRfc3339Ns(text: string): bigint {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(text.trim());
  const ms = match ? Date.parse(`${match[1]}${match[3]}`) : NaN;
  // Date.parse rolls impossible dates over (February 30th becomes March 2nd): refuse them instead.
  const rolledOver = match !== null && !Number.isNaN(ms) && new Date(ms + offsetMs(match[3] ?? 'Z')).toISOString().slice(0, 19) !== match[1];
  if (!match || Number.isNaN(ms) || rolledOver) throw new SignalboxError('test_suite_invalid', `"${text}" is not an RFC 3339 timestamp (2026-11-22T10:00:00Z)`);
  return BigInt(ms) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0') || '0');
}
