/**
 * Secrets: private keys (PEM and PGP armour), JWTs, and the API tokens and keys of common services.
 */
import { AWS_SECRET_CONTEXT, AZURE_KEY_CONTEXT, nearby } from './context.js';
import { regexDetector, type Detector, type Emit, type Facts } from './detector.js';
import { hasUpperLowerDigit } from './validators.js';

// ---------------------------------------------------------------------------------------------
// Private keys (PEM and PGP armour)

const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_END = /^-----END (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----/;
/** Characters of a PEM body, its `Proc-Type:`/`DEK-Info:` headers and JSON-escaped newlines. */
const PEM_NOT_BODY = /[^A-Za-z0-9+\/=\s\\:,\-._()]/g;
const MAX_PEM_CHARS = 64 * 1024;

/** Base64, `=`, line breaks, and the backslash of an escaped `\n` (a key pasted from JSON or .env). */
function isKeyMaterialCode(code: number): boolean {
  return (
    (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) ||
    code === 43 || code === 47 || code === 61 || code === 92 || code === 10 || code === 13
  );
}

const MIN_KEY_MATERIAL = 40;

function countKeyMaterial(text: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (isKeyMaterialCode(code) && code !== 10 && code !== 13 && code !== 92) n++;
  }
  return n;
}

/**
 * The whole block from BEGIN to END. Without an END line (a truncated paste), the BEGIN line and
 * the key material that follows it. The next END marker and the next non-PEM character are
 * searched forward once and reused, so many BEGIN lines cost one pass.
 */
function findPrivateKeys(text: string, _facts: Facts, emit: Emit): void {
  PEM_BEGIN.lastIndex = 0;
  let endMarker = -2;
  let notBody = -2;
  for (let m = PEM_BEGIN.exec(text); m !== null; m = PEM_BEGIN.exec(text)) {
    const headerEnd = m.index + m[0].length;
    if (endMarker !== -1 && endMarker < headerEnd) endMarker = text.indexOf('-----END ', headerEnd);
    if (notBody !== -1 && notBody < headerEnd) {
      PEM_NOT_BODY.lastIndex = headerEnd;
      notBody = PEM_NOT_BODY.exec(text)?.index ?? -1;
    }
    let end = -1;
    if (endMarker >= 0 && endMarker - headerEnd <= MAX_PEM_CHARS && (notBody === -1 || notBody > endMarker)) {
      const tail = PEM_END.exec(text.slice(endMarker, endMarker + 80));
      if (tail !== null) end = endMarker + tail[0].length;
    }
    if (end < 0) {
      end = headerEnd;
      const limit = Math.min(text.length, headerEnd + MAX_PEM_CHARS);
      while (end < limit && isKeyMaterialCode(text.charCodeAt(end))) end++;
      while (end > headerEnd && /[\r\n\\]/.test(text[end - 1] as string)) end--;
    }
    // A BEGIN line with no key after it (`indexOf("-----BEGIN PRIVATE KEY-----")`, a `...`
    // placeholder in docs) is not a secret.
    if (countKeyMaterial(text, headerEnd, end) >= MIN_KEY_MATERIAL) emit('secret.private_key', m.index, end);
    PEM_BEGIN.lastIndex = end;
  }
}

/** PEM and PGP private key blocks (see findPrivateKeys). */
export const privateKeyDetector: Detector = { priority: 0, gate: (text) => text.includes('-----BEGIN '), find: findPrivateKeys };

// ---------------------------------------------------------------------------------------------
// JWT

const JWT = /(?<![\w\-.])eyJ[\w\-]{8,2048}\.[\w\-]{0,16384}\.[\w\-]{0,16384}(?:\.[\w\-]{1,16384}\.[\w\-]{1,4096})?(?![\w\-]|\.[\w\-])/g;

