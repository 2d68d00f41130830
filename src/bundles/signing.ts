/**
 * Signing and verifying policy bundles in OPA's format, so bundles signed by `opa build
 * --signing-key` load in Signalbox and bundles signed by `signalbox build --sign` load in OPA.
 *
 * The format (OPA `v1/bundle/sign.go`, `verify.go`, `hash.go`, `bundle.go`): the bundle root holds
 * `.signatures.json`, `{"signatures": ["<compact JWS>"]}`, exactly one token. Its payload lists
 * `files: [{name, hash, algorithm}]`, every other file of the bundle by its path without the
 * leading slash, plus optional `keyid` (deprecated; the header `kid` wins) and `scope`. Files
 * named data.json, data.yaml or .manifest are hashed over a canonical form of their parsed
 * value (object keys sorted, no insignificant whitespace, numbers as written); every other
 * file over its raw bytes.
 *
 * Where OPA is lenient, Signalbox is not: verification is required whenever it is configured
 * (not only when a key id is), only the root `.signatures.json` is the signature file (OPA skips
 * any path ending in `signatures.json`), every other file must be listed and every listed file
 * present, the token's key id must be the configured one, only asymmetric algorithms are
 * accepted (never `none`, never HMAC: Signalbox does not support HMAC bundle signatures), and
 * MD5 and SHA-1 file hashes are refused.
 *
 * No error message or log line carries key material or the token: keys are named by key id.
 */
import { createHash, createPrivateKey, createPublicKey, KeyObject, type webcrypto } from 'node:crypto';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';
import { parse as parseYaml } from 'yaml';
import { SignalboxError } from '../core/errors.js';
import { canonicalGoJson, compareUtf8, JsonNumber, parseGoJson, wellFormed, type JsonValue } from '../core/go-json.js';

type CryptoKey = webcrypto.CryptoKey;

/** The algorithms a bundle may be signed with: asymmetric only. */
export const BUNDLE_SIGNING_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type BundleSigningAlgorithm = (typeof BUNDLE_SIGNING_ALGORITHMS)[number];

/** The bundle file holding the signature, at the bundle root. */
export const SIGNATURES_FILE = '.signatures.json';

/** A verification key: a public key (PEM text, "PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE") or a key object. */
export type VerificationKey = string | KeyObject | CryptoKey;

export interface BundleVerificationConfig {
  /** The trusted keys by key id. */
  readonly keys: Readonly<Record<string, { readonly key: VerificationKey; readonly algorithm: string; readonly scope?: string }>>;
  /** The key id bundles must be signed with; without it, the token's own `kid` picks the key. */
  readonly keyid?: string;
  /** The scope the signature must carry (default: the key's scope, else none). */
  readonly scope?: string;
  /** Go `path.Match` patterns (`*`, `?`, `[...]`) of files that need not be listed or match. */
  readonly exclude?: readonly string[];
}

export interface BundleSigningOptions {
  /** The private key: PEM text (PKCS#8, PKCS#1 or SEC1) or a key object. */
  readonly key: string | KeyObject | CryptoKey;
  readonly algorithm: string;
  /** Set as the header `kid` and, as OPA does, the deprecated payload `keyid`. */
  readonly keyid?: string;
  readonly scope?: string;
}

export interface VerifiedSignature {
  readonly keyid: string;
  readonly scope: string;
  /** The files the signature covers and that matched, by bundle path without the leading slash. */
  readonly files: readonly string[];
  /** Bundle files skipped because they match an `exclude` pattern. */
  readonly excluded: readonly string[];
}

const WEAK_OR_UNKNOWN = 'unsupported';
/** OPA's hashing algorithm names → Node's. MD5 and SHA-1 are left out on purpose. */
const HASHES: Readonly<Record<string, string>> = {
  'SHA-224': 'sha224',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256',
};
const SIGNING_HASH = 'SHA-256';

