/**
 * The credential vault: provider API keys in one file, each entry encrypted at rest with
 * AES-256-GCM under a master key taken from the environment.
 *
 * - `SIGNALBOX_VAULT_KEY` = `kid:base64(32 bytes)` is the current key; new and rotated entries
 *   are written under it.
 * - `SIGNALBOX_VAULT_OLD_KEYS` = comma-separated `kid:base64` keys that can still decrypt entries
 *   written before a rotation. Rotation: make the new key current, move the old one here, run
 *   `signalbox vault rotate`, then drop the old key.
 *
 * Each entry's additional authenticated data binds the entry name and key id, so moving a
 * ciphertext to another name or relabelling its kid fails authentication instead of decrypting.
 * Values and keys never appear in errors, logs, `util.inspect` or `JSON.stringify` output.
 *
 * Error codes: `vault_key_invalid` (a key variable missing or malformed), `vault_file_invalid`
 * (the file unreadable or malformed), `vault_key_unknown` (an entry under a key id the keyring
 * lacks), `vault_decrypt_failed` (an entry that does not authenticate), `vault_write_failed`.
 * The running server reads the vault through `CredentialSource` (credentials.ts); the
 * `signalbox vault` command that writes it is src/cli/vault.ts.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { inspect } from 'node:util';
import { SignalboxError, describeCause } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';

export const VAULT_KEY_ENV = 'SIGNALBOX_VAULT_KEY';
export const VAULT_OLD_KEYS_ENV = 'SIGNALBOX_VAULT_OLD_KEYS';
export const DEFAULT_VAULT_FILE = 'vault/credentials.json';

const FILE_VERSION = 1;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Entry names: what a policy's `route.credential` refers to (openai, anthropic/prod, team-a.azure). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

// ---------------------------------------------------------------------------------------------
// Keys

/*
 * Masking survives pino: its redaction copies each logged object one level down as
 * Object.create(prototype) plus the own enumerable properties, so a prototype toJSON would run on
 * a copy without the private fields (or typed-array internals) it reads. The toJSON methods here
 * are therefore own enumerable closures: the copy carries them and they need no `this`.
 */

/** Makes a key Buffer print and serialise as a placeholder, whoever logs it. */
function maskKey(key: Buffer): Buffer {
  Object.defineProperty(key, 'toJSON', { value: () => '[vault key redacted]', enumerable: true });
  Object.defineProperty(key, inspect.custom, { value: () => '[vault key redacted]', enumerable: false });
  return key;
}

class MaskedKeyMap extends Map<string, Buffer> {
  readonly toJSON = (): Record<string, string> => Object.fromEntries([...this.keys()].map((kid) => [kid, '[vault key redacted]']));

  [inspect.custom](): string {
    return `Map(${this.size}) { ${[...this.keys()].map((kid) => `${kid}: [vault key redacted]`).join(', ')} }`;
  }
}

export interface VaultKeyring {
  readonly current: { readonly kid: string; readonly key: Buffer };
  readonly old: ReadonlyMap<string, Buffer>;
}

function keyError(message: string, variable: string): SignalboxError {
  return new SignalboxError('vault_key_invalid', message, { details: { variable } });
}

/**
 * Builds a keyring from keys already in memory (the CLI and tests; production uses
 * {@link keyringFromEnv}). The buffers are copied; the copies are masked in output.
 */
