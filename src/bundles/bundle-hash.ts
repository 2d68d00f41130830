/**
 * The digests a bundle signature lists, as OPA computes them (`v1/bundle/hash.go`): files named
 * data.json, data.yaml or .manifest are hashed over a canonical form of their parsed value
 * (object keys sorted, no insignificant whitespace, numbers as written, core/go-json.ts); every
 * other file over its raw bytes.
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { canonicalGoJson, JsonNumber, parseGoJson, wellFormed, type JsonValue } from '../core/go-json.js';

const WEAK_OR_UNKNOWN = 'unsupported';
/** OPA's hashing algorithm names → Node's. MD5 and SHA-1 are left out on purpose. */
export const FILE_HASHES: Readonly<Record<string, string>> = {
  'SHA-224': 'sha224',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256',
};
/** The file hash OPA and Signalbox sign with. */
export const SIGNING_HASH = 'SHA-256';

// OPA's canonical hashing of structured files (hash.go `walk`).
const MAX_DEPTH = 1000;

function fromYaml(value: unknown, depth = 0): JsonValue {
  if (depth > MAX_DEPTH) throw new Error('nested too deeply');
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean' || typeof value === 'string') return typeof value === 'string' ? wellFormed(value) : value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('a number that JSON cannot represent');
    return new JsonNumber(String(value));
  }
  if (Array.isArray(value)) return value.map((item) => fromYaml(item, depth + 1));
  if (typeof value === 'object' && !(value instanceof Date)) {
    return new Map(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, fromYaml(v, depth + 1)]));
  }
  throw new Error('a value that JSON cannot represent');
}

/** Files OPA hashes over their parsed value (bundle.go `IsStructuredDoc`), by base name. */
function isStructured(name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return base === 'data.json' || base === 'data.yaml' || base === '.manifest' || base === 'signatures.json';
}

/** The canonical text OPA hashes for a structured file: JSON (numbers kept as written), else YAML. */
export function canonicalDocument(bytes: Buffer): string {
  let body = bytes;
  if (body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new Error('is not valid UTF-8');
  }
  let value: JsonValue;
  try {
    value = parseGoJson(text, { maxDepth: MAX_DEPTH });
  } catch {
    // Not JSON: OPA converts YAML to JSON and hashes that.
    try {
      value = fromYaml(parseYaml(text, { version: '1.1', uniqueKeys: false }));
    } catch (error) {
      throw new Error(`is neither JSON nor YAML (${(error as Error).message.split('\n')[0]})`);
    }
  }
  return canonicalGoJson(value);
}

/** The hex digest OPA records for a bundle file at `name` (no leading slash). */
export function hashBundleFile(name: string, bytes: Buffer, algorithm = SIGNING_HASH): string {
  const nodeHash = FILE_HASHES[algorithm];
  if (!nodeHash) throw new Error(WEAK_OR_UNKNOWN);
  const hash = createHash(nodeHash);
  hash.update(isStructured(name) ? Buffer.from(canonicalDocument(bytes), 'utf8') : bytes);
  return hash.digest('hex');
}
