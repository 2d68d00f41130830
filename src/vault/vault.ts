/**
 * The credential vault: provider API keys in one file, each entry encrypted at rest with
 * AES-256-GCM under a master key taken from the environment.
 *
 * Keys come from the environment (keyring.ts); the file format and its atomic writes are
 * file.ts. Values and keys never appear in errors, logs, `util.inspect` or `JSON.stringify` output.
 *
 * Error codes: `vault_key_invalid` (a key variable missing or malformed), `vault_file_invalid`
 * (the file unreadable or malformed), `vault_key_unknown` (an entry under a key id the keyring
 * lacks), `vault_decrypt_failed` (an entry that does not authenticate), `vault_write_failed`.
 * The running server reads the vault through `CredentialSource` (credentials.ts); the
 * `signalbox vault` command that writes it is src/cli/vault.ts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import { SignalboxError, describeCause } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { IV_BYTES, NAME_PATTERN, TAG_BYTES, aad, fileError, parseFile, serialise, writeVaultFile, type EntryRecord } from './file.js';
import { VAULT_KEY_ENV, VAULT_OLD_KEYS_ENV, type VaultKeyring } from './keyring.js';

/** How a vault is opened: its logger and clock. */
export interface VaultOptions {
  /** Where entry changes are logged (names and key ids only). Default: silent. */
  readonly logger?: Logger;
  /** The clock for created_at / updated_at; tests freeze it. */
  readonly now?: () => Date;
}

/**
 * An open vault file. Reads decrypt on demand from the entries loaded at open; writes replace
 * the whole file atomically and are serialised within the process. Two processes writing the
 * same file at once is not supported: the last rename wins.
 */