export function createKeyring(current: { kid: string; key: Buffer }, oldKeys: Iterable<readonly [string, Buffer]> = []): VaultKeyring {
  const old = [...oldKeys];
  for (const [kid, key] of [[current.kid, current.key] as const, ...old]) {
    if (!KID_PATTERN.test(kid)) throw keyError('a vault key id must be 1-64 letters, digits, ".", "_" or "-"', 'kid');
    if (key.length !== KEY_BYTES) throw keyError(`vault key "${kid}" is ${key.length} bytes; AES-256 needs exactly ${KEY_BYTES}`, 'key');
  }
  const oldMap = new MaskedKeyMap();
  for (const [kid, key] of old) {
    if (kid === current.kid) {
      if (!key.equals(current.key)) throw keyError(`old key id "${kid}" is also the current key id, with a different key`, VAULT_OLD_KEYS_ENV);
      continue;
    }
    if (oldMap.has(kid)) throw keyError(`old key id "${kid}" is given twice`, VAULT_OLD_KEYS_ENV);
    oldMap.set(kid, maskKey(Buffer.from(key)));
  }
  const currentKey = Object.freeze({
    kid: current.kid,
    key: maskKey(Buffer.from(current.key)),
    toJSON: () => ({ kid: current.kid, key: '[vault key redacted]' }),
    [inspect.custom]: () => `{ kid: '${current.kid}', key: [vault key redacted] }`,
  });
  const kids = [current.kid, ...oldMap.keys()];
  return Object.freeze({
    current: currentKey,
    old: oldMap,
    toJSON: () => ({ current: current.kid, old: kids.slice(1) }),
    [inspect.custom]: () => `VaultKeyring { current: '${current.kid}', old: [${kids.slice(1).map((k) => `'${k}'`).join(', ')}] }`,
  });
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$|^[A-Za-z0-9_-]+$/;

/** Parses one `kid:base64key`; messages name the variable and kid, never the key text. */
function parseKeySpec(spec: string, variable: string): { kid: string; key: Buffer } {
  const colon = spec.indexOf(':');
  if (colon < 0) {
    throw keyError(`${variable} has no key id: expected "<kid>:<base64 of ${KEY_BYTES} random bytes>", for example k1:$(openssl rand -base64 ${KEY_BYTES})`, variable);
  }
  const kid = spec.slice(0, colon).trim();
  const encoded = spec.slice(colon + 1).trim();
  if (!KID_PATTERN.test(kid)) throw keyError(`${variable} has an invalid key id: use 1-64 letters, digits, ".", "_" or "-" before the ":"`, variable);
  if (encoded === '' || !BASE64.test(encoded)) throw keyError(`${variable}: the key for key id "${kid}" is not valid base64`, variable);
  const key = Buffer.from(encoded, 'base64');
  if (key.length !== KEY_BYTES) {
    throw keyError(`${variable}: the key for key id "${kid}" decodes to ${key.length} bytes; AES-256 needs exactly ${KEY_BYTES}`, variable);
  }
  return { kid, key };
}

/**
 * Reads the vault keyring from `SIGNALBOX_VAULT_KEY` (required) and `SIGNALBOX_VAULT_OLD_KEYS`
 * (optional). Errors are `vault_key_invalid` and name the variable and key id, never key material.
 */
export function keyringFromEnv(env: NodeJS.ProcessEnv): VaultKeyring {
  const currentSpec = env[VAULT_KEY_ENV]?.trim();
  if (!currentSpec) {
    throw keyError(`${VAULT_KEY_ENV} is not set: expected "<kid>:<base64 of ${KEY_BYTES} random bytes>", for example k1:$(openssl rand -base64 ${KEY_BYTES})`, VAULT_KEY_ENV);
  }
  const current = parseKeySpec(currentSpec, VAULT_KEY_ENV);
  const old = (env[VAULT_OLD_KEYS_ENV] ?? '')
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '')
    .map((spec) => parseKeySpec(spec, VAULT_OLD_KEYS_ENV));
  const keyring = createKeyring(current, old.map(({ kid, key }) => [kid, key] as const));
  current.key.fill(0);
  for (const { key } of old) key.fill(0);
  return keyring;
}

// ---------------------------------------------------------------------------------------------
// The file

interface EntryRecord {
  readonly kid: string;
  readonly iv: string;
  readonly ciphertext: string;
  readonly tag: string;
  readonly created_at: string;
  readonly updated_at: string;
}

