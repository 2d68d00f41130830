/**
 * The `policy` section: which bundle decides, how it is verified, reloaded, or downloaded from a
 * bundle server.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { envBoolean, listOrString } from '../core/config-values.js';
import { compileExcludePattern } from './path-match.js';
import { BUNDLE_SIGNING_ALGORITHMS, isBundleSigningAlgorithm, keyAlgorithmProblem, parsePublicKey } from './signing-keys.js';

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

/**
 * The `policy` section: which bundle to serve (file or bundle server), its decision path, and how
 * it is reloaded and verified.
 */
export const policySchema = z
  .object({
    /** The bundle file (ignored when `service` is set: the bundle is downloaded). */
    bundle: z.string().min(1).default('bundles/signalbox.tar.gz'),
    /** The decision path: an entrypoint of the bundle (opa-envoy-plugin calls this `path`). */
    decision: z
      .string()
      .regex(/^[A-Za-z_][\w]*(\/[A-Za-z_][\w]*)*$/, 'must be a slash-separated rule path such as signalbox/authz/decision')
      .default('signalbox/authz/decision'),
    /**
     * The response rule, for doors that see answers (Envoy ext_proc): an entrypoint of the
     * bundle; a bundle without it passes answers unjudged (they are still settled and recorded).
     */
    response: z
      .string()
      .regex(/^[A-Za-z_][\w]*(\/[A-Za-z_][\w]*)*$/, 'must be a slash-separated rule path such as signalbox/authz/response')
      .default('signalbox/authz/response'),
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

/** The parsed `policy` section, with defaults applied. */
export type PolicyConfig = z.output<typeof policySchema>;
