import { execFile } from 'node:child_process';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';

const root = join(import.meta.dirname, '..');
const VERSION = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `signalbox ARGS` as a real process, from the sources. */
async function signalbox(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, env: { ...process.env, SIGNALBOX_CONFIG: '', ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/** Runs every case, a few processes at a time (the machine is shared). */
async function each<T>(items: readonly T[], run: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: 3 }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await run(item);
  }));
}

const COMMANDS = ['serve', 'build', 'eval', 'test', 'audit', 'spend', 'vault', 'dev'];

describe('signalbox --help and --version', () => {
  it('prints each command and subcommand its help on stdout with exit 0 (--help, -h, help CMD), acting on nothing', { timeout: 120_000 }, async () => {
    const cases = [
      ...COMMANDS.flatMap((command) => [[command, '--help'], [command, '-h'], ['help', command]]),
      ['audit', 'verify', '--help'],
      ['dev', 'keys', '--help'],
      ['dev', 'token', '--help'],
      ['build', '--src', 'x', '--help'],
      ['vault', 'set', '--help'],
    ];
    await each(cases, async (args) => {
      const run = await signalbox(args);
      const command = args[0] === 'help' ? args[1] : args[0];
      expect({ args, code: run.code, stderr: run.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(run.stdout).toMatch(command === 'vault' ? /^usage: signalbox vault <command>/ : new RegExp(`^usage: signalbox ${command} `));
    });
  });

  it('prints the version from package.json on every command, and on its own', { timeout: 120_000 }, async () => {
    await each([['--version'], ['version'], ...COMMANDS.map((command) => [command, '--version']), ['audit', 'verify', '--version']], async (args) => {
      const run = await signalbox(args);
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 0, stdout: `signalbox ${VERSION}\n` });
    });
  });

  it('answers the whole usage to signalbox --help (exit 0) and to a bare signalbox (exit 2)', async () => {
    const help = await signalbox(['--help']);
    expect(help.code).toBe(0);
    for (const command of COMMANDS) expect(help.stdout).toContain(`\n  ${command} `);
    expect((await signalbox([])).code).toBe(2);
  });

  it('keeps an unknown option a usage error (exit 2, the command synopsis on stderr)', { timeout: 60_000 }, async () => {
    await each([['serve', '--bogus'], ['audit', 'verify', '--bogus'], ['spend', '--bogus'], ['dev', 'token', '--bogus'], ['dev', 'nothing'], ['nothing']], async (args) => {
      const run = await signalbox(args);
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(run.stderr).toMatch(/usage: signalbox/);
    });
  });
});

describe('signalbox audit verify on a path that does not exist', () => {
  it('says no such file, with its own code, not audit_chain_broken', async () => {
    const run = await signalbox(['audit', 'verify', '/nonexistent/audit/decisions.jsonl']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('signalbox: audit_file_missing: /nonexistent/audit/decisions.jsonl: no such file or directory\n');
  });
});

describe('signalbox dev keys and dev token (development only)', () => {
  it('makes a key set and a config that trusts it, and tokens that verify against it with the config the server reads', { timeout: 60_000 }, async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'signalbox-dev-')), 'keys');
    const made = await signalbox(['dev', 'keys', dir]);
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/^DEVELOPMENT ONLY/);
    expect((await stat(join(dir, 'private-key.jwk.json'))).mode & 0o777).toBe(0o600);
    const config = parseConfig(await readFile(join(dir, 'signalbox.yaml'), 'utf8'), {}, 'dev');
    expect(config.identity.jwks_file).toBe(join(dir, 'jwks.json'));
    expect(config.server.grpc_reflection).toBe(true);

    const minted = await signalbox(['dev', 'token', '--key', join(dir, 'private-key.jwk.json'), '--sub', 'alice', '--roles', 'llm-user,auditor', '--team', 'search', '--tenant', 'acme', '--ttl', '15m']);
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    const jwks = JSON.parse(await readFile(config.identity.jwks_file!, 'utf8')) as { keys: JWK[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', kid: jwks.keys[0]!.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(token, await importJWK(jwks.keys[0]!, 'ES256'), { issuer: config.identity.issuer, audience: config.identity.audience });
    expect(payload).toMatchObject({ sub: 'alice', roles: ['llm-user', 'auditor'], team: 'search', tenant: 'acme' });
    expect(payload.exp! - payload.iat!).toBe(900);

    // A second run never overwrites the key set by accident.
    const again = await signalbox(['dev', 'keys', dir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already exists; pass --force');
  });

  it('takes issuer, audience and claim names (dotted paths too) from a --config', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-dev-'));
    expect((await signalbox(['dev', 'keys', dir])).code).toBe(0);
    const config = join(dir, 'custom.yaml');
    await writeFile(config, `identity:\n  jwks_file: ${join(dir, 'jwks.json')}\n  issuer: https://idp.example/\n  audience: [gateway, other]\n  claims:\n    roles: realm_access.roles\n`);
    const minted = await signalbox(['dev', 'token', '--key', join(dir, 'private-key.jwk.json'), '--sub', 'bob', '--roles', 'llm-user', '--config', config]);
    expect(decodeJwt(minted.stdout.trim())).toMatchObject({ iss: 'https://idp.example/', aud: 'gateway', sub: 'bob', realm_access: { roles: ['llm-user'] } });
  });

  it('refuses a bad --ttl and a key that is not a development private key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-dev-'));
    expect((await signalbox(['dev', 'keys', dir])).code).toBe(0);
    const ttl = await signalbox(['dev', 'token', '--key', join(dir, 'private-key.jwk.json'), '--sub', 'a', '--ttl', '90d']);
    expect(ttl.code).toBe(2);
    expect(ttl.stderr).toContain('--ttl 90d must be a duration from 1s to 30d');
    const publicOnly = await signalbox(['dev', 'token', '--key', join(dir, 'jwks.json'), '--sub', 'a']);
    expect(publicOnly.code).toBe(1);
    expect(publicOnly.stderr).toMatch(/config_invalid: --key .* not a private P-256 key/);
  });
});
