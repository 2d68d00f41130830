import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle, type BuildOptions } from '../../src/bundles/build.js';

/** Compiles Rego source text (and optional data) into a bundle tarball in a temp dir. */
export async function buildTestBundle(
  rego: string,
  options: BuildOptions & { data?: object } = {},
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-policy-'));
  const src = join(dir, 'src');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(src);
  await writeFile(join(src, 'policy.rego'), rego);
  if (options.data) await writeFile(join(src, 'data.json'), JSON.stringify(options.data));
  const out = join(dir, 'bundle.tar.gz');
  await buildBundle(src, out, options);
  return out;
}
