/**
 * OPA's io.jwt.encode_sign and io.jwt.encode_sign_raw (v1/topdown/tokens.go
 * commonBuiltinJWTEncodeSign), for policies that mint downstream tokens: the first key of a JWK
 * (or JWK Set) signs the compact JWS of the given header and payload, as jwx's jwsbb.Sign does.
 *
 * encode_sign takes Rego values and writes them as Go's json.Marshal does (keys sorted, "<", ">"
 * and "&" escaped); encode_sign_raw takes the JSON texts as they are.
 */
import { constants, createHmac, createPrivateKey, sign as cryptoSign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { canonicalGoJson, JsonNumber, parseGoJson, type JsonValue } from '../core/go-json.js';
import { isJsonObject } from '../core/json-object.js';
import { operandTypeError } from './host-builtin.js';
import { HASH_OF_BITS } from './jwt-signatures.js';
import { base64UrlDecode, JwtBuiltinError } from './jwt-token.js';

/** Algorithms OPA signs with (its tokenAlgorithms). */
const SIGNING_ALGORITHMS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'EdDSA']);
/** The curve each ECDSA algorithm signs with (RFC 7518 3.4). */
const CURVE_OF: Readonly<Record<string, string>> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };

/** A JSON-decoded value (integers beyond 2^53 as BigInt) as go-json's JsonValue. */
function toGoJson(value: unknown): JsonValue {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return new JsonNumber(value.toString());
  if (typeof value === 'number') return new JsonNumber(String(value));
  if (Array.isArray(value)) return value.map(toGoJson);
  if (typeof value === 'object') return new Map(Object.entries(value).map(([k, v]) => [k, toGoJson(v)]));
  throw new JwtBuiltinError(`cannot marshal a ${typeof value}`);
}

