/**
 * The configuration schema. Each section belongs to one module; the whole document is validated
 * once at start-up and then frozen. Unknown keys are errors, so a typo is caught, not ignored.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_BREAKER } from '../enforce/enforcer.js';
import { WINDOW_PATTERN } from '../enforce/windows.js';
import { DEFAULT_ALGORITHMS } from '../identity/verifier.js';
import { BUNDLE_SIGNING_ALGORITHMS, compileExcludePattern, isBundleSigningAlgorithm, keyAlgorithmProblem, parsePublicKey } from '../bundles/signing.js';

const ASYMMETRIC_ALGORITHMS = new Set<string>(DEFAULT_ALGORITHMS);

const listOrString = z
  .union([z.string(), z.array(z.string())])
  .transform((value) => (Array.isArray(value) ? value : value.split(',')).map((s) => s.trim()).filter(Boolean));

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port (for example 0.0.0.0:9191)');

export const serverSchema = z
  .object({
    grpc_addr: hostPort.default('0.0.0.0:9191'),
    http_addr: hostPort.default('0.0.0.0:8181'),
    /** Largest gRPC message accepted (a Check carrying a request body), in bytes. */
    max_request_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    /** How long SIGTERM waits for in-flight calls before closing connections. */
    shutdown_grace_ms: z.number().int().min(0).max(600_000).default(10_000),
  })
  .strict();

/**
 * Bundle signature verification (OPA's format). When present, every bundle load must verify.
 * The key is read and checked here, once, so a bad PEM or algorithm is a config error naming the
 * key; the output carries the PEM text in `public_key`. Messages never echo key material.
 */
