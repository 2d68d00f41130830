/**
 * The vault file: one JSON document, `{version, entries}`, each entry a ciphertext with its key
 * id, IV, GCM tag and times. Reading it checks every entry's shape (not its decryption);
 * writing replaces the whole file atomically, 0600.
 *
 * Each entry's additional authenticated data binds the entry name and key id, so moving a
 * ciphertext to another name or relabelling its kid fails authentication instead of decrypting.
 *
 * Errors: `vault_file_invalid` (the file unreadable or malformed), `vault_write_failed`.
 */
import { writeFileAtomic } from '../core/atomic-file.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { BASE64, KID_PATTERN } from './keyring.js';

/** The vault file `signalbox vault` uses when no --file is given, from the working directory. */
export const DEFAULT_VAULT_FILE = 'vault/credentials.json';

const FILE_VERSION = 1;
/** AES-GCM IV and tag sizes, as every entry's fields must decode to. */
export const IV_BYTES = 12;
/** The full 128-bit GCM tag: entries are checked for it and decryption passes it as `authTagLength`, so a truncated tag is refused. */
export const TAG_BYTES = 16;
/** Entry names: what a policy's `route.credential` refers to (openai, anthropic/prod, team-a.azure). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

/** One entry as stored: base64 fields, RFC 3339 times. */
export interface EntryRecord {
  readonly kid: string;
  readonly iv: string;
  readonly ciphertext: string;
  readonly tag: string;
  readonly created_at: string;
  readonly updated_at: string;
}

/** Binds a ciphertext to its entry name and key id; JSON so no two (name, kid) pairs collide. */
export function aad(name: string, kid: string): Buffer {
  return Buffer.from(JSON.stringify(['signalbox-vault', FILE_VERSION, name, kid]), 'utf8');
}

/** A `vault_file_invalid` error naming the file and what is wrong with it. */
export function fileError(path: string, problem: string, cause?: unknown): SignalboxError {
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

/** Parses and checks the file's text: every entry well-formed (whether it decrypts is not checked here). */
export function parseFile(path: string, text: string): Map<string, EntryRecord> {
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

/** The file's text for these entries, sorted by name. */
export function serialise(entries: Map<string, EntryRecord>): string {
  const sorted: Record<string, EntryRecord> = {};
  for (const name of [...entries.keys()].sort()) sorted[name] = entries.get(name) as EntryRecord;
  return `${JSON.stringify({ version: FILE_VERSION, entries: sorted }, null, 2)}\n`;
}

/** Writes the whole file atomically and durably, readable by its owner only (0600, in a 0700 directory). */
export async function writeVaultFile(path: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(path, text, { mode: 0o600, dirMode: 0o700 });
  } catch (error) {
    throw new SignalboxError('vault_write_failed', `could not write the vault file ${path}: ${describeCause(error)}`, { cause: error, details: { path } });
  }
}