export class Vault {
  readonly path: string;
  readonly #keyring: VaultKeyring;
  readonly #logger: Logger;
  readonly #now: () => Date;
  #entries: Map<string, EntryRecord>;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string, keyring: VaultKeyring, entries: Map<string, EntryRecord>, options: VaultOptions) {
    this.path = path;
    this.#keyring = keyring;
    this.#entries = entries;
    this.#logger = options.logger ?? silentLogger();
    this.#now = options.now ?? (() => new Date());
  }

  /** Opens (not creates) a vault file: a missing file is an empty vault; an unreadable or malformed one is a `vault_file_invalid` error. */
  static async open(path: string, keyring: VaultKeyring, options: VaultOptions = {}): Promise<Vault> {
    const absolute = resolve(path);
    let text: string | undefined;
    try {
      text = await readFile(absolute, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fileError(absolute, `cannot be read: ${describeCause(error)}`, error);
    }
    const vault = new Vault(absolute, keyring, text === undefined ? new Map() : parseFile(absolute, text), options);
    if (text !== undefined && process.platform !== 'win32') {
      const mode = (await stat(absolute)).mode & 0o777;
      if (mode & 0o077) vault.#logger.warn({ path: absolute, mode: mode.toString(8) }, 'vault file is readable by other users; chmod 600 it');
    }
    return vault;
  }

  /** Entry names with their key id and last value change, sorted by name. Never values. */
  list(): Array<{ name: string; kid: string; updated_at: string }> {
    return [...this.#entries]
      .map(([name, entry]) => ({ name, kid: entry.kid, updated_at: entry.updated_at }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /**
   * The decrypted value, or undefined when there is no such entry. Throws `vault_key_unknown`
   * when the entry's key id is not in the keyring, `vault_decrypt_failed` when it does not
   * authenticate (wrong key for that key id, or a modified entry).
   */
  get(name: string): string | undefined {
    const entry = this.#entries.get(name);
    return entry === undefined ? undefined : this.#decrypt(name, entry);
  }

  /** Stores (or replaces) an entry under the current key. */
  async set(name: string, value: string): Promise<void> {
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      throw new SignalboxError('config_invalid', 'a vault entry name must start with a letter or digit and use at most 128 letters, digits, ".", "_", ":", "/" or "-"');
    }
    if (typeof value !== 'string') throw new SignalboxError('config_invalid', `the value for vault entry "${name}" must be a string`);
    await this.#mutate((entries) => {
      this.#checkCurrentKey(entries, `cannot store "${name}"`);
      const now = this.#now().toISOString();
      const previous = entries.get(name);
      entries.set(name, this.#encrypt(name, value, previous?.created_at ?? now, now));
      return true;
    });
    this.#logger.info({ entry: name, kid: this.#keyring.current.kid, path: this.path }, 'vault entry set');
  }

  /** Removes an entry; false when there was none (and nothing is written). */
  async remove(name: string): Promise<boolean> {
    const removed = await this.#mutate((entries) => (entries.delete(name) ? true : undefined));
    if (removed) this.#logger.info({ entry: name, path: this.path }, 'vault entry removed');
    return removed === true;
  }

  /**
   * Re-encrypts every entry not already under the current key, keeping created_at and
   * updated_at (they date the value, not its wrapping). All or nothing: if any entry cannot be
   * decrypted, nothing is written. Returns how many entries were re-encrypted.
   */
  async rotate(): Promise<number> {
    const kid = this.#keyring.current.kid;
    const count = await this.#mutate((entries) => {
      let n = 0;
      if ([...entries.values()].some((entry) => entry.kid !== kid)) this.#checkCurrentKey(entries, 'cannot rotate');
      for (const [name, entry] of entries) {
        if (entry.kid === kid) continue;
        entries.set(name, this.#encrypt(name, this.#decrypt(name, entry), entry.created_at, entry.updated_at));
        n++;
      }
      return n === 0 ? undefined : n;
    });
    this.#logger.info({ kid, reencrypted: count ?? 0, path: this.path }, 'vault rotated to the current key');
    return count ?? 0;
  }

  /** What JSON.stringify and loggers show: path, entry count and current key id (an own property: see maskKey in keyring.ts). */
  readonly toJSON = (): { path: string; entries: number; kid: string } => ({ path: this.path, entries: this.#entries.size, kid: this.#keyring.current.kid });

  [inspect.custom](): string {
    return `Vault { path: '${this.path}', entries: ${this.#entries.size}, kid: '${this.#keyring.current.kid}' }`;
  }

  /**
   * Applies a change to a copy of the entries, writes it, then makes it current; an undefined
   * result means nothing changed and nothing is written. Changes run one at a time.
   */
  #mutate<T>(change: (entries: Map<string, EntryRecord>) => T | undefined): Promise<T | undefined> {
    const run = async (): Promise<T | undefined> => {
      const next = new Map(this.#entries);
      const result = change(next);
      if (result === undefined) return undefined;
      await writeVaultFile(this.path, serialise(next));
      this.#entries = next;
      return result;
    };
    const done = this.#queue.then(run, run);
    this.#queue = done.catch(() => undefined);
    return done;
  }

  /**
   * Before writing under the current key: when the file already has entries under the current
   * key id, one of them must decrypt with the current key. Otherwise a mistyped key that reuses
   * the key id would leave the file with entries under two different keys for one key id.
   */
  #checkCurrentKey(entries: Map<string, EntryRecord>, context: string): void {
    const kid = this.#keyring.current.kid;
    for (const [name, entry] of entries) {
      if (entry.kid !== kid) continue;
      try {
        this.#decrypt(name, entry);
      } catch (error) {
        const e = error as SignalboxError;
        throw new SignalboxError(e.code, `${context}: ${e.message}`, { cause: e.cause, details: { ...e.details } });
      }
      return;
    }
  }


  #encrypt(name: string, value: string, createdAt: string, updatedAt: string): EntryRecord {
    const { kid, key } = this.#keyring.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(name, kid));
    const plaintext = Buffer.from(value, 'utf8');
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    plaintext.fill(0);
    return {
      kid,
      iv: iv.toString('base64'),
      ciphertext: ciphertext.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      created_at: createdAt,
      updated_at: updatedAt,
    };
  }

  #decrypt(name: string, entry: EntryRecord): string {
    const { current, old } = this.#keyring;
    const key = entry.kid === current.kid ? current.key : old.get(entry.kid);
    if (key === undefined) {
      throw new SignalboxError(
        'vault_key_unknown',
        `vault entry "${name}" was written under key id "${entry.kid}", which is neither ${VAULT_KEY_ENV} (key id "${current.kid}") nor in ${VAULT_OLD_KEYS_ENV}`,
        { details: { entry: name, kid: entry.kid } },
      );
    }
    try {
      // authTagLength pins the tag size: without it GCM would accept a truncated tag.
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(entry.iv, 'base64'), { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(name, entry.kid));
      decipher.setAuthTag(Buffer.from(entry.tag, 'base64'));
      const plaintext = Buffer.concat([decipher.update(Buffer.from(entry.ciphertext, 'base64')), decipher.final()]);
      const value = plaintext.toString('utf8');
      plaintext.fill(0);
      return value;
    } catch (error) {
      throw new SignalboxError(
        'vault_decrypt_failed',
        `vault entry "${name}" does not decrypt with key id "${entry.kid}": the key configured for "${entry.kid}" is not the one it was written with, or the entry was modified`,
        { cause: error, details: { entry: name, kid: entry.kid } },
      );
    }
  }
}
