/**
 * Benchmark variants of the default bundle: the same compiled policy with its limits data
 * changed, so the runs differ only in what is enforced. Repacking the data keeps the WASM
 * identical (no OPA needed to run the benchmark).
 */
import { writeFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { readBundle } from '../src/bundles/bundle.js';

/**
 * Writes `out`: the bundle at `path` with `change` applied to its data.json, and its manifest
 * revision replaced when `revision` is given (so two variants are two revisions).
 */
export async function withData(path: string, out: string, change: (data: Record<string, unknown>) => void, revision?: string): Promise<void> {
  const bundle = await readBundle(path);
  const data = structuredClone(bundle.data);
  change(data);
  const manifest = revision === undefined ? undefined : Buffer.from(JSON.stringify({ ...JSON.parse(bundle.files.get('/.manifest')!.toString('utf8')), revision }));
  const writer = pack();
  for (const [name, content] of bundle.files) {
    const replaced = name === '/data.json' ? Buffer.from(JSON.stringify(data)) : name === '/.manifest' ? manifest : undefined;
    writer.entry({ name: name.slice(1) }, replaced ?? content);
  }
  writer.finalize();
  await writeFile(out, gzipSync(await buffer(writer)));
}
