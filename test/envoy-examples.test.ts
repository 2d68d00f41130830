/**
 * Every Envoy config under examples/envoy/ (the folder is listed, so a new example is picked up),
 * validated by the real Envoy binary (`envoy --mode validate`, scripts/install-envoy.sh): the file
 * as shipped, and the loopback rewrite the end-to-end tests run (test/helpers/envoy.ts). A
 * warning (a deprecated field, say) fails too: an example should not teach what Envoy is removing.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { projectRoot } from '../src/core/paths.js';
import { envoyExampleConfig, envoyExamples, validateEnvoyConfig, validateEnvoyFile, type EnvoyValidation } from './helpers/envoy.js';

const root = projectRoot();

/** Every cluster of `example` pointed at the discard port: validation connects to nothing. */
async function allClusters(example: string): Promise<Record<string, number>> {
  const doc = parse(await readFile(join(root, example), 'utf8')) as { static_resources?: { clusters?: { name: string }[] } };
  return Object.fromEntries((doc.static_resources?.clusters ?? []).map((c) => [c.name, 9]));
}

/** Envoy's log lines at warning level or above (its verdict line is not one). */
function complaints(validation: EnvoyValidation): string[] {
  return validation.output.split('\n').filter((line) => /\]\[(warning|error|critical)\]/.test(line));
}

describe('Envoy examples, validated by the real Envoy', () => {
  const examples = envoyExamples();

  it('lists the folder', () => {
    expect(examples).toEqual(expect.arrayContaining(['examples/envoy/envoy.yaml', 'examples/envoy/envoy-http.yaml', 'examples/envoy/envoy-routing.yaml']));
  });

  it.each(examples)('%s is valid as shipped, without warnings', async (example) => {
    const validation = await validateEnvoyFile(join(root, example));
    expect(validation.ok, validation.output).toBe(true);
    expect(validation.output).toContain('OK');
    expect(complaints(validation), validation.output).toEqual([]);
  });

  it.each(examples)('%s is valid as the tests run it (loopback addresses, admin listener, access log)', async (example) => {
    const config = await envoyExampleConfig(example, { clusters: await allClusters(example), accessLog: '/dev/null' });
    const validation = await validateEnvoyConfig(config);
    expect(validation.ok, `${validation.output}\n${config.yaml}`).toBe(true);
    expect(complaints(validation), validation.output).toEqual([]);
  });

  it('fails on an unknown field, an unregistered type and a rule violation (the check can fail)', async () => {
    const good = await readFile(join(root, 'examples', 'envoy', 'envoy.yaml'), 'utf8');
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-envoy-bad-'));
    try {
      const variants: [string, string, RegExp][] = [
        ['unknown-field.yaml', good.replace('failure_mode_allow: false', 'failure_mode_allowed: false'), /failure_mode_allowed/],
        ['unknown-type.yaml', good.replace('ext_authz.v3.ExtAuthz', 'ext_authz.v3.ExtAuthzz'), /ExtAuthzz/],
        ['empty-cluster.yaml', good.replace('envoy_grpc: { cluster_name: signalbox }', 'envoy_grpc: { cluster_name: "" }'), /ClusterName: value length must be at least 1/],
      ];
      for (const [name, text, error] of variants) {
        expect(text, name).not.toBe(good);
        await writeFile(join(dir, name), text);
        const validation = await validateEnvoyFile(join(dir, name));
        expect(validation.ok, name).toBe(false);
        expect(validation.output, name).toMatch(error);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the rewrite refuses a cluster the caller did not place, and a cluster the example lacks', async () => {
    await expect(envoyExampleConfig('examples/envoy/envoy.yaml', { clusters: { signalbox: 9 } })).rejects.toThrow(/cluster llm_upstream has no test address/);
    await expect(envoyExampleConfig('examples/envoy/envoy.yaml', { clusters: { signalbox: 9, llm_upstream: 9, nowhere: 9 } })).rejects.toThrow(/no cluster named nowhere/);
  });
});
