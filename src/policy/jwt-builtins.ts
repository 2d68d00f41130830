/**
 * OPA's io.jwt.* verification builtins for WASM policies, implemented synchronously with
 * node:crypto (opa-wasm calls host builtins synchronously). Policies written for
 * opa-envoy-plugin use `io.jwt.decode_verify` in almost every documented example.
 *
 * These serve the policy author's explicit choice of key or secret. They are separate from
 * Signalbox's identity stage, which never accepts HMAC.
 *
 * The reference is OPA v1 topdown/tokens.go. Two signature checks coexist there, and both are
 * reproduced: io.jwt.verify_<alg> runs OPA's own check for the builtin's algorithm, while
 * io.jwt.decode_verify hands the token header's algorithm to jwx (jwsbb.Verify), which differs in
 * details (RSA-PSS salt length, ECDSA signature length, private and symmetric JWKs).
 */
import {
  constants,
  createHmac,
  createPublicKey,
  timingSafeEqual,
  verify as verifySignature,
  X509Certificate,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { JsonNumber, parseGoJson, toJsonText, type JsonObject, type JsonValue } from '../core/go-json.js';

export class JwtBuiltinError extends Error {}

// ---------------------------------------------------------------------------------------------
// JSON as OPA reads JWT segments: Go's encoding/json with UseNumber (core/go-json.ts).
// ---------------------------------------------------------------------------------------------

function parseObject(bytes: Buffer, what: string): JsonObject {
  let value: JsonValue;
  try {
    value = parseGoJson(bytes.toString('utf8'));
  } catch {
    throw new JwtBuiltinError(`${what} is not valid JSON`);
  }
  if (!(value instanceof Map)) throw new JwtBuiltinError(`${what} is not a JSON object`);
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Token structure.
// ---------------------------------------------------------------------------------------------

const BASE64URL_PADDED = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/;

/**
 * OPA's base64url.decode: unpadded input is padded first (a length of 1 mod 4 is invalid), input
 * already ending in "=" is taken as is; then Go's padded URL alphabet decoder, which skips CR/LF.
 */
function base64UrlDecode(segment: string, what: string): Buffer {
  let text = segment;
  if (!text.endsWith('=')) {
    if (text.length % 4 === 1) throw new JwtBuiltinError(`${what} is not valid base64url`);
    text += '='.repeat((4 - (text.length % 4)) % 4);
  }
  text = text.replace(/[\r\n]/g, '');
  if (!BASE64URL_PADDED.test(text)) throw new JwtBuiltinError(`${what} is not valid base64url`);
  return Buffer.from(text, 'base64url');
}

interface TokenParts {
  readonly header: string;
  readonly payload: string;
  readonly signature: string;
}

function splitToken(token: unknown): TokenParts {
  if (typeof token !== 'string') throw new JwtBuiltinError('token must be a string');
  const parts = token.split('.');
  if (parts.length !== 3) throw new JwtBuiltinError(`encoded JWT must have 3 sections, found ${parts.length}`);
  const [header, payload, signature] = parts as [string, string, string];
  return { header, payload, signature };
}

function signingInput(parts: TokenParts): Buffer {
  return Buffer.from(`${parts.header}.${parts.payload}`);
}

/** The JOSE header object; a JWE (an "enc" member) is not supported, as in OPA. */
function decodeHeader(parts: TokenParts): JsonObject {
  const header = parseObject(base64UrlDecode(parts.header, 'header'), 'header');
  if (header.has('enc')) throw new JwtBuiltinError('JWT is a JWE object, which is not supported');
  return header;
}

/** OPA's parseTokenHeader: the header parameters it understands, type-checked. */
interface HeaderFields {
  alg: string;
  kid: string;
  typ: string;
  cty: string;
  crit: ReadonlySet<string>;
  unknown: string[];
}

function headerFields(header: JsonObject): HeaderFields {
  const fields: HeaderFields = { alg: '', kid: '', typ: '', cty: '', crit: new Set(), unknown: [] };
  for (const [name, value] of header) {
    if (name === 'alg' || name === 'kid' || name === 'typ' || name === 'cty') {
      if (typeof value !== 'string') throw new JwtBuiltinError(`${name}: must be a string`);
      fields[name] = value;
    } else if (name === 'crit') {
      fields.crit = critNames(value);
    } else {
      fields.unknown.push(name);
    }
  }
  return fields;
}

function critNames(value: JsonValue): ReadonlySet<string> {
  if (!Array.isArray(value)) throw new JwtBuiltinError('crit: must be a list');
  const names = new Set<string>();
  // OPA stops at the first non-string element and drops that error, keeping the names before it.
  for (const item of value) {
    if (typeof item !== 'string') break;
    names.add(item);
  }
  if (names.size === 0) throw new JwtBuiltinError('crit: must be a nonempty list');
  return names;
}

/** RFC 7515: "alg" is required, and a critical parameter OPA does not understand invalidates the JWS. */
function headerValid(fields: HeaderFields): boolean {
  return fields.alg !== '' && !fields.unknown.some((name) => fields.crit.has(name));
}

// ---------------------------------------------------------------------------------------------
// Keys: OPA's parseKeysFromCertOrJWK.
// ---------------------------------------------------------------------------------------------

/** What Go would hold: an RSA, ECDSA or Ed25519 key, another key it parses but cannot verify with, or JWK "oct" bytes. */
type KeyMaterial =
  | { readonly kind: 'rsa' | 'ec' | 'ed25519' | 'other'; readonly key: KeyObject; readonly isPrivate: boolean }
  | { readonly kind: 'secret'; readonly secret: Buffer };

interface VerificationKey {
  readonly alg: string;
  readonly kid: string;
  readonly material: KeyMaterial;
}

/** Algorithms OPA knows; JWKS keys declaring any other alg are skipped. */
const TOKEN_ALGORITHMS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'EdDSA']);
/** Curves Go's crypto/x509 and jwx parse (OpenSSL names); others (e.g. secp256k1) are errors. */
const GO_CURVES = new Set(['secp224r1', 'prime256v1', 'secp384r1', 'secp521r1']);
const MAX_JWKS_KEYS = 1000;

