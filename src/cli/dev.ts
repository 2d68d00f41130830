/**
 * `signalbox dev`: a local key set and tokens for it, so a newcomer can see an allowed and a
 * denied decision without an identity provider. DEVELOPMENT ONLY: whoever holds the folder can
 * mint any identity the config it writes will trust.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, type JWTPayload } from 'jose';
import { loadConfig } from '../config/load.js';
import { SignalboxError } from '../core/errors.js';
import { UsageError } from './command.js';

/** The issuer a development config trusts and a development token carries, unless a --config says otherwise. */
export const DEV_ISSUER = 'https://signalbox.dev.invalid/';
/** The audience a development config accepts and a development token names. */
export const DEV_AUDIENCE = 'signalbox';
/** The one algorithm of the development key: ES256, small and fast, asymmetric as identity requires. */
const DEV_ALGORITHM = 'ES256';

/** The files `dev keys DIR` writes. */
export const DEV_FILES = { privateKey: 'private-key.jwk.json', jwks: 'jwks.json', config: 'signalbox.yaml' } as const;

const MAX_TTL_S = 30 * 24 * 3600;

/** `signalbox dev keys DIR [--force]` or `signalbox dev token --key FILE --sub SUBJECT ...`; returns the exit code. */
export async function dev(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'keys') return devKeys(rest);
  if (sub === 'token') return devToken(rest);
  throw new UsageError(sub === undefined ? 'dev needs a subcommand: keys or token' : `unknown dev subcommand "${sub}" (keys or token)`);
}

async function devKeys(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { force: { type: 'boolean' } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError('usage: signalbox dev keys DIR [--force]');
  const dir = resolve(positionals[0] as string);
  const paths = { privateKey: join(dir, DEV_FILES.privateKey), jwks: join(dir, DEV_FILES.jwks), config: join(dir, DEV_FILES.config) };
  if (!values.force) {
    for (const path of Object.values(paths)) {
      if (await exists(path)) throw new UsageError(`${path} already exists; pass --force to replace the development key set`);
    }
  }
  const { privateKey, publicKey } = await generateKeyPair(DEV_ALGORITHM, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const marked = { kid, alg: DEV_ALGORITHM, use: 'sig' };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // The private key is readable by its owner only: it can mint any identity the config trusts.
  await writeFile(paths.privateKey, `${JSON.stringify({ ...(await exportJWK(privateKey)), ...marked }, null, 2)}\n`, { mode: 0o600 });
  await writeFile(paths.jwks, `${JSON.stringify({ keys: [{ ...publicJwk, ...marked }] }, null, 2)}\n`);
  await writeFile(paths.config, devConfig(paths.jwks));
  process.stdout.write(
    [
      `DEVELOPMENT ONLY: a key set for local tokens in ${dir}`,
      `  ${paths.privateKey}  the private key (kid ${kid}); never commit or deploy it`,
      `  ${paths.jwks}  its public key, which Signalbox trusts`,
      `  ${paths.config}  a config trusting it (issuer ${DEV_ISSUER}, audience ${DEV_AUDIENCE}, gRPC reflection on)`,
      'next:',
      `  npm start -- --config ${paths.config}`,
      `  npm run -s signalbox -- dev token --key ${paths.privateKey} --sub alice --roles llm-user`,
      '',
    ].join('\n'),
  );
  return 0;
}

/** The config `dev keys` writes: the embedded defaults, plus trust in the development key and reflection for grpcurl. */
function devConfig(jwksFile: string): string {
  return `# DEVELOPMENT ONLY, written by \`signalbox dev keys\`: Signalbox trusts every token signed with
# the private key beside this file, and anyone who can read that file can mint any identity.
# Never use this config or these keys outside a development machine.
server:
  grpc_reflection: true
identity:
  jwks_file: ${JSON.stringify(jwksFile)}
  issuer: ${JSON.stringify(DEV_ISSUER)}
  audience: ${JSON.stringify(DEV_AUDIENCE)}
`;
}

async function devToken(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      key: { type: 'string' },
      sub: { type: 'string' },
      roles: { type: 'string' },
      team: { type: 'string' },
      tenant: { type: 'string' },
      scope: { type: 'string' },
      ttl: { type: 'string' },
      config: { type: 'string' },
    },
    strict: true,
  });
  if (positionals.length > 0 || !values.key || !values.sub) throw new UsageError('usage: signalbox dev token --key FILE --sub SUBJECT [--roles R,R] [--team T] [--tenant T] [--scope S] [--ttl 1h] [--config FILE]');
  const ttl = parseTtl(values.ttl ?? '1h');
  // Issuer, audience and claim names as the server will read them: a --config (with its
  // environment overrides), or the development config `dev keys` writes.
  const identity = values.config ? loadConfig(values.config).identity : undefined;
  const claimNames = identity?.claims ?? loadConfig(undefined, {}).identity.claims;
  const issuer = identity?.issuer[0] ?? DEV_ISSUER;
  const audience = identity?.audience[0] ?? DEV_AUDIENCE;

  const jwk = await readPrivateKey(values.key);
  const payload: JWTPayload = {};
  if (values.roles !== undefined) setClaim(payload, claimNames.roles, splitList(values.roles));
  if (values.team !== undefined) setClaim(payload, claimNames.team, values.team);
  if (values.tenant !== undefined) setClaim(payload, claimNames.tenant, values.tenant);
  if (values.scope !== undefined) setClaim(payload, claimNames.scopes, values.scope);
  // `sub` always (identity.required_claims has it by default), and the configured subject claim too.
  payload.sub = values.sub;
  setClaim(payload, claimNames.subject, values.sub);
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: DEV_ALGORITHM, kid: jwk.kid, typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .sign(await importJWK(jwk, DEV_ALGORITHM));
  process.stdout.write(`${token}\n`);
  return 0;
}

async function readPrivateKey(path: string): Promise<JWK & { kid: string }> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(path, 'utf8')) as JWK;
  } catch (error) {
    throw new SignalboxError('config_invalid', `--key ${path}: not a readable JSON Web Key (make one with signalbox dev keys DIR)`, { cause: error });
  }
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') {
    throw new SignalboxError('config_invalid', `--key ${path}: not a private P-256 key with a kid, as signalbox dev keys writes`);
  }
  return jwk as JWK & { kid: string };
}

/** Sets a claim by its configured name, which may be a dotted path ("realm_access.roles"). */
function setClaim(payload: JWTPayload, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = payload as Record<string, unknown>;
  for (const part of parts.slice(0, -1)) {
    const child = node[part];
    node = (node[part] = child && typeof child === 'object' ? child : {}) as Record<string, unknown>;
  }
  node[parts[parts.length - 1] as string] = value;
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

/** "90", "90s", "15m", "1h" or "7d" as seconds: at least 1 s, at most 30 days. */
function parseTtl(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  const seconds = match ? Number(match[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'] : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_TTL_S) throw new UsageError(`--ttl ${text} must be a duration from 1s to 30d (90, 90s, 15m, 1h, 7d)`);
  return seconds;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
