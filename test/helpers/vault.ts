import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../src/core/log.js';
import { CredentialSource } from '../../src/vault/credentials.js';
import { createKeyring } from '../../src/vault/keyring.js';
import { Vault } from '../../src/vault/vault.js';

/** A fresh master key and a provider key that looks real, so tests can search logs for them. */
export function testSecrets(): { masterKey: Buffer; openaiKey: string } {
  return { masterKey: randomBytes(32), openaiKey: `sk-proj-${randomBytes(24).toString('hex')}` };
}

/**
 * A real encrypted vault file in a temp dir holding `entries`, opened as the server opens it
 * (keyring from the environment variable), without watching.
 */
export async function openTestVault(masterKey: Buffer, entries: Record<string, string>, logger: Logger): Promise<CredentialSource> {
  const file = join(await mkdtemp(join(tmpdir(), 'signalbox-vault-')), 'credentials.json');
  const vault = await Vault.open(file, createKeyring({ kid: 'k1', key: masterKey }));
  for (const [name, value] of Object.entries(entries)) await vault.set(name, value);
  return CredentialSource.open({ file, env: { SIGNALBOX_VAULT_KEY: `k1:${masterKey.toString('base64')}` }, logger, watch: false });
}
