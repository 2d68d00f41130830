/**
 * The running server's view of the credential vault: the entries of the vault file, decrypted
 * on demand and cached, and reloaded when the file changes.
 *
 * The file is watched as src/core/file-watch.ts does it (`fs.watch` on its directory plus a poll of
 * the file's identity). `signalbox vault` writes by atomic rename, so a reload never sees a
 * half-written file from it.
 *
 * A reload must succeed as a whole: the file must parse, and every entry must decrypt with the
 * keyring. When it does not (malformed file, unknown key id, wrong key), a warning naming the
 * error code and the path is logged and the previous entries keep being served. Values and keys
 * never appear in logs, errors, `util.inspect` or `JSON.stringify` output.
 */
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import { SignalboxError, describeCause } from '../core/errors.js';
import { FileWatch, fileFingerprint } from '../core/file-watch.js';
import { silentLogger, type Logger } from '../core/log.js';
import { keyringFromEnv, type VaultKeyring } from './keyring.js';
import { Vault } from './vault.js';

/**
 * What {@link CredentialSource.open} needs: the vault file, where the master keys are read from,
 * and how reloads are watched.
 */
export interface CredentialSourceOptions {
  /** The vault file (config `vault.file`); relative paths resolve from the working directory. It may not exist yet. */
  readonly file: string;
  /** Where `SIGNALBOX_VAULT_KEY` and `SIGNALBOX_VAULT_OLD_KEYS` are read from (once, at open). */
  readonly env: NodeJS.ProcessEnv;
  /** Reloads and reload failures are logged here (codes, paths, counts; never values). Default: silent. */
  readonly logger?: Logger;
  /** Reload when the file changes. Default true; false serves what was read at open (and {@link CredentialSource.reload}). */
  readonly watch?: boolean;
  /** How often the file's identity is polled, as a fallback to `fs.watch`. Default 2000 ms. */
  readonly pollIntervalMs?: number;
  /** How long `fs.watch` events are collected before one reload. Default 100 ms. */
  readonly debounceMs?: number;
}

const DEFAULT_POLL_MS = 2_000;
const DEFAULT_DEBOUNCE_MS = 100;

/** One loaded vault: the entries' last change, by name, for the cache to check against. */
interface Loaded {
  readonly vault: Vault;
  readonly updatedAt: ReadonlyMap<string, string>;
}

/**
 * Credentials for the running server. `get` is synchronous and cheap: a value is decrypted the
 * first time it is asked for after a (re)load, then served from memory until the entry changes.
 */
export class CredentialSource {
  /** The absolute path of the vault file. */
  readonly path: string;
  readonly #keyring: VaultKeyring;
  readonly #logger: Logger;
  #loaded: Loaded;
  /** Decrypted values by name, each with the updated_at it was decrypted for; emptied on reload. */
  #cache = new Map<string, { readonly updatedAt: string; readonly value: string }>();
  /** Watches the file and runs reloads one at a time (also when not watching: then only on reload()). */
  readonly #watch: FileWatch;
  /** Counts the times the entries were replaced, so reload() can say whether its check replaced them. */
  #generation = 0;
  #closed = false;