/** Go's json.Marshal of a Rego value: keys sorted, HTML characters escaped (only strings can hold them). */
function goMarshal(value: unknown): string {
  return canonicalGoJson(toGoJson(value)).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

function isValidJson(text: string): boolean {
  try {
    parseGoJson(text);
    return true;
  } catch {
    return false;
  }
}

type SigningKey = { readonly kind: 'secret'; readonly secret: Buffer } | { readonly kind: 'private'; readonly key: KeyObject };

/** jwx's jwk.Parse, first key: a JWK, or the first of a JWK Set's keys. */
function firstKey(jwkText: string): SigningKey {
  let parsed: unknown;
  try {
    parsed = JSON.parse(jwkText);
  } catch {
    throw new JwtBuiltinError('failed to parse JWK: invalid JSON');
  }
  if (isJsonObject(parsed) && 'keys' in parsed) {
    if (!Array.isArray(parsed.keys)) throw new JwtBuiltinError('failed to parse JWK set: "keys" must be an array');
    if (parsed.keys.length === 0) throw new JwtBuiltinError('no keys found in JWK set');
    parsed = parsed.keys[0];
  }
  if (!isJsonObject(parsed)) throw new JwtBuiltinError('failed to parse JWK: a JWK must be an object');
  if (parsed.kty === 'oct') {
    if (typeof parsed.k !== 'string') throw new JwtBuiltinError('failed to parse JWK: oct key without k');
    return { kind: 'secret', secret: base64UrlDecode(parsed.k, 'JWK k') };
  }
  try {
    return { kind: 'private', key: createPrivateKey({ key: parsed as JsonWebKey, format: 'jwk' }) };
  } catch {
    throw new JwtBuiltinError('failed to parse JWK: not a private key jwx can sign with');
  }
}

const FASTJSON_RAW_NUMBER = /^(?:[0-9.eE+-]+|[+-]?(?:inf|nan))$/i;

/** jwsbb.HeaderParse and HeaderGetString for "alg" (and "typ"), with jwx's error texts. */
function headerAlgorithm(headerText: string): { alg: string; typ: string | undefined } {
  if (headerText.trim() === '') throw new JwtBuiltinError("missing or invalid 'alg' header: cannot parse JSON: cannot parse empty string");
  let header: JsonValue;
  try {
    header = parseGoJson(headerText);
  } catch {
    // jwx parses headers with fastjson, which takes any run of number characters for a number
    // (checked only when read): such a header parses, but has no "alg".
    if (!FASTJSON_RAW_NUMBER.test(headerText.trim())) throw new JwtBuiltinError("missing or invalid 'alg' header: cannot parse JSON");
    header = null;
  }
  const alg = header instanceof Map ? header.get('alg') : undefined;
  if (alg === undefined) throw new JwtBuiltinError('missing or invalid \'alg\' header: jwsbb: header "alg" not found');
  if (typeof alg !== 'string') throw new JwtBuiltinError('missing or invalid \'alg\' header: jwsbb: header "alg" is not a string');
  const typ = header instanceof Map ? header.get('typ') : undefined;
  return { alg, typ: typeof typ === 'string' ? typ : undefined };
}

/** jwsbb.Sign: the signature of `input` by `alg` with the key, which must be of the algorithm's type. */
function signature(alg: string, key: SigningKey, input: Buffer): Buffer {
  const hash = HASH_OF_BITS[alg.slice(2)];
  const mismatch = (): JwtBuiltinError => new JwtBuiltinError(`failed to sign with ${alg}: the JWK is not a key for this algorithm`);
  if (alg.startsWith('HS')) {
    if (key.kind !== 'secret' || hash === undefined) throw mismatch();
    return createHmac(hash, key.secret).update(input).digest();
  }
  if (key.kind !== 'private') throw mismatch();
  const type = key.key.asymmetricKeyType;
  if (alg === 'EdDSA') {
    if (type !== 'ed25519') throw mismatch();
    return cryptoSign(null, input, key.key);
  }
  if (hash === undefined) throw mismatch();
  if (alg.startsWith('ES')) {
    if (type !== 'ec' || key.key.asymmetricKeyDetails?.namedCurve !== CURVE_OF[alg]) throw mismatch();
    return cryptoSign(hash, input, { key: key.key, dsaEncoding: 'ieee-p1363' });
  }
  if (type !== 'rsa') throw mismatch();
  if (alg.startsWith('PS')) return cryptoSign(hash, input, { key: key.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  return cryptoSign(hash, input, key.key);
}

/** OPA's commonBuiltinJWTEncodeSign on the header, payload and JWK texts. */
function encodeSign(headerText: string, payloadText: string, jwkText: string): string {
  const key = firstKey(jwkText);
  const { alg, typ } = headerAlgorithm(headerText);
  if (!SIGNING_ALGORITHMS.has(alg)) throw new JwtBuiltinError(`unknown JWS algorithm: ${alg.slice(0, 64)}`);
  if ((typ === undefined || typ === 'JWT') && !isValidJson(payloadText)) throw new JwtBuiltinError('type is JWT but payload is not JSON');
  const input = `${Buffer.from(headerText).toString('base64url')}.${Buffer.from(payloadText).toString('base64url')}`;
  return `${input}.${signature(alg, key, Buffer.from(input)).toString('base64url')}`;
}

/** io.jwt.encode_sign(headers, payload, key): Rego values, marshalled as Go does. */
export function encodeSignValues(headers: unknown, payload: unknown, key: unknown): string {
  if (!isJsonObject(headers)) throw operandTypeError(1, headers, 'object');
  if (!isJsonObject(payload)) throw operandTypeError(2, payload, 'object');
  if (!isJsonObject(key)) throw operandTypeError(3, key, 'object');
  return encodeSign(goMarshal(headers), goMarshal(payload), goMarshal(key));
}

/** io.jwt.encode_sign_raw(headers, payload, key): JSON texts, used as they are. */
export function encodeSignRaw(headers: unknown, payload: unknown, key: unknown): string {
  if (typeof key !== 'string') throw operandTypeError(3, key, 'string');
  if (typeof headers !== 'string') throw operandTypeError(1, headers, 'string');
  if (typeof payload !== 'string') throw operandTypeError(2, payload, 'string');
  return encodeSign(headers, payload, key);
}