export const verificationSchema = z
  .object({
    /** PEM public key or certificate, inline. */
    public_key: z.string().min(1).optional(),
    /** Path of a PEM public key or certificate (relative to the working directory). */
    public_key_file: z.string().min(1).optional(),
    /** The key id bundles must be signed with (the token's kid; `opa build --verification-key-id`, default "default"). */
    key_id: z.string().min(1),
    algorithm: z.string().refine(isBundleSigningAlgorithm, {
      message: `must be one of ${BUNDLE_SIGNING_ALGORITHMS.join(', ')} (none and HMAC are not supported)`,
    }),
    /** The scope the signature must carry; without it, the signature must carry none. */
    scope: z.string().min(1).optional(),
    /** Go path.Match patterns of bundle files that need not be covered by the signature. */
    exclude_files: listOrString.default([]),
  })
  .strict()
  .transform((verification, ctx) => {
    const { public_key_file: file, public_key: inline, ...rest } = verification;
    if ((file === undefined) === (inline === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['public_key_file'], message: 'set exactly one of public_key_file or public_key' });
      return z.NEVER;
    }
    const where = file === undefined ? 'public_key' : 'public_key_file';
    let pem: string;
    try {
      pem = inline ?? readFileSync(resolve(file as string), 'utf8');
    } catch (error) {
      ctx.addIssue({ code: 'custom', path: [where], message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}` });
      return z.NEVER;
    }
    let problem: string | undefined;
    try {
      const key = parsePublicKey(pem);
      problem = 'asymmetricKeyType' in key ? keyAlgorithmProblem(key, verification.algorithm) : undefined;
    } catch (error) {
      problem = `${file ?? 'the value'} ${(error as Error).message}`;
    }
    if (problem) {
      ctx.addIssue({ code: 'custom', path: [where], message: problem });
      return z.NEVER;
    }
    for (const [i, pattern] of rest.exclude_files.entries()) {
      try {
        compileExcludePattern(pattern);
      } catch (error) {
        ctx.addIssue({ code: 'custom', path: ['exclude_files', i], message: (error as Error).message });
        return z.NEVER;
      }
    }
    return { ...rest, public_key: pem };
  });

/** A boolean that may also come from an environment variable as "true" or "false". */
const envBoolean = z.preprocess((value) => (value === 'true' ? true : value === 'false' ? false : value), z.boolean());

/** Headers the bundle service protocol sets itself; configuring them would break it. */
const PROTOCOL_HEADERS = new Set(['if-none-match', 'prefer', 'host', 'content-length', 'connection']);

/** What fetch refuses in a header value (CR, LF, NUL; anything above Latin-1). Messages never quote the value. */
// eslint-disable-next-line no-control-regex
const BAD_HEADER_VALUE = /[\r\n\0\u0100-\uffff]/;
const BAD_HEADER_VALUE_MESSAGE = 'must not contain a line break, NUL or a character above U+00FF';
const headerValue = z.string().refine((v) => !BAD_HEADER_VALUE.test(v), BAD_HEADER_VALUE_MESSAGE);

/**
 * The bundle URL: http(s), and no user info (fetch refuses it and quotes the whole URL,
 * password included, in its error). Checked in one step, so a malformed URL is an issue, not a
 * TypeError from `new URL`.
 */
const bundleUrl = z.string().superRefine((url, ctx) => {
  if (!URL.canParse(url)) {
    ctx.addIssue({ code: 'custom', message: 'must be an http:// or https:// URL (this is not a valid URL)' });
    return;
  }
  const parsed = new URL(url);
  if (!/^https?:$/.test(parsed.protocol)) ctx.addIssue({ code: 'custom', message: 'must be an http:// or https:// URL' });
  else if (parsed.username || parsed.password) {
    ctx.addIssue({ code: 'custom', message: 'must not contain user info (user:password@); put credentials in token_file, token_env or headers' });
  }
});

/**
 * Downloading the bundle from an HTTP bundle server with OPA's bundle service protocol (README,
 * "Bundle server"). Durations are milliseconds except the long-polling timeout, which is sent to
 * the server in whole seconds (`Prefer: wait=N`).
 */
export const bundleServiceSchema = z
  .object({
    /** The bundle's full URL (OPA's service `url` joined with the bundle's `resource`). */
    url: bundleUrl,
    /** After a successful poll, the next one comes after a random delay between these two (OPA's polling.min/max_delay_seconds). */
    min_delay_ms: z.number().int().min(1).default(60_000),
    max_delay_ms: z.number().int().min(1).default(120_000),
    /** Ask the server to hold a request up to this many seconds until the bundle changes (OPA's long_polling_timeout_seconds). */
    long_polling_timeout_s: z.number().int().min(1).max(240).optional(),
    /** A request (headers and body) slower than this fails; a long poll gets the long-polling timeout on top. */
    timeout_ms: z.number().int().min(100).default(10_000),
    /** Extra request headers (for example an API key header); values are never logged. */
    headers: z
      .record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name'), headerValue)
      .transform((headers) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])))
      .refine((headers) => Object.keys(headers).every((k) => !PROTOCOL_HEADERS.has(k)), 'If-None-Match, Prefer, Host, Content-Length and Connection are set by the protocol')
      .default({}),
    /** A bearer token, from an environment variable (read once at start-up). */
    token_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name').optional(),
    /** A bearer token, from a file (read before every request, so a rotated token is picked up). */
    token_file: z.string().min(1).optional(),
    /** The scheme before the token in `Authorization`. */
    token_scheme: z.string().min(1).refine((v) => !BAD_HEADER_VALUE.test(v), BAD_HEADER_VALUE_MESSAGE).default('Bearer'),
    /** A bundle body larger than this is refused (bundle_download_failed). */
    max_bundle_bytes: z.number().int().min(1024).max(1024 * 1024 * 1024).default(64 * 1024 * 1024),
    /** Where the last good download is kept (atomic rename), to start from when the server is down; null: not kept. */
    persist_file: z.string().min(1).nullable().default('bundles/downloaded/signalbox.tar.gz'),
  })
  .strict()
  .refine((s) => s.min_delay_ms <= s.max_delay_ms, { message: 'min_delay_ms must not exceed max_delay_ms', path: ['min_delay_ms'] })
  .refine((s) => !(s.token_env && s.token_file), { message: 'set token_env or token_file, not both', path: ['token_file'] })
  .refine((s) => !((s.token_env || s.token_file) && 'authorization' in s.headers), {
    message: 'an authorization header and a token are both configured',
    path: ['headers'],
  });

export const policySchema = z
  .object({
    /** The bundle file (ignored when `service` is set: the bundle is downloaded). */
    bundle: z.string().min(1).default('bundles/signalbox.tar.gz'),
    /** The decision path: an entrypoint of the bundle (opa-envoy-plugin calls this `path`). */
    decision: z
      .string()
      .regex(/^[A-Za-z_][\w]*(\/[A-Za-z_][\w]*)*$/, 'must be a slash-separated rule path such as signalbox/authz/decision')
      .default('signalbox/authz/decision'),
    max_memory_mib: z.number().int().min(8).max(4096).default(512),
    /** Require bundles signed in OPA's format (README, "Policies and bundles"). */
    verification: verificationSchema.optional(),
    /**
     * Log and audit policy denials but let the requests pass, to roll out a policy safely (as
     * opa-envoy-plugin's dry-run). Errors and budget, rate and loop limits still deny.
     */
    dry_run: envBoolean.default(false),
    /** Reload the bundle file when it changes (README, "Hot reload"). */
    watch: envBoolean.default(true),
    /** How often the bundle file is checked for changes, as a fallback to filesystem events. */
    poll_interval_ms: z.number().int().min(50).max(3_600_000).default(2_000),
    /** Download the bundle from an HTTP bundle server instead of reading `bundle`. */
    service: bundleServiceSchema.optional(),
  })
  .strict();

export const identitySchema = z
  .object({
    header: z.string().min(1).transform((h) => h.toLowerCase()).default('authorization'),
    /** The scheme before the token ("Bearer"); empty when the header holds the bare token. */
    scheme: z.string().default('Bearer'),
    jwks_url: z.string().url().optional(),
    jwks_file: z.string().min(1).optional(),
    issuer: listOrString.default([]),
    audience: listOrString.default([]),
    algorithms: listOrString
      .default([...DEFAULT_ALGORITHMS])
      .refine((algs) => algs.length > 0 && algs.every((a) => ASYMMETRIC_ALGORITHMS.has(a)), {
        message: `only asymmetric algorithms are allowed (${DEFAULT_ALGORITHMS.join(', ')}); none and HS* never are`,
      }),
    clock_tolerance_s: z.number().int().min(0).max(600).default(30),
    required_claims: listOrString.default(['exp', 'sub']),
    jwks_cache_max_age_ms: z.number().int().min(1000).default(600_000),
    jwks_cooldown_ms: z.number().int().min(0).default(30_000),
    jwks_timeout_ms: z.number().int().min(100).max(60_000).default(5_000),
    /** Request headers naming the agent session (`input.session`), first present wins. */
    session_headers: listOrString
      .default(['x-signalbox-session', 'mcp-session-id'])
      .transform((headers) => headers.map((h) => h.toLowerCase())),
    claims: z
      .object({
        subject: z.string().default('sub'),
        roles: z.string().default('roles'),
        scopes: z.string().default('scope'),
        team: z.string().default('team'),
        tenant: z.string().default('tenant'),
        client_id: z.string().default('azp'),
      })
      .strict()
      .default({ subject: 'sub', roles: 'roles', scopes: 'scope', team: 'team', tenant: 'tenant', client_id: 'azp' }),
  })
  .strict()
  .superRefine((identity, ctx) => {
    if (identity.jwks_url && identity.jwks_file) {
      ctx.addIssue({ code: 'custom', path: ['jwks_file'], message: 'set either jwks_url or jwks_file, not both' });
    }
    if (identity.jwks_url || identity.jwks_file) {
      if (identity.issuer.length === 0) ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'required when a JWKS is configured' });
      if (identity.audience.length === 0) ctx.addIssue({ code: 'custom', path: ['audience'], message: 'required when a JWKS is configured' });
    }
  });

export const auditSchema = z
  .object({
    /** JSON-lines file the hash-chained decision records are appended to. */
    path: z.string().min(1).default('audit/decisions.jsonl'),
    /** Request headers whose values are replaced by a marker in the audited input. */
    mask_headers: listOrString
      .default(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'api-key'])
      .transform((headers) => headers.map((h) => h.toLowerCase())),
  })
  .strict();

const redisNode = z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port');

export const storeSchema = z
  .object({
    /** memory: one process (the embedded default). redis: shared by every replica. */
    type: z.enum(['memory', 'redis']).default('memory'),
    /** redis://[user:password@]host:port[/db] (or rediss://) of a standalone Redis. */
    redis_url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
    /** Seed nodes of a Redis Cluster, instead of redis_url. */
    redis_cluster: listOrString.pipe(z.array(redisNode)).optional(),
    redis_password: z.string().optional(),
    /** Every key starts with this hash tag, so several deployments can share one Redis. */
    key_prefix: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only').default('signalbox'),
    /** none: all counters in one slot (always correct). tenant: one slot per tenant (Cluster scale-out; every budget scope must belong to one tenant). */
    partition: z.enum(['none', 'tenant']).default('none'),
    command_timeout_ms: z.number().int().min(10).max(60_000).default(500),
    connect_timeout_ms: z.number().int().min(100).max(60_000).default(2_000),
  })
  .strict()
  .superRefine((store, ctx) => {
    if (store.type !== 'redis') return;
    if (!store.redis_url && !store.redis_cluster?.length) {
      ctx.addIssue({ code: 'custom', path: ['redis_url'], message: 'set redis_url or redis_cluster when type is redis' });
    }
    if (store.redis_url && store.redis_cluster?.length) {
      ctx.addIssue({ code: 'custom', path: ['redis_cluster'], message: 'set either redis_url or redis_cluster, not both' });
    }
  });

// Session windows are read per session scope, so they are not listed here.
const budgetWindow = z
  .string()
  .refine((window) => WINDOW_PATTERN.test(window) && window !== 'session', 'must be day, week, month or <seconds>s');

export const budgetsSchema = z
  .object({
    /** How long a reservation waits for its usage report before it expires. */
    hold_ttl_ms: z.number().int().min(1_000).max(86_400_000).default(600_000),
    /** charge: an expired hold costs its full estimate (a late report corrects it). release: it costs nothing. */
    expired_holds: z.enum(['charge', 'release']).default('charge'),
    /** How long counters outlive their window and settled holds are remembered (late and repeated reports). */
    retention_ms: z.number().int().min(60_000).max(90 * 86_400_000).default(86_400_000),
    /** How long a `session` window budget lives after its last reservation. */
    session_ttl_ms: z.number().int().min(60_000).max(90 * 86_400_000).default(86_400_000),
    /** How long an agent session's tool-call history is kept after its last call. */
    loop_ttl_ms: z.number().int().min(1_000).max(7 * 86_400_000).default(3_600_000),
    /** Scopes looked up for `input.spend`; {subject} {team} {tenant} {session} {client_id} are filled in; a scope with an empty field is skipped. */
    spend_scopes: listOrString.default(['user:{subject}', 'team:{team}', 'org:{tenant}', 'session:{subject}/{session}']),
    /** Windows looked up for `input.spend` (session scopes use the session window). */
    spend_windows: listOrString.pipe(z.array(budgetWindow)).default(['day', 'month']),
  })
  .strict();

export const llmSchema = z
  .object({
    /** A JSON price table replacing the built-in one (same format as src/inspect/prices.json). */
    prices_file: z.string().min(1).optional(),
    /** Output tokens assumed when a request names no max_tokens. */
    default_max_output_tokens: z.number().int().min(1).max(1_000_000).default(4096),
  })
  .strict();

export const contentSchema = z
  .object({
    /** Scan request bodies for PII and secrets (`input.content`). Off: `input.content.scanned` is false. */
    enabled: z.boolean().default(true),
    /** A string longer than this (UTF-8 bytes) is scanned up to here and the content is marked truncated. */
    max_string_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
    /** JSON paths stop growing past this nesting depth (scanning goes on to the bottom). */
    max_depth: z.number().int().min(4).max(1024).default(64),
  })
  .strict();

export const destinationsSchema = z
  .object({
    /** Look up host names found in tool arguments (`input.destinations`); off, a name that is not special is `unresolvable` (private). */
    resolve: z.boolean().default(true),
    /** Per-lookup timeout; a slower answer is `unresolvable` (private: fail closed). */
    timeout_ms: z.number().int().min(10).max(30_000).default(1_000),
    /** Distinct host names looked up per request; further names are `limit_exceeded` (private). */
    max_per_request: z.number().int().min(1).max(1_000).default(32),
  })
  .strict();

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name')
  .transform((h) => h.toLowerCase());

/** A provider name as policies and reports spell it (openai, anthropic, azure-eu). */
export const PROVIDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const routingSchema = z
  .object({
    /**
     * How each provider takes its API key, for providers whose scheme is not built in (see
     * src/decide/route.ts): the header and the text before the key ("Bearer ").
     */
    providers: z
      .record(
        z.string().regex(PROVIDER_NAME, 'provider names are letters, digits, . _ -'),
        z.object({ credential_header: headerName, credential_prefix: z.string().default('') }).strict(),
      )
      .default({}),
    /** Caller credential headers removed from the upstream request whenever Signalbox injects a provider credential. */
    strip_headers: listOrString.pipe(z.array(headerName)).default(['authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'x-goog-api-key']),
    /** Circuit breaker per provider, fed by usage reports (`upstream_status`, `outcome: timeout`). */
    breaker: z
      .object({
        /** Failures within failure_window_ms that open the breaker. */
        failure_threshold: z.number().int().min(1).max(10_000).default(DEFAULT_BREAKER.failureThreshold),
        failure_window_ms: z.number().int().min(100).max(86_400_000).default(DEFAULT_BREAKER.failureWindowMs),
        /** How long an open breaker keeps the provider out before one trial (half-open). */
        cool_down_ms: z.number().int().min(100).max(86_400_000).default(DEFAULT_BREAKER.coolDownMs),
      })
      .strict()
      .default({
        failure_threshold: DEFAULT_BREAKER.failureThreshold,
        failure_window_ms: DEFAULT_BREAKER.failureWindowMs,
        cool_down_ms: DEFAULT_BREAKER.coolDownMs,
      }),
  })
  .strict();

export const vaultSchema = z
  .object({
    /** The encrypted credential file (`signalbox vault`); read when SIGNALBOX_VAULT_KEY is set, reloaded on change. */
    file: z.string().min(1).default('vault/credentials.json'),
  })
  .strict();

export const logSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    policy: policySchema.default(policySchema.parse({})),
    identity: identitySchema.default(identitySchema.parse({})),
    audit: auditSchema.default(auditSchema.parse({})),
    store: storeSchema.default(storeSchema.parse({})),
    budgets: budgetsSchema.default(budgetsSchema.parse({})),
    llm: llmSchema.default(llmSchema.parse({})),
    content: contentSchema.default(contentSchema.parse({})),
    destinations: destinationsSchema.default(destinationsSchema.parse({})),
    routing: routingSchema.default(routingSchema.parse({})),
    vault: vaultSchema.default(vaultSchema.parse({})),
    log: logSchema.default(logSchema.parse({})),
  })
  .strict();

export type SignalboxConfig = z.output<typeof configSchema>;
export type ServerConfig = SignalboxConfig['server'];
export type PolicyConfig = SignalboxConfig['policy'];
export type IdentityConfig = SignalboxConfig['identity'];
export type AuditConfig = SignalboxConfig['audit'];
export type StoreConfig = SignalboxConfig['store'];
export type BudgetsConfig = SignalboxConfig['budgets'];
export type ContentConfig = SignalboxConfig['content'];
export type DestinationsConfig = SignalboxConfig['destinations'];
export type RoutingConfig = SignalboxConfig['routing'];