// ---------------------------------------------------------------------------------------------
// Keys

export function isBundleSigningAlgorithm(algorithm: string): algorithm is BundleSigningAlgorithm {
  return (BUNDLE_SIGNING_ALGORITHMS as readonly string[]).includes(algorithm);
}

const CURVES: Readonly<Record<string, string>> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };

/** Why `key` cannot sign or verify with `algorithm`, or undefined when it can. Never echoes the key. */
export function keyAlgorithmProblem(key: KeyObject, algorithm: string): string | undefined {
  if (!isBundleSigningAlgorithm(algorithm)) {
    return `algorithm ${JSON.stringify(algorithm)} is not supported (one of ${BUNDLE_SIGNING_ALGORITHMS.join(', ')}; none and HMAC never are)`;
  }
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (algorithm.startsWith('RS') || algorithm.startsWith('PS')) {
    if (type !== 'rsa' && !(algorithm.startsWith('PS') && type === 'rsa-pss')) return `${algorithm} needs an RSA key, not ${type ?? 'a symmetric key'}`;
    if ((details.modulusLength ?? 0) < 2048) return `${algorithm} needs an RSA key of at least 2048 bits`;
    return undefined;
  }
  if (algorithm.startsWith('ES')) {
    if (type !== 'ec' || details.namedCurve !== CURVES[algorithm]) return `${algorithm} needs an EC key on curve ${CURVES[algorithm]}`;
    return undefined;
  }
  return type === 'ed25519' ? undefined : `EdDSA needs an Ed25519 key, not ${type ?? 'a symmetric key'}`;
}

function pemLabel(pem: string): string | undefined {
  return /-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem)?.[1];
}

/**
 * Parses a verification key: a PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY") or certificate.
 * Private keys are refused, so a signing key is never deployed where only verification is needed.
 */
export function parsePublicKey(key: VerificationKey): KeyObject | CryptoKey {
  if (typeof key !== 'string') {
    if (key instanceof KeyObject && key.type !== 'public') throw new Error('the verification key must be a public key');
    if (!(key instanceof KeyObject) && key.type !== 'public') throw new Error('the verification key must be a public key');
    return key;
  }
  const label = pemLabel(key);
  if (label === undefined) throw new Error('not a PEM document');
  if (label.includes('PRIVATE')) throw new Error('is a private key; configure the public key (or certificate) only');
  if (label !== 'PUBLIC KEY' && label !== 'RSA PUBLIC KEY' && label !== 'CERTIFICATE') throw new Error(`PEM type "${label}" is not a public key or certificate`);
  try {
    return createPublicKey(key);
  } catch {
    throw new Error('is not a readable PEM public key or certificate');
  }
}

/** Parses a signing key: PEM private key (PKCS#8, PKCS#1 RSA, SEC1 EC) or a private key object. */
export function parsePrivateKey(key: string | KeyObject | CryptoKey): KeyObject | CryptoKey {
  if (typeof key !== 'string') {
    if (key.type !== 'private') throw new Error('the signing key must be a private key');
    return key;
  }
  const label = pemLabel(key);
  if (label === undefined || !label.includes('PRIVATE KEY')) throw new Error('is not a PEM private key');
  if (label.includes('ENCRYPTED')) throw new Error('is an encrypted private key; decrypt it first');
  try {
    return createPrivateKey(key);
  } catch {
    throw new Error('is not a readable PEM private key');
  }
}

// ---------------------------------------------------------------------------------------------
// OPA's canonical hashing of structured files (hash.go `walk`)

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
  const nodeHash = HASHES[algorithm];
  if (!nodeHash) throw new Error(WEAK_OR_UNKNOWN);
  const hash = createHash(nodeHash);
  hash.update(isStructured(name) ? Buffer.from(canonicalDocument(bytes), 'utf8') : bytes);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Go's path.Match, for exclude patterns

