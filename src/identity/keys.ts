/**
 * Where the keys that verify tokens come from: a JWKS URL (jose's remote set: cached, refetched on
 * an unknown `kid`) or a JWKS file, reloaded when it changes.
 *
 * A file is watched with src/core/file-watch.ts, as bundles and the vault are, because a
 * Kubernetes secret rotation replaces it by symlink swap or atomic rename. A new file that does
 * not parse as a JWKS keeps the keys already loaded and logs why: a half-written or wrong secret
 * must not lock every caller out. A file that cannot be read at start-up is a config error naming
 * the path and the errno (ENOENT), not a bare "not readable".
 *
 * Readiness asks {@link KeySource.ensureLoaded}: a URL counts as loaded once one fetch succeeded
 * (jose keeps serving those keys through later outages); until then each call tries one fetch.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey, type RemoteJWKSet } from 'jose';
import { SignalboxError, describeCause } from '../core/errors.js';
import { FileWatch, fileFingerprint } from '../core/file-watch.js';
import type { Logger } from '../core/log.js';
import type { IdentityConfig } from './config.js';

/** How a {@link KeySource} watches its JWKS file (tests shorten both). */
export interface KeyWatchOptions {
  /** Reload the file when it changes. Default true; `signalbox eval` and `test` read it once. */
  readonly watch?: boolean;
  /** How often the file's identity is polled, as a fallback to `fs.watch`. Default 2000 ms. */
  readonly pollIntervalMs?: number;
  /** How long `fs.watch` events are collected before one reload. Default 100 ms. */
  readonly debounceMs?: number;
}

const DEFAULT_POLL_MS = 2_000;
const DEFAULT_DEBOUNCE_MS = 100;

/** Why a JWKS file cannot be used: the errno for an unreadable file, the parser's words otherwise. */
function fileProblem(error: unknown): string {
  const errno = (error as NodeJS.ErrnoException)?.code;
  if (typeof errno === 'string' && errno.startsWith('E')) return `${errno}: ${(error as Error).message}`;
  // Not the parser's message: it quotes the file's text, and a misplaced file may hold a secret.
  if (error instanceof SyntaxError) return 'not JSON';
  return `not a JWKS document: ${describeCause(error)}`;
}

/** Reads and parses a JWKS file; throws what {@link fileProblem} describes. */
async function readJwks(path: string): Promise<{ jwks: JSONWebKeySet; getKey: JWTVerifyGetKey }> {
  const parsed = JSON.parse(await readFile(path, 'utf8')) as JSONWebKeySet;
  // createLocalJWKSet checks the shape ({keys: [...]}, each key an object) and throws when it is wrong.
  return { jwks: parsed, getKey: createLocalJWKSet(parsed) };
}

/** The verification keys of one configured JWKS source. */
export class KeySource {
  /** Where the keys come from, for logs: the file path or the URL. */
  readonly origin: string;
  readonly #logger: Logger;
  readonly #remote: RemoteJWKSet | undefined;
  #local: JWTVerifyGetKey | undefined;
  #watch: FileWatch | undefined;
  /** Told when a file reload replaced the keys (the verifier forgets its cached verifications). */
  #onReload: (() => void) | undefined;

  private constructor(origin: string, logger: Logger, remote: RemoteJWKSet | undefined, local: JWTVerifyGetKey | undefined) {
    this.origin = origin;
    this.#logger = logger;
    this.#remote = remote;
    this.#local = local;
  }

  /**
   * The configured source, or undefined when neither `jwks_url` nor `jwks_file` is set. A file is
   * read now: one that is missing or invalid throws `config_invalid` naming the path and why.
   */
  static async open(config: IdentityConfig, logger: Logger, options: KeyWatchOptions = {}): Promise<KeySource | undefined> {
    if (config.jwks_file) {
      const path = resolve(config.jwks_file);
      const seen = await fileFingerprint(path);
      let loaded: Awaited<ReturnType<typeof readJwks>>;
      try {
        loaded = await readJwks(path);
      } catch (error) {
        throw new SignalboxError('config_invalid', `identity.jwks_file: cannot load ${path}: ${fileProblem(error)}`, { cause: error });
      }
      const source = new KeySource(path, logger, undefined, loaded.getKey);
      logger.info({ path, keys: loaded.jwks.keys.length }, 'JWKS file loaded');
      if (options.watch !== false) {
        source.#watch = new FileWatch(path, {
          pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_MS,
          debounceMs: options.debounceMs ?? DEFAULT_DEBOUNCE_MS,
          seen,
          onChange: () => source.#reloadFile(),
          logger,
          what: 'JWKS file',
        });
      }
      return source;
    }
    if (config.jwks_url) {
      const remote = createRemoteJWKSet(new URL(config.jwks_url), {
        cacheMaxAge: config.jwks_cache_max_age_ms,
        cooldownDuration: config.jwks_cooldown_ms,
        timeoutDuration: config.jwks_timeout_ms,
      });
      return new KeySource(config.jwks_url, logger, remote, undefined);
    }
    return undefined;
  }

  /** The key resolver jose's `jwtVerify` calls; it always reaches the keys loaded last. */
  readonly getKey: JWTVerifyGetKey = (header, token) => {
    if (this.#remote) return this.#remote(header, token);
    return (this.#local as JWTVerifyGetKey)(header, token);
  };

  /** Whether keys have ever been loaded: always for a file (it is read at open), after the first good fetch for a URL. */
  get loaded(): boolean {
    return this.#remote ? this.#remote.jwks() !== undefined : true;
  }

  /**
   * Resolves true once keys are loaded, trying one fetch (bounded by `jwks_timeout_ms`) when a
   * URL's never were. A failed fetch throws `jwks_unavailable` with the cause, for readiness to log.
   */
  async ensureLoaded(): Promise<boolean> {
    if (this.loaded || !this.#remote) return true;
    try {
      await this.#remote.reload();
    } catch (error) {
      const url = new URL(this.origin);
      // Origin and path only: a URL's user info or query could carry a credential.
      throw new SignalboxError('jwks_unavailable', `the JWKS at ${url.origin}${url.pathname} could not be fetched`, { cause: error });
    }
    return this.loaded;
  }

  /** Sets who is told when a reload replaced the keys (one listener: the verifier). */
  onReload(listener: () => void): void {
    this.#onReload = listener;
  }

  /** Checks the file now (tests, and callers that know it changed); resolves once any reload finished. */
  async check(): Promise<void> {
    await this.#watch?.check();
  }

  /** Stops watching the file. */
  async close(): Promise<void> {
    await this.#watch?.close();
    this.#watch = undefined;
  }

  /** Loads the file again; a file that cannot be used keeps the keys loaded before. Never rejects. */
  async #reloadFile(): Promise<void> {
    try {
      const loaded = await readJwks(this.origin);
      this.#local = loaded.getKey;
      this.#onReload?.();
      this.#logger.info({ path: this.origin, keys: loaded.jwks.keys.length }, 'JWKS file reloaded');
    } catch (error) {
      this.#logger.error(
        { code: 'config_invalid', path: this.origin, problem: fileProblem(error) },
        'JWKS file changed but cannot be loaded; keeping the keys loaded before',
      );
    }
  }
}
