import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { SignalboxError } from '../src/core/errors.js';
import { buildBundle } from '../src/bundles/build.js';
import { packBundle, readBundle, readBundleFiles } from '../src/bundles/bundle.js';
import { runOpa } from '../src/bundles/opa-cli.js';
import { bundleVerification, signBundleFiles, verifyBundleSignature, type BundleVerificationConfig } from '../src/bundles/signing.js';
import { buildTestBundle } from './helpers/bundles.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox } from './helpers/signalbox.js';

const REGO = `package signed

# METADATA
# entrypoint: true
decision := {"allowed": data.signed.open}
`;
const DATA = { signed: { open: true, note: 'a<b & c', ratio: 1.5 } };

let dir: string;
let privatePem: string;
let publicPem: string;
let privateFile: string;
let publicFile: string;
let otherPublicPem: string;
let opaSigned: string; // signed by `opa build --signing-key`
let ourSigned: string; // signed by `signalbox build --sign`
let unsigned: string;
let verification: BundleVerificationConfig;
/** Every error message seen, to check that none carries key material. */
const messages: string[] = [];

async function src(name: string): Promise<string> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'policy.rego'), REGO);
  await writeFile(join(folder, 'data.json'), JSON.stringify(DATA));
  return folder;
}

/** Rewrites a bundle with `change` applied to its files. */
async function tampered(bundle: string, name: string, change: (files: Map<string, Buffer>) => void): Promise<string> {
  const files = await readBundleFiles(bundle);
  change(files);
  const out = join(dir, `${name}.tar.gz`);
  await writeFile(out, await packBundle(files));
  return out;
}

async function refusal(bundle: string, config: BundleVerificationConfig = verification): Promise<SignalboxError> {
  const error = await readBundle(bundle, { verification: config }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(SignalboxError);
  const e = error as SignalboxError;
  messages.push(e.message, JSON.stringify(e.details), String((e.cause as Error | undefined)?.message ?? ''));
  return e;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signalbox-signing-'));
  const pair = await generateKeyPair('RS256', { extractable: true });
  privatePem = await exportPKCS8(pair.privateKey);
  publicPem = await exportSPKI(pair.publicKey);
  otherPublicPem = await exportSPKI((await generateKeyPair('RS256', { extractable: true })).publicKey);
  privateFile = join(dir, 'private.pem');
  publicFile = join(dir, 'public.pem');
  await writeFile(privateFile, privatePem);
  await writeFile(publicFile, publicPem);
  verification = { keys: { prod: { key: publicPem, algorithm: 'RS256' } }, keyid: 'prod', scope: 'prod' };

  opaSigned = join(dir, 'opa-signed.tar.gz');
  const run = await runOpa(
    ['build', '-t', 'wasm', '-b', '.', '-o', opaSigned, '--signing-key', privateFile, '--signing-alg', 'RS256', '--verification-key-id', 'prod', '--claims-file', join(dir, 'claims.json')],
    { cwd: await src('opa-src').then(async (folder) => (await writeFile(join(dir, 'claims.json'), JSON.stringify({ scope: 'prod', keyid: 'prod' })), folder)) },
  );
  expect(run.exitCode, run.stderr).toBe(0);

  ourSigned = join(dir, 'our-signed.tar.gz');
  await buildBundle(await src('our-src'), ourSigned, { signing: { key: privatePem, algorithm: 'RS256', keyid: 'prod', scope: 'prod' } });
  unsigned = await buildTestBundle(REGO, { data: DATA });
}, 120_000);

describe('interop with OPA', () => {
  it('a bundle signed by opa build --signing-key verifies in Signalbox', async () => {
    const files = await readBundleFiles(opaSigned);
    expect(files.has('/.signatures.json')).toBe(true);
    const bundle = await readBundle(opaSigned, { verification });
    expect(bundle.data).toEqual(DATA);
    const result = await verifyBundleSignature(files, verification);
    expect(result.files).toEqual(expect.arrayContaining(['.manifest', 'data.json', 'policy.wasm']));
  });

  it('a bundle signed by signalbox build --sign verifies under opa build --verification-key', async () => {
    const files = await readBundleFiles(ourSigned);
    expect([...files.keys()]).toContain('/.signatures.json');
    const verify = (bundle: string, ...extra: string[]) =>
      runOpa(['build', '-b', bundle, '--verification-key', publicFile, '--verification-key-id', 'prod', '--scope', 'prod', '-o', join(dir, 'opa-out.tar.gz'), ...extra]);
    const ok = await verify(ourSigned);
    expect(ok.exitCode, ok.stderr).toBe(0);
    // The same command refuses a tampered copy, so it really verifies.
    const bad = await tampered(ourSigned, 'opa-tampered', (f) => f.set('/data.json', Buffer.from(JSON.stringify({ signed: { open: false } }))));
    const refused = await verify(bad);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr + refused.stdout).toMatch(/digest mismatch|data\.json/);
    await expect(readBundle(ourSigned, { verification })).resolves.toMatchObject({ data: DATA });
  }, 60_000);

  it('data.json is hashed in canonical form: reformatting it keeps the signature valid', async () => {
    const reformatted = await tampered(opaSigned, 'reformatted', (f) =>
      f.set('/data.json', Buffer.from(JSON.stringify({ signed: { ratio: 1.5, note: 'a<b & c', open: true } }, null, 4))),
    );
    await expect(readBundle(reformatted, { verification })).resolves.toBeDefined();
  });
});