/** Compiles a Go `path.Match` pattern; throws on a malformed one (Go's ErrBadPattern). */
export function compileExcludePattern(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= pattern.length) throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
      source += escapeRegExp(pattern[++i] as string);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '[';
      if (pattern[j] === '^') {
        cls += '^';
        j++;
      }
      let items = 0;
      while (j < pattern.length && pattern[j] !== ']') {
        let lo = pattern[j] as string;
        if (lo === '\\') lo = pattern[++j] ?? '';
        if (lo === '' || lo === '-') throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
        j++;
        if (pattern[j] === '-') {
          let hi = pattern[j + 1] ?? '';
          if (hi === '\\') hi = pattern[(j += 1) + 1] ?? '';
          if (hi === '' || hi === ']') throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
          if (hi < lo) throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
          cls += `${escapeRegExp(lo)}-${escapeRegExp(hi)}`;
          j += 2;
        } else cls += escapeRegExp(lo);
        items++;
      }
      if (j >= pattern.length || items === 0) throw new Error(`bad pattern ${JSON.stringify(pattern)}`);
      source += `${cls}]`;
      i = j;
    } else source += escapeRegExp(c);
  }
  return new RegExp(`^${source}$`, 'su');
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------------
// Verification

function stripSlash(name: string): string {
  return name.replace(/^\.?\/+/, '');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(source: string, problem: string, cause?: unknown): SignalboxError {
  return new SignalboxError('bundle_signature_invalid', `bundle ${source}: signature verification failed: ${problem}`, cause === undefined ? {} : { cause });
}

function bundleFiles(files: ReadonlyMap<string, Buffer>, source: string): Map<string, Buffer> {
  const byName = new Map<string, Buffer>();
  for (const [name, bytes] of files) {
    const stripped = stripSlash(name);
    if (byName.has(stripped)) throw invalid(source, `file ${stripped} appears twice`);
    byName.set(stripped, bytes);
  }
  return byName;
}

/**
 * Verifies a bundle's `.signatures.json` against the configured keys and every file of the bundle.
 * Throws `bundle_signature_missing` when the bundle has no signature file and
 * `bundle_signature_invalid` for anything else that does not check out.
 *
 * @param files every file of the bundle by path ("/data.json" or "data.json"), as readBundle holds them
 */
export async function verifyBundleSignature(
  files: ReadonlyMap<string, Buffer>,
  config: BundleVerificationConfig,
  source = 'bundle',
): Promise<VerifiedSignature> {
  const byName = bundleFiles(files, source);
  const signaturesFile = byName.get(SIGNATURES_FILE);
  if (!signaturesFile) {
    throw new SignalboxError(
      'bundle_signature_missing',
      `bundle ${source} has no ${SIGNATURES_FILE}, but policy.verification requires a signed bundle (sign it with "signalbox build --signing-key" or "opa build --signing-key")`,
    );
  }
  byName.delete(SIGNATURES_FILE);

  let signatures: unknown;
  try {
    signatures = JSON.parse(signaturesFile.toString('utf8'));
  } catch (error) {
    throw invalid(source, `${SIGNATURES_FILE} is not valid JSON`, error);
  }
  if (!isObject(signatures) || !Array.isArray(signatures.signatures)) throw invalid(source, `${SIGNATURES_FILE} has no "signatures" list`);
  if (signatures.plugin !== undefined && signatures.plugin !== '' && signatures.plugin !== '_default') {
    throw invalid(source, `${SIGNATURES_FILE} names signing plugin ${JSON.stringify(String(signatures.plugin))}, which Signalbox does not support`);
  }
  if (signatures.signatures.length !== 1) throw invalid(source, `${SIGNATURES_FILE} must hold exactly one token (found ${signatures.signatures.length})`);
  const token = signatures.signatures[0];
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
    throw invalid(source, 'the token is not a compact JWS');
  }

  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: unknown;
  try {
    header = decodeProtectedHeader(token);
    unverified = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8'));
  } catch (error) {
    throw invalid(source, 'the token header or payload is not valid JSON', error);
  }
  if (typeof header.alg !== 'string' || !isBundleSigningAlgorithm(header.alg)) {
    throw invalid(source, `the token uses algorithm ${JSON.stringify(String(header.alg))}; only ${BUNDLE_SIGNING_ALGORITHMS.join(', ')} are accepted`);
  }
  // Key selection, as OPA: the configured key id, else the header kid, else the payload keyid;
  // unlike OPA, a token naming a different key id than the configured one is refused.
  const headerKid = typeof header.kid === 'string' && header.kid !== '' ? header.kid : undefined;
  const payloadKid = isObject(unverified) && typeof unverified.keyid === 'string' && unverified.keyid !== '' ? unverified.keyid : undefined;
  if (headerKid && payloadKid && headerKid !== payloadKid) throw invalid(source, `the token header names key id "${headerKid}" but its payload names "${payloadKid}"`);
  const tokenKid = headerKid ?? payloadKid;
  if (config.keyid && tokenKid && tokenKid !== config.keyid) {
    throw invalid(source, `the bundle is signed with key id "${tokenKid}", but the configured key id is "${config.keyid}"`);
  }
  const keyid = config.keyid ?? tokenKid;
  if (!keyid) throw invalid(source, 'the token names no key id and none is configured');
  const keyConfig = Object.hasOwn(config.keys, keyid) ? config.keys[keyid] : undefined;
  if (!keyConfig) throw invalid(source, `no verification key is configured for key id "${keyid}"`);
  if (header.alg !== keyConfig.algorithm) {
    throw invalid(source, `the token is signed with ${header.alg}, but key "${keyid}" is configured for ${keyConfig.algorithm}`);
  }

  let payload: unknown;
  try {
    const key = parsePublicKey(keyConfig.key);
    const verified = await compactVerify(token, key, { algorithms: [keyConfig.algorithm] });
    payload = JSON.parse(Buffer.from(verified.payload).toString('utf8'));
  } catch (error) {
    throw invalid(source, `the signature does not verify with key "${keyid}" (${keyConfig.algorithm})`, error);
  }

  if (!isObject(payload)) throw invalid(source, 'the token payload is not a JSON object');
  const scope = payload.scope ?? '';
  if (typeof scope !== 'string') throw invalid(source, 'the token scope is not a string');
  const expectedScope = config.scope ?? keyConfig.scope ?? '';
  if (scope !== expectedScope) {
    throw invalid(source, `scope mismatch: the bundle is signed for scope ${JSON.stringify(scope)}, expected ${JSON.stringify(expectedScope)}`);
  }
  if (!Array.isArray(payload.files)) throw invalid(source, 'the token payload has no "files" list');
  const listed = new Map<string, { hash: string; algorithm: string }>();
  for (const entry of payload.files as unknown[]) {
    if (!isObject(entry) || typeof entry.name !== 'string' || typeof entry.hash !== 'string' || typeof entry.algorithm !== 'string') {
      throw invalid(source, 'a "files" entry is not {name, hash, algorithm} strings');
    }
    if (listed.has(entry.name)) throw invalid(source, `file ${entry.name} is listed twice`);
    if (!HASHES[entry.algorithm]) throw invalid(source, `file ${entry.name} is hashed with ${JSON.stringify(entry.algorithm)}; only ${Object.keys(HASHES).join(', ')} are accepted`);
    if (!/^[0-9a-fA-F]+$/.test(entry.hash)) throw invalid(source, `file ${entry.name} has a malformed hash`);
    listed.set(entry.name, { hash: entry.hash.toLowerCase(), algorithm: entry.algorithm });
  }

  const excludes = (config.exclude ?? []).map((pattern) => compileExcludePattern(pattern));
  const verifiedFiles: string[] = [];
  const excluded: string[] = [];
  for (const [name, bytes] of [...byName].sort(([a], [b]) => compareUtf8(a, b))) {
    if (excludes.some((pattern) => pattern.test(name))) {
      listed.delete(name);
      excluded.push(name);
      continue;
    }
    const expected = listed.get(name);
    if (!expected) throw invalid(source, `file ${name} is in the bundle but not covered by the signature`);
    let actual: string;
    try {
      actual = hashBundleFile(name, bytes, expected.algorithm);
    } catch (error) {
      throw invalid(source, `file ${name} ${(error as Error).message}`, error);
    }
    if (actual !== expected.hash) throw invalid(source, `file ${name} does not match its signed digest (modified after signing)`);
    listed.delete(name);
    verifiedFiles.push(name);
  }
  if (listed.size > 0) {
    throw invalid(source, `file(s) ${[...listed.keys()].sort(compareUtf8).join(', ')} are covered by the signature but missing from the bundle`);
  }
  return { keyid, scope, files: verifiedFiles, excluded };
}