  private constructor(path: string, keyring: VaultKeyring, loaded: Loaded, seen: string, options: CredentialSourceOptions) {
    this.path = path;
    this.#keyring = keyring;
    this.#loaded = loaded;
    this.#logger = options.logger ?? silentLogger();
    this.#watch = new FileWatch(path, {
      watch: options.watch !== false,
      pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_MS,
      debounceMs: options.debounceMs ?? DEFAULT_DEBOUNCE_MS,
      seen,
      onChange: (fingerprint) => this.#reloadOnce(fingerprint),
      logger: this.#logger,
      what: 'credential vault',
    });
  }

  /**
   * Reads the keyring from `env` and loads the vault file (a missing file is an empty vault),
   * then starts watching it unless `watch: false`. Throws `vault_key_invalid`,
   * `vault_file_invalid`, `vault_key_unknown` or `vault_decrypt_failed`: at start-up a vault
   * that cannot be served is an error, not a warning.
   */
  static async open(options: CredentialSourceOptions): Promise<CredentialSource> {
    const path = resolve(options.file);
    const keyring = keyringFromEnv(options.env);
    const logger = options.logger ?? silentLogger();
    const seen = await fileFingerprint(path);
    const loaded = await load(path, keyring, logger);
    const source = new CredentialSource(path, keyring, loaded, seen, options);
    logger.info({ path, entries: loaded.updatedAt.size, kid: keyring.current.kid }, 'credential vault loaded');
    return source;
  }

  /**
   * The value of an entry, or undefined when the vault has none by that name. Throws
   * `vault_key_unknown` or `vault_decrypt_failed` only if an entry that decrypted when it was
   * loaded no longer does, which a loaded vault never changes; callers may treat it as absent.
   */
  get(name: string): string | undefined {
    const loaded = this.#loaded;
    const updatedAt = loaded.updatedAt.get(name);
    if (updatedAt === undefined) return undefined;
    const cached = this.#cache.get(name);
    if (cached !== undefined && cached.updatedAt === updatedAt) return cached.value;
    const value = loaded.vault.get(name);
    if (value === undefined) return undefined;
    this.#cache.set(name, { updatedAt, value });
    return value;
  }

  has(name: string): boolean {
    return this.#loaded.updatedAt.has(name);
  }

  /** The entry names, sorted. */
  names(): string[] {
    return [...this.#loaded.updatedAt.keys()];
  }

  /** Entry names with their key id and last change, sorted by name (never values). */
  list(): Array<{ name: string; kid: string; updated_at: string }> {
    return this.#loaded.vault.list();
  }

  /**
   * Reads the file again now. Resolves true when the entries were replaced, false when the file
   * did not change (unless `force`) or could not be loaded (logged as a warning; the previous
   * entries are kept). Never rejects. Reloads run one at a time.
   */
  async reload(options: { force?: boolean } = {}): Promise<boolean> {
    if (this.#closed) return false;
    const before = this.#generation;
    await this.#watch.check(options);
    return this.#generation !== before;
  }

  /** Stops watching and polling; resolves once any reload under way has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#watch.close();
    this.#cache.clear();
  }

  /**
   * What JSON.stringify and loggers show: path, entry count, current key id. An own enumerable
   * closure rather than a method, because pino's redaction logs a copy of the object (its own
   * enumerable properties on the same prototype), on which a method could not read private fields.
   */
  readonly toJSON = (): { path: string; entries: number; kid: string } => ({
    path: this.path,
    entries: this.#loaded.updatedAt.size,
    kid: this.#keyring.current.kid,
  });

  [inspect.custom](): string {
    return `CredentialSource { path: '${this.path}', entries: ${this.#loaded.updatedAt.size}, kid: '${this.#keyring.current.kid}' }`;
  }

  toString(): string {
    return this[inspect.custom]();
  }

  /** Loads the file the watch saw change (fingerprint `seen`); on failure the previous entries stay. */
  async #reloadOnce(seen: string): Promise<void> {
    if (seen === 'missing' && this.#loaded.updatedAt.size > 0) {
      this.#logger.warn(
        { code: 'vault_file_invalid', path: this.path, entries: this.#loaded.updatedAt.size },
        'credential vault file disappeared; keeping the previous entries',
      );
      return;
    }
    let loaded: Loaded;
    try {
      loaded = await load(this.path, this.#keyring, this.#logger);
    } catch (error) {
      const e = error instanceof SignalboxError ? error : new SignalboxError('vault_file_invalid', `vault file ${this.path} could not be loaded: ${describeCause(error)}`);
      this.#logger.warn(
        { code: e.code, path: this.path, problem: e.message, ...pick(e.details, ['entry', 'kid']) },
        'credential vault reload failed; keeping the previous entries',
      );
      return;
    }
    if (this.#closed) return;
    this.#loaded = loaded;
    this.#cache.clear();
    this.#generation += 1;
    this.#logger.info({ path: this.path, entries: loaded.updatedAt.size }, 'credential vault reloaded');
  }
}

/** Opens the vault and checks every entry decrypts, so that what is served is known good. */
async function load(path: string, keyring: VaultKeyring, logger: Logger): Promise<Loaded> {
  const vault = await Vault.open(path, keyring, { logger });
  const updatedAt = new Map<string, string>();
  for (const { name, updated_at } of vault.list()) {
    vault.get(name); // throws vault_key_unknown or vault_decrypt_failed; the value is dropped
    updatedAt.set(name, updated_at);
  }
  return { vault, updatedAt };
}

function pick(details: Readonly<Record<string, unknown>>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((key) => details[key] !== undefined).map((key) => [key, details[key]]));
}
