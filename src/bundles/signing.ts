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
 * file over its raw bytes (bundle-hash.ts). Keys are read in signing-keys.ts, `exclude` patterns
 * matched by path-match.ts.
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
import { KeyObject, type webcrypto } from 'node:crypto';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';
import { SignalboxError } from '../core/errors.js';
import { compareUtf8 } from '../core/go-json.js';
import { FILE_HASHES, hashBundleFile, SIGNING_HASH } from './bundle-hash.js';
import { compileExcludePattern } from './path-match.js';
import { BUNDLE_SIGNING_ALGORITHMS, isBundleSigningAlgorithm, keyAlgorithmProblem, parsePrivateKey, parsePublicKey, type VerificationKey } from './signing-keys.js';
import { isJsonObject } from '../core/json-object.js';

type CryptoKey = webcrypto.CryptoKey;

/** The bundle file holding the signature, at the bundle root. */
export const SIGNATURES_FILE = '.signatures.json';

/** What a bundle's signature is verified against: `policy.verification`, or a caller's keys. */
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

/** How `signBundleFiles` signs: the private key, its algorithm, and the optional key id and scope. */
export interface BundleSigningOptions {
  /** The private key: PEM text (PKCS#8, PKCS#1 or SEC1) or a key object. */
  readonly key: string | KeyObject | CryptoKey;
  readonly algorithm: string;
  /** Set as the header `kid` and, as OPA does, the deprecated payload `keyid`. */
  readonly keyid?: string;
  readonly scope?: string;
}

/** What a verified signature established: the key id and scope it was checked with, and the files. */
export interface VerifiedSignature {
  readonly keyid: string;
  readonly scope: string;
  /** The files the signature covers and that matched, by bundle path without the leading slash. */
  readonly files: readonly string[];
  /** Bundle files skipped because they match an `exclude` pattern. */
  readonly excluded: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Verification

function stripSlash(name: string): string {
  return name.replace(/^\.?\/+/, '');
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
  if (!isJsonObject(signatures) || !Array.isArray(signatures.signatures)) throw invalid(source, `${SIGNATURES_FILE} has no "signatures" list`);
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
  const payloadKid = isJsonObject(unverified) && typeof unverified.keyid === 'string' && unverified.keyid !== '' ? unverified.keyid : undefined;
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

  if (!isJsonObject(payload)) throw invalid(source, 'the token payload is not a JSON object');
  const scope = payload.scope ?? '';
  if (typeof scope !== 'string') throw invalid(source, 'the token scope is not a string');
  const expectedScope = config.scope ?? keyConfig.scope ?? '';
  if (scope !== expectedScope) {
    throw invalid(source, `scope mismatch: the bundle is signed for scope ${JSON.stringify(scope)}, expected ${JSON.stringify(expectedScope)}`);
  }
  if (!Array.isArray(payload.files)) throw invalid(source, 'the token payload has no "files" list');
  const listed = new Map<string, { hash: string; algorithm: string }>();
  for (const entry of payload.files as unknown[]) {
    if (!isJsonObject(entry) || typeof entry.name !== 'string' || typeof entry.hash !== 'string' || typeof entry.algorithm !== 'string') {
      throw invalid(source, 'a "files" entry is not {name, hash, algorithm} strings');
    }
    if (listed.has(entry.name)) throw invalid(source, `file ${entry.name} is listed twice`);
    if (!FILE_HASHES[entry.algorithm]) throw invalid(source, `file ${entry.name} is hashed with ${JSON.stringify(entry.algorithm)}; only ${Object.keys(FILE_HASHES).join(', ')} are accepted`);
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
