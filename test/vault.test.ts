import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rename, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SignalboxError } from '../src/core/errors.js';
import { CredentialSource, type CredentialSourceOptions } from '../src/vault/credentials.js';
import { runVaultCommand } from '../src/cli/vault.js';
import { createKeyring, keyringFromEnv, type VaultKeyring } from '../src/vault/keyring.js';
import { Vault } from '../src/vault/vault.js';
import { capturedLogger } from './helpers/logs.js';

const SECRET = 'sk-test-SUPER-SECRET-value-0123456789';
const OTHER_SECRET = 'sk-ant-ANOTHER-secret-9876543210';
const K1 = randomBytes(32);
const K2 = randomBytes(32);
const K1_B64 = K1.toString('base64');
const K2_B64 = K2.toString('base64');
const FROZEN = new Date('2025-01-02T03:04:05.000Z');

/** Every string a leak check looks for: values and keys in every encoding a mistake could use. */
const FORBIDDEN = [SECRET, OTHER_SECRET, K1_B64, K2_B64, K1.toString('hex'), K2.toString('hex'), K1_B64.slice(0, 16), K2_B64.slice(0, 16)];

function expectNoLeak(text: string): void {
  for (const forbidden of FORBIDDEN) expect(text).not.toContain(forbidden);
}

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-vault-'));
  return join(dir, 'vault', 'credentials.json');
}

function env(current: string, old?: string): NodeJS.ProcessEnv {
  return { SIGNALBOX_VAULT_KEY: current, ...(old === undefined ? {} : { SIGNALBOX_VAULT_OLD_KEYS: old }) };
}

const keyringK1 = (): VaultKeyring => keyringFromEnv(env(`k1:${K1_B64}`));
const keyringK2WithK1 = (): VaultKeyring => keyringFromEnv(env(`k2:${K2_B64}`, `k1:${K1_B64}`));
const keyringK2 = (): VaultKeyring => keyringFromEnv(env(`k2:${K2_B64}`));

async function readJson(path: string): Promise<{ version: number; entries: Record<string, Record<string, string>> }> {
  return JSON.parse(await readFile(path, 'utf8')) as { version: number; entries: Record<string, Record<string, string>> };
}

/** Runs the thrower and returns the SignalboxError it throws, failing the test otherwise. */
async function caught(run: () => unknown): Promise<SignalboxError> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(SignalboxError);
    return error as SignalboxError;
  }
  throw new Error('expected an error');
}

describe('keyringFromEnv', () => {
  it('reads the current key and old keys, with key ids', () => {
    const keyring = keyringFromEnv(env(` k2:${K2_B64} `, `k1:${K1_B64}, ,k0:${randomBytes(32).toString('base64')},`));
    expect(keyring.current.kid).toBe('k2');
    expect(keyring.current.key.equals(K2)).toBe(true);
    expect([...keyring.old.keys()]).toEqual(['k1', 'k0']);
    expect(keyring.old.get('k1')?.equals(K1)).toBe(true);
  });

  it('accepts url-safe base64', () => {
    const keyring = keyringFromEnv(env(`k1:${K1.toString('base64url')}`));
    expect(keyring.current.key.equals(K1)).toBe(true);
  });

  it.each([
    ['missing', {}, /SIGNALBOX_VAULT_KEY is not set/],
    ['empty', env('  '), /SIGNALBOX_VAULT_KEY is not set/],
    ['without a key id', env(K1_B64), /SIGNALBOX_VAULT_KEY has no key id/],
    ['with a bad key id', env(`bad kid!:${K1_B64}`), /SIGNALBOX_VAULT_KEY has an invalid key id/],
    ['not base64', env(`k1:${K1_B64.slice(0, 20)}$$$${K1_B64.slice(23)}`), /key id "k1" is not valid base64/],
    ['16 bytes', env(`k1:${randomBytes(16).toString('base64')}`), /key id "k1" decodes to 16 bytes; AES-256 needs exactly 32/],
    ['an old key of the wrong size', env(`k2:${K2_B64}`, `k1:${randomBytes(31).toString('base64')}`), /SIGNALBOX_VAULT_OLD_KEYS: the key for key id "k1" decodes to 31 bytes/],
    ['an old key id twice', env(`k2:${K2_B64}`, `k1:${K1_B64},k1:${K1_B64}`), /old key id "k1" is given twice/],
    ['the current key id among the old with another key', env(`k2:${K2_B64}`, `k2:${K1_B64}`), /old key id "k2" is also the current key id/],
  ])('rejects a key %s with vault_key_invalid and a clear message', async (_what, environment, message) => {
    const error = await caught(() => keyringFromEnv(environment as NodeJS.ProcessEnv));
    expect(error.code).toBe('vault_key_invalid');
    expect(error.message).toMatch(message);
    expectNoLeak(error.message);
    expectNoLeak(JSON.stringify(error.details));
  });

  it('never shows key material through JSON.stringify or util.inspect', () => {
    const keyring = keyringK2WithK1();
    for (const text of [
      JSON.stringify(keyring),
      JSON.stringify(keyring.current),
      JSON.stringify(keyring.current.key),
      JSON.stringify({ nested: keyring }),
      JSON.stringify(keyring.old),
      inspect(keyring, { depth: 10, showHidden: true }),
      inspect(keyring.current, { depth: 10 }),
      inspect(keyring.current.key),
      inspect(keyring.old, { depth: 10 }),
      inspect(keyring.old.get('k1')),
      String(keyring),
    ]) {
      expectNoLeak(text);
    }
    expect(JSON.stringify(keyring)).toBe('{"current":"k2","old":["k1"]}');
    expect(inspect(keyring)).toBe("VaultKeyring { current: 'k2', old: ['k1'] }");
  });

  it('keeps a copy: wiping the buffers given to createKeyring does not change the keyring', () => {
    const key = Buffer.from(K1);
    const keyring = createKeyring({ kid: 'k1', key });
    key.fill(0);
    expect(keyring.current.key.equals(K1)).toBe(true);
  });
});

