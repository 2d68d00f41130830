/**
 * Benchmark variants of the default bundle: the same compiled policy with its limits data
 * changed, so the runs differ only in what is enforced. Repacking the data keeps the WASM
 * identical (no OPA needed to run the benchmark).
 */
import { writeFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { join } from 'node:path';
import { readBundle } from '../src/bundles/bundle.js';
import { projectRoot } from '../src/core/paths.js';

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

/** The default bundle as shipped. */
export function shippedBundle(): string {
  return join(projectRoot(), 'bundles', 'signalbox.tar.gz');
}

/** Writes `out`: the default bundle with its limits emptied (no budgets, no rate limits), so a run measures decisions, not enforcement. */
export async function unlimitedBundle(out: string): Promise<void> {
  await withData(shippedBundle(), out, (data) => {
    const limits = (data.signalbox as { limits: Record<string, unknown> }).limits;
    limits.budgets_usd = { user: {}, team: {}, org: {} };
    limits.user_overrides_usd = {};
    limits.rate_limits = {};
  });
}

/** The chat body every benchmark sends: a system and a user message and one tool (937 bytes as shipped). */
export function chatBody(model = 'gpt-4o-mini', tool = 'web_search'): string {
  return JSON.stringify({
    model,
    messages: [
      { role: 'system', content: 'You are a helpful assistant. '.repeat(10) },
      { role: 'user', content: 'Summarise the quarterly report in three bullet points. '.repeat(8) },
    ],
    tools: [{ type: 'function', function: { name: tool, parameters: { type: 'object' } } }],
    max_tokens: 512,
  });
}
