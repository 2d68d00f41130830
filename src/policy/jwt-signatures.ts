/**
 * The signature checks of the io.jwt.* builtins, with node:crypto: OPA's own (io.jwt.verify_<alg>)
 * and jwx's (io.jwt.decode_verify), which differ in RSA-PSS salt length, ECDSA signature length
 * and the keys they take. ECDSA signatures arrive as r||s and are DER-encoded for node:crypto.
 */
import { constants, createHmac, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';
import type { KeyMaterial } from './jwt-keys.js';

// ---------------------------------------------------------------------------------------------
// Signature checks.
// ---------------------------------------------------------------------------------------------

/** The hash of an algorithm by its bit size, the last three characters of its name. */
export const HASH_OF_BITS: Readonly<Record<string, string>> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };
/** Go's crypto/rsa refuses keys below 1024 bits (GODEBUG rsa1024min), so verification fails. */
const MIN_RSA_BITS = 1024;

/** Whether `signature` is the HMAC of `input` with `secret`, compared in constant time. */
export function hmacEqual(hash: string, secret: Buffer, input: Buffer, signature: Buffer): boolean {
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
export function builtinSignatureValid(alg: string, material: KeyMaterial, input: Buffer, signature: Buffer): boolean {
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
export function jwsSignatureValid(alg: string, material: KeyMaterial, input: Buffer, signature: Buffer): boolean {
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