describe('Vault', () => {
  it('round-trips values, lists names without values, and removes entries', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1(), { now: () => FROZEN });
    expect(vault.list()).toEqual([]);
    await vault.set('openai', SECRET);
    await vault.set('anthropic/prod', OTHER_SECRET);
    expect(vault.get('openai')).toBe(SECRET);
    expect(vault.get('anthropic/prod')).toBe(OTHER_SECRET);
    expect(vault.get('missing')).toBeUndefined();
    expect(vault.list()).toEqual([
      { name: 'anthropic/prod', kid: 'k1', updated_at: FROZEN.toISOString() },
      { name: 'openai', kid: 'k1', updated_at: FROZEN.toISOString() },
    ]);
    expect(await vault.remove('openai')).toBe(true);
    expect(await vault.remove('openai')).toBe(false);
    expect(vault.get('openai')).toBeUndefined();
    expect((await Vault.open(path, keyringK1())).list().map((e) => e.name)).toEqual(['anthropic/prod']);
  });

  it('persists across open, in the documented file format, without the value in clear', async () => {
    const path = await tempFile();
    let clock = FROZEN;
    const vault = await Vault.open(path, keyringK1(), { now: () => clock });
    await vault.set('openai', SECRET);
    clock = new Date('2025-02-01T00:00:00.000Z');
    await vault.set('openai', `${SECRET}-v2`);

    const reopened = await Vault.open(path, keyringK1());
    expect(reopened.get('openai')).toBe(`${SECRET}-v2`);
    const text = await readFile(path, 'utf8');
    expectNoLeak(text);
    const file = await readJson(path);
    expect(file.version).toBe(1);
    const entry = file.entries.openai as Record<string, string>;
    expect(Object.keys(entry).sort()).toEqual(['ciphertext', 'created_at', 'iv', 'kid', 'tag', 'updated_at']);
    expect(entry.kid).toBe('k1');
    expect(Buffer.from(entry.iv as string, 'base64')).toHaveLength(12);
    expect(Buffer.from(entry.tag as string, 'base64')).toHaveLength(16);
    expect(entry.created_at).toBe(FROZEN.toISOString());
    expect(entry.updated_at).toBe('2025-02-01T00:00:00.000Z');
  });

  it('uses a fresh IV for every write', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1());
    await vault.set('a', SECRET);
    const first = (await readJson(path)).entries.a;
    await vault.set('a', SECRET);
    const second = (await readJson(path)).entries.a;
    expect(second?.iv).not.toBe(first?.iv);
    expect(second?.ciphertext).not.toBe(first?.ciphertext);
  });

  it('treats a missing file as an empty vault and does not create it until a write', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1());
    expect(vault.list()).toEqual([]);
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.skipIf(process.platform === 'win32')('writes the file with mode 0600 and leaves no temp file behind', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1());
    await vault.set('openai', SECRET);
    await vault.set('other', OTHER_SECRET);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(join(path, '..'))).toEqual(['credentials.json']);
  });

  it.skipIf(process.platform === 'win32')('warns (names only) when an existing file is readable by others', async () => {
    const path = await tempFile();
    await (await Vault.open(path, keyringK1())).set('openai', SECRET);
    await chmod(path, 0o644);
    const logs = capturedLogger();
    await Vault.open(path, keyringK1(), { logger: logs.logger });
    expect(logs.lines()).toEqual([expect.objectContaining({ level: 40, mode: '644', msg: expect.stringContaining('chmod 600') })]);
  });

  it('serialises concurrent writes: every entry survives', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1());
    await Promise.all(Array.from({ length: 10 }, (_, i) => vault.set(`key-${i}`, `${SECRET}-${i}`)));
    const reopened = await Vault.open(path, keyringK1());
    expect(reopened.list()).toHaveLength(10);
    expect(reopened.get('key-7')).toBe(`${SECRET}-7`);
  });

  it('rotates: k1 entries read with k2 current and k1 old, then with k2 alone after rotate()', async () => {
    const path = await tempFile();
    const v1 = await Vault.open(path, keyringK1(), { now: () => FROZEN });
    await v1.set('openai', SECRET);
    await v1.set('anthropic', OTHER_SECRET);

    const during = await Vault.open(path, keyringK2WithK1());
    expect(during.get('openai')).toBe(SECRET);
    await during.set('new', 'written-under-k2');
    expect(during.list().map((e) => [e.name, e.kid])).toEqual([
      ['anthropic', 'k1'],
      ['new', 'k2'],
      ['openai', 'k1'],
    ]);
    expect(await during.rotate()).toBe(2);
    expect(await during.rotate()).toBe(0);

    const after = await Vault.open(path, keyringK2());
    expect(after.get('openai')).toBe(SECRET);
    expect(after.get('anthropic')).toBe(OTHER_SECRET);
    expect(after.get('new')).toBe('written-under-k2');
    expect(after.list().every((e) => e.kid === 'k2')).toBe(true);
    // Rotation re-wraps the value; the dates still say when the value changed.
    expect(after.list().find((e) => e.name === 'openai')?.updated_at).toBe(FROZEN.toISOString());
  });

  it('says which entry and key id it cannot decrypt, without the value, when the key id is unknown', async () => {
    const path = await tempFile();
    await (await Vault.open(path, keyringK1())).set('openai', SECRET);
    const vault = await Vault.open(path, keyringK2());
    const error = await caught(() => vault.get('openai'));
    expect(error.code).toBe('vault_key_unknown');
    expect(error.message).toBe(
      'vault entry "openai" was written under key id "k1", which is neither SIGNALBOX_VAULT_KEY (key id "k2") nor in SIGNALBOX_VAULT_OLD_KEYS',
    );
    expect(error.details).toEqual({ entry: 'openai', kid: 'k1' });
  });

  it('says which entry and key id fail with the wrong master key, without the value or the key', async () => {
    const path = await tempFile();
    await (await Vault.open(path, keyringK1())).set('openai', SECRET);
    const wrong = await Vault.open(path, keyringFromEnv(env(`k1:${K2_B64}`)));
    const error = await caught(() => wrong.get('openai'));
    expect(error.code).toBe('vault_decrypt_failed');
    expect(error.message).toMatch(/^vault entry "openai" does not decrypt with key id "k1"/);
    expectNoLeak(`${error.message} ${JSON.stringify(error.details)} ${inspect(error)}`);
    // Rotation fails as a whole: nothing is rewritten.
    const before = await readFile(path, 'utf8');
    await expect(wrong.rotate()).resolves.toBe(0); // same kid: nothing to re-encrypt
    const rotating = await Vault.open(path, keyringFromEnv(env(`k2:${K2_B64}`, `k1:${K2_B64}`)));
    await expect(rotating.rotate()).rejects.toMatchObject({ code: 'vault_decrypt_failed' });
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  describe('tampering', () => {
    async function tampered(edit: (file: { entries: Record<string, Record<string, string>> }) => void): Promise<Vault> {
      const path = await tempFile();
      const vault = await Vault.open(path, keyringK2WithK1());
      await vault.set('openai', SECRET);
      await vault.set('anthropic', OTHER_SECRET);
      const file = await readJson(path);
      edit(file);
      await writeFile(path, JSON.stringify(file));
      return Vault.open(path, keyringK2WithK1());
    }

    const flip = (b64: string): string => {
      const bytes = Buffer.from(b64, 'base64');
      bytes[0] = (bytes[0] as number) ^ 1;
      return bytes.toString('base64');
    };

    it.each([
      ['a flipped ciphertext bit', (f: { entries: Record<string, Record<string, string>> }) => void (f.entries.openai!.ciphertext = flip(f.entries.openai!.ciphertext!))],
      ['a flipped tag bit', (f: { entries: Record<string, Record<string, string>> }) => void (f.entries.openai!.tag = flip(f.entries.openai!.tag!))],
      ['a flipped IV bit', (f: { entries: Record<string, Record<string, string>> }) => void (f.entries.openai!.iv = flip(f.entries.openai!.iv!))],
      [
        'ciphertexts swapped between names (AAD binds the name)',
        (f: { entries: Record<string, Record<string, string>> }) => {
          const { openai, anthropic } = f.entries;
          f.entries.openai = { ...anthropic! };
          f.entries.anthropic = { ...openai! };
        },
      ],
      [
        'an entry copied under another name',
        (f: { entries: Record<string, Record<string, string>> }) => void (f.entries.openai = { ...f.entries.anthropic! }),
      ],
    ])('%s fails to decrypt', async (_what, edit) => {
      const vault = await tampered(edit);
      const error = await caught(() => vault.get('openai'));
      expect(error.code).toBe('vault_decrypt_failed');
      expect(error.message).toMatch(/^vault entry "openai" does not decrypt with key id "k2"/);
      expectNoLeak(error.message);
    });

    it('a relabelled kid fails (AAD binds the key id)', async () => {
      const path = await tempFile();
      const keyring = createKeyring({ kid: 'k2', key: K1 }, [['k1', K1]]);
      const vault = await Vault.open(path, keyring);
      await vault.set('openai', SECRET);
      const file = await readJson(path);
      file.entries.openai!.kid = 'k1';
      await writeFile(path, JSON.stringify(file));
      const error = await caught(async () => (await Vault.open(path, keyring)).get('openai'));
      expect(error.code).toBe('vault_decrypt_failed');
      expect(error.message).toMatch(/^vault entry "openai" does not decrypt with key id "k1"/);
    });

    it('a truncated tag is refused when the file is opened', async () => {
      const error = await caught(() => tampered((f) => void (f.entries.openai!.tag = Buffer.from(f.entries.openai!.tag!, 'base64').subarray(0, 4).toString('base64'))));
      expect(error.code).toBe('vault_file_invalid');
      expect(error.message).toMatch(/entry "openai" field "tag" is 4 bytes, expected 16/);
    });
  });

  it.each([
    ['not JSON', '{ nope', /is not valid JSON/],
    ['an array', '[]', /expected a JSON object/],
    ['another version', '{"version":2,"entries":{}}', /has version 2; this Signalbox reads version 1/],
    ['no entries', '{"version":1}', /"entries" must be an object/],
    ['an entry without kid', '{"version":1,"entries":{"openai":{"iv":"AAAAAAAAAAAAAAAA","ciphertext":"AA==","tag":"AAAAAAAAAAAAAAAAAAAAAA==","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}}}', /entry "openai" has no valid "kid"/],
    ['an IV of the wrong size', '{"version":1,"entries":{"openai":{"kid":"k1","iv":"AAAA","ciphertext":"AA==","tag":"AAAAAAAAAAAAAAAAAAAAAA==","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}}}', /entry "openai" field "iv" is 3 bytes, expected 12/],
    ['a bad date', '{"version":1,"entries":{"openai":{"kid":"k1","iv":"AAAAAAAAAAAAAAAA","ciphertext":"AA==","tag":"AAAAAAAAAAAAAAAAAAAAAA==","created_at":"yesterday","updated_at":"2025-01-01T00:00:00Z"}}}', /field "created_at" is not an RFC 3339 time/],
    ['a bad entry name', '{"version":1,"entries":{"../x":{}}}', /entry name "..\/x" is not a valid name/],
  ])('refuses a malformed file (%s) with vault_file_invalid naming the file', async (_what, text, message) => {
    const path = await tempFile();
    await (await Vault.open(path, keyringK1())).set('seed', SECRET);
    await writeFile(path, text);
    const error = await caught(() => Vault.open(path, keyringK1()));
    expect(error.code).toBe('vault_file_invalid');
    expect(error.message).toContain(path);
    expect(error.message).toMatch(message);
  });

  it('rejects invalid entry names', async () => {
    const vault = await Vault.open(await tempFile(), keyringK1());
    for (const name of ['', '__proto__', '../etc', 'has space', 'x'.repeat(200)]) {
      await expect(vault.set(name, SECRET)).rejects.toMatchObject({ code: 'config_invalid' });
    }
  });

  it('never shows keys or values through util.inspect or JSON.stringify', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK2WithK1());
    await vault.set('openai', SECRET);
    expect(JSON.stringify(vault)).toBe(JSON.stringify({ path, entries: 1, kid: 'k2' }));
    expect(inspect(vault)).toBe(`Vault { path: '${path}', entries: 1, kid: 'k2' }`);
    expectNoLeak(inspect(vault, { showHidden: true, depth: 20 }));
    expectNoLeak(JSON.stringify({ vault }));
  });

  it('logs entry names and key ids, never keys or values', async () => {
    const logs = capturedLogger('trace');
    const path = await tempFile();
    const v1 = await Vault.open(path, keyringK1(), { logger: logs.logger });
    await v1.set('openai', SECRET);
    const v2 = await Vault.open(path, keyringK2WithK1(), { logger: logs.logger });
    await v2.rotate();
    await v2.remove('openai');
    logs.logger.info({ vault: v2, keyring: keyringK2WithK1() }, 'a careless log line');
    expect(logs.lines().map((line) => line.msg)).toEqual(['vault entry set', 'vault rotated to the current key', 'vault entry removed', 'a careless log line']);
    expect(logs.lines()[0]).toMatchObject({ entry: 'openai', kid: 'k1' });
    expectNoLeak(logs.text());
  });
});

