/**
 * The keys of bundle signatures: which algorithms a bundle may be signed with (asymmetric only),
 * whether a key fits one, and reading a verification key (public only) or a signing key (private
 * only) from PEM text or a key object. No error message echoes key material.
 */
import { createPrivateKey, createPublicKey, KeyObject, type webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;

/** The algorithms a bundle may be signed with: asymmetric only. */
export const BUNDLE_SIGNING_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
/** One of {@link BUNDLE_SIGNING_ALGORITHMS}. */
export type BundleSigningAlgorithm = (typeof BUNDLE_SIGNING_ALGORITHMS)[number];

/** A verification key: a public key (PEM text, "PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE") or a key object. */
export type VerificationKey = string | KeyObject | CryptoKey;

/** Whether `algorithm` is one a bundle may be signed with. */
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
