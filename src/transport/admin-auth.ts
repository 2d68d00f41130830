/**
 * Who may call the administrative endpoints (`server.admin`): usage reports, spend, LiteLLM's
 * usage log, and every admin API to come. One check, {@link AdminGuard.authorize}, for every
 * transport.
 *
 * A caller gets in with a bearer token the operator configured (compared in constant time,
 * several accepted at once for rotation) or with a verified mTLS client identity on the allow
 * list. Deny by default: with nothing configured every call is refused with a message that says
 * how to configure a credential. Tokens are never logged, and never part of an error message.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FileWatch, fileFingerprint } from '../core/file-watch.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { AdminConfig } from './config.js';

/** What a caller presented: the Authorization header (HTTP or gRPC metadata) and the verified mTLS identity. */
export interface AdminCredentials {
  readonly authorization?: string | undefined;
  /**
   * The `x-signalbox-admin-token` header: the bare token, for callers that can only fill a whole
   * header value from their environment (LiteLLM's `os.environ/NAME`).
   */
  readonly token?: string | undefined;
  readonly principal?: string | undefined;
}

/** How the caller got in; for logs (never the token). */
export type AdminAccess = { readonly by: 'token' } | { readonly by: 'principal'; readonly principal: string };

const HOW_TO =
  'send "Authorization: Bearer <token>" with a token from the SIGNALBOX_ADMIN_TOKEN environment variable (server.admin.token_env) or server.admin.token_file, or connect with an mTLS client certificate whose identity server.admin.principals lists';

/** Splits a token list (a file, or an environment variable) on whitespace and commas; blank entries are dropped. */
export function parseTokens(text: string): string[] {
  return text.split(/[\s,]+/).filter((t) => t.length > 0);
}

/** SHA-256 first, so the comparison takes the same time whatever the lengths. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Whether `presented` equals one of `accepted` (SHA-256 digests), comparing against every one
 * with `timingSafeEqual` and no early exit, so the time says nothing about which or how much matched.
 */
export function tokenMatches(presented: string, accepted: readonly Buffer[]): boolean {
  const candidate = digest(presented);
  let found = false;
  for (const token of accepted) found = timingSafeEqual(candidate, token) || found;
  return found;
}

/** The admin credentials of a running server; {@link AdminGuard.close} stops watching the token file. */
export class AdminGuard {
  readonly #envTokens: readonly Buffer[];
  #fileTokens: readonly Buffer[] = [];
  readonly #principals: ReadonlySet<string>;
  readonly #watch: FileWatch | undefined;
  readonly #logger: Logger;

  private constructor(envTokens: Buffer[], principals: readonly string[], logger: Logger, watch?: (guard: AdminGuard) => FileWatch) {
    this.#envTokens = envTokens;
    this.#principals = new Set(principals);
    this.#logger = logger;
    this.#watch = watch?.(this);
  }

  /**
   * Reads the tokens from the environment variable and the token file (throws `config_invalid`
   * when a configured file cannot be read), and watches the file for rotation.
   */
  static async open(config: AdminConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env, options: { watch?: boolean } = {}): Promise<AdminGuard> {
    const envTokens = parseTokens(env[config.token_env] ?? '').map(digest);
    const file = config.token_file ? resolve(config.token_file) : undefined;
    let fileTokens: Buffer[] = [];
    let seen = 'missing';
    if (file) {
      seen = await fileFingerprint(file);
      fileTokens = await readTokenFile(file);
    }
    const guard = new AdminGuard(envTokens, config.principals, logger, file
      ? (g) =>
          new FileWatch(file, {
            watch: options.watch !== false,
            pollIntervalMs: 5_000,
            debounceMs: 100,
            seen,
            onChange: () => g.#reloadFile(file),
            logger,
            what: 'admin token file',
          })
      : undefined);
    guard.#fileTokens = fileTokens;
    if (!guard.configured) logger.warn({ token_env: config.token_env }, `no admin credential is configured: report and spend endpoints answer 401 (${HOW_TO})`);
    else logger.info({ tokens: envTokens.length + fileTokens.length, principals: config.principals.length }, 'admin endpoints need a credential');
    return guard;
  }

  /** A guard over given tokens and identities, without files (tests, embedding). */
  static of(tokens: readonly string[], principals: readonly string[], logger: Logger): AdminGuard {
    return new AdminGuard(tokens.map(digest), principals, logger);
  }

  /** Whether any credential is configured at all. */
  get configured(): boolean {
    return this.#envTokens.length + this.#fileTokens.length + this.#principals.size > 0;
  }

  /**
   * Lets the caller in, or throws `admin_unauthenticated` (401: nothing valid presented, or
   * nothing configured) or `admin_forbidden` (403: a verified identity that is not listed).
   */
  authorize(credentials: AdminCredentials, endpoint: string): AdminAccess {
    try {
      return this.#check(credentials);
    } catch (error) {
      // Who was refused where, for the operator; never the token.
      this.#logger.warn(
        { code: (error as SignalboxError).code, endpoint, token_presented: credentials.authorization !== undefined || credentials.token !== undefined, ...(credentials.principal ? { principal: credentials.principal } : {}) },
        'administrative call refused',
      );
      throw error;
    }
  }

  #check(credentials: AdminCredentials): AdminAccess {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(credentials.authorization ?? '')?.[1] ?? (credentials.token?.trim() || undefined);
    if (bearer !== undefined && tokenMatches(bearer, [...this.#envTokens, ...this.#fileTokens])) return { by: 'token' };
    const principal = credentials.principal;
    if (principal !== undefined && this.#principals.has(principal)) return { by: 'principal', principal };
    if (!this.configured) throw new SignalboxError('admin_unauthenticated', `no admin credential is configured, so administrative endpoints are closed: configure one and ${HOW_TO}`);
    if (bearer !== undefined) throw new SignalboxError('admin_unauthenticated', `the bearer token is not an admin token: ${HOW_TO}`);
    if (principal !== undefined) throw new SignalboxError('admin_forbidden', `the client identity ${principal} is not in server.admin.principals`);
    throw new SignalboxError('admin_unauthenticated', `an admin credential is required: ${HOW_TO}`);
  }

  /** Stops watching the token file. */
  async close(): Promise<void> {
    await this.#watch?.close();
  }

  async #reloadFile(file: string): Promise<void> {
    try {
      this.#fileTokens = await readTokenFile(file);
      this.#logger.info({ path: file, tokens: this.#fileTokens.length }, 'admin token file reloaded');
    } catch (error) {
      this.#logger.error({ code: 'config_invalid', path: file, problem: describeCause(error) }, 'admin token file cannot be read; the previous tokens stay valid');
    }
  }
}

async function readTokenFile(file: string): Promise<Buffer[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new SignalboxError('config_invalid', `server.admin.token_file: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
  return parseTokens(text).map(digest);
}
