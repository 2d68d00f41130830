/**
 * Benchmark variants of the default bundle: the same compiled policy with its limits data
 * changed, so the runs differ only in what is enforced. Repacking the data keeps the WASM
 * identical (no OPA needed to run the benchmark).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { createGunzip, gzipSync } from 'node:zlib';
import { extract, pack } from 'tar-stream';

async function entries(path: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const reader = extract();
  reader.on('entry', (header, stream, next) => {
    void buffer(stream).then((content) => {
      files.set(header.name, content);
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => {
    reader.on('finish', resolve);
    reader.on('error', reject);
  });
  Readable.from(await readFile(path)).pipe(createGunzip()).pipe(reader);
  await done;
  return files;
}

/** Writes `out`: the bundle at `path` with `change` applied to its data.json. */
export async function withData(path: string, out: string, change: (data: Record<string, unknown>) => void): Promise<void> {
  const files = await entries(path);
  const name = [...files.keys()].find((n) => n.replace(/^\//, '') === 'data.json');
  if (!name) throw new Error(`${path} has no data.json`);
  const data = JSON.parse(files.get(name)!.toString('utf8')) as Record<string, unknown>;
  change(data);
  files.set(name, Buffer.from(JSON.stringify(data)));
  const writer = pack();
  for (const [entry, content] of files) writer.entry({ name: entry }, content);
  writer.finalize();
  await writeFile(out, gzipSync(await buffer(writer)));
}
