/**
 * OPA's io.jwt.* verification builtins for WASM policies, implemented synchronously with
 * node:crypto (opa-wasm calls host builtins synchronously). Policies written for
 * opa-envoy-plugin use `io.jwt.decode_verify` in almost every documented example.
 *
 * These serve the policy author's explicit choice of key or secret. They are separate from
 * Signalbox's identity stage, which never accepts HMAC.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';

export class JwtBuiltinError extends Error {}

interface DecodedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: Buffer;
  signature: Buffer;
}

function decodeSegment(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new JwtBuiltinError(`${what} is not base64url-encoded JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new JwtBuiltinError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** Splits and decodes a compact JWS without verifying it. */
export function decodeJws(token: unknown): DecodedJws {
  if (typeof token !== 'string') throw new JwtBuiltinError('token must be a string');
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) throw new JwtBuiltinError('token is not a compact JWS');
  const [h, p, s] = parts as [string, string, string];
  return {
    header: decodeSegment(h, 'header'),
    payload: decodeSegment(p, 'payload'),
    signingInput: Buffer.from(`${h}.${p}`),
    signature: Buffer.from(s, 'base64url'),
  };
}

const HMAC_HASH: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
const ASYMMETRIC: Record<string, { hash: string | null; padding?: 'pss'; ieee?: boolean }> = {
  RS256: { hash: 'sha256' },
  RS384: { hash: 'sha384' },
  RS512: { hash: 'sha512' },
  PS256: { hash: 'sha256', padding: 'pss' },
  PS384: { hash: 'sha384', padding: 'pss' },
  PS512: { hash: 'sha512', padding: 'pss' },
  ES256: { hash: 'sha256', ieee: true },
  ES384: { hash: 'sha384', ieee: true },
  ES512: { hash: 'sha512', ieee: true },
  EdDSA: { hash: null },
};

/** Parses OPA's `cert` operand: a PEM certificate or public key, a JWK, or a JWK Set (JSON). */
function publicKeys(cert: string, kid: unknown): KeyObject[] {
  const text = cert.trim();
  if (text.startsWith('{')) {
    let parsed: { keys?: unknown[] } & Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new JwtBuiltinError('cert is not valid JSON');
    }
    const jwks = Array.isArray(parsed.keys) ? (parsed.keys as Record<string, unknown>[]) : [parsed];
    const byKid = typeof kid === 'string' ? jwks.filter((k) => k.kid === kid) : [];
    return (byKid.length > 0 ? byKid : jwks).flatMap((jwk) => {
      try {
        return [createPublicKey({ key: jwk as never, format: 'jwk' })];
      } catch {
        return [];
      }
    });
  }
  try {
    return [createPublicKey(text)];
  } catch {
    throw new JwtBuiltinError('cert is not a PEM certificate, PEM public key or JWK');
  }
}

function verifyAsymmetric(jws: DecodedJws, alg: string, keys: KeyObject[]): boolean {
  const spec = ASYMMETRIC[alg];
  if (!spec) return false;
  return keys.some((key) => {
    try {
      return verifySignature(
        spec.hash,
        jws.signingInput,
        {
          key,
          ...(spec.padding === 'pss' ? { padding: 6, saltLength: -1 } : {}),
          ...(spec.ieee ? { dsaEncoding: 'ieee-p1363' as const } : {}),
        },
        jws.signature,
      );
    } catch {
      return false;
    }
  });
}

function verifyHmac(jws: DecodedJws, alg: string, secret: string): boolean {
  const hash = HMAC_HASH[alg];
  if (!hash) return false;
  const expected = createHmac(hash, secret).update(jws.signingInput).digest();
  return expected.length === jws.signature.length && timingSafeEqual(expected, jws.signature);
}

/** io.jwt.verify_<alg>(token, certOrSecret): the signature check alone. */
export function verifyWithAlgorithm(alg: string, token: unknown, key: unknown): boolean {
  if (typeof key !== 'string') throw new JwtBuiltinError('key must be a string');
  const jws = decodeJws(token);
  if (jws.header.alg !== alg) return false;
  return alg in HMAC_HASH ? verifyHmac(jws, alg, key) : verifyAsymmetric(jws, alg, publicKeys(key, jws.header.kid));
}

const CONSTRAINT_KEYS = new Set(['cert', 'secret', 'alg', 'iss', 'aud', 'time']);
const INVALID: readonly [false, Record<string, never>, Record<string, never>] = [false, {}, {}];

/** OPA's io.jwt.decode_verify(token, constraints) → [valid, header, payload]. */
export function decodeVerify(token: unknown, constraints: unknown, nowNs: bigint): unknown[] {
  if (!constraints || typeof constraints !== 'object' || Array.isArray(constraints)) throw new JwtBuiltinError('constraints must be an object');
  const c = constraints as Record<string, unknown>;
  for (const key of Object.keys(c)) if (!CONSTRAINT_KEYS.has(key)) throw new JwtBuiltinError(`unknown constraint "${key}"`);
  if ((c.cert === undefined) === (c.secret === undefined)) throw new JwtBuiltinError('exactly one of cert or secret is required');
  const jws = decodeJws(token);
  const alg = jws.header.alg;
  if (typeof alg !== 'string' || (c.alg !== undefined && c.alg !== alg)) return [...INVALID];
  let valid: boolean;
  if (c.secret !== undefined) {
    if (typeof c.secret !== 'string') throw new JwtBuiltinError('secret must be a string');
    valid = alg in HMAC_HASH && verifyHmac(jws, alg, c.secret);
  } else {
    if (typeof c.cert !== 'string') throw new JwtBuiltinError('cert must be a string');
    valid = alg in ASYMMETRIC && verifyAsymmetric(jws, alg, publicKeys(c.cert, jws.header.kid));
  }
  if (!valid) return [...INVALID];

  const now = typeof c.time === 'number' ? c.time : Number(nowNs);
  const { exp, nbf, iss, aud } = jws.payload;
  if (exp !== undefined && (typeof exp !== 'number' || now >= exp * 1e9)) return [...INVALID];
  if (nbf !== undefined && (typeof nbf !== 'number' || now < nbf * 1e9)) return [...INVALID];
  if (c.iss !== undefined && iss !== c.iss) return [...INVALID];
  if (c.aud === undefined) {
    if (aud !== undefined) return [...INVALID];
  } else {
    const audiences = Array.isArray(aud) ? aud : [aud];
    if (!audiences.includes(c.aud)) return [...INVALID];
  }
  return [true, jws.header, jws.payload];
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
