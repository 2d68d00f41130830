import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../src/core/paths.js';
import { sourceRevision } from '../src/bundles/build.js';
import { parseBundle, readBundle } from '../src/bundles/bundle.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { runOpa } from '../src/bundles/opa-cli.js';
import { buildTestBundle } from './helpers/bundles.js';

const root = projectRoot();

describe('committed bundles', () => {
  it('are not stale: every policies/<name>/ has bundles/<name>.tar.gz built from its current sources', async () => {
    const folders = (await readdir(join(root, 'policies'), { withFileTypes: true })).filter((e) => e.isDirectory());
    expect(folders.length).toBeGreaterThan(0);
    for (const folder of folders) {
      const bundle = await readBundle(join(root, 'bundles', `${folder.name}.tar.gz`));
      const expected = await sourceRevision(join(root, 'policies', folder.name));
      expect(bundle.manifest.revision, `bundles/${folder.name}.tar.gz is stale: run "npm run build:policies"`).toBe(expected);
    }
  });

  it('the default bundle loads, declares its decision and response rules and carries its data', async () => {
    const bundle = await readBundle(join(root, 'bundles', 'signalbox.tar.gz'));
    expect(bundle.manifest.wasm.map((w) => w.entrypoint)).toEqual(['signalbox/authz/decision', 'signalbox/authz/response']);
    expect(bundle.data).toHaveProperty('signalbox.permissions.roles');
    const engine = await PolicyEngine.create(bundle, { entrypoint: 'signalbox/authz/decision' });
    expect(engine.revision).toBe(bundle.manifest.revision);
    expect(engine.hasEntrypoint('signalbox/authz/response')).toBe(true);
    expect(engine.hasEntrypoint('signalbox/authz/nothing')).toBe(false);
    // The response rule is evaluated on the same module as the decision.
    const clean = engine.evaluateEntrypoint('signalbox/authz/response', { response: { status: 200, api: 'openai.chat', stream: false, content: { scanned: true, truncated: false, findings: [] } } }, 0n);
    expect(clean.result).toEqual({ allowed: true, reasons: ['allowed'] });
    expect(() => engine.evaluateEntrypoint('signalbox/authz/nothing', {}, 0n)).toThrow(/no entrypoint/);
  });

  it('the Rego unit tests beside the policies pass under opa test', async () => {
    const folders = (await readdir(join(root, 'policies'), { withFileTypes: true })).filter((e) => e.isDirectory());
    for (const folder of folders) {
      // Each folder is tested as the bundle it becomes (-b), so data.json sits where it will at run time.
      const run = await runOpa(['test', '--format', 'json', '-b', join(root, 'policies', folder.name)]);
      const results = JSON.parse(run.stdout) as { name: string; fail?: boolean; error?: unknown }[];
      expect(results.length, `policies/${folder.name} has no Rego tests`).toBeGreaterThan(0);
      expect(results.filter((r) => r.fail || r.error).map((r) => r.name)).toEqual([]);
      expect(run.exitCode).toBe(0);
    }
  });

  it('the revision changes with the sources and ignores Rego tests', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-rev-'));
    await writeFile(join(dir, 'p.rego'), 'package p\n\nx := 1\n');
    const first = await sourceRevision(dir);
    await writeFile(join(dir, 'p_test.rego'), 'package p_test\n\ntest_x if true\n');
    expect(await sourceRevision(dir)).toBe(first);
    await writeFile(join(dir, 'p.rego'), 'package p\n\nx := 2\n');
    expect(await sourceRevision(dir)).not.toBe(first);
  });
});

describe('bundle validation', () => {
  it('rejects bytes that are not a gzip tarball', async () => {
    await expect(parseBundle(Buffer.from('not a bundle'), 'junk')).rejects.toMatchObject({ code: 'bundle_unreadable' });
  });

  it('rejects a missing file', async () => {
    await expect(readBundle('/nonexistent/bundle.tar.gz')).rejects.toMatchObject({ code: 'bundle_unreadable' });
  });

  it('rejects a tarball without a manifest', async () => {
    // An empty tar archive is two zero blocks.
    await expect(parseBundle(gzipSync(Buffer.alloc(1024)), 'empty')).rejects.toMatchObject({ code: 'bundle_invalid' });
  });

  it('rejects a configured decision that is not an entrypoint', async () => {
    const bundle = await readBundle(join(root, 'bundles', 'signalbox.tar.gz'));
    await expect(PolicyEngine.create(bundle, { entrypoint: 'envoy/authz/allow' })).rejects.toMatchObject({ code: 'bundle_entrypoint_missing' });
  });

  it('rejects a bundle whose policy traps on the smoke evaluation', async () => {
    const path = await buildTestBundle(['package t', '', '# METADATA', '# entrypoint: true', 'decision := x if {', '  some x in [1, 2]', '}', ''].join('\n'));
    await expect(PolicyEngine.create(await readBundle(path), { entrypoint: 't/decision' })).rejects.toMatchObject({ code: 'bundle_invalid' });
  });

  it('fails the build of a policy without an entrypoint', async () => {
    await expect(buildTestBundle('package t\n\nallow := true\n')).rejects.toMatchObject({ code: 'policy_build_failed' });
  });

  it('fails the build of a policy with a syntax error and shows OPA\'s message', async () => {
    await expect(buildTestBundle('package t\n\nallow := {\n')).rejects.toThrow(/policy\.rego:\d+/);
  });
});
