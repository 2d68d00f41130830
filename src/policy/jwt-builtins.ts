/**
 * OPA's io.jwt.* builtins for WASM policies (signing is in jwt-encode.ts), implemented synchronously with
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
 *
 * The token's structure is read in jwt-token.ts, keys in jwt-keys.ts, signatures checked in
 * jwt-signatures.ts; this file holds the builtins: constraints, claims and results.
 */
import { JsonNumber, toJsonText, type JsonObject, type JsonValue } from '../core/go-json.js';
import { encodeSignRaw, encodeSignValues } from './jwt-encode.js';
import { rawJson, type EvaluationContext, type HostBuiltin } from './host-builtin.js';
import { parseKeys, verifyWithKeys, type KeyMaterial, type VerificationKey } from './jwt-keys.js';
import { builtinSignatureValid, HASH_OF_BITS, hmacEqual, jwsSignatureValid } from './jwt-signatures.js';
import { base64UrlDecode, decodeHeader, headerFields, headerValid, JwtBuiltinError, parseObject, signingInput, splitToken, type HeaderFields } from './jwt-token.js';
import { isJsonObject } from '../core/json-object.js';

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
  // OPA reads the constraint as a float64: an exact integer argument (a BigInt) is rounded alike.
  if (typeof value === 'bigint') return timeConstraint(Number(value));
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new JwtBuiltinError('token time constraint: must be a number');
  if (value < 0) throw new JwtBuiltinError('token time constraint: must not be negative');
  return value;
}

/**
 * OPA's parseTokenConstraints and validate: "" means absent for the string constraints, so an
 * empty secret is no key at all and the call fails rather than verifying with an empty key.
 */
function parseConstraints(value: unknown, nowNs: bigint): Constraints {
  if (!isJsonObject(value)) throw new JwtBuiltinError('constraints must be an object');
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

/** The io.jwt.* builtins keyed by OPA builtin name; decode_verify's default time is the evaluation's. */
export function jwtBuiltins(context: () => EvaluationContext): Record<string, HostBuiltin> {
  const table: Record<string, HostBuiltin> = {
    // JWT results are raw JSON text too, so claims beyond 2^53 reach the policy exactly.
    'io.jwt.decode': (token) => rawJson(decodeJson(token)),
    'io.jwt.decode_verify': (token, constraints) => rawJson(decodeVerifyJson(token, constraints, context().nowNs)),
    'io.jwt.encode_sign': (headers, payload, key) => encodeSignValues(headers, payload, key),
    'io.jwt.encode_sign_raw': (headers, payload, key) => encodeSignRaw(headers, payload, key),
  };
  for (const [name, alg] of Object.entries(VERIFY_BUILTINS)) {
    table[name] = (token, key) => verifyWithAlgorithm(alg, token, key);
  }
  return table;
}