/** Binds a ciphertext to its entry name and key id; JSON so no two (name, kid) pairs collide. */
function aad(name: string, kid: string): Buffer {
  return Buffer.from(JSON.stringify(['signalbox-vault', FILE_VERSION, name, kid]), 'utf8');
}

function fileError(path: string, problem: string, cause?: unknown): SignalboxError {
  return new SignalboxError('vault_file_invalid', `vault file ${path} ${problem}`, cause === undefined ? { details: { path } } : { cause, details: { path } });
}

function decodeField(path: string, name: string, field: string, value: unknown, bytes?: number): Buffer {
  if (typeof value !== 'string' || !BASE64.test(value)) throw fileError(path, `is malformed: entry "${name}" field "${field}" is not base64`);
  const decoded = Buffer.from(value, 'base64');
  if (bytes !== undefined && decoded.length !== bytes) {
    throw fileError(path, `is malformed: entry "${name}" field "${field}" is ${decoded.length} bytes, expected ${bytes}`);
  }
  return decoded;
}

function parseFile(path: string, text: string): Map<string, EntryRecord> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw fileError(path, 'is not valid JSON', error);
  }
  if (document === null || typeof document !== 'object' || Array.isArray(document)) throw fileError(path, 'is malformed: expected a JSON object');
  const { version, entries } = document as { version?: unknown; entries?: unknown };
  if (version !== FILE_VERSION) throw fileError(path, `has version ${JSON.stringify(version)}; this Signalbox reads version ${FILE_VERSION}`);
  if (entries === null || typeof entries !== 'object' || Array.isArray(entries)) throw fileError(path, 'is malformed: "entries" must be an object');
  const result = new Map<string, EntryRecord>();
  for (const [name, raw] of Object.entries(entries as Record<string, unknown>)) {
    if (!NAME_PATTERN.test(name)) throw fileError(path, `is malformed: entry name ${JSON.stringify(name.slice(0, 64))} is not a valid name`);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw fileError(path, `is malformed: entry "${name}" is not an object`);
    const entry = raw as Record<string, unknown>;
    if (typeof entry.kid !== 'string' || !KID_PATTERN.test(entry.kid)) throw fileError(path, `is malformed: entry "${name}" has no valid "kid"`);
    decodeField(path, name, 'iv', entry.iv, IV_BYTES);
    decodeField(path, name, 'ciphertext', entry.ciphertext);
    decodeField(path, name, 'tag', entry.tag, TAG_BYTES);
    for (const field of ['created_at', 'updated_at'] as const) {
      const value = entry[field];
      if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) throw fileError(path, `is malformed: entry "${name}" field "${field}" is not an RFC 3339 time`);
    }
    result.set(name, {
      kid: entry.kid,
      iv: entry.iv as string,
      ciphertext: entry.ciphertext as string,
      tag: entry.tag as string,
      created_at: entry.created_at as string,
      updated_at: entry.updated_at as string,
    });
  }
  return result;
}

/** Writes the whole file to a 0600 temp file in the same directory, fsyncs it, then renames it over. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(temp, 0o600); // a umask can only take bits away; this also puts back any it took
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw new SignalboxError('vault_write_failed', `could not write the vault file ${path}: ${describeCause(error)}`, { cause: error, details: { path } });
  }
  // Persist the rename itself; not every platform lets a directory be opened, so best effort.
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // The data is written and renamed; only crash durability of the rename is weaker.
  }
}

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

  /** What JSON.stringify and loggers show: path, entry count and current key id (an own property: see maskKey). */
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
      await writeAtomically(this.path, this.#serialise(next));
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

  #serialise(entries: Map<string, EntryRecord>): string {
    const sorted: Record<string, EntryRecord> = {};
    for (const name of [...entries.keys()].sort()) sorted[name] = entries.get(name) as EntryRecord;
    return `${JSON.stringify({ version: FILE_VERSION, entries: sorted }, null, 2)}\n`;
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