// ---------------------------------------------------------------------------------------------
// Signing

/**
 * Signs every file of a bundle (but an existing `.signatures.json`) and returns the bytes of the
 * `.signatures.json` to add at the bundle root. Throws `policy_build_failed` for an unusable key.
 */
export async function signBundleFiles(files: ReadonlyMap<string, Buffer>, options: BundleSigningOptions): Promise<Buffer> {
  let key: KeyObject | CryptoKey;
  try {
    key = parsePrivateKey(options.key);
  } catch (error) {
    throw new SignalboxError('policy_build_failed', `signing key ${(error as Error).message}`);
  }
  const problem = key instanceof KeyObject ? keyAlgorithmProblem(key, options.algorithm) : isBundleSigningAlgorithm(options.algorithm) ? undefined : `algorithm ${JSON.stringify(options.algorithm)} is not supported`;
  if (problem) throw new SignalboxError('policy_build_failed', `cannot sign the bundle: ${problem}`);

  const entries: { name: string; hash: string; algorithm: string }[] = [];
  for (const [name, bytes] of bundleFiles(files, 'to sign')) {
    if (name === SIGNATURES_FILE) continue;
    try {
      entries.push({ name, hash: hashBundleFile(name, bytes), algorithm: SIGNING_HASH });
    } catch (error) {
      throw new SignalboxError('policy_build_failed', `cannot sign the bundle: file ${name} ${(error as Error).message}`, { cause: error });
    }
  }
  entries.sort((a, b) => compareUtf8(a.name, b.name));
  const payload: Record<string, unknown> = { files: entries };
  if (options.keyid) payload.keyid = options.keyid;
  if (options.scope) payload.scope = options.scope;
  let token: string;
  try {
    token = await new CompactSign(Buffer.from(JSON.stringify(payload), 'utf8'))
      .setProtectedHeader({ alg: options.algorithm, typ: 'JWT', ...(options.keyid ? { kid: options.keyid } : {}) })
      .sign(key);
  } catch (error) {
    throw new SignalboxError('policy_build_failed', `cannot sign the bundle with ${options.algorithm}: the key does not fit the algorithm`, { cause: error });
  }
  return Buffer.from(`${JSON.stringify({ signatures: [token] }, null, 1)}\n`, 'utf8');
}

/** The verifier config for the `policy.verification` config section, or undefined when it is absent. */
export function bundleVerification(
  section: { public_key: string; key_id: string; algorithm: string; scope?: string | undefined; exclude_files: readonly string[] } | undefined,
): BundleVerificationConfig | undefined {
  if (!section) return undefined;
  return {
    keys: { [section.key_id]: { key: section.public_key, algorithm: section.algorithm } },
    keyid: section.key_id,
    ...(section.scope !== undefined ? { scope: section.scope } : {}),
    exclude: section.exclude_files,
  };
}
