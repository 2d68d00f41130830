/**
 * Host builtins checked against OPA itself.
 *
 * Signalbox re-implements OPA's non-native builtins (time.*, io.jwt.*) in TypeScript, so the
 * reference for "correct" is OPA's own topdown evaluator, i.e. the pinned `opa` CLI. For each
 * table of cases we compile ONE Rego policy whose rule is an object of every builtin result,
 * evaluate it in our WASM engine and with `opa eval`, and compare case by case. A case that
 * differs keeps asserting OPA's value, so the difference shows up as a failing test.
 *
 * Two details make the comparison exact rather than approximately right:
 * - Nanosecond timestamps do not fit in a double. Inputs are sent as raw JSON text (opa-wasm
 *   accepts an ArrayBuffer), the engine side returns `json.marshal(results)` (a string, so
 *   opa-wasm's JSON.parse cannot round it) and both outputs are parsed with unsafe integers kept
 *   as BigInt.
 * - Every call is wrapped as `[x | x := f(...)]`: an erroring builtin is undefined in OPA's
 *   default (non-strict) mode, which shows up as `[]` and keeps the rest of the object defined.
 */
import {
  constants,
  createHmac,
  generateKeyPairSync,
  sign as cryptoSign,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SignalboxError } from '../src/core/errors.js';
import { ENGINE_PROVIDED_BUILTINS, HOST_BUILTINS } from '../src/policy/builtins.js';
import { readBundle } from '../src/bundles/bundle.js';
import { engineCapabilitiesFile, importedBuiltins } from '../src/bundles/capabilities.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { runOpa } from '../src/bundles/opa-cli.js';
import { SDK_BUILTINS } from '../src/policy/sdk-builtins.js';
import { buildTestBundle } from './helpers/bundles.js';
import { parseJsonExact, rawJson, toJsonText, type Json } from './helpers/exact-json.js';

// ---------------------------------------------------------------------------------------------
// Evaluating one policy on both sides.
// ---------------------------------------------------------------------------------------------

/** Compiles `policy` with Signalbox's build (engine capabilities) and loads it in the engine. */
async function ourEngine(policy: string, entrypoint: string): Promise<PolicyEngine> {
  const bundle = await readBundle(await buildTestBundle(policy));
  return PolicyEngine.create(bundle, { entrypoint });
}

/** Evaluates an entrypoint whose value is `json.marshal(...)`, and decodes it exactly. */
function evaluateMarshalled(engine: PolicyEngine, inputText: string, nowNs: bigint): { value: Json; builtinErrors: readonly string[] } {
  const evaluation = engine.evaluate(rawJson(inputText), nowNs);
  expect(evaluation.defined).toBe(true);
  expect(typeof evaluation.result).toBe('string');
  return { value: parseJsonExact(evaluation.result as string), builtinErrors: evaluation.builtinErrors };
}

interface OpaEvalOutput {
  result?: { expressions: { value: Json }[] }[];
}

/** The reference: `opa eval` (topdown, non-strict builtin errors) on the same Rego and input. */
async function opaEval(policy: string, query: string, inputText: string): Promise<Json | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-builtins-'));
  try {
    await writeFile(join(dir, 'policy.rego'), policy);
    await writeFile(join(dir, 'input.json'), inputText);
    const run = await runOpa(['eval', '--format', 'json', '-d', join(dir, 'policy.rego'), '-i', join(dir, 'input.json'), query]);
    if (run.exitCode !== 0) throw new Error(`opa eval failed:\n${run.stdout}${run.stderr}`);
    const output = parseJsonExact(run.stdout) as unknown as OpaEvalOutput;
    return output.result?.[0]?.expressions[0]?.value;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface BuiltinCase {
  /** The OPA builtin called, e.g. "time.date". */
  readonly builtin: string;
  /** Describes the case; unique per builtin. */
  readonly name: string;
  /** Arguments, passed through `input` so neither side can constant-fold the call. */
  readonly args: readonly Json[];
}

const caseKey = (c: BuiltinCase): string => `${c.builtin}: ${c.name}`;

/**
 * One module for a whole table: `results` (queried with opa eval) is an object of every call,
 * each wrapped in an array comprehension, and `results_json` (the WASM entrypoint) marshals it.
 */
function differentialPolicy(pkg: string, cases: readonly BuiltinCase[]): string {
  const entries = cases.map((c, i) => {
    const args = c.args.map((_, j) => `input.cases[${i}][${j}]`).join(', ');
    return `  ${JSON.stringify(caseKey(c))}: [x | x := ${c.builtin}(${args})]`;
  });
  return [`package ${pkg}`, '', 'results := {', entries.join(',\n'), '}', '', '# METADATA', '# entrypoint: true', 'results_json := json.marshal(results)', ''].join('\n');
}

/** Evaluates one table on both sides: our WASM engine at FIXED_NOW_NS, and opa eval. */
async function evaluateBothSides(pkg: string, cases: readonly BuiltinCase[]): Promise<{ ours: Record<string, Json>; reference: Record<string, Json> }> {
  const policy = differentialPolicy(pkg, cases);
  const inputText = toJsonText({ cases: cases.map((c) => [...c.args]) });
  const engine = await ourEngine(policy, `${pkg}/results_json`);
  const ours = evaluateMarshalled(engine, inputText, FIXED_NOW_NS).value as Record<string, Json>;
  const reference = (await opaEval(policy, `data.${pkg}.results`, inputText)) as Record<string, Json>;
  return { ours, reference };
}

// ---------------------------------------------------------------------------------------------
// Fixed instants.
// ---------------------------------------------------------------------------------------------

/** The frozen evaluation time: 2025-11-22T11:52:25.123456789Z, deliberately not a double. */
const FIXED_NOW_NS = 1763812345123456789n;
const FIXED_NOW_S = 1763812345;
const NS_PER_S = 1_000_000_000n;

/** Nanoseconds since the epoch of an ISO instant with at most millisecond precision. */
const ns = (iso: string): bigint => BigInt(Date.parse(iso)) * 1_000_000n;

// ---------------------------------------------------------------------------------------------
// Keys and tokens, all made here with node:crypto so headers can be crafted freely.
// ---------------------------------------------------------------------------------------------

type SigningAlg = 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA' | 'HS256' | 'HS384' | 'HS512';

const HASH_OF: Record<SigningAlg, string | null> = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512',
  PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512',
  EdDSA: null,
  HS256: 'sha256', HS384: 'sha384', HS512: 'sha512',
};

const b64url = (text: string | Buffer): string => Buffer.from(text).toString('base64url');

/** Signs `signingInput` the way JWS `alg` prescribes (ECDSA as raw r||s, PSS with digest-length salt). */
function jwsSignature(alg: SigningAlg, signingInput: string, key: KeyObject | string): Buffer {
  const hash = HASH_OF[alg];
  const data = Buffer.from(signingInput);
  if (alg.startsWith('HS')) {
    if (typeof key !== 'string' || hash === null) throw new Error(`${alg} needs a string secret`);
    return createHmac(hash, key).update(data).digest();
  }
  if (typeof key === 'string') throw new Error(`${alg} needs a private key`);
  if (alg.startsWith('PS')) return cryptoSign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  if (alg.startsWith('ES')) return cryptoSign(hash, data, { key, dsaEncoding: 'ieee-p1363' });
  return cryptoSign(hash, data, key);
}

interface TokenSpec {
  /** Algorithm actually used to sign (may differ from the header's on purpose). */
  readonly alg: SigningAlg;
  readonly key: KeyObject | string;
  /** Header object; defaults to { alg, typ: "JWT" } (plus kid when given). */
  readonly header?: { [key: string]: Json };
  readonly kid?: string;
  readonly payload?: { [key: string]: Json };
  /** Segment text used verbatim instead of encoding `header` / `payload`. */
  readonly rawHeaderSegment?: string;
  readonly rawPayloadSegment?: string;
}

const ISSUER = 'https://issuer.test';
const BASE_CLAIMS: { [key: string]: Json } = { sub: 'alice', iss: ISSUER, iat: FIXED_NOW_S, exp: FIXED_NOW_S + 3600 };

function token(spec: TokenSpec): string {
  const header = spec.header ?? { alg: spec.alg, typ: 'JWT', ...(spec.kid ? { kid: spec.kid } : {}) };
  const h = spec.rawHeaderSegment ?? b64url(toJsonText(header));
  const p = spec.rawPayloadSegment ?? b64url(toJsonText(spec.payload ?? BASE_CLAIMS));
  return `${h}.${p}.${jwsSignature(spec.alg, `${h}.${p}`, spec.key).toString('base64url')}`;
}