describe('runVaultCommand', () => {
  function io(options: { env?: NodeJS.ProcessEnv; stdin?: string; cwd?: string } = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const logs = capturedLogger('trace');
    return {
      io: {
        env: options.env ?? env(`k1:${K1_B64}`),
        stdout: { write: (chunk: string) => out.push(chunk) },
        stderr: { write: (chunk: string) => err.push(chunk) },
        stdin: Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]),
        logger: logs.logger,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      },
      stdout: () => out.join(''),
      stderr: () => err.join(''),
      logs,
    };
  }

  it('set (stdin and --from-env), list, rotate, remove, end to end', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'signalbox-vault-cli-'));
    const path = join(cwd, 'vault', 'credentials.json');
    const captured: string[] = [];
    const run = async (args: string[], options: Parameters<typeof io>[0] = {}): Promise<{ code: number; stdout: string; stderr: string }> => {
      const call = io({ cwd, ...options });
      const code = await runVaultCommand(args, call.io);
      captured.push(call.stdout(), call.stderr(), call.logs.text());
      return { code, stdout: call.stdout(), stderr: call.stderr() };
    };

    expect(await run(['set', 'openai'], { stdin: `${SECRET}\n` })).toMatchObject({ code: 0, stdout: `stored "openai" under key id "k1" in ${path}\n` });
    expect(await run(['vault', 'set', 'anthropic', '--from-env', 'ANTHROPIC_KEY'], { env: { ...env(`k1:${K1_B64}`), ANTHROPIC_KEY: OTHER_SECRET } })).toMatchObject({ code: 0 });
    expect((await Vault.open(path, keyringK1())).get('openai')).toBe(SECRET);
    expect((await Vault.open(path, keyringK1())).get('anthropic')).toBe(OTHER_SECRET);

    const list = await run(['list']);
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split('\n').map((line) => line.split('\t').slice(0, 2))).toEqual([
      ['anthropic', 'k1'],
      ['openai', 'k1'],
    ]);

    const rotated = await run(['rotate'], { env: env(`k2:${K2_B64}`, `k1:${K1_B64}`) });
    expect(rotated).toMatchObject({ code: 0, stdout: 're-encrypted 2 entries under key id "k2"\n' });
    expect((await Vault.open(path, keyringK2())).get('openai')).toBe(SECRET);

    expect(await run(['remove', 'openai'], { env: env(`k2:${K2_B64}`) })).toMatchObject({ code: 0 });
    expect(await run(['remove', 'openai'], { env: env(`k2:${K2_B64}`) })).toMatchObject({ code: 1, stderr: expect.stringContaining('no entry named "openai"') });
    expect((await run(['list'], { env: env(`k2:${K2_B64}`) })).stdout).toMatch(/^anthropic\tk2\t/);

    for (const text of captured) expectNoLeak(text);
  });

  it('honours --file and --file=', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-vault-cli-'));
    const a = io({ stdin: SECRET });
    expect(await runVaultCommand(['set', 'x', '--file', join(dir, 'a.json')], a.io)).toBe(0);
    const b = io({ stdin: SECRET });
    expect(await runVaultCommand([`--file=${join(dir, 'b.json')}`, 'set', 'y'], b.io)).toBe(0);
    expect((await Vault.open(join(dir, 'a.json'), keyringK1())).list().map((e) => e.name)).toEqual(['x']);
    expect((await Vault.open(join(dir, 'b.json'), keyringK1())).list().map((e) => e.name)).toEqual(['y']);
  });

  it('refuses a value given as an argument, without echoing it', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'signalbox-vault-cli-'));
    for (const args of [['set', 'openai', SECRET], ['set', 'openai', `--value=${SECRET}`], ['set', `--${SECRET}`, 'openai'], [SECRET], ['set', 'openai', '-k', SECRET]]) {
      const call = io({ cwd, stdin: 'should-not-be-read' });
      expect(await runVaultCommand(args, call.io)).toBe(2);
      expectNoLeak(call.stdout() + call.stderr());
    }
    const call = io({ cwd });
    await runVaultCommand(['set', 'openai', SECRET], call.io);
    expect(call.stderr()).toMatch(/never takes the value as an argument/);
    await expect(stat(join(cwd, 'vault', 'credentials.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('fails clearly on an empty value, a missing env var, a missing key, usage errors', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'signalbox-vault-cli-'));
    const cases: Array<[string[], Parameters<typeof io>[0], number, RegExp]> = [
      [['set', 'openai'], { stdin: '' }, 1, /no value on stdin/],
      [['set', 'openai', '--from-env', 'NOPE'], {}, 1, /environment variable NOPE is not set or empty/],
      [['list'], { env: {} }, 1, /SIGNALBOX_VAULT_KEY is not set/],
      [['list'], { env: env(`k1:${Buffer.alloc(7, 1).toString('base64')}`) }, 1, /decodes to 7 bytes/],
      [[], {}, 2, /usage: signalbox vault/],
      [['frobnicate'], {}, 2, /unknown command \(the commands are set, list, remove and rotate\)/],
      [['list', '--frob'], {}, 2, /unknown option \(the options are --file, --from-env and --help\)/],
      [['set'], {}, 2, /vault set needs an entry name/],
      [['list', 'extra'], {}, 2, /vault list takes no arguments/],
      [['list', '--from-env', 'X'], {}, 2, /--from-env only applies to vault set/],
      [['list', '--file'], {}, 2, /--file needs a value/],
    ];
    for (const [args, options, code, message] of cases) {
      const call = io({ cwd, ...options });
      expect(await runVaultCommand(args, call.io), args.join(' ')).toBe(code);
      expect(call.stderr()).toMatch(message);
      expectNoLeak(call.stdout() + call.stderr());
    }
    const help = io({ cwd });
    expect(await runVaultCommand(['--help'], help.io)).toBe(0);
    expect(help.stdout()).toMatch(/usage: signalbox vault/);
  });

  it('reports a wrong master key with the entry and key id, and exit code 1', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'signalbox-vault-cli-'));
    expect(await runVaultCommand(['set', 'openai'], io({ cwd, stdin: SECRET }).io)).toBe(0);
    const call = io({ cwd, env: env(`k2:${K2_B64}`, `k1:${K2_B64}`) });
    expect(await runVaultCommand(['rotate'], call.io)).toBe(1);
    expect(call.stderr()).toMatch(/^signalbox vault: vault_decrypt_failed: vault entry "openai" does not decrypt with key id "k1"/);
    expectNoLeak(call.stdout() + call.stderr() + call.logs.text());
  });
});

