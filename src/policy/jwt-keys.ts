/**
 * The keys of the io.jwt.* builtins: OPA's `cert` argument or constraint read as a PEM
 * certificate or public key, a JWK or a JWK Set, into the key types Go would hold, and OPA's
 * choice among them by kid and alg.
 */
import { createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { base64UrlDecode, JwtBuiltinError, type HeaderFields } from './jwt-token.js';
import { isJsonObject } from '../core/json-object.js';

// ---------------------------------------------------------------------------------------------
// Keys: OPA's parseKeysFromCertOrJWK.
// ---------------------------------------------------------------------------------------------

/** What Go would hold: an RSA, ECDSA or Ed25519 key, another key it parses but cannot verify with, or JWK "oct" bytes. */
export type KeyMaterial =
  | { readonly kind: 'rsa' | 'ec' | 'ed25519' | 'other'; readonly key: KeyObject; readonly isPrivate: boolean }
  | { readonly kind: 'secret'; readonly secret: Buffer };

/** A key of OPA's `cert`: its declared alg and kid ("" when absent) and what verifies. */
export interface VerificationKey {
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
  if (!isJsonObject(jwk)) throw new JwtBuiltinError('a JWK must be an object');
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

/**
 * A JWK Set if the JSON object has "keys", else a single JWK; any invalid key fails the whole set
 * (jwx strict parsing), with OPA's "failed to parse a JWK key (set)" before the reason.
 */
function parseJwks(text: string): VerificationKey[] {
  try {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new JwtBuiltinError('invalid JSON');
    }
    const set = isJsonObject(parsed) && 'keys' in parsed ? parsed.keys : undefined;
    if (set !== undefined && (!Array.isArray(set) || set.length > MAX_JWKS_KEYS)) throw new JwtBuiltinError('invalid JWK set');
    const keys = set === undefined ? [jwkKey(parsed)] : set.map(jwkKey);
    return keys.filter((key) => key.alg === '' || TOKEN_ALGORITHMS.has(key.alg));
  } catch (error) {
    if (!(error instanceof JwtBuiltinError)) throw error;
    throw new JwtBuiltinError(`failed to parse a JWK key (set): ${error.message}`);
  }
}

/** OPA's `cert`: a PEM certificate or public key (one block), a JWK, or a JWK Set. */
export function parseKeys(cert: string): VerificationKey[] {
  const pem = decodePem(cert);
  return pem ? [{ alg: '', kid: '', material: pemKey(pem.type, pem.der) }] : parseJwks(cert);
}

/**
 * OPA's key selection: the first key whose kid equals the token's decides alone; otherwise any key
 * that declares no alg, or the token header's alg, may verify.
 */
export function verifyWithKeys(keys: readonly VerificationKey[], header: HeaderFields, check: (key: KeyMaterial) => boolean): boolean {
  const byKid = header.kid === '' ? undefined : keys.find((key) => key.kid === header.kid);
  if (byKid) return check(byKid.material);
  return keys.some((key) => (key.alg === '' || key.alg === header.alg) && check(key.material));
}