function keyMaterial(key: KeyObject, isPrivate: boolean): KeyMaterial {
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'ed25519':
      return { kind: key.asymmetricKeyType, key, isPrivate };
    case 'ec':
      if (!GO_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? '')) throw new JwtBuiltinError('unsupported elliptic curve');
      return { kind: 'ec', key, isPrivate };
    case 'x25519':
    case 'dsa':
      return { kind: 'other', key, isPrivate };
    default:
      throw new JwtBuiltinError(`unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

/**
 * Go's pem.Decode, closely enough: the block ending at the first END line and starting at the last
 * BEGIN line before it (so the scan stays linear), with optional "Name: value" header lines.
 * After the block OPA accepts nothing at all, not even a blank line. Undefined when there is no
 * block, so the text is tried as a JWK.
 */
const PEM_BLOCK = /-----BEGIN ([^\n]*?)-----[ \t]*\r?\n(?:[^\n:]*:[^\n]*\n)*([\s\S]*?)\n-----END \1-----[ \t]*(?:\r?\n|$)/y;
const BASE64_PADDED = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Index of the last "-----BEGIN " at the start of a line before `end`, or -1. */
function lastBeginBefore(text: string, end: number): number {
  let at = text.lastIndexOf('-----BEGIN ', end);
  while (at > 0 && text[at - 1] !== '\n') at = text.lastIndexOf('-----BEGIN ', at - 1);
  return at;
}

function decodePem(text: string): { type: string; der: Buffer } | undefined {
  const end = text.indexOf('\n-----END ');
  const begin = end < 0 ? -1 : lastBeginBefore(text, end);
  if (begin < 0) return undefined;
  PEM_BLOCK.lastIndex = begin;
  const m = PEM_BLOCK.exec(text);
  if (!m) return undefined;
  if (PEM_BLOCK.lastIndex !== text.length) throw new JwtBuiltinError('extra data after a PEM certificate block');
  const body = (m[2] ?? '').replace(/[ \t\r\n]/g, '');
  if (!BASE64_PADDED.test(body)) throw new JwtBuiltinError('invalid PEM body');
  return { type: m[1] ?? '', der: Buffer.from(body, 'base64') };
}

function pemKey(type: string, der: Buffer): KeyMaterial {
  try {
    if (type === 'CERTIFICATE') return keyMaterial(new X509Certificate(der).publicKey, false);
    if (type === 'PUBLIC KEY') return keyMaterial(createPublicKey({ key: der, format: 'der', type: 'spki' }), false);
  } catch (error) {
    if (error instanceof JwtBuiltinError) throw error;
    throw new JwtBuiltinError(`failed to parse a PEM ${type.toLowerCase()}`);
  }
  throw new JwtBuiltinError('failed to extract a Key from the PEM certificate');
}

/** One JWK, as jwx parses it: RSA/EC/OKP keys (public or private) and "oct" secrets. */
function jwkKey(jwk: unknown): VerificationKey {
  if (!isPlainObject(jwk)) throw new JwtBuiltinError('a JWK must be an object');
  const { alg = '', kid = '', kty, k } = jwk;
  if (typeof alg !== 'string' || typeof kid !== 'string') throw new JwtBuiltinError('JWK alg and kid must be strings');
  if (kty === 'oct') {
    if (typeof k !== 'string') throw new JwtBuiltinError('oct JWK without k');
    return { alg, kid, material: { kind: 'secret', secret: base64UrlDecode(k, 'JWK k') } };
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    throw new JwtBuiltinError('failed to parse a JWK key');
  }
  return { alg, kid, material: keyMaterial(key, 'd' in jwk) };
}

/** A JWK Set if the JSON object has "keys", else a single JWK; any invalid key fails the whole set (jwx strict parsing). */
function parseJwks(text: string): VerificationKey[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new JwtBuiltinError('failed to parse a JWK key (set)');
  }
  const set = isPlainObject(parsed) && 'keys' in parsed ? parsed.keys : undefined;
  if (set !== undefined && (!Array.isArray(set) || set.length > MAX_JWKS_KEYS)) throw new JwtBuiltinError('invalid JWK set');
  const keys = set === undefined ? [jwkKey(parsed)] : set.map(jwkKey);
  return keys.filter((key) => key.alg === '' || TOKEN_ALGORITHMS.has(key.alg));
}

/** OPA's `cert`: a PEM certificate or public key (one block), a JWK, or a JWK Set. */
function parseKeys(cert: string): VerificationKey[] {
  const pem = decodePem(cert);
  return pem ? [{ alg: '', kid: '', material: pemKey(pem.type, pem.der) }] : parseJwks(cert);
}

/**
 * OPA's key selection: the first key whose kid equals the token's decides alone; otherwise any key
 * that declares no alg, or the token header's alg, may verify.
 */
function verifyWithKeys(keys: readonly VerificationKey[], header: HeaderFields, check: (key: KeyMaterial) => boolean): boolean {
  const byKid = header.kid === '' ? undefined : keys.find((key) => key.kid === header.kid);
  if (byKid) return check(byKid.material);
  return keys.some((key) => (key.alg === '' || key.alg === header.alg) && check(key.material));
}

// ---------------------------------------------------------------------------------------------
// Signature checks.
// ---------------------------------------------------------------------------------------------

const HASH_OF_BITS: Readonly<Record<string, string>> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };
/** Go's crypto/rsa refuses keys below 1024 bits (GODEBUG rsa1024min), so verification fails. */
const MIN_RSA_BITS = 1024;

function hmacEqual(hash: string, secret: Buffer, input: Buffer, signature: Buffer): boolean {
  const expected = createHmac(hash, secret).update(input).digest();
  return expected.length === signature.length && timingSafeEqual(expected, signature);
}

function rsaVerify(key: KeyObject, hash: string, input: Buffer, signature: Buffer, padding: 'pkcs1' | 'pss-auto' | 'pss-digest'): boolean {
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) return false;
  const pss = padding === 'pkcs1' ? {} : { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: padding === 'pss-auto' ? constants.RSA_PSS_SALTLEN_AUTO : constants.RSA_PSS_SALTLEN_DIGEST };
  return verifySignature(hash, input, { key, ...pss }, signature);
}

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function derInteger(bigEndian: Buffer): Buffer {
  let start = 0;
  while (start < bigEndian.length - 1 && bigEndian[start] === 0) start++;
  const trimmed = bigEndian.subarray(start);
  const value = trimmed.length === 0 ? Buffer.from([0]) : (trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
  return Buffer.concat([Buffer.from([0x02]), derLength(value.length), value]);
}

/** OPA's verifyES: r and s are the two halves of the signature, whatever its length. */
function ecdsaVerifyHalves(key: KeyObject, hash: string, input: Buffer, signature: Buffer): boolean {
  const half = Math.floor(signature.length / 2);
  const body = Buffer.concat([derInteger(signature.subarray(0, half)), derInteger(signature.subarray(half))]);
  const der = Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
  return verifySignature(hash, input, { key, dsaEncoding: 'der' }, der);
}

/** Runs a signature check, treating any crypto error as "not verified", as OPA does. */
function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}

/** OPA's own check behind io.jwt.verify_<alg>: the builtin's algorithm, public keys only (Go type-asserts *rsa.PublicKey etc.). */
function builtinSignatureValid(alg: string, material: KeyMaterial, input: Buffer, signature: Buffer): boolean {
  if (material.kind === 'secret' || material.isPrivate) return false;
  const { kind, key } = material;
  const hash = HASH_OF_BITS[alg.slice(2)] ?? 'sha256';
  return safely(() => {
    if (alg.startsWith('RS')) return kind === 'rsa' && rsaVerify(key, hash, input, signature, 'pkcs1');
    if (alg.startsWith('PS')) return kind === 'rsa' && rsaVerify(key, hash, input, signature, 'pss-auto');
    if (alg.startsWith('ES')) return kind === 'ec' && ecdsaVerifyHalves(key, hash, input, signature);
    return kind === 'ed25519' && verifySignature(null, input, key, signature);
  });
}

/**
 * jwx's jwsbb.Verify behind io.jwt.decode_verify: the token header's algorithm; RSA-PSS with a
 * digest-length salt; ECDSA as r||s of exactly the curve's size; any key of the right type,
 * private JWKs included; HMAC with the secret or an "oct" JWK.
 */
function jwsSignatureValid(alg: string, material: KeyMaterial, input: Buffer, signature: Buffer): boolean {
  const family = alg.slice(0, 2);
  const hash = HASH_OF_BITS[alg.slice(2)];
  if (material.kind === 'secret') return family === 'HS' && hash !== undefined && hmacEqual(hash, material.secret, input, signature);
  const { kind, key } = material;
  return safely(() => {
    if (alg === 'EdDSA' || alg === 'Ed25519') return kind === 'ed25519' && verifySignature(null, input, key, signature);
    if (hash === undefined) return false;
    if (family === 'RS') return kind === 'rsa' && rsaVerify(key, hash, input, signature, 'pkcs1');
    if (family === 'PS') return kind === 'rsa' && rsaVerify(key, hash, input, signature, 'pss-digest');
    if (family === 'ES') return kind === 'ec' && verifySignature(hash, input, { key, dsaEncoding: 'ieee-p1363' }, signature);
    return false;
  });
}

// ---------------------------------------------------------------------------------------------
// The builtins.
// ---------------------------------------------------------------------------------------------

/** io.jwt.verify_hs<bits>(token, secret): the MAC over the raw segments; OPA never decodes the header here. */
function verifyHmacBuiltin(alg: string, token: unknown, secret: unknown): boolean {
  if (typeof token !== 'string' || typeof secret !== 'string') throw new JwtBuiltinError('token and secret must be strings');
  const parts = splitToken(token);
  const signature = base64UrlDecode(parts.signature, 'signature');
  return hmacEqual(HASH_OF_BITS[alg.slice(2)] ?? 'sha256', Buffer.from(secret), signingInput(parts), signature);
}

/** io.jwt.verify_<alg>(token, cert): the signature alone, with the builtin's algorithm whatever the header says. */
function verifyAsymmetricBuiltin(alg: string, token: unknown, cert: unknown): boolean {
  const parts = splitToken(token);
  if (typeof cert !== 'string') throw new JwtBuiltinError('certificate must be a string');
  const keys = parseKeys(cert);
  const signature = base64UrlDecode(parts.signature, 'signature');
  const header = headerFields(decodeHeader(parts));
  const input = signingInput(parts);
  return verifyWithKeys(keys, header, (material) => builtinSignatureValid(alg, material, input, signature));
}

/** io.jwt.verify_<alg>(token, certOrSecret). */
export function verifyWithAlgorithm(alg: string, token: unknown, key: unknown): boolean {
  return alg.startsWith('HS') ? verifyHmacBuiltin(alg, token, key) : verifyAsymmetricBuiltin(alg, token, key);
}

/** io.jwt.decode(token) as JSON text: [header, payload, signature as hex]. Verifies nothing. */
export function decodeJson(token: unknown): string {
  return toJsonText(decodeUnverified(token));
}

function decodeUnverified(token: unknown): JsonValue[] {
  const parts = splitToken(token);
  const header = decodeHeader(parts);
  const payload = base64UrlDecode(parts.payload, 'payload');
  const cty = header.get('cty');
  // OPA crashes (a Go panic) on a non-string cty; an error is the closest safe equivalent.
  if (cty !== undefined && typeof cty !== 'string') throw new JwtBuiltinError('cty: must be a string');
  // A nested token (RFC 7519 5.2): OPA decodes the inner one instead, after trimming any quotes.
  if (cty === 'JWT') return decodeUnverified(payload.toString('utf8').replace(/^["']+|["']+$/g, ''));
  return [header, parseObject(payload, 'payload'), base64UrlDecode(parts.signature, 'signature').toString('hex')];
}

interface Constraints {
  keys: VerificationKey[] | undefined;
  secret: string;
  alg: string;
  iss: string;
  aud: string;
  /** Nanoseconds, as a float64 (OPA's tokenConstraints.time). */
  time: number;
}

function stringConstraint(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new JwtBuiltinError(`${name} constraint: must be a string`);
  return value;
}

function timeConstraint(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new JwtBuiltinError('token time constraint: must be a number');
  if (value < 0) throw new JwtBuiltinError('token time constraint: must not be negative');
  return value;
}

/**
 * OPA's parseTokenConstraints and validate: "" means absent for the string constraints, so an
 * empty secret is no key at all and the call fails rather than verifying with an empty key.
 */
function parseConstraints(value: unknown, nowNs: bigint): Constraints {
  if (!isPlainObject(value)) throw new JwtBuiltinError('constraints must be an object');
  const c: Constraints = { keys: undefined, secret: '', alg: '', iss: '', aud: '', time: 0 };
  let time: number | undefined;
  for (const [name, v] of Object.entries(value)) {
    if (name === 'cert') c.keys = parseKeys(stringConstraint(name, v));
    else if (name === 'secret' || name === 'alg' || name === 'iss' || name === 'aud') c[name] = stringConstraint(name, v);
    else if (name === 'time') time = timeConstraint(v);
    else throw new JwtBuiltinError(`unknown token validation constraint: ${name.slice(0, 64)}`);
  }
  // Without a time constraint OPA uses the query's time.now_ns(), with the same checks.
  c.time = time ?? timeConstraint(Number(nowNs));
  const keyConstraints = (c.keys ? 1 : 0) + (c.secret !== '' ? 1 : 0);
  if (keyConstraints !== 1) throw new JwtBuiltinError(keyConstraints === 0 ? 'no key constraint' : 'duplicate key constraints');
  return c;
}

function constraintsVerify(c: Constraints, header: HeaderFields, input: Buffer, signature: Buffer): boolean {
  const check = (material: KeyMaterial): boolean => jwsSignatureValid(header.alg, material, input, signature);
  return c.keys ? verifyWithKeys(c.keys, header, check) : check({ kind: 'secret', secret: Buffer.from(c.secret) });
}

/** Header and payload of a token whose signature verifies; nested tokens (cty "JWT", any case) are verified in turn. */
function verifiedToken(token: unknown, c: Constraints): { header: JsonObject; payload: JsonObject } | undefined {
  let current = token;
  for (;;) {
    const parts = splitToken(current);
    const header = decodeHeader(parts);
    const fields = headerFields(header);
    if (!headerValid(fields) || (c.alg !== '' && c.alg !== fields.alg)) return undefined;
    const signature = base64UrlDecode(parts.signature, 'signature');
    if (!constraintsVerify(c, fields, signingInput(parts), signature)) return undefined;
    const payload = base64UrlDecode(parts.payload, 'payload');
    if (fields.cty.toLowerCase() !== 'jwt') return { header, payload: parseObject(payload, 'payload') };
    current = payload.toString('utf8');
  }
}

/** A decimal number as 0.<digits> × 10^point, digits without leading or trailing zeros ("" for zero). */
interface Decimal {
  readonly sign: -1 | 0 | 1;
  readonly digits: string;
  readonly point: number;
}

function parseDecimal(text: string): Decimal {
  const m = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  const whole = m?.[2] ?? '';
  const all = whole + (m?.[3] ?? '');
  const lead = all.search(/[1-9]/);
  if (lead < 0) return { sign: 0, digits: '', point: 0 };
  return { sign: m?.[1] === '-' ? -1 : 1, digits: all.slice(lead).replace(/0+$/, ''), point: whole.length + Number(m?.[4] ?? 0) - lead };
}

/** Exact comparison of two decimal texts, as OPA's NumberCompare: no rounding through a double. */
function compareDecimal(a: string, b: string): number {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (x.sign !== y.sign || x.sign === 0) return Math.sign(x.sign - y.sign);
  const magnitude = x.point !== y.point ? Math.sign(x.point - y.point) : x.digits === y.digits ? 0 : x.digits < y.digits ? -1 : 1;
  return x.sign * magnitude;
}

/** Compares the time constraint with a NumericDate claim; non-numbers are errors. */
function compareWithClaim(nowSeconds: string, value: JsonValue, name: string): number {
  if (!(value instanceof JsonNumber)) throw new JwtBuiltinError(`${name} value must be a number`);
  return compareDecimal(nowSeconds, value.text);
}

function audienceMatches(aud: JsonValue, wanted: string): boolean {
  if (typeof aud === 'string') return aud === wanted;
  return Array.isArray(aud) && aud.some((item) => item === wanted);
}

/** OPA's claim checks, in its order: iss, aud, then exp and nbf against the time constraint. */
function claimsValid(payload: JsonObject, c: Constraints): boolean {
  if (c.iss !== '') {
    const iss = payload.get('iss');
    if (iss === undefined) return false;
    // OPA crashes (a Go panic) on a non-string iss here; an error is the closest safe equivalent.
    if (typeof iss !== 'string') throw new JwtBuiltinError('iss value must be a string');
    if (iss !== c.iss) return false;
  }
  const aud = payload.get('aud');
  if (aud === undefined ? c.aud !== '' : !audienceMatches(aud, c.aud)) return false;
  // OPA compares the shortest decimal form of the float64 time/1e9 (Go's FormatFloat 'g' -1,
  // the same digits as String()) with the claim's own digits.
  const now = String(c.time / 1e9);
  const exp = payload.get('exp');
  if (exp !== undefined && compareWithClaim(now, exp, 'exp') >= 0) return false;
  const nbf = payload.get('nbf');
  return nbf === undefined || compareWithClaim(now, nbf, 'nbf') >= 0;
}

const INVALID_JSON = '[false,{},{}]';

/** io.jwt.decode_verify(token, constraints) as JSON text: [valid, header, payload]. */
export function decodeVerifyJson(token: unknown, constraints: unknown, nowNs: bigint): string {
  const c = parseConstraints(constraints, nowNs);
  const verified = verifiedToken(token, c);
  if (!verified || !claimsValid(verified.payload, c)) return INVALID_JSON;
  return toJsonText([true, verified.header, verified.payload]);
}

/** The io.jwt.verify_* family: builtin name → algorithm. */
export const VERIFY_BUILTINS: Readonly<Record<string, string>> = Object.freeze({
  'io.jwt.verify_rs256': 'RS256',
  'io.jwt.verify_rs384': 'RS384',
  'io.jwt.verify_rs512': 'RS512',
  'io.jwt.verify_ps256': 'PS256',
  'io.jwt.verify_ps384': 'PS384',
  'io.jwt.verify_ps512': 'PS512',
  'io.jwt.verify_es256': 'ES256',
  'io.jwt.verify_es384': 'ES384',
  'io.jwt.verify_es512': 'ES512',
  'io.jwt.verify_eddsa': 'EdDSA',
  'io.jwt.verify_hs256': 'HS256',
  'io.jwt.verify_hs384': 'HS384',
  'io.jwt.verify_hs512': 'HS512',
});