describe('Vault writes', () => {
  it('refuses to write under a key id whose configured key does not decrypt the entries already under it', async () => {
    const path = await tempFile();
    await (await Vault.open(path, keyringK1())).set('openai', SECRET);
    const before = await readFile(path, 'utf8');
    // The same key id with another key: a mistyped SIGNALBOX_VAULT_KEY.
    const wrong = await Vault.open(path, keyringFromEnv(env(`k1:${K2_B64}`)));
    const error = await caught(() => wrong.set('anthropic', OTHER_SECRET));
    expect(error.code).toBe('vault_decrypt_failed');
    expect(error.message).toMatch(/^cannot store "anthropic": vault entry "openai" does not decrypt with key id "k1"/);
    expect(error.details).toEqual({ entry: 'openai', kid: 'k1' });
    expectNoLeak(`${error.message} ${inspect(error)}`);
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  it('reports a failed write as vault_write_failed and keeps the entries it had', async () => {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1());
    await writeFile(join(path, '..'), 'a file where the vault directory should be');
    const error = await caught(() => vault.set('openai', SECRET));
    expect(error.code).toBe('vault_write_failed');
    expect(error.message).toContain(path);
    expect(vault.list()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real `signalbox vault` command

/** The environment of a CLI child: this process's, without any vault key, plus the given ones. */
function childEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const base = { ...process.env };
  delete base.SIGNALBOX_VAULT_KEY;
  delete base.SIGNALBOX_VAULT_OLD_KEYS;
  return { ...base, ...extra };
}

/** Runs `signalbox vault ...` as a child process (as `npm run signalbox -- vault ...` does). */
function cli(args: string[], options: { env: NodeJS.ProcessEnv; stdin?: string }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'vault', ...args], {
      cwd: process.cwd(),
      env: childEnv(options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => void (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

describe('signalbox vault (the CLI)', () => {
  it('set (stdin and --from-env), list, rotate, and clear failures on a wrong or unknown key, never printing a value or key', { timeout: 90_000 }, async () => {
    const path = await tempFile();
    const outputs: string[] = [];
    const run = async (args: string[], options: { env: NodeJS.ProcessEnv; stdin?: string }) => {
      const result = await cli([...args, '--file', path], options);
      outputs.push(result.stdout, result.stderr);
      return result;
    };
    const k1 = { SIGNALBOX_VAULT_KEY: `k1:${K1_B64}` };

    expect(await run(['set', 'openai'], { env: k1, stdin: `${SECRET}\n` })).toEqual({ code: 0, stdout: `stored "openai" under key id "k1" in ${path}\n`, stderr: '' });
    expect(await run(['set', 'anthropic', '--from-env', 'ANTHROPIC_KEY'], { env: { ...k1, ANTHROPIC_KEY: OTHER_SECRET } })).toMatchObject({ code: 0 });
    expect((await Vault.open(path, keyringK1())).get('openai')).toBe(SECRET);
    expect((await Vault.open(path, keyringK1())).get('anthropic')).toBe(OTHER_SECRET);

    const listed = await run(['list'], { env: k1 });
    expect(listed.code).toBe(0);
    expect(listed.stdout.trim().split('\n').map((line) => line.split('\t').slice(0, 2))).toEqual([
      ['anthropic', 'k1'],
      ['openai', 'k1'],
    ]);

    // Rotation: the new key is current, the old one moves to SIGNALBOX_VAULT_OLD_KEYS.
    const rotating = { SIGNALBOX_VAULT_KEY: `k2:${K2_B64}`, SIGNALBOX_VAULT_OLD_KEYS: `k1:${K1_B64}` };
    expect(await run(['rotate'], { env: rotating })).toMatchObject({ code: 0, stdout: 're-encrypted 2 entries under key id "k2"\n' });
    const k2 = { SIGNALBOX_VAULT_KEY: `k2:${K2_B64}` };
    expect((await run(['list'], { env: k2 })).stdout).toMatch(/^anthropic\tk2\t.*\nopenai\tk2\t/);
    const after = await Vault.open(path, keyringK2());
    expect([after.get('openai'), after.get('anthropic')]).toEqual([SECRET, OTHER_SECRET]);

    const before = await readFile(path, 'utf8');
    const [wrongSet, wrongRotate, unknownKid, badKey] = await Promise.all([
      // The right key id with the wrong key.
      run(['set', 'mistral'], { env: { SIGNALBOX_VAULT_KEY: `k2:${K1_B64}` }, stdin: 'sk-mistral-value' }),
      // A new key, with the wrong key given for the old key id.
      run(['rotate'], { env: { SIGNALBOX_VAULT_KEY: `k3:${randomBytes(32).toString('base64')}`, SIGNALBOX_VAULT_OLD_KEYS: `k2:${K1_B64}` } }),
      // A new key, and the old one forgotten.
      run(['rotate'], { env: { SIGNALBOX_VAULT_KEY: `k3:${randomBytes(32).toString('base64')}` } }),
      // A key that is not 32 bytes.
      run(['list'], { env: { SIGNALBOX_VAULT_KEY: `k2:${K2.subarray(0, 16).toString('base64')}` } }),
    ]);
    expect(wrongSet.code).toBe(1);
    expect(wrongSet.stderr).toMatch(/^signalbox vault: vault_decrypt_failed: cannot store "mistral": vault entry "anthropic" does not decrypt with key id "k2"/);
    expect(wrongRotate.code).toBe(1);
    expect(wrongRotate.stderr).toMatch(/^signalbox vault: vault_decrypt_failed: vault entry "\w+" does not decrypt with key id "k2"/);
    expect(unknownKid.code).toBe(1);
    expect(unknownKid.stderr).toMatch(/^signalbox vault: vault_key_unknown: vault entry "\w+" was written under key id "k2", which is neither SIGNALBOX_VAULT_KEY \(key id "k3"\)/);
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/^signalbox vault: vault_key_invalid: SIGNALBOX_VAULT_KEY: the key for key id "k2" decodes to 16 bytes/);
    for (const result of [wrongSet, wrongRotate, unknownKid, badKey]) expect(result.stdout).toBe('');
    expect(await readFile(path, 'utf8')).toBe(before);

    for (const text of outputs) {
      expectNoLeak(text);
      expect(text).not.toContain('sk-mistral-value');
    }
  });

  it('is listed in the usage of signalbox, and prints its own with --help', { timeout: 30_000 }, async () => {
    const help = await cli(['--help'], { env: {} });
    expect(help).toMatchObject({ code: 0, stdout: expect.stringContaining('usage: signalbox vault <command>') });
    const top = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'help'], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => void (out += chunk.toString()));
      child.once('error', reject);
      child.once('close', () => resolve(out));
    });
    expect(top).toMatch(/^ {2}vault set\|list\|remove\|rotate/m);
  });
});

// ---------------------------------------------------------------------------------------------
// CredentialSource

describe('CredentialSource', () => {
  const open: CredentialSource[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((source) => source.close()));
    vi.restoreAllMocks();
  });

  async function source(options: Partial<CredentialSourceOptions> & { file: string }): Promise<CredentialSource> {
    const opened = await CredentialSource.open({ env: env(`k1:${K1_B64}`), ...options });
    open.push(opened);
    return opened;
  }

  /** Waits until `check` holds, up to `ms`; returns how long it took. */
  async function eventually(check: () => boolean, ms: number): Promise<number> {
    const started = Date.now();
    while (!check()) {
      if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return Date.now() - started;
  }

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

  async function seeded(): Promise<string> {
    const path = await tempFile();
    const vault = await Vault.open(path, keyringK1());
    await vault.set('openai', SECRET);
    await vault.set('anthropic/prod', OTHER_SECRET);
    return path;
  }

  it('serves the entries of the file, names sorted, and nothing for unknown names', async () => {
    const credentials = await source({ file: await seeded() });
    expect(credentials.get('openai')).toBe(SECRET);
    expect(credentials.get('anthropic/prod')).toBe(OTHER_SECRET);
    expect(credentials.get('missing')).toBeUndefined();
    expect(credentials.get('__proto__')).toBeUndefined();
    expect(credentials.has('openai')).toBe(true);
    expect(credentials.names()).toEqual(['anthropic/prod', 'openai']);
    expect(credentials.list().map((e) => [e.name, e.kid])).toEqual([
      ['anthropic/prod', 'k1'],
      ['openai', 'k1'],
    ]);
  });

  it('treats a file that does not exist yet as empty, and picks it up once written', async () => {
    const path = await tempFile(); // its directory does not exist either: the poll finds it
    const credentials = await source({ file: path, pollIntervalMs: 100 });
    expect(credentials.names()).toEqual([]);
    await (await Vault.open(path, keyringK1())).set('openai', SECRET);
    await eventually(() => credentials.get('openai') === SECRET, 3_000);
  });

  it('decrypts an entry once per change, not once per request', async () => {
    const path = await seeded();
    const credentials = await source({ file: path });
    const decrypt = vi.spyOn(Vault.prototype, 'get');
    for (let i = 0; i < 100; i++) expect(credentials.get('openai')).toBe(SECRET);
    expect(decrypt).toHaveBeenCalledTimes(1);

    await (await Vault.open(path, keyringK1())).set('openai', `${SECRET}-v2`);
    await eventually(() => credentials.get('openai') === `${SECRET}-v2`, 1_000);
    decrypt.mockClear();
    for (let i = 0; i < 100; i++) credentials.get('openai');
    expect(decrypt).toHaveBeenCalledTimes(0);
  });

  it('sees Vault.set from another Vault instance within a second', async () => {
    const path = await seeded();
    const credentials = await source({ file: path });
    const writer = await Vault.open(path, keyringK1());
    await writer.set('mistral', 'sk-mistral-1');
    await eventually(() => credentials.get('mistral') === 'sk-mistral-1', 1_000);
    await writer.set('openai', `${SECRET}-rotated`);
    await eventually(() => credentials.get('openai') === `${SECRET}-rotated`, 1_000);
    await writer.remove('mistral');
    await eventually(() => credentials.get('mistral') === undefined, 1_000);
    expect(credentials.names()).toEqual(['anthropic/prod', 'openai']);
  });

  it('sees `signalbox vault set` within a second of the command finishing', { timeout: 60_000 }, async () => {
    const path = await seeded();
    const logs = capturedLogger('trace');
    const credentials = await source({ file: path, logger: logs.logger });
    const result = await cli(['set', 'openai', '--file', path], { env: { SIGNALBOX_VAULT_KEY: `k1:${K1_B64}` }, stdin: `${SECRET}-from-cli\n` });
    expect(result.code).toBe(0);
    await eventually(() => credentials.get('openai') === `${SECRET}-from-cli`, 1_000);
    expect(logs.lines().map((line) => line.msg)).toContain('credential vault reloaded');
    expect(logs.text()).not.toContain(`${SECRET}-from-cli`);
    expectNoLeak(logs.text() + result.stdout + result.stderr);
  });

  it('keeps serving the previous entries when the file is corrupted, with one warning, and recovers when it is fixed', async () => {
    const path = await seeded();
    const logs = capturedLogger('trace');
    const credentials = await source({ file: path, logger: logs.logger, pollIntervalMs: 100 });
    expect(credentials.get('openai')).toBe(SECRET);

    await writeFile(path, '{ "version": 1, "entries": { "openai": ');
    await eventually(() => logs.lines().some((line) => line.level === 40), 3_000);
    await sleep(500); // several polls and any late watch event: still one warning
    const warnings = logs.lines().filter((line) => line.level === 40);
    expect(warnings).toEqual([
      expect.objectContaining({ code: 'vault_file_invalid', path, msg: 'credential vault reload failed; keeping the previous entries' }),
    ]);
    expect(credentials.get('openai')).toBe(SECRET);
    expect(credentials.get('anthropic/prod')).toBe(OTHER_SECRET);

    // Fixed: the broken file is moved aside and a new one written (vault set refuses to open a malformed file).
    await rename(path, `${path}.broken`);
    const fixed = await Vault.open(path, keyringK1());
    await fixed.set('openai', `${SECRET}-fixed`);
    await eventually(() => credentials.get('openai') === `${SECRET}-fixed`, 3_000);
    expect(credentials.names()).toEqual(['openai']);
    expectNoLeak(logs.text());
    expect(logs.text()).not.toContain(`${SECRET}-fixed`);
  });

  it('keeps the previous entries when a reload finds an entry under an unknown key id, or a wrong key', async () => {
    const path = await seeded();
    const logs = capturedLogger('trace');
    const credentials = await source({ file: path, logger: logs.logger });
    // Written by an operator whose SIGNALBOX_VAULT_KEY is already k2, which this server lacks.
    await (await Vault.open(path, keyringK2WithK1())).set('openai', `${SECRET}-k2`);
    await eventually(() => logs.lines().some((line) => line.level === 40), 1_000);
    expect(logs.lines().filter((line) => line.level === 40)).toEqual([
      expect.objectContaining({ code: 'vault_key_unknown', path, entry: 'openai', kid: 'k2' }),
    ]);
    expect(credentials.get('openai')).toBe(SECRET);

    // A tampered entry (or one written with another key under the same key id).
    await (await Vault.open(path, keyringK2WithK1())).remove('openai');
    const file = await readJson(path);
    file.entries['anthropic/prod']!.tag = Buffer.alloc(16).toString('base64');
    await writeFile(path, JSON.stringify(file));
    await eventually(() => logs.lines().filter((line) => line.level === 40).length === 2, 1_000);
    expect(logs.lines().filter((line) => line.level === 40)[1]).toMatchObject({ code: 'vault_decrypt_failed', path, entry: 'anthropic/prod', kid: 'k1' });
    expect(credentials.get('anthropic/prod')).toBe(OTHER_SECRET);
    expect(credentials.get('openai')).toBe(SECRET);
    expectNoLeak(logs.text());
  });

  it('keeps the previous entries when the file disappears', async () => {
    const path = await seeded();
    const logs = capturedLogger('trace');
    const credentials = await source({ file: path, logger: logs.logger });
    await rename(path, `${path}.moved`);
    await eventually(() => logs.lines().some((line) => line.level === 40), 1_000);
    expect(logs.lines().find((line) => line.level === 40)).toMatchObject({ code: 'vault_file_invalid', path, msg: expect.stringContaining('disappeared') });
    expect(credentials.get('openai')).toBe(SECRET);
  });

  it.skipIf(process.platform === 'win32')('notices a change fs.watch does not report (a Kubernetes-style symlink swap) by polling', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-vault-k8s-'));
    await mkdir(join(dir, 'v1'));
    await mkdir(join(dir, 'v2'));
    const v1 = await Vault.open(join(dir, 'v1', 'credentials.json'), keyringK1());
    await v1.set('openai', SECRET);
    const v2 = await Vault.open(join(dir, 'v2', 'credentials.json'), keyringK1());
    await v2.set('openai', `${SECRET}-v2`);
    await symlink('v1', join(dir, '..data'));
    await symlink(join('..data', 'credentials.json'), join(dir, 'credentials.json'));

    const credentials = await source({ file: join(dir, 'credentials.json'), pollIntervalMs: 100 });
    expect(credentials.get('openai')).toBe(SECRET);
    // The kubelet's update: a new ..data symlink renamed over the old one. credentials.json itself is untouched.
    await symlink('v2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await eventually(() => credentials.get('openai') === `${SECRET}-v2`, 3_000);
  });

  it('with watch: false, serves what it read at open until reload()', async () => {
    const path = await seeded();
    const credentials = await source({ file: path, watch: false });
    await (await Vault.open(path, keyringK1())).set('openai', `${SECRET}-v2`);
    await sleep(300);
    expect(credentials.get('openai')).toBe(SECRET);
    expect(await credentials.reload()).toBe(true);
    expect(credentials.get('openai')).toBe(`${SECRET}-v2`);
    expect(await credentials.reload()).toBe(false); // unchanged
    expect(await credentials.reload({ force: true })).toBe(true);
  });

  it('stops following the file after close()', async () => {
    const path = await seeded();
    const credentials = await source({ file: path, pollIntervalMs: 50 });
    await credentials.close();
    await (await Vault.open(path, keyringK1())).set('openai', `${SECRET}-v2`);
    await sleep(300);
    expect(await credentials.reload()).toBe(false);
    expect(credentials.get('openai')).toBe(SECRET);
  });

  it.each([
    ['no master key', {}, async () => seeded(), 'vault_key_invalid', /SIGNALBOX_VAULT_KEY is not set/],
    ['a malformed file', env(`k1:${K1_B64}`), async () => {
      const path = await seeded();
      await writeFile(path, 'not json');
      return path;
    }, 'vault_file_invalid', /is not valid JSON/],
    ['an entry under a key id it lacks', env(`k2:${K2_B64}`), async () => seeded(), 'vault_key_unknown', /was written under key id "k1"/],
    ['the wrong key for a key id', env(`k1:${K2_B64}`), async () => seeded(), 'vault_decrypt_failed', /does not decrypt with key id "k1"/],
  ])('refuses to open with %s', async (_what, environment, file, code, message) => {
    const error = await caught(async () => source({ file: await file(), env: environment as NodeJS.ProcessEnv }));
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
    expectNoLeak(`${error.message} ${inspect(error)}`);
  });

  it('never shows keys or values through logs, util.inspect, JSON.stringify or String', async () => {
    const path = await seeded();
    const logs = capturedLogger('trace');
    const credentials = await source({ file: path, logger: logs.logger, env: env(`k2:${K2_B64}`, `k1:${K1_B64}`) });
    expect(credentials.get('openai')).toBe(SECRET); // now in the cache
    expect(credentials.get('anthropic/prod')).toBe(OTHER_SECRET);

    const keyring = keyringK2WithK1();
    logs.logger.info({ credentials }, 'a careless log line');
    logs.logger.info({ nested: { credentials, keyring } }, 'another');
    logs.logger.error({ err: new Error('boom'), credentials }, 'with an error');
    logs.logger.info(credentials as unknown as object, 'the source as the merge object');
    logs.logger.info({ keyring, key: keyring.current.key, old: keyring.old, current: keyring.current }, 'the keyring in pieces');
    const line = (msg: string): Record<string, unknown> | undefined => logs.lines().find((l) => l.msg === msg);
    // pino's redaction logs copies of these objects; the masks must hold (and still say something) on the copies.
    expect(line('a careless log line')?.credentials).toEqual({ path, entries: 2, kid: 'k2' });
    expect(line('another')?.nested).toEqual({ credentials: { path, entries: 2, kid: 'k2' }, keyring: { current: 'k2', old: ['k1'] } });
    expect(line('the keyring in pieces')).toMatchObject({
      keyring: { current: 'k2', old: ['k1'] },
      key: '[vault key redacted]',
      old: { k1: '[vault key redacted]' },
      current: { kid: 'k2', key: '[vault key redacted]' },
    });
    expectNoLeak(logs.text());

    expect(JSON.stringify(credentials)).toBe(JSON.stringify({ path, entries: 2, kid: 'k2' }));
    expect(inspect(credentials)).toBe(`CredentialSource { path: '${path}', entries: 2, kid: 'k2' }`);
    for (const text of [
      JSON.stringify({ credentials }),
      inspect(credentials, { showHidden: true, depth: 20 }),
      inspect({ credentials }, { showHidden: true, depth: 20 }),
      String(credentials),
      `${credentials}`,
    ]) {
      expectNoLeak(text);
    }
  });
});
