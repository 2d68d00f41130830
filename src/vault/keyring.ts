/**
 * The vault's master keys, from the environment:
 *
 * - `SIGNALBOX_VAULT_KEY` = `kid:base64(32 bytes)` is the current key; new and rotated entries
 *   are written under it.
 * - `SIGNALBOX_VAULT_OLD_KEYS` = comma-separated `kid:base64` keys that can still decrypt entries
 *   written before a rotation. Rotation: make the new key current, move the old one here, run
 *   `signalbox vault rotate`, then drop the old key.
 *
 * Keys never appear in errors, logs, `util.inspect` or `JSON.stringify` output. Errors are
 * `vault_key_invalid`.
 */
import { inspect } from 'node:util';
import { SignalboxError } from '../core/errors.js';

/** The variable holding the current key, `kid:base64`. */
export const VAULT_KEY_ENV = 'SIGNALBOX_VAULT_KEY';
/** The variable holding the keys still accepted for decryption during a rotation. */
export const VAULT_OLD_KEYS_ENV = 'SIGNALBOX_VAULT_OLD_KEYS';

const KEY_BYTES = 32;
/** Key ids, in the key variables and in the file's entries. */
export const KID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

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


/** The current key and the old ones still accepted for decryption; masked in output. */
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

/** Standard or URL-safe base64, as keys and the file's fields are written. */
export const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$|^[A-Za-z0-9_-]+$/;

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
