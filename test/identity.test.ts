import { createHmac } from 'node:crypto';
import { mkdir, mkdtemp, rename, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { IdentityVerifier } from '../src/identity/verifier.js';
import { AUDIENCE, ISSUER, JwksServer, mint, signingKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';

function identityConfig(extra: Record<string, string>, yaml = ''): ReturnType<typeof parseConfig>['identity'] {
  return parseConfig(yaml, { SIGNALBOX_JWT_ISSUER: ISSUER, SIGNALBOX_JWT_AUDIENCE: AUDIENCE, ...extra }).identity;
}

const servers: JwksServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('identity verification', () => {
  it.each(['RS256', 'ES256', 'EdDSA'] as const)('verifies %s tokens and maps claims', async (alg) => {
    const key = await signingKey(alg, `k-${alg}`);
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }), capturedLogger().logger);
    const token = await mint(key, { claims: { roles: 'llm-user admin', scope: 'chat:write tools:call', act: { sub: 'agent-7' }, azp: 'cli' } });
    const { identity, actor } = await verifier.verify({ authorization: `Bearer ${token}` }, Date.now());
    expect(identity).toMatchObject({ verified: true, subject: 'alice', issuer: ISSUER, team: 'search', tenant: 'acme', roles: ['llm-user', 'admin'], scopes: ['chat:write', 'tools:call'] });
    expect(actor).toEqual({ subject: 'agent-7', client_id: 'cli' });
    expect(JSON.stringify(identity)).not.toContain(token);
  });

  it('maps claims through dotted paths from the config', async () => {
    const key = await signingKey('ES256', 'k');
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const config = identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }, 'identity:\n  claims:\n    roles: realm_access.roles\n    team: org.team\n');
    const verifier = await IdentityVerifier.create(config, capturedLogger().logger);
    const token = await mint(key, { claims: { realm_access: { roles: ['agent'] }, org: { team: 'infra' } } });
    const { identity } = await verifier.verify({ authorization: `Bearer ${token}` }, Date.now());
    expect(identity).toMatchObject({ roles: ['agent'], team: 'infra' });
  });

  it('refetches the JWKS for an unknown kid (key rotation), at most once per cooldown', async () => {
    const oldKey = await signingKey('RS256', 'old');
    const newKey = await signingKey('RS256', 'new');
    const jwks = await JwksServer.start([oldKey.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(
      identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }, 'identity:\n  jwks_cooldown_ms: 0\n'),
      capturedLogger().logger,
    );
    expect((await verifier.verify({ authorization: `Bearer ${await mint(oldKey)}` }, Date.now())).identity.verified).toBe(true);
    expect(jwks.fetches).toBe(1);
    // The IdP rotates: a token with the new kid triggers one refetch and verifies.
    jwks.setKeys([oldKey.publicJwk, newKey.publicJwk]);
    expect((await verifier.verify({ authorization: `Bearer ${await mint(newKey)}` }, Date.now())).identity.verified).toBe(true);
    expect(jwks.fetches).toBe(2);
  });

  it('does not hammer the JWKS endpoint with unknown kids during the cooldown', async () => {
    const key = await signingKey('RS256', 'known');
    const stranger = await signingKey('RS256', 'unknown');
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(
      identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }, 'identity:\n  jwks_cooldown_ms: 60000\n'),
      capturedLogger().logger,
    );
    await verifier.verify({ authorization: `Bearer ${await mint(key)}` }, Date.now());
    for (let i = 0; i < 5; i++) {
      const { identity } = await verifier.verify({ authorization: `Bearer ${await mint(stranger, { subject: `s${i}` })}` }, Date.now());
      expect(identity.error?.code).toBe('token_key_not_found');
    }
    expect(jwks.fetches).toBe(1);
  });

  it('reports jwks_unavailable when the endpoint is down, and logs it without the token', async () => {
    const key = await signingKey('RS256', 'k');
    const log = capturedLogger();
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_URL: 'http://127.0.0.1:1/jwks.json' }), log.logger);
    const token = await mint(key);
    const { identity } = await verifier.verify({ authorization: `Bearer ${token}` }, Date.now());
    expect(identity.error?.code).toBe('jwks_unavailable');
    expect(log.lines().some((l) => l.code === 'jwks_unavailable')).toBe(true);
    expect(log.text()).not.toContain(token);
  });

  it('reads keys from a local JWKS file', async () => {
    const key = await signingKey('EdDSA', 'file-key');
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-jwks-'));
    const file = join(dir, 'jwks.json');
    await writeFile(file, JSON.stringify({ keys: [key.publicJwk] }));
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_FILE: file }), capturedLogger().logger);
    expect((await verifier.verify({ authorization: `Bearer ${await mint(key)}` }, Date.now())).identity.verified).toBe(true);
  });

  it('refuses a JWKS file that is not a key set, naming the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-jwks-'));
    const file = join(dir, 'jwks.json');
    await writeFile(file, '{"nope": true}');
    await expect(IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_FILE: file }), capturedLogger().logger)).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringMatching(/identity\.jwks_file/),
    });
  });

  it('says ENOENT and the path when the JWKS file is missing at start-up', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'signalbox-jwks-')), 'absent.json');
    await expect(IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_FILE: file }), capturedLogger().logger)).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining(`identity.jwks_file: cannot load ${file}: ENOENT`),
    });
  });

  it('reloads the JWKS file when it is replaced by atomic rename; a bad new file keeps the old keys', async () => {
    const oldKey = await signingKey('ES256', 'old');
    const newKey = await signingKey('ES256', 'new');
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-jwks-'));
    const file = join(dir, 'jwks.json');
    await writeFile(file, JSON.stringify({ keys: [oldKey.publicJwk] }));
    const log = capturedLogger();
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_FILE: file }), log.logger, { pollIntervalMs: 50, debounceMs: 10 });
    try {
      const verified = async (key: typeof oldKey): Promise<boolean> => (await verifier.verify({ authorization: `Bearer ${await mint(key)}` }, Date.now())).identity.verified;
      expect(await verified(oldKey)).toBe(true);
      expect(await verified(newKey)).toBe(false);

      // Rotation: the new key is added, the old one dropped, written aside and renamed over the file.
      await writeFile(`${file}.tmp`, JSON.stringify({ keys: [newKey.publicJwk] }));
      await rename(`${file}.tmp`, file);
      await waitFor(async () => verified(newKey));
      expect(await verified(oldKey)).toBe(false);
      expect(log.lines().some((l) => l.msg === 'JWKS file reloaded' && l.keys === 1)).toBe(true);

      // A broken file keeps the keys loaded before, and says why.
      await writeFile(`${file}.tmp`, '{"keys": [ not json');
      await rename(`${file}.tmp`, file);
      await waitFor(async () => log.lines().some((l) => l.code === 'config_invalid' && l.level === 50));
      expect(log.lines().find((l) => l.level === 50)).toMatchObject({ path: file, problem: 'not JSON', msg: expect.stringContaining('keeping the keys loaded before') });
      expect(log.text()).not.toContain('not json');
      expect(await verified(newKey)).toBe(true);
    } finally {
      await verifier.close();
    }
  });

  it('reloads a JWKS file mounted as a Kubernetes secret (the ..data symlink swap)', async () => {
    const first = await signingKey('RS256', 'first');
    const second = await signingKey('RS256', 'second');
    const mount = await mkdtemp(join(tmpdir(), 'signalbox-jwks-secret-'));
    // What the kubelet builds: a timestamped dir, ..data pointing at it, and the file a symlink through ..data.
    const generation = async (name: string, keys: unknown[]): Promise<void> => {
      await mkdir(join(mount, name));
      await writeFile(join(mount, name, 'jwks.json'), JSON.stringify({ keys }));
      await symlink(name, join(mount, '..data_tmp'));
      await rename(join(mount, '..data_tmp'), join(mount, '..data'));
    };
    await generation('..2026_01_01_00_00_00.1', [first.publicJwk]);
    await symlink(join('..data', 'jwks.json'), join(mount, 'jwks.json'));
    const file = join(mount, 'jwks.json');
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_FILE: file }), capturedLogger().logger, { pollIntervalMs: 50, debounceMs: 10 });
    try {
      const verified = async (key: typeof first): Promise<boolean> => (await verifier.verify({ authorization: `Bearer ${await mint(key)}` }, Date.now())).identity.verified;
      expect(await verified(first)).toBe(true);
      await generation('..2026_01_02_00_00_00.2', [first.publicJwk, second.publicJwk]);
      await waitFor(async () => verified(second));
      expect(await verified(first)).toBe(true);
    } finally {
      await verifier.close();
    }
  });

  it('rejects an HS256 token signed with the public key as the HMAC secret (algorithm confusion)', async () => {
    const key = await signingKey('RS256', 'k');
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }), capturedLogger().logger);
    const header = Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'k', typ: 'JWT' })).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const payload = Buffer.from(JSON.stringify({ sub: 'mallory', iss: ISSUER, aud: AUDIENCE, exp: now + 300 })).toString('base64url');
    const signature = createHmac('sha256', JSON.stringify(key.publicJwk)).update(`${header}.${payload}`).digest('base64url');
    const { identity } = await verifier.verify({ authorization: `Bearer ${header}.${payload}.${signature}` }, Date.now());
    expect(identity.verified).toBe(false);
    expect(identity.error?.code).toBe('token_algorithm_not_allowed');
  });

  it('requires exp and sub by default', async () => {
    const key = await signingKey('RS256', 'k');
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }), capturedLogger().logger);
    const { SignJWT } = await import('jose');
    const noExp = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).setIssuer(ISSUER).setAudience(AUDIENCE).sign(key.privateKey);
    expect((await verifier.verify({ authorization: `Bearer ${noExp}` }, Date.now())).identity.error?.code).toBe('token_claims_invalid');
  });

  it('honours the clock tolerance and a frozen clock', async () => {
    const key = await signingKey('RS256', 'k');
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }), capturedLogger().logger);
    const issuedAt = 1_900_000_000;
    const token = await mint(key, { now: issuedAt, expiresIn: 60 });
    const at = (seconds: number) => verifier.verify({ authorization: `Bearer ${token}` }, seconds * 1000);
    expect((await at(issuedAt + 60 + 29)).identity.verified).toBe(true);
    expect((await at(issuedAt + 60 + 31)).identity.error?.code).toBe('token_expired');
  });

  it('answers a repeated token from its cache only while the token is valid, by the caller clock', async () => {
    const key = await signingKey('ES256', 'k');
    const jwks = await JwksServer.start([key.publicJwk]);
    servers.push(jwks);
    const verifier = await IdentityVerifier.create(identityConfig({ SIGNALBOX_JWKS_URL: jwks.url }, 'identity:\n  clock_tolerance_s: 0\n'), capturedLogger().logger);
    const issuedAt = 1_900_000_000;
    const token = await mint(key, { now: issuedAt, expiresIn: 30 });
    const at = (seconds: number) => verifier.verify({ authorization: `Bearer ${token}` }, seconds * 1000);
    expect((await at(issuedAt)).identity.verified).toBe(true);
    expect((await at(issuedAt + 29)).identity.verified).toBe(true);
    // Cached at issuedAt, but the token has expired since: the cache must not vouch for it.
    expect((await at(issuedAt + 31)).identity.error?.code).toBe('token_expired');
    expect(jwks.fetches).toBe(1);
  });
});

/** Polls `probe` every 20 ms for up to 5 s. */
async function waitFor(probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
