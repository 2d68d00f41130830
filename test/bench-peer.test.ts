/**
 * The peer benchmark (npm run bench:peer) is run by hand, not by CI; these checks keep what it
 * derives from the project's own files true, so a change elsewhere fails here rather than at
 * benchmark time: the Envoy config it builds from examples/envoy/envoy.yaml, and the Signalbox
 * config it writes, which must pass the real schema; and how it runs a server whose output
 * goes to a file.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { envoyConfig } from '../bench/peer/end-to-end.js';
import { validateEnvoyConfig } from './helpers/envoy.js';
import { signalboxConfig } from '../bench/peer/engines.js';
import { startGroup } from '../bench/peer/processes.js';

type Json = Record<string, unknown>;

function filters(yaml: string): { names: string[]; clusters: Json[]; listener: Json } {
  const doc = parseYaml(yaml) as { static_resources: { listeners: Json[]; clusters: Json[] } };
  const listener = doc.static_resources.listeners[0]!;
  const hcm = ((listener.filter_chains as Json[])[0]!.filters as Json[])[0]!.typed_config as { http_filters: { name: string }[] };
  return { names: hcm.http_filters.map((f) => f.name), clusters: doc.static_resources.clusters, listener };
}

describe('bench:peer Envoy config from examples/envoy/envoy.yaml', () => {
  it('points the listener, the ext_authz cluster and the upstream at loopback ports, without TLS or a gRPC health check', async () => {
    const { yaml } = await envoyConfig(18000, 18001, 18002);
    const { names, clusters, listener } = filters(yaml);
    expect(names).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
    expect(listener.address).toEqual({ socket_address: { address: '127.0.0.1', port_value: 18000 } });
    const byName = Object.fromEntries(clusters.map((c) => [c.name as string, c]));
    expect(JSON.stringify(byName.signalbox)).toContain('"address":"127.0.0.1","port_value":18002');
    expect(JSON.stringify(byName.llm_upstream)).toContain('"address":"127.0.0.1","port_value":18001');
    expect(yaml).not.toContain('health_checks');
    expect(yaml).not.toContain('transport_socket');
    // What the example sets for ext_authz is kept as it is.
    expect(yaml).toContain('failure_mode_allow: false');
    expect(yaml).toContain('with_request_body:');
  });

  it('is a config the real Envoy accepts, with and without ext_authz', async () => {
    for (const authzPort of [18002, undefined]) {
      const validation = await validateEnvoyConfig(await envoyConfig(18000, 18001, authzPort));
      expect(validation.ok, validation.output).toBe(true);
    }
  });

  it('drops only the ext_authz filter for the setup without one', async () => {
    const { names } = filters((await envoyConfig(18000, 18001, undefined)).yaml);
    expect(names).toEqual(['envoy.filters.http.router']);
  });
});

describe('bench:peer Signalbox config', () => {
  const ports = { grpc: 19191, http: 18181 };

  it('is valid for the JWT policy: JWKS file, issuer, audience, audit on, memory store', () => {
    const config = parseConfig(
      signalboxConfig({ bundle: '/tmp/b.tar.gz', decision: 'signalbox/authz/decision', identity: { jwksFile: '/tmp/jwks.json', issuer: 'https://idp', audience: 'signalbox' } }, ports, '/tmp/a/decisions.jsonl'),
      {},
    );
    expect(config.server.grpc_addr).toBe('127.0.0.1:19191');
    expect(config.identity.jwks_file).toBe('/tmp/jwks.json');
    expect(config.identity.audience).toEqual(['signalbox']);
    expect(config.audit.path).toBe('/tmp/a/decisions.jsonl');
    expect(config.store.type).toBe('memory');
  });

  it('is valid for the header policy: its decision path and no identity provider', () => {
    const config = parseConfig(signalboxConfig({ bundle: '/tmp/b.tar.gz', decision: 'envoy/authz/allow' }, ports, '/tmp/a/decisions.jsonl'), {});
    expect(config.policy.decision).toBe('envoy/authz/allow');
    expect(config.identity.jwks_file).toBeUndefined();
  });
});

describe('bench:peer server output', () => {
  it('goes straight to the file it is given, not through a pipe, and its tail is what errors quote', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-peer-output-'));
    try {
      const file = join(dir, 'server.log');
      const group = startGroup('printer', process.execPath, ['-e', 'for (let i = 0; i < 5000; i++) console.log(`decision ${i}`); console.error("stopped")'], { outputFile: file });
      expect(group.child.stdout).toBeNull();
      expect(group.child.stderr).toBeNull();
      await new Promise((resolve) => group.child.once('exit', resolve));
      const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
      expect(lines.filter((line) => line.startsWith('decision ')).length).toBe(5000);
      expect(lines.at(-1)).toBe('stopped');
      const tail = group.output();
      expect(tail.length).toBeLessThanOrEqual(8192);
      expect(tail.endsWith('decision 4999\nstopped\n')).toBe(true);
      await group.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