/** Three parts (JWS) or five (JWE), and a header that is a JSON object with an `alg`. */
function validJwt(value: string): boolean {
  const parts = value.split('.');
  if (parts.length !== 3 && parts.length !== 5) return false;
  if (parts.length === 3 && parts[1] === '') return false;
  try {
    const header: unknown = JSON.parse(Buffer.from(parts[0] as string, 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Token formats with a fixed prefix

const SECRET_PRIORITY = 2;

/** Tokens with a fixed prefix, JWTs, and the AWS and Azure keys that need a keyword nearby. */
export const secretDetectors: readonly Detector[] = [
  regexDetector('secret.aws_access_key', SECRET_PRIORITY, ['AKIA', 'ASIA', 'ABIA', 'ACCA'], [
    /(?<![A-Za-z0-9])A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])/g,
  ]),
  regexDetector(
    'secret.github_token',
    SECRET_PRIORITY,
    ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_'],
    [/(?<![\w\-])gh[pousr]_[A-Za-z0-9]{36,251}(?![\w\-])/g, /(?<![\w\-])github_pat_\w{50,251}(?![\w\-])/g],
  ),
  regexDetector('secret.gitlab_token', SECRET_PRIORITY, ['glpat-', 'gldt-', 'glrt-', 'glptt-', 'glcbt-', 'gloas-'], [
    /(?<![\w\-])(?:glpat|gldt|glrt|glptt|glcbt|gloas)-[\w\-]{20,64}(?:\.[\w\-]{1,32}){0,2}(?![\w\-])/g,
  ]),
  regexDetector(
    'secret.openai_key',
    SECRET_PRIORITY,
    ['sk-'],
    [/(?<![\w\-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[\w\-]{32,256}(?![\w\-])/g],
    (value) => hasUpperLowerDigit(value.slice(3)),
  ),
  regexDetector('secret.anthropic_key', SECRET_PRIORITY, ['sk-ant-'], [/(?<![\w\-])sk-ant-[\w\-]{32,256}(?![\w\-])/g], (value) =>
    hasUpperLowerDigit(value.slice(7)),
  ),
  regexDetector('secret.slack_token', SECRET_PRIORITY, ['xox'], [
    /(?<![\w\-])xox[abposr]-(?:\d{1,2}-)?\d{6,16}-[A-Za-z0-9\-]{6,240}(?![\w\-])/g,
    /(?<![\w\-])xoxe(?:\.xox[bp])?-1-[A-Za-z0-9\-]{40,300}(?![\w\-])/g,
  ]),
  regexDetector('secret.slack_webhook', SECRET_PRIORITY, ['hooks.slack.com'], [
    /(?<![\w\-])(?:https?:\/\/)?hooks\.slack\.com\/services\/T[A-Z0-9]{6,12}\/B[A-Z0-9]{6,12}\/[A-Za-z0-9]{20,32}(?![\w\-])/g,
  ]),
  regexDetector('secret.stripe_key', SECRET_PRIORITY, ['sk_live_', 'rk_live_'], [/(?<![\w\-])[sr]k_live_[A-Za-z0-9]{20,247}(?![\w\-])/g]),
  regexDetector('secret.google_api_key', SECRET_PRIORITY, ['AIza'], [/(?<![\w\-])AIza[\w\-]{35}(?![\w\-])/g]),
  regexDetector('secret.npm_token', SECRET_PRIORITY, ['npm_'], [/(?<![\w\-])npm_[A-Za-z0-9]{36}(?![\w\-])/g]),
  regexDetector('secret.huggingface_token', SECRET_PRIORITY, ['hf_'], [/(?<![\w\-])hf_[A-Za-z]{34}(?![\w\-])/g], (value) =>
    /[A-Z]/.test(value) && /[a-z]/.test(value.slice(3)),
  ),
  regexDetector('secret.sendgrid_key', SECRET_PRIORITY, ['SG.'], [/(?<![\w\-.])SG\.[\w\-]{22}\.[\w\-]{43}(?![\w\-])/g]),
  regexDetector('secret.pypi_token', SECRET_PRIORITY, ['pypi-AgEIcHlwaS5vcmc'], [/(?<![\w\-])pypi-AgEIcHlwaS5vcmc[\w\-]{50,400}(?![\w\-])/g]),
  regexDetector('secret.digitalocean_token', SECRET_PRIORITY, ['_v1_'], [/(?<![\w\-])do[por]_v1_[a-f0-9]{64}(?![\w\-])/g]),
  regexDetector('secret.shopify_token', SECRET_PRIORITY, ['shpat_', 'shpca_', 'shppa_', 'shpss_'], [
    /(?<![\w\-])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![\w\-])/g,
  ]),
  regexDetector('secret.jwt', 1, ['eyJ'], [JWT], validJwt),
  // Keys with no prefix of their own: only next to the words that name them.
  {
    priority: 3,
    gate: (text, facts) => /secret/i.test(text) || /secret/i.test(facts.context),
    find: regexDetector(
      'secret.aws_secret_key',
      3,
      [],
      [/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g],
      // Mixed case and a digit: a 40-character hex SHA-1 next to "secret" is not an AWS key.
      (value, text, start, end, facts) => hasUpperLowerDigit(value) && nearby(text, start, end, facts, AWS_SECRET_CONTEXT, 96, 0),
    ).find,
  },
  {
    priority: 3,
    gate: (text, facts) => text.includes('==') && (/key|azure/i.test(text) || /key|azure/i.test(facts.context)),
    find: regexDetector(
      'secret.azure_storage_key',
      3,
      [],
      [/(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{86}==(?![A-Za-z0-9/+=])/g],
      (_value, text, start, end, facts) => nearby(text, start, end, facts, AZURE_KEY_CONTEXT, 96, 0),
    ).find,
  },
];