interface KeyMaterial {
  readonly privateKey: KeyObject;
  readonly pem: string;
  readonly jwk: JsonWebKey;
}

function keyMaterial(pair: { privateKey: KeyObject; publicKey: KeyObject }, kid: string, alg: string): KeyMaterial {
  return {
    privateKey: pair.privateKey,
    pem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
  };
}

const rsa = keyMaterial(generateKeyPairSync('rsa', { modulusLength: 2048 }), 'rsa-1', 'RS256');
const otherRsa = keyMaterial(generateKeyPairSync('rsa', { modulusLength: 2048 }), 'rsa-1', 'RS256');
const ec256 = keyMaterial(generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ec-1', 'ES256');
const otherEc256 = keyMaterial(generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ec-1', 'ES256');
const ec384 = keyMaterial(generateKeyPairSync('ec', { namedCurve: 'P-384' }), 'ec-384', 'ES384');
const ec521 = keyMaterial(generateKeyPairSync('ec', { namedCurve: 'P-521' }), 'ec-521', 'ES512');
const ed = keyMaterial(generateKeyPairSync('ed25519'), 'ed-1', 'EdDSA');

const SECRET = 'top-secret-hmac-key';
const jwks = (...keys: JsonWebKey[]): string => JSON.stringify({ keys });
const JWKS_ALL = jwks(rsa.jwk, ec256.jwk, ed.jwk);
const JWKS_OTHER = jwks(otherRsa.jwk, otherEc256.jwk);
const { kid: _unusedKid, ...rsaJwkWithoutKid } = rsa.jwk;
/** The RSA key declared for RS384 only (and without kid): OPA skips it for an RS256 token. */
const JWKS_RSA_AS_RS384 = jwks({ ...rsaJwkWithoutKid, alg: 'RS384' });

/** PS256 with the longest salt the key allows (valid RSASSA-PSS, but not RFC 7518's digest-length salt). */
function psWithMaxSalt(): string {
  const h = b64url(toJsonText({ alg: 'PS256', typ: 'JWT' }));
  const p = b64url(toJsonText(BASE_CLAIMS));
  const signature = cryptoSign('sha256', Buffer.from(`${h}.${p}`), { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN });
  return `${h}.${p}.${signature.toString('base64url')}`;
}

/** The RSA key as a private JWK: jwx (decode_verify) uses its public half, OPA's verify_rs256 rejects it. */
const JWKS_RSA_PRIVATE = jwks({ ...rsa.privateKey.export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256' });
/** The HMAC secret as an "oct" JWK: decode_verify's cert may hold symmetric keys too. */
const JWKS_OCT = jwks({ kty: 'oct', k: b64url(SECRET), alg: 'HS256' });

const hs = token({ alg: 'HS256', key: SECRET });
const tokens = {
  hs,
  hsAud: token({ alg: 'HS256', key: SECRET, payload: { ...BASE_CLAIMS, aud: 'signalbox' } }),
  hsAudArray: token({ alg: 'HS256', key: SECRET, payload: { ...BASE_CLAIMS, aud: ['billing', 'signalbox'] } }),
  hsNoIss: token({ alg: 'HS256', key: SECRET, payload: { sub: 'alice', exp: FIXED_NOW_S + 3600 } }),
  hsExpired: token({ alg: 'HS256', key: SECRET, payload: { ...BASE_CLAIMS, exp: FIXED_NOW_S - 10 } }),
  hsNbf: token({ alg: 'HS256', key: SECRET, payload: { ...BASE_CLAIMS, nbf: FIXED_NOW_S + 60 } }),
  hsExpString: token({ alg: 'HS256', key: SECRET, payload: { ...BASE_CLAIMS, exp: 'later' } }),
  hsCrit: token({ alg: 'HS256', key: SECRET, header: { alg: 'HS256', typ: 'JWT', crit: ['x-unknown'], 'x-unknown': 1 } }),
  hsKidNumber: token({ alg: 'HS256', key: SECRET, header: { alg: 'HS256', typ: 'JWT', kid: 7 } }),
  // Nested JWT (RFC 7519 5.2 cty "JWT"): the payload is the inner token itself.
  hsNested: token({ alg: 'HS256', key: SECRET, header: { alg: 'HS256', cty: 'JWT' }, rawPayloadSegment: b64url(hs) }),
  // Signed with HMAC-SHA256 but labelled HS512: io.jwt.verify_hs256 checks the MAC, not the label.
  hsLabelledHs512: token({ alg: 'HS256', key: SECRET, header: { alg: 'HS512', typ: 'JWT' } }),
  // Header segment is not JSON; verify_hs256 never decodes the header in OPA.
  hsHeaderNotJson: token({ alg: 'HS256', key: SECRET, rawHeaderSegment: b64url('not json') }),
  // Padded base64url header (26 bytes of JSON, so one "="): OPA's base64url.decode accepts it.
  hsPadded: token({ alg: 'HS256', key: SECRET, rawHeaderSegment: Buffer.from('{"alg":"HS256","kid":"k1"}').toString('base64').replace(/\+/g, '-').replace(/\//g, '_') }),
  hsBigClaim: token({ alg: 'HS256', key: SECRET, payload: { sub: 'alice', big: 12345678901234567890n } }),
  hs384: token({ alg: 'HS384', key: SECRET }),
  hs512: token({ alg: 'HS512', key: SECRET }),
  rs: token({ alg: 'RS256', key: rsa.privateKey, kid: 'rsa-1' }),
  rsNoKid: token({ alg: 'RS256', key: rsa.privateKey }),
  rsLabelledRs512: token({ alg: 'RS256', key: rsa.privateKey, header: { alg: 'RS512', typ: 'JWT' } }),
  rsAud: token({ alg: 'RS256', key: rsa.privateKey, kid: 'rsa-1', payload: { ...BASE_CLAIMS, aud: ['api', 'signalbox'] } }),
  rs384: token({ alg: 'RS384', key: rsa.privateKey }),
  rs512: token({ alg: 'RS512', key: rsa.privateKey }),
  ps256: token({ alg: 'PS256', key: rsa.privateKey }),
  ps384: token({ alg: 'PS384', key: rsa.privateKey }),
  ps512: token({ alg: 'PS512', key: rsa.privateKey }),
  es: token({ alg: 'ES256', key: ec256.privateKey, kid: 'ec-1' }),
  es384: token({ alg: 'ES384', key: ec384.privateKey }),
  es512: token({ alg: 'ES512', key: ec521.privateKey }),
  ed: token({ alg: 'EdDSA', key: ed.privateKey, kid: 'ed-1' }),
  jwe: token({ alg: 'HS256', key: SECRET, header: { alg: 'RSA-OAEP', enc: 'A256GCM' } }),
  // exp one ns after the fixed instant: a double cannot tell them apart, OPA's decimal compare can.
  hsExpBeyondDouble: token({ alg: 'HS256', key: SECRET, rawPayloadSegment: b64url(`{"sub":"alice","exp":${FIXED_NOW_S}.000000001}`) }),
  // Duplicate member: Go's JSON decoding keeps the last one.
  hsDuplicateClaim: token({ alg: 'HS256', key: SECRET, rawPayloadSegment: b64url('{"sub":"alice","sub":"bob"}') }),
  psMaxSalt: psWithMaxSalt(),
} as const;
/** A structurally fine token whose signature segment is one base64 character (length % 4 == 1). */
const SIGNATURE_ONE_CHAR = `${tokens.hs.split('.').slice(0, 2).join('.')}.A`;

// ---------------------------------------------------------------------------------------------
// The tables.
// ---------------------------------------------------------------------------------------------

const at = (time: bigint): { secret: string; time: bigint } => ({ secret: SECRET, time });
const NOW = FIXED_NOW_NS;
const WHOLE_NOW = ns('2025-11-22T11:52:25Z');

const rfc3339Cases: [string, string][] = [
  ['Z', '2025-11-22T11:52:25Z'],
  ['+05:30 offset', '2025-11-22T17:22:25+05:30'],
  ['-08:00 offset', '2025-11-22T03:52:25-08:00'],
  ['+00:00 offset', '2025-11-22T11:52:25+00:00'],
  ['fraction 1 digit', '2025-11-22T11:52:25.1Z'],
  ['fraction 2 digits', '2025-11-22T11:52:25.12Z'],
  ['fraction 3 digits', '2025-11-22T11:52:25.123Z'],
  ['fraction 4 digits', '2025-11-22T11:52:25.1234Z'],
  ['fraction 5 digits', '2025-11-22T11:52:25.12345Z'],
  ['fraction 6 digits', '2025-11-22T11:52:25.123456Z'],
  ['fraction 7 digits', '2025-11-22T11:52:25.1234567Z'],
  ['fraction 8 digits', '2025-11-22T11:52:25.12345678Z'],
  ['fraction 9 digits', '2025-11-22T11:52:25.123456789Z'],
  ['fraction 9 digits with offset', '2025-11-22T17:22:25.000000001+05:30'],
  ['leap day', '2024-02-29T12:00:00Z'],
  ['before 1970', '1969-07-20T20:17:40Z'],
  ['latest representable instant', '2262-04-11T23:47:16.854775807Z'],
  ['earliest representable instant', '1677-09-21T00:12:43.145224192Z'],
  ['invalid: not a leap year', '2023-02-29T12:00:00Z'],
  ['invalid: empty', ''],
  ['invalid: words', 'not a timestamp'],
  ['invalid: date only', '2025-11-22'],
  ['invalid: no zone', '2025-11-22T11:52:25'],
  ['invalid: space separator', '2025-11-22 11:52:25Z'],
  ['invalid: month 13', '2025-13-01T00:00:00Z'],
  ['invalid: hour 24', '2025-11-22T24:00:00Z'],
  ['invalid: second 60', '2025-11-22T11:52:60Z'],
  ['invalid: offset without colon', '2025-11-22T11:52:25+0530'],
  ['invalid: dot without digits', '2025-11-22T11:52:25.Z'],
  // Go's time.Parse(time.RFC3339, ...) falls back to its general layout parser, which is more
  // lenient than RFC 3339 in these ways, and OPA range-checks the result to int64 nanoseconds.
  ['lowercase t and z (rejected by Go)', '2025-11-22t11:52:25z'],
  ['single-digit hour (accepted by Go)', '2025-11-22T1:52:25Z'],
  ['comma decimal separator (accepted by Go)', '2025-11-22T11:52:25,5Z'],
  ['10 fractional digits (Go truncates to ns)', '2025-11-22T11:52:25.1234567891Z'],
  ['one ns after the int64 range (OPA errors)', '2262-04-11T23:47:16.854775808Z'],
  ['year 3000 (outside int64 ns; OPA errors)', '3000-01-01T00:00:00Z'],
  ['year 0050 (outside int64 ns; OPA errors)', '0050-01-01T00:00:00Z'],
  ['offset +24:00 (Go accepts offset hours up to 24)', '2025-11-22T11:52:25+24:00'],
  ['offset +25:00 (Go rejects)', '2025-11-22T11:52:25+25:00'],
];

const durationCases: [string, string][] = [
  ['1h30m', '1h30m'],
  ['1.5h', '1.5h'],
  ['-300ms', '-300ms'],
  ['2us', '2us'],
  ['2 micro-sign s', '2µs'],
  ['0', '0'],
  ['+5s', '+5s'],
  ['.5s', '.5s'],
  ['1h0m0.000000001s', '1h0m0.000000001s'],
  ['invalid: empty', ''],
  ['invalid: no unit', '1'],
  ['invalid: unknown unit', '1x'],
  ['invalid: unit only', 'h'],
  ['invalid: inner sign', '1h-30m'],
  ['invalid: space', '5 s'],
  // Go's ParseDuration special cases and exact integer arithmetic; OPA adds d, w and y units.
  ['-0', '-0'],
  ['1.5ns (Go truncates the fraction)', '1.5ns'],
  ['-1.5ns (Go truncates the fraction)', '-1.5ns'],
  ['1d (OPA extended unit)', '1d'],
  ['2w1d12h (OPA extended units)', '2w1d12h'],
  ['max int64 exactly', '2562047h47m16.854775807s'],
  ['overflow (Go errors)', '3000000h'],
  ['1.5d (float64 hours)', '1.5d'],
  ['0.1y (float64 hours, as OPA rewrites it)', '0.1y'],
  ['Greek mu with an extended unit (OPA\'s grammar rejects it)', '1d1\u03bcs'],
  ['Greek mu without one (Go accepts it)', '1\u03bcs'],
];

/** Operands of time.date / time.clock / time.weekday. */
const instantOperands: [string, Json][] = [
  ['number', WHOLE_NOW],
  ['[ns, "UTC"]', [WHOLE_NOW, 'UTC']],
  ['[ns, ""] means UTC', [WHOLE_NOW, '']],
  ['[ns, "America/New_York"] winter', [WHOLE_NOW, 'America/New_York']],
  ['[ns, "America/New_York"] summer, previous day', [ns('2025-07-04T03:30:00Z'), 'America/New_York']],
  ['[ns, "America/New_York"] just after the spring-forward gap', [ns('2025-03-09T07:30:00Z'), 'America/New_York']],
  ['[ns, "Asia/Kolkata"] next day', [ns('2025-11-22T20:00:00Z'), 'Asia/Kolkata']],
  ['[ns, "Local"]', [WHOLE_NOW, 'Local']],
  ['leap day', ns('2024-02-29T23:59:59Z')],
  ['negative: one ns before the epoch', -1n],
  ['negative: 1969-07-20T20:17:40Z', ns('1969-07-20T20:17:40Z')],
  ['negative with zone', [ns('1960-01-01T02:00:00Z'), 'America/New_York']],
  ['unknown zone', [WHOLE_NOW, 'Mars/Olympus_Mons']],
  ['string operand', '2025-11-22'],
  ['empty array', []],
  // OPA (tzTime) accepts [ns] and [ns, zone, layout]; needs an exact int64; zone names are Go's.
  ['[ns] without zone', [WHOLE_NOW]],
  ['[ns, "UTC", layout]', [WHOLE_NOW, 'UTC', 'RFC3339']],
  ['lowercase "utc" (not a Go zone name)', [WHOLE_NOW, 'utc']],
  ['lowercase "america/new_york" (not a Go zone name)', [WHOLE_NOW, 'america/new_york']],
  ['non-integer ns (OPA errors)', 1000000000.5],
  ['ns beyond int64 (OPA errors)', 10000000000000000000n],
  ['legacy alias "US/Eastern" (a Go zone name)', [WHOLE_NOW, 'US/Eastern']],
  ['IANA name ICU treats as an alias ("Asia/Kolkata")', [ns('2025-11-22T20:00:00Z'), 'Asia/Kolkata']],
];

const addDateCases: [string, Json[]][] = [
  ['Jan 31 2023 + 1 month', [ns('2023-01-31T10:00:00Z'), 0, 1, 0]],
  ['Jan 31 2024 + 1 month (leap year)', [ns('2024-01-31T10:00:00Z'), 0, 1, 0]],
  ['Feb 29 2024 + 1 year', [ns('2024-02-29T00:00:00Z'), 1, 0, 0]],
  ['Feb 29 2024 - 1 year', [ns('2024-02-29T00:00:00Z'), -1, 0, 0]],
  ['Feb 29 2024 + 4 years', [ns('2024-02-29T00:00:00Z'), 4, 0, 0]],
  ['Mar 31 2025 - 1 month', [ns('2025-03-31T00:00:00Z'), 0, -1, 0]],
  ['Jan 1 2024 - 1 day', [ns('2024-01-01T00:00:00Z'), 0, 0, -1]],
  ['epoch - 1 year', [0, -1, 0, 0]],
  ['epoch - 1 day', [0, 0, 0, -1]],
  ['mixed signs', [WHOLE_NOW, 1, -13, 400]],
  ['zero change', [WHOLE_NOW, 0, 0, 0]],
  ['sub-millisecond ns kept', [1000000001, 0, 1, 0]],
  ['non-number ns', ['2025-11-22', 0, 0, 1]],
  // OPA range-checks the result and needs integer counts.
  ['result beyond int64 ns (OPA errors)', [0, 300, 0, 0]],
  ['fractional years (OPA errors)', [0, 1.5, 0, 0]],
  // The first operand may carry a zone (OPA's tzTime); Go's time.Date resolves DST gaps.
  ['[ns, zone]: noon to noon across the spring-forward gap (23 h)', [[ns('2025-03-08T17:00:00Z'), 'America/New_York'], 0, 0, 1]],
  ['[ns, zone]: onto 02:30, inside the gap', [[ns('2025-03-08T07:30:00Z'), 'America/New_York'], 0, 0, 1]],
  ['[ns, zone]: month end in a zone ahead of UTC', [[ns('2025-01-31T20:00:00Z'), 'Asia/Kolkata'], 0, 1, 0]],
];

const diffCases: [string, Json, Json][] = [
  ['same instant', WHOLE_NOW, WHOLE_NOW],
  ['years to seconds, earlier first', ns('2024-01-15T10:00:00Z'), ns('2025-03-10T08:30:15Z')],
  ['years to seconds, later first', ns('2025-03-10T08:30:15Z'), ns('2024-01-15T10:00:00Z')],
  ['Jan 31 to Feb 29 2024', ns('2024-01-31T00:00:00Z'), ns('2024-02-29T00:00:00Z')],
  ['one second across new year', ns('2023-12-31T23:59:59Z'), ns('2024-01-01T00:00:00Z')],
  ['sub-second apart across the epoch', -1n, 0],
  ['before 1970', ns('1960-02-29T00:00:00Z'), ns('1970-01-01T00:00:00Z')],
  ['same zone operands', [ns('2025-01-31T12:00:00Z'), 'America/New_York'], [ns('2025-02-28T12:00:00Z'), 'America/New_York']],
  ['unknown zone', [WHOLE_NOW, 'Nowhere/Special'], WHOLE_NOW],
  // Day borrow: Go (icza/gox) borrows the length of the EARLIER instant's month.
  ['day borrow Jan 31 -> Mar 1 2023', ns('2023-01-31T00:00:00Z'), ns('2023-03-01T00:00:00Z')],
  ['day borrow Mar 1 -> Jan 31 2023 (reversed)', ns('2023-03-01T00:00:00Z'), ns('2023-01-31T00:00:00Z')],
  ['day borrow Mar 31 -> May 1 2025', ns('2025-03-31T00:00:00Z'), ns('2025-05-01T00:00:00Z')],
  ['day borrow Dec 31 -> Mar 1', ns('2024-12-31T00:00:00Z'), ns('2025-03-01T00:00:00Z')],
  // Go converts the second operand into the first one's zone before comparing.
  ['same instant in UTC and Asia/Kolkata', [WHOLE_NOW, 'UTC'], [WHOLE_NOW, 'Asia/Kolkata']],
  // Jan 31 20:00 UTC -> Feb 28 20:00 UTC is 28 days; in Asia/Kolkata it is Feb 1 -> Mar 1, a month.
  ['first operand\'s zone decides the calendar (Asia/Kolkata first)', [ns('2025-01-31T20:00:00Z'), 'Asia/Kolkata'], ns('2025-02-28T20:00:00Z')],
  ['first operand\'s zone decides the calendar (UTC first)', ns('2025-01-31T20:00:00Z'), [ns('2025-02-28T20:00:00Z'), 'Asia/Kolkata']],
];

const decodeVerifyCases: [string, Json, Json][] = [
  ['HS256 valid', tokens.hs, at(NOW)],
  ['HS256 wrong secret', tokens.hs, { secret: 'wrong', time: NOW }],
  ['HS256 expired', tokens.hsExpired, at(NOW)],
  ['HS256 at exactly exp is expired', tokens.hs, at(BigInt(FIXED_NOW_S + 3600) * NS_PER_S)],
  ['HS256 one second before exp', tokens.hs, at(BigInt(FIXED_NOW_S + 3599) * NS_PER_S)],
  ['HS256 nbf in the future', tokens.hsNbf, at(NOW)],
  ['HS256 nbf passed', tokens.hsNbf, at(NOW + 120n * NS_PER_S)],
  ['HS256 iss matches', tokens.hs, { ...at(NOW), iss: ISSUER }],
  ['HS256 iss mismatch', tokens.hs, { ...at(NOW), iss: 'https://evil.test' }],
  ['HS256 iss constraint, token without iss', tokens.hsNoIss, { ...at(NOW), iss: ISSUER }],
  ['HS256 token aud without aud constraint', tokens.hsAud, at(NOW)],
  ['HS256 aud constraint matches string', tokens.hsAud, { ...at(NOW), aud: 'signalbox' }],
  ['HS256 aud constraint matches array element', tokens.hsAudArray, { ...at(NOW), aud: 'signalbox' }],
  ['HS256 aud constraint not in array', tokens.hsAudArray, { ...at(NOW), aud: 'other' }],
  ['HS256 aud constraint, token without aud', tokens.hs, { ...at(NOW), aud: 'signalbox' }],
  ['HS256 alg constraint matches', tokens.hs, { ...at(NOW), alg: 'HS256' }],
  ['HS256 alg constraint mismatch', tokens.hs, { ...at(NOW), alg: 'HS512' }],
  ['HS384 valid', tokens.hs384, at(NOW)],
  ['HS512 valid', tokens.hs512, at(NOW)],
  ['unknown constraint', tokens.hs, { ...at(NOW), foo: 'bar' }],
  ['cert and secret together', tokens.hs, { ...at(NOW), cert: rsa.pem }],
  ['no key constraint', tokens.hs, { time: NOW }],
  ['constraints not an object', tokens.hs, 'secret'],
  ['garbage token', 'not-a-jwt', at(NOW)],
  ['RS256 token verified with a secret', tokens.rs, at(NOW)],
  ['HS256 token verified with a cert', tokens.hs, { cert: rsa.pem, time: NOW }],
  ['RS256 cert as JWKS', tokens.rs, { cert: JWKS_ALL, time: NOW }],
  ['RS256 cert as PEM public key', tokens.rs, { cert: rsa.pem, time: NOW }],
  ['RS256 cert as JWKS of other keys', tokens.rs, { cert: JWKS_OTHER, time: NOW }],
  ['RS256 alg constraint mismatch', tokens.rs, { cert: rsa.pem, time: NOW, alg: 'RS512' }],
  ['RS256 aud array with JWKS', tokens.rsAud, { cert: JWKS_ALL, time: NOW, aud: 'signalbox', iss: ISSUER }],
  ['RS256 cert garbage', tokens.rs, { cert: 'not a key', time: NOW }],
  ['PS256 cert as PEM', tokens.ps256, { cert: rsa.pem, time: NOW }],
  ['ES256 cert as JWKS', tokens.es, { cert: JWKS_ALL, time: NOW }],
  ['ES256 cert as PEM public key', tokens.es, { cert: ec256.pem, time: NOW }],
  ['ES256 cert as JWKS of other keys', tokens.es, { cert: JWKS_OTHER, time: NOW }],
  ['ES256 alg constraint mismatch', tokens.es, { cert: ec256.pem, time: NOW, alg: 'ES384' }],
  ['ES512 cert as PEM', tokens.es512, { cert: ec521.pem, time: NOW }],
  ['EdDSA cert as JWKS', tokens.ed, { cert: JWKS_ALL, time: NOW }],
  ['EdDSA cert as PEM public key', tokens.ed, { cert: ed.pem, time: NOW }],
  ['EdDSA cert as a single JWK', tokens.ed, { cert: JSON.stringify(ed.jwk), time: NOW }],
  ['EdDSA alg constraint mismatch', tokens.ed, { cert: ed.pem, time: NOW, alg: 'ES256' }],
  // OPA treats "" string constraints as absent, validates constraint types, honours crit and
  // nested (cty: JWT) tokens, and skips JWKS keys whose declared alg differs from the token's.
  ['empty secret is no key constraint', tokens.hs, { secret: '', time: NOW }],
  ['empty iss constraint means any issuer', tokens.hs, { ...at(NOW), iss: '' }],
  ['empty aud constraint, token without aud', tokens.hs, { ...at(NOW), aud: '' }],
  ['empty alg constraint means any alg', tokens.hs, { ...at(NOW), alg: '' }],
  ['time constraint not a number', tokens.hs, { secret: SECRET, time: 'now' }],
  ['negative time constraint', tokens.hs, { secret: SECRET, time: -1 }],
  ['exp claim not a number', tokens.hsExpString, at(NOW)],
  ['crit names an unknown header', tokens.hsCrit, at(NOW)],
  ['kid header not a string', tokens.hsKidNumber, at(NOW)],
  ['nested JWT (cty: JWT)', tokens.hsNested, at(NOW)],
  ['JWKS key declared for another alg', tokens.rsNoKid, { cert: JWKS_RSA_AS_RS384, time: NOW }],
  ['exp one ns after the time constraint, compared exactly', tokens.hsExpBeyondDouble, at(BigInt(FIXED_NOW_S) * NS_PER_S)],
  ['PS256 with a maximal salt (jwx wants a digest-length salt)', tokens.psMaxSalt, { cert: rsa.pem, time: NOW }],
  ['private JWK as cert (jwx uses its public half)', tokens.rs, { cert: JWKS_RSA_PRIVATE, time: NOW }],
  ['oct JWK as cert verifies HS256', tokens.hs, { cert: JWKS_OCT, time: NOW }],
  ['PEM followed by a blank line (Go: extra data)', tokens.rs, { cert: `${rsa.pem}\n`, time: NOW }],
];

const verifyCases: [string, string, Json, Json][] = [
  ['io.jwt.verify_rs256', 'PEM, valid', tokens.rs, rsa.pem],
  ['io.jwt.verify_rs256', 'JWKS, valid', tokens.rs, JWKS_ALL],
  ['io.jwt.verify_rs256', 'single JWK, valid', tokens.rs, JSON.stringify(rsa.jwk)],
  ['io.jwt.verify_rs256', 'other key', tokens.rs, otherRsa.pem],
  ['io.jwt.verify_rs256', 'JWKS of other keys', tokens.rs, JWKS_OTHER],
  ['io.jwt.verify_rs256', 'PS256 token', tokens.ps256, rsa.pem],
  ['io.jwt.verify_rs256', 'HS256 token', tokens.hs, rsa.pem],
  ['io.jwt.verify_rs256', 'garbage token', 'not-a-jwt', rsa.pem],
  ['io.jwt.verify_rs256', 'garbage key', tokens.rs, 'not a key'],
  ['io.jwt.verify_rs256', 'header labelled RS512, RS256 signature (OPA checks the signature only)', tokens.rsLabelledRs512, rsa.pem],
  ['io.jwt.verify_rs256', 'JWKS key declared RS384 (OPA skips it)', tokens.rsNoKid, JWKS_RSA_AS_RS384],
  ['io.jwt.verify_rs256', 'private JWK (OPA wants a public key)', tokens.rs, JWKS_RSA_PRIVATE],
  ['io.jwt.verify_rs256', 'PEM followed by a blank line (Go: extra data)', tokens.rs, `${rsa.pem}\n`],
  ['io.jwt.verify_rs384', 'PEM, valid', tokens.rs384, rsa.pem],
  ['io.jwt.verify_rs512', 'PEM, valid', tokens.rs512, rsa.pem],
  ['io.jwt.verify_ps256', 'PEM, valid', tokens.ps256, rsa.pem],
  ['io.jwt.verify_ps256', 'RS256 token', tokens.rs, rsa.pem],
  ['io.jwt.verify_ps256', 'maximal salt (Go auto-detects the salt length)', tokens.psMaxSalt, rsa.pem],
  ['io.jwt.verify_ps384', 'PEM, valid', tokens.ps384, rsa.pem],
  ['io.jwt.verify_ps512', 'PEM, valid', tokens.ps512, rsa.pem],
  ['io.jwt.verify_es256', 'PEM, valid', tokens.es, ec256.pem],
  ['io.jwt.verify_es256', 'JWKS, valid', tokens.es, JWKS_ALL],
  ['io.jwt.verify_es256', 'other key', tokens.es, otherEc256.pem],
  ['io.jwt.verify_es256', 'RSA key', tokens.es, rsa.pem],
  ['io.jwt.verify_es384', 'PEM, valid', tokens.es384, ec384.pem],
  ['io.jwt.verify_es512', 'PEM, valid', tokens.es512, ec521.pem],
  ['io.jwt.verify_eddsa', 'PEM, valid', tokens.ed, ed.pem],
  ['io.jwt.verify_eddsa', 'single JWK, valid', tokens.ed, JSON.stringify(ed.jwk)],
  ['io.jwt.verify_eddsa', 'RSA key', tokens.ed, rsa.pem],
  ['io.jwt.verify_hs256', 'valid', tokens.hs, SECRET],
  ['io.jwt.verify_hs256', 'wrong secret', tokens.hs, 'wrong'],
  ['io.jwt.verify_hs256', 'RS256 token', tokens.rs, SECRET],
  ['io.jwt.verify_hs256', 'garbage token', 'not-a-jwt', SECRET],
  ['io.jwt.verify_hs256', 'header labelled HS512, HS256 MAC (OPA checks the MAC only)', tokens.hsLabelledHs512, SECRET],
  ['io.jwt.verify_hs256', 'header not JSON, valid MAC (OPA never decodes the header)', tokens.hsHeaderNotJson, SECRET],
  ['io.jwt.verify_hs384', 'valid', tokens.hs384, SECRET],
  ['io.jwt.verify_hs512', 'valid', tokens.hs512, SECRET],
  ['io.jwt.verify_hs512', 'HS256 token', tokens.hs, SECRET],
];

const decodeCases: [string, Json][] = [
  ['HS256 token', tokens.hs],
  ['RS256 token with kid', tokens.rs],
  ['EdDSA token', tokens.ed],
  ['garbage', 'not-a-jwt'],
  ['two segments', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0'],
  ['segments not base64 JSON', 'a.b.c'],
  ['payload not an object', `${b64url('{"alg":"HS256"}')}.${b64url('[1,2]')}.`],
  ['empty signature', `${b64url('{"alg":"none"}')}.${b64url('{"sub":"a"}')}.`],
  ['number operand', 42],
  // OPA: base64url with or without padding, strict length, JWE rejected, nested tokens, exact numbers.
  ['padded base64url header', tokens.hsPadded],
  ['signature segment of one character', SIGNATURE_ONE_CHAR],
  ['JWE header (enc)', tokens.jwe],
  ['nested JWT (cty: JWT)', tokens.hsNested],
  ['claim beyond 2^53', tokens.hsBigClaim],
  ['duplicate claim (the last wins)', tokens.hsDuplicateClaim],
];

/** time.format: Go layouts, OPA's layout constants and zones (the ns keeps all nine digits). */
const formatLayouts: [string, string][] = [
  ['RFC3339Nano by default', ''],
  ['RFC1123', 'RFC1123'],
  ['RFC1123Z', 'RFC1123Z'],
  ['RFC850', 'RFC850'],
  ['UnixDate', 'UnixDate'],
  ['ANSIC (underscore day)', 'ANSIC'],
  ['RubyDate', 'RubyDate'],
  ['Kitchen-style 12-hour clock', '3:04PM, Monday January 2'],
  ['fractions .000 and .999', '15:04:05.000 15:04:05.999 15:04:05,000000'],
  ['year day and short zone', '2006 002 __2 -07 Z07'],
  ['offset with seconds', '-07:00:00 Z070000 pm'],
  ['literal text only', 'hello'],
];
/** Zones for each layout: abbreviations ("MST") come from the host's tz database files, as in Go. */
const formatZones = (layout: string): string[] => (['RFC1123', 'RFC850', 'UnixDate'].includes(layout) ? ['UTC', 'America/New_York', 'America/Sao_Paulo', 'Asia/Kolkata', 'Europe/Paris', 'Asia/Tokyo'] : ['UTC', 'America/New_York', 'Asia/Kolkata']);
const formatCases: BuiltinCase[] = [
  ...formatLayouts.flatMap(([name, layout]) =>
    formatZones(layout).map((zone) => ({ builtin: 'time.format', name: `${name}, ${zone}`, args: [layout === '' ? [FIXED_NOW_NS, zone] : [FIXED_NOW_NS, zone, layout]] })),
  ),
  // Summer time, and a date past the last transition of the tz files (their footer rule decides).
  ...['Europe/Paris', 'America/New_York', 'Australia/Sydney'].flatMap((zone) => [
    { builtin: 'time.format', name: `MST in July, ${zone}`, args: [[ns('2025-07-01T12:00:00Z'), zone, 'MST -0700']] },
    { builtin: 'time.format', name: `MST in 2100, ${zone}`, args: [[ns('2100-07-01T12:00:00Z'), zone, 'MST -0700']] },
  ]),
];

/** time.parse_ns: Go's time.Parse, successes and errors. */
const parseNsCases: [string, string, string][] = [
  ['date only', '2006-01-02', '2025-11-22'],
  ['RFC3339 constant with offset', 'RFC3339', '2025-11-22T11:52:25+05:30'],
  ['fraction not in the layout', '2006-01-02 15:04:05', '2025-11-22 11:52:25.123456789'],
  ['.999 layout, more digits given', '15:04:05.999 2006-01-02', '11:52:25.1234567891 2025-11-22'],
  ['12-hour clock PM', '01/02/06 3:04PM', '11/22/25 11:52PM'],
  ['12-hour clock 12AM is midnight', '01/02/06 3:04PM', '11/22/25 12:05AM'],
  ['month and weekday names, any case', 'Monday, January 2 2006', 'saturday, NOVEMBER 22 2025'],
  ['zone abbreviation without offset', 'RFC1123', 'Sat, 22 Nov 2025 11:52:25 PST'],
  ['GMT with hours', 'RFC1123', 'Sat, 22 Nov 2025 11:52:25 GMT+3'],
  ['year day', '2006 002', '2024 366'],
  ['spaces in the layout match runs of spaces', '2006 01 02', '2025   11 22'],
  ['error: day out of range', '2006-01-02', '2025-02-29'],
  ['error: month out of range', '2006-01-02', '2025-13-01'],
  ['error: extra text', '2006-01-02', '2025-11-22T'],
  ['error: text does not match', '2006-01-02', '2025/11/22'],
  ['error: offset hour out of range', '2006-01-02 -0700', '2025-11-22 +2500'],
  ['error: year day does not match month', '2006-01-02 002', '2025-11-22 001'],
];

/** io.jwt.encode_sign(_raw): deterministic algorithms only (ECDSA and PSS signatures are randomised). */
const hmacJwk = { kty: 'oct', k: Buffer.from(SECRET).toString('base64url') };
const encodeSignCases: BuiltinCase[] = [
  { builtin: 'io.jwt.encode_sign', name: 'HS256, keys sorted and HTML escaped', args: [{ typ: 'JWT', alg: 'HS256' }, { sub: 'a<b>&c', n: 12345678901234567890n, f: 1.5, nested: { z: 1, a: [true, null] } }, hmacJwk] },
  { builtin: 'io.jwt.encode_sign', name: 'HS512 with a JWK Set', args: [{ alg: 'HS512' }, { sub: 'alice' }, { keys: [hmacJwk] }] },
  { builtin: 'io.jwt.encode_sign', name: 'RS256 with a private RSA JWK', args: [{ alg: 'RS256', kid: 'rsa-1' }, BASE_CLAIMS, rsa.privateKey.export({ format: 'jwk' }) as { [key: string]: Json }] },
  { builtin: 'io.jwt.encode_sign', name: 'EdDSA with a private OKP JWK', args: [{ alg: 'EdDSA' }, BASE_CLAIMS, ed.privateKey.export({ format: 'jwk' }) as { [key: string]: Json }] },
  { builtin: 'io.jwt.encode_sign', name: 'error: unknown algorithm', args: [{ alg: 'none' }, BASE_CLAIMS, hmacJwk] },
  { builtin: 'io.jwt.encode_sign', name: 'error: no alg', args: [{ typ: 'JWT' }, BASE_CLAIMS, hmacJwk] },
  { builtin: 'io.jwt.encode_sign', name: 'error: empty JWK Set', args: [{ alg: 'HS256' }, BASE_CLAIMS, { keys: [] }] },
  { builtin: 'io.jwt.encode_sign_raw', name: 'raw texts kept as they are', args: ['{"alg":"HS256", "typ":"JWT"}', '{ "sub": "alice" }', JSON.stringify(hmacJwk)] },
  { builtin: 'io.jwt.encode_sign_raw', name: 'non-JSON payload with a non-JWT typ', args: ['{"alg":"HS256","typ":"text"}', 'hello', JSON.stringify(hmacJwk)] },
  { builtin: 'io.jwt.encode_sign_raw', name: 'error: non-JSON payload of a JWT', args: ['{"alg":"HS256"}', 'hello', JSON.stringify(hmacJwk)] },
];

const differentialCases: BuiltinCase[] = [
  ...formatCases,
  ...parseNsCases.map(([name, layout, value]) => ({ builtin: 'time.parse_ns', name, args: [layout, value] })),
  ...encodeSignCases,
  ...['hello', '', 'a?b>c~', '\u00e9t\u00e9'].map((text) => ({ builtin: 'base64url.encode_no_pad', name: JSON.stringify(text), args: [text] })),
  ...rfc3339Cases.map(([name, text]) => ({ builtin: 'time.parse_rfc3339_ns', name, args: [text] })),
  ...durationCases.map(([name, text]) => ({ builtin: 'time.parse_duration_ns', name, args: [text] })),
  ...['time.date', 'time.clock', 'time.weekday'].flatMap((builtin) => instantOperands.map(([name, operand]) => ({ builtin, name, args: [operand] }))),
  ...addDateCases.map(([name, args]) => ({ builtin: 'time.add_date', name, args })),
  ...diffCases.map(([name, a, b]) => ({ builtin: 'time.diff', name, args: [a, b] })),
  ...decodeCases.map(([name, jwt]) => ({ builtin: 'io.jwt.decode', name, args: [jwt] })),
  ...decodeVerifyCases.map(([name, jwt, constraints]) => ({ builtin: 'io.jwt.decode_verify', name, args: [jwt, constraints] })),
  ...verifyCases.map(([builtin, name, jwt, key]) => ({ builtin, name, args: [jwt, key] })),
];

// ---------------------------------------------------------------------------------------------
// The differential run.
// ---------------------------------------------------------------------------------------------

describe('host builtins agree with OPA topdown (opa eval) on a table of cases', () => {
  let ours: Record<string, Json>;
  let reference: Record<string, Json>;

  beforeAll(async () => {
    ({ ours, reference } = await evaluateBothSides('signalbox_builtins_diff', differentialCases));
  });

  it('has unique case names', () => {
    expect(new Set(differentialCases.map(caseKey)).size).toBe(differentialCases.length);
  });

  it('evaluates every case on both sides (sanity checks on the harness itself)', () => {
    expect(Object.keys(ours).sort()).toEqual(differentialCases.map(caseKey).sort());
    expect(Object.keys(reference).sort()).toEqual(differentialCases.map(caseKey).sort());
    // Known anchors, so the comparison cannot pass vacuously (e.g. with input lost on both sides).
    expect(reference['time.parse_rfc3339_ns: fraction 9 digits']).toEqual([FIXED_NOW_NS]);
    expect(reference['time.date: number']).toEqual([[2025, 11, 22]]);
    expect(reference['io.jwt.verify_hs256: valid']).toEqual([true]);
    expect(tokens.hsPadded.split('.')[0]).toMatch(/=$/);
    expect(reference['io.jwt.decode_verify: RS256 cert as JWKS']).toEqual([[true, { alg: 'RS256', kid: 'rsa-1', typ: 'JWT' }, BASE_CLAIMS]]);
  });

  for (const builtin of [...new Set(differentialCases.map((c) => c.builtin))]) {
    describe(builtin, () => {
      for (const c of differentialCases.filter((x) => x.builtin === builtin)) {
        it(c.name, () => {
          // `[]` is undefined (an error in OPA's non-strict mode), `[v]` is the value v.
          expect(ours[caseKey(c)], `Signalbox (received) vs OPA ${c.builtin} (expected) for args ${toJsonText([...c.args]).slice(0, 300)}`).toEqual(reference[caseKey(c)]);
        });
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Integer ARGUMENTS beyond 2^53 (exact-arguments.ts).
// ---------------------------------------------------------------------------------------------

/**
 * opa-wasm hands builtin arguments to the host through JSON.parse, which rounds an integer beyond
 * 2^53 (any nanosecond timestamp after 1970-04-15) to the nearest double: by up to 128 ns for
 * today's instants, 512 ns anywhere in int64. Signalbox reads such arguments again from their
 * exact text, so every builtin taking nanoseconds agrees with OPA to the nanosecond.
 *
 * The instants are chosen so that the rounded double gives a different answer in OPA itself
 * (checked below against `opa eval` on the double): without the exact reading these cases fail.
 */
const precisionInstants: readonly (readonly [string, bigint])[] = [
  // Rounds to 1763812346000000000: a second later on the clock.
  ['last ns of a second', 1763812345999999999n],
  // 2025-11-21T23:59:59.999999999Z rounds to midnight: the next day, and the next weekday.
  ['last ns before midnight', 1763769599999999999n],
  // Rounds to ...768, 21 ns earlier.
  ['the fixed instant', FIXED_NOW_NS],
  // The largest int64 rounds to 2^63, outside int64: a double would make every call an error.
  ['the largest int64', 2n ** 63n - 1n],
];

/** What opa-wasm's JSON.parse makes of an integer argument. */
const asDouble = (value: bigint): bigint => BigInt(Number(value));

/** Every builtin taking a nanosecond argument, called with `at`. */
function nanosecondArgumentCases(label: string, at: bigint): BuiltinCase[] {
  return [
    { builtin: 'time.clock', name: label, args: [at] },
    { builtin: 'time.date', name: label, args: [at] },
    { builtin: 'time.weekday', name: label, args: [at] },
    { builtin: 'time.clock', name: `${label}, in America/New_York`, args: [[at, 'America/New_York']] },
    { builtin: 'time.format', name: label, args: [at] },
    { builtin: 'time.add_date', name: label, args: [at, 0, 0, -1] },
    { builtin: 'time.diff', name: label, args: [at, WHOLE_NOW] },
  ];
}

describe('integer arguments beyond 2^53 reach host builtins exactly', () => {
  const instants = precisionInstants.map(([label, at]) => ({
    at,
    sent: nanosecondArgumentCases(label, at),
    /** Evaluated by OPA only: what the builtins would be given if JSON.parse's double were used. */
    asDouble: nanosecondArgumentCases(`${label}, as the double JSON.parse makes of it`, asDouble(at)),
  }));
  let ours: Record<string, Json>;
  let reference: Record<string, Json>;

  beforeAll(async () => {
    const cases = instants.flatMap((i) => [...i.sent, ...i.asDouble]);
    ({ ours, reference } = await evaluateBothSides('signalbox_builtins_precision', cases));
  });

  it("gives exactly OPA's results for nanosecond arguments that are not doubles", () => {
    for (const { at, sent } of instants) {
      expect(asDouble(at)).not.toBe(at);
      for (const c of sent) expect(ours[caseKey(c)], caseKey(c)).toEqual(reference[caseKey(c)]);
    }
  });

  it('uses instants whose double gives another answer in OPA (so the test above is meaningful)', () => {
    const differs = (label: string, builtin: string): boolean => {
      const { sent, asDouble: rounded } = instants.find((i) => i.sent[0]?.name === label) as (typeof instants)[number];
      const index = sent.findIndex((c) => c.builtin === builtin);
      return JSON.stringify(reference[caseKey(sent[index] as BuiltinCase)], jsonBigint) !== JSON.stringify(reference[caseKey(rounded[index] as BuiltinCase)], jsonBigint);
    };
    expect(differs('last ns of a second', 'time.clock')).toBe(true);
    expect(differs('last ns before midnight', 'time.date')).toBe(true);
    expect(differs('last ns before midnight', 'time.weekday')).toBe(true);
    expect(differs('the fixed instant', 'time.add_date')).toBe(true);
    expect(differs('the fixed instant', 'time.format')).toBe(true);
    expect(differs('the largest int64', 'time.date')).toBe(true);
    expect(reference['time.clock: last ns of a second']).toEqual([[11, 52, 25]]);
    expect(reference['time.add_date: the fixed instant']).toEqual([FIXED_NOW_NS - 86_400n * NS_PER_S]);
  });
});

/** JSON.stringify replacer for BigInt values. */
const jsonBigint = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

// ---------------------------------------------------------------------------------------------
// time.now_ns and the evaluation clock.
// ---------------------------------------------------------------------------------------------

describe('time.now_ns is the frozen evaluation instant', () => {
  const policy = `package signalbox_now

first := time.now_ns()

second := time.now_ns()

# METADATA
# entrypoint: true
observed := json.marshal({
  "now": time.now_ns(),
  "equals_literal": time.now_ns() == ${FIXED_NOW_NS},
  "equals_input": time.now_ns() == input.expected,
  "same_within_query": first == second,
  "sub_second_ns": first % 1000000000,
  "equals_parsed_rfc3339": first == time.parse_rfc3339_ns(input.iso),
})
`;
  let engine: PolicyEngine;
  beforeAll(async () => {
    engine = await ourEngine(policy, 'signalbox_now/observed');
  });

  it('returns exactly the nowNs passed to evaluate, with every nanosecond intact', () => {
    // The expected instant is sent as a raw JSON number; a JS number would round it to ...768.
    const input = toJsonText({ expected: FIXED_NOW_NS, iso: '2025-11-22T11:52:25.123456789Z' });
    const { value, builtinErrors } = evaluateMarshalled(engine, input, FIXED_NOW_NS);
    expect(builtinErrors).toEqual([]);
    expect(value).toEqual({
      now: FIXED_NOW_NS,
      equals_literal: true,
      equals_input: true,
      same_within_query: true,
      sub_second_ns: 123456789,
      equals_parsed_rfc3339: true,
    });
  });

  it('follows the nowNs of each evaluation rather than the wall clock', () => {
    const input = toJsonText({ expected: 0, iso: '1970-01-01T00:00:00Z' });
    expect(evaluateMarshalled(engine, input, 1n).value).toMatchObject({ now: 1, equals_literal: false, equals_input: false, sub_second_ns: 1 });
    expect(evaluateMarshalled(engine, input, 0n).value).toMatchObject({ now: 0, equals_input: true, equals_parsed_rfc3339: true });
    expect(evaluateMarshalled(engine, input, -5n).value).toMatchObject({ now: -5, same_within_query: true });
  });

  it('is fixed for a whole query in OPA as well (the reference for "frozen per evaluation")', async () => {
    const reference = await opaEval(policy, 'data.signalbox_now.first == data.signalbox_now.second', '{}');
    expect(reference).toBe(true);
  });
});

describe('io.jwt.decode_verify without a time constraint uses the frozen evaluation instant', () => {
  // Both tokens straddle FIXED_NOW + 60 s: one expires then, the other becomes valid then.
  const expiresSoon = token({ alg: 'HS256', key: SECRET, payload: { sub: 'alice', exp: FIXED_NOW_S + 60 } });
  const notBeforeSoon = token({ alg: 'HS256', key: SECRET, payload: { sub: 'alice', nbf: FIXED_NOW_S + 60, exp: FIXED_NOW_S + 3600 } });
  const policy = `package signalbox_dv_now

# METADATA
# entrypoint: true
verdicts := json.marshal({
  "expires_soon": [v | [v, _, _] := io.jwt.decode_verify(input.expires_soon, input.constraints)],
  "not_before_soon": [v | [v, _, _] := io.jwt.decode_verify(input.not_before_soon, input.constraints)],
})
`;
  let engine: PolicyEngine;
  beforeAll(async () => {
    engine = await ourEngine(policy, 'signalbox_dv_now/verdicts');
  });

  for (const [label, instant] of [
    ['at the frozen instant', FIXED_NOW_NS],
    ['two minutes later', FIXED_NOW_NS + 120n * NS_PER_S],
  ] as const) {
    it(`matches OPA given the same instant as its time constraint (${label})`, async () => {
      const ourInput = toJsonText({ expires_soon: expiresSoon, not_before_soon: notBeforeSoon, constraints: { secret: SECRET } });
      const ourValue = evaluateMarshalled(engine, ourInput, instant).value;
      // opa eval has no clock flag: hand it the same instant explicitly.
      const refInput = toJsonText({ expires_soon: expiresSoon, not_before_soon: notBeforeSoon, constraints: { secret: SECRET, time: instant } });
      const reference = parseJsonExact(
        (await opaEval(policy, 'data.signalbox_dv_now.verdicts', refInput)) as string,
      );
      expect(ourValue).toEqual(reference);
      expect(ourValue).toEqual(instant === FIXED_NOW_NS ? { expires_soon: [true], not_before_soon: [false] } : { expires_soon: [false], not_before_soon: [true] });
    });
  }
});

// ---------------------------------------------------------------------------------------------
// The engine's builtin inventory.
// ---------------------------------------------------------------------------------------------

describe('builtin inventory', () => {
  it('SDK_BUILTINS lists exactly the builtins the installed opa-wasm implements in JavaScript', () => {
    // The package's exports map hides src/builtins, so load it by absolute path.
    const require = createRequire(import.meta.url);
    const sdkEntry = require.resolve('@open-policy-agent/opa-wasm');
    const sdkBuiltins = require(join(dirname(sdkEntry), 'builtins', 'index.js')) as Record<string, unknown>;
    expect(Object.keys(sdkBuiltins).sort()).toEqual([...SDK_BUILTINS].sort());
  });

  /** A valid, defined call for every builtin the WASM module may import from the host. */
  const sampleCalls: Record<string, string> = {
    'io.jwt.decode': 'io.jwt.decode(input.tokens.hs)',
    'io.jwt.decode_verify': 'io.jwt.decode_verify(input.tokens.hs, {"secret": input.secret})',
    'io.jwt.verify_rs256': 'io.jwt.verify_rs256(input.tokens.rs, input.pem.rsa)',
    'io.jwt.verify_rs384': 'io.jwt.verify_rs384(input.tokens.rs384, input.pem.rsa)',
    'io.jwt.verify_rs512': 'io.jwt.verify_rs512(input.tokens.rs512, input.pem.rsa)',
    'io.jwt.verify_ps256': 'io.jwt.verify_ps256(input.tokens.ps256, input.pem.rsa)',
    'io.jwt.verify_ps384': 'io.jwt.verify_ps384(input.tokens.ps384, input.pem.rsa)',
    'io.jwt.verify_ps512': 'io.jwt.verify_ps512(input.tokens.ps512, input.pem.rsa)',
    'io.jwt.verify_es256': 'io.jwt.verify_es256(input.tokens.es, input.pem.ec256)',
    'io.jwt.verify_es384': 'io.jwt.verify_es384(input.tokens.es384, input.pem.ec384)',
    'io.jwt.verify_es512': 'io.jwt.verify_es512(input.tokens.es512, input.pem.ec521)',
    'io.jwt.verify_eddsa': 'io.jwt.verify_eddsa(input.tokens.ed, input.pem.ed)',
    'io.jwt.verify_hs256': 'io.jwt.verify_hs256(input.tokens.hs, input.secret)',
    'io.jwt.verify_hs384': 'io.jwt.verify_hs384(input.tokens.hs384, input.secret)',
    'io.jwt.verify_hs512': 'io.jwt.verify_hs512(input.tokens.hs512, input.secret)',
    'time.now_ns': 'time.now_ns()',
    'time.parse_rfc3339_ns': 'time.parse_rfc3339_ns("2025-11-22T11:52:25Z")',
    'time.parse_duration_ns': 'time.parse_duration_ns("1h")',
    'time.date': 'time.date(input.ns)',
    'time.clock': 'time.clock([input.ns, "Europe/Paris"])',
    'time.weekday': 'time.weekday(input.ns)',
    'time.add_date': 'time.add_date(input.ns, 0, 1, 0)',
    'time.diff': 'time.diff(input.ns, 0)',
    'time.format': 'time.format([input.ns, "Europe/Paris", "RFC1123Z"])',
    'time.parse_ns': 'time.parse_ns("2006-01-02", "2025-11-22")',
    'io.jwt.encode_sign': 'io.jwt.encode_sign({"alg": "HS256"}, {"sub": "alice"}, {"kty": "oct", "k": "c2VjcmV0"})',
    'io.jwt.encode_sign_raw': 'io.jwt.encode_sign_raw(`{"alg":"HS256"}`, `{"sub":"alice"}`, `{"kty":"oct","k":"c2VjcmV0"}`)',
    'base64url.encode_no_pad': 'base64url.encode_no_pad("hello")',
    'json.is_valid': 'json.is_valid("{}")',
    'regex.split': 'regex.split(",", "a,b")',
    sprintf: 'sprintf("%s-%d", ["a", 1])',
    'yaml.is_valid': 'yaml.is_valid("a: 1")',
    'yaml.marshal': 'yaml.marshal({"a": 1})',
    'yaml.unmarshal': 'yaml.unmarshal("a: 1")',
  };
  const sampleInput = toJsonText({
    tokens: { ...tokens },
    secret: SECRET,
    pem: { rsa: rsa.pem, ec256: ec256.pem, ec384: ec384.pem, ec521: ec521.pem, ed: ed.pem },
    ns: WHOLE_NOW,
  });

  let capabilityNames: Set<string>;
  let imported: string[];

  beforeAll(async () => {
    const { capabilities } = await engineCapabilitiesFile();
    capabilityNames = new Set(capabilities.builtins.map((b) => b.name));
    // Same probe shape as capabilities.ts: call every advertised function once (relation form,
    // `input` operands), then read which builtins the compiled module imports from its host.
    const compilerHandled = new Set(['print', 'internal.print', 'eq', 'assign', 'equal', 'internal.member_2', 'internal.member_3']);
    const probed = capabilities.builtins.filter((b) => b.decl && !b.infix && !b.decl.variadic && !compilerHandled.has(b.name) && !b.name.startsWith('internal.'));
    const rules = probed.map((b, i) => {
      const args = Array.from({ length: b.decl?.args?.length ?? 0 }, (_, j) => `input.a${j}`);
      return `p${i} := [out | ${b.name}(${[...args, 'out'].join(', ')})]`;
    });
    const probe = ['package signalbox_inventory_probe', '', ...rules, '', '# METADATA', '# entrypoint: true', `probe := [${probed.map((_, i) => `p${i}`).join(', ')}]`, ''].join('\n');
    imported = await importedBuiltins((await readBundle(await buildTestBundle(probe))).wasm);
  });

  it('every host builtin Signalbox implements is advertised in the capabilities file', () => {
    expect(HOST_BUILTINS.filter((name) => !capabilityNames.has(name))).toEqual([]);
  });

  it('every builtin a policy compiled against the capabilities can import is provided by the engine', () => {
    expect(imported.length).toBeGreaterThan(0);
    expect(imported.filter((name) => !ENGINE_PROVIDED_BUILTINS.includes(name))).toEqual([]);
    // And each host implementation is actually reachable (not shadowed by a native WASM one).
    expect(HOST_BUILTINS.filter((name) => !imported.includes(name))).toEqual([]);
  });

  it('has a sample call for every imported builtin and every host builtin', () => {
    expect(imported.filter((name) => !(name in sampleCalls))).toEqual([]);
    expect(HOST_BUILTINS.filter((name) => !(name in sampleCalls))).toEqual([]);
  });

  it('evaluates every imported builtin without "not implemented" or builtin errors', async () => {
    const names = [...new Set([...imported, ...HOST_BUILTINS])].filter((name) => name in sampleCalls).sort();
    const entries = names.map((name) => `  ${JSON.stringify(name)}: [x | x := ${sampleCalls[name] as string}]`);
    const policy = ['package signalbox_inventory', '', '# METADATA', '# entrypoint: true', 'calls := json.marshal({', entries.join(',\n'), '})', ''].join('\n');
    const engine = await ourEngine(policy, 'signalbox_inventory/calls');
    // A missing implementation would throw ("not implemented: built-in function ...").
    const { value, builtinErrors } = evaluateMarshalled(engine, sampleInput, FIXED_NOW_NS);
    expect(builtinErrors).toEqual([]);
    const results = value as Record<string, Json[]>;
    expect(names.filter((name) => results[name]?.length !== 1)).toEqual([]);
    for (const name of names.filter((n) => n.startsWith('io.jwt.verify_'))) expect(results[name], name).toEqual([true]);
  });

  for (const [builtin, call] of [
    ['http.send', 'http.send({"method": "get", "url": "https://example.test"})'],
    ['opa.runtime', 'opa.runtime()'],
    ['crypto.hmac.sha256', 'crypto.hmac.sha256("message", "key")'],
  ] as const) {
    it(`rejects a policy calling ${builtin} at build time with policy_unsupported_builtin`, async () => {
      const policy = `package signalbox_unsupported\n\n# METADATA\n# entrypoint: true\nresult := ${call}\n`;
      const error: unknown = await buildTestBundle(policy).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SignalboxError);
      const signalboxError = error as SignalboxError;
      expect(signalboxError.code).toBe('policy_unsupported_builtin');
      expect(signalboxError.message).toContain(builtin);
      expect(signalboxError.details).toMatchObject({ builtin });
    });
  }
});