describe('refusals', () => {
  it('an unsigned bundle with verification configured is bundle_signature_missing', async () => {
    const e = await refusal(unsigned);
    expect(e.code).toBe('bundle_signature_missing');
    expect(e.message).toMatch(/has no \.signatures\.json/);
  });

  const cases: [string, () => Promise<string>, RegExp][] = [
    ['tampered data.json', () => tampered(ourSigned, 't-data', (f) => f.set('/data.json', Buffer.from('{"signed":{"open":false}}'))), /data\.json does not match/],
    ['tampered policy.wasm', () => tampered(opaSigned, 't-wasm', (f) => f.set('/policy.wasm', Buffer.concat([f.get('/policy.wasm')!, Buffer.from([0])]))), /policy\.wasm does not match/],
    ['tampered .manifest', () => tampered(ourSigned, 't-manifest', (f) => f.set('/.manifest', Buffer.from(f.get('/.manifest')!.toString().replace('"revision":"', '"revision":"x')))), /\.manifest does not match/],
    ['an extra file', () => tampered(ourSigned, 't-extra', (f) => f.set('/extra/data.json', Buffer.from('{"evil":true}'))), /extra\/data\.json is in the bundle but not covered/],
    ['an extra file named like a signature file', () => tampered(opaSigned, 't-extra-sig', (f) => f.set('/evil/signatures.json', Buffer.from('{}'))), /evil\/signatures\.json is in the bundle but not covered/],
    ['a missing file', () => tampered(ourSigned, 't-missing', (f) => f.delete('/policy.rego')), /policy\.rego are covered by the signature but missing/],
  ];
  for (const [name, make, message] of cases) {
    it(`${name} is bundle_signature_invalid`, async () => {
      const e = await refusal(await make());
      expect(e.code).toBe('bundle_signature_invalid');
      expect(e.message).toMatch(message);
    });
  }

  it('a wrong key, another key id, a wrong scope, a forged alg or two tokens are bundle_signature_invalid', async () => {
    const wrongKey = await refusal(ourSigned, { ...verification, keys: { prod: { key: otherPublicPem, algorithm: 'RS256' } } });
    expect(wrongKey.message).toMatch(/does not verify with key "prod"/);
    const otherKid = await refusal(ourSigned, { keys: { staging: { key: publicPem, algorithm: 'RS256' } }, keyid: 'staging', scope: 'prod' });
    expect(otherKid.message).toMatch(/signed with key id "prod", but the configured key id is "staging"/);
    const unknownKid = await refusal(ourSigned, { keys: { staging: { key: publicPem, algorithm: 'RS256' } }, scope: 'prod' });
    expect(unknownKid.message).toMatch(/no verification key is configured for key id "prod"/);
    const wrongScope = await refusal(ourSigned, { ...verification, scope: 'staging' });
    expect(wrongScope.message).toMatch(/scope mismatch/);
    const noScope = await refusal(ourSigned, { keys: verification.keys, keyid: 'prod' });
    expect(noScope.message).toMatch(/scope mismatch/);

    const files = await readBundleFiles(ourSigned);
    const token = (JSON.parse(files.get('/.signatures.json')!.toString()) as { signatures: string[] }).signatures[0]!;
    const [, payload] = token.split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'prod' })).toString('base64url')}.${payload}.`;
    const hs = `${Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'prod' })).toString('base64url')}.${payload}.c2ln`;
    for (const [name, signatures] of [['none', [none]], ['hs', [hs]], ['two', [token, token]], ['zero', []]] as const) {
      const bundle = await tampered(ourSigned, `t-${name}`, (f) => f.set('/.signatures.json', Buffer.from(JSON.stringify({ signatures }))));
      const e = await refusal(bundle);
      expect(e.code, name).toBe('bundle_signature_invalid');
    }
    for (const e of [wrongKey, otherKid, unknownKid, wrongScope, noScope]) expect(e.code).toBe('bundle_signature_invalid');
  });

  it('exclude_files lets named files through unsigned, and nothing else', async () => {
    const extra = await tampered(ourSigned, 't-excluded', (f) => f.set('/notes/README.md', Buffer.from('unsigned notes')));
    await expect(readBundle(extra, { verification: { ...verification, exclude: ['notes/*.md'] } })).resolves.toBeDefined();
    const e = await refusal(extra, { ...verification, exclude: ['*.md'] }); // * does not cross "/", as in Go
    expect(e.code).toBe('bundle_signature_invalid');
  });

  it('signBundleFiles refuses none, HMAC and a key that does not fit the algorithm', async () => {
    const files = await readBundleFiles(unsigned);
    for (const algorithm of ['none', 'HS256', 'ES256']) {
      await expect(signBundleFiles(files, { key: privatePem, algorithm })).rejects.toMatchObject({ code: 'policy_build_failed' });
    }
    await expect(signBundleFiles(files, { key: publicPem, algorithm: 'RS256' })).rejects.toMatchObject({ code: 'policy_build_failed' });
  });
});

describe('policy.verification config and service start', () => {
  const yaml = (bundle: string, extra = '') =>
    `policy:\n  bundle: ${bundle}\n  decision: signed/decision\n  verification:\n    public_key_file: ${publicFile}\n    key_id: prod\n    algorithm: RS256\n    scope: prod\n${extra}`;

  it('is read and checked once; a bad PEM, algorithm or private key is config_invalid naming the key', async () => {
    const config = parseConfig(yaml(ourSigned), {}, 'test');
    expect(bundleVerification(config.policy.verification)).toMatchObject({ keyid: 'prod', scope: 'prod', exclude: [] });
    const bad = join(dir, 'bad.pem');
    await writeFile(bad, '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n');
    const cases: [string, RegExp][] = [
      [`policy:\n  verification:\n    public_key_file: ${bad}\n    key_id: k\n    algorithm: RS256\n`, /policy\.verification\.public_key_file: .*not a readable PEM/],
      [`policy:\n  verification:\n    public_key_file: ${join(dir, 'absent.pem')}\n    key_id: k\n    algorithm: RS256\n`, /policy\.verification\.public_key_file: cannot read .*ENOENT/],
      [`policy:\n  verification:\n    public_key_file: ${publicFile}\n    key_id: k\n    algorithm: HS256\n`, /policy\.verification\.algorithm: must be one of/],
      [`policy:\n  verification:\n    public_key_file: ${publicFile}\n    key_id: k\n    algorithm: ES256\n`, /policy\.verification\.public_key_file: ES256 needs an EC key/],
      [`policy:\n  verification:\n    public_key_file: ${privateFile}\n    key_id: k\n    algorithm: RS256\n`, /policy\.verification\.public_key_file: .*private key/],
      [`policy:\n  verification:\n    key_id: k\n    algorithm: RS256\n`, /policy\.verification\.public_key_file: set exactly one/],
      [`policy:\n  verification:\n    public_key_file: ${publicFile}\n    key_id: k\n    algorithm: RS256\n    exclude_files: ["[z-a]"]\n`, /policy\.verification\.exclude_files\.0: bad pattern/],
    ];
    for (const [text, message] of cases) {
      let error: unknown;
      try {
        parseConfig(text, {}, 'test');
      } catch (e) {
        error = e;
      }
      expect(error, text).toBeInstanceOf(SignalboxError);
      expect((error as SignalboxError).code).toBe('config_invalid');
      expect((error as SignalboxError).message).toMatch(message);
      messages.push((error as SignalboxError).message, JSON.stringify((error as SignalboxError).details));
    }
  });

  it('a service start with a tampered bundle fails with bundle_signature_invalid; a signed one starts', async () => {
    const bad = await tampered(ourSigned, 'start-tampered', (f) => f.set('/data.json', Buffer.from('{"signed":{"open":false}}')));
    const { logger, text } = capturedLogger();
    const error = await startTestSignalbox(logger, { yaml: yaml(bad) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SignalboxError);
    expect((error as SignalboxError).code).toBe('bundle_signature_invalid');
    expect((error as SignalboxError).message).toBe(`bundle ${bad}: signature verification failed: file data.json does not match its signed digest (modified after signing)`);
    messages.push((error as SignalboxError).message, text());

    const good = await startTestSignalbox(logger, { yaml: yaml(ourSigned) });
    await good.close();
    messages.push(text());
  }, 60_000);

  it('the eval command verifies too', async () => {
    const input = join(dir, 'input.json');
    await writeFile(input, '{}');
    const config = join(dir, 'config.yaml');
    await writeFile(config, yaml(unsigned));
    const run = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'eval', '--config', config, '--input', input], { cwd: process.cwd() }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/bundle_signature_missing/);
    messages.push(run.stderr);
  }, 60_000);

  it('no error message or log line carries key material or the token', async () => {
    expect(messages.length).toBeGreaterThan(10);
    const token = (JSON.parse((await readBundleFiles(ourSigned)).get('/.signatures.json')!.toString()) as { signatures: string[] }).signatures[0]!;
    const body = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----'));
    const secrets = [...body(privatePem), ...body(publicPem), ...body(otherPublicPem), ...token.split('.'), (await readFile(privateFile, 'utf8')).slice(40, 80)];
    const all = messages.join('\n');
    expect(all).not.toMatch(/BEGIN [A-Z ]*KEY/);
    for (const secret of secrets.filter((s) => s.length >= 16)) expect(all.includes(secret)).toBe(false);
  });
});
