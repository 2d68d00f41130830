/**
 * One audit chain per worker (`server.workers` > 1). Each worker appends to its own file, named
 * after the configured one: `audit/decisions.jsonl` becomes `audit/decisions.w1.jsonl`,
 * `decisions.w2.jsonl`, ... A worker restarted after a crash keeps its number, so it continues
 * its chain (recovering a torn tail as on any start). Rotation works per file as before
 * (`decisions.w1.000000000420.jsonl`), since the worker's file name is the rotated family's stem.
 *
 * So that a whole chain cannot vanish unnoticed, every worker opens its run with a `workers`
 * record, chained like any record, naming the file of every worker of the run; `audit verify
 * DIR` checks each chain and that every file a `workers` record names is there.
 */
import { createReadStream } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** The audit file of worker `worker` (1-based), beside the configured `path`. */
export function workerAuditPath(path: string, worker: number): string {
  const ext = extname(path);
  return join(dirname(path), `${basename(path, ext)}.w${worker}${ext}`);
}

/** The record a worker opens its run with: which worker it is and the file of every worker of the run. */
export function workersRecord(path: string, worker: number, workers: number, now: Date): Record<string, unknown> {
  return {
    type: 'workers',
    timestamp: now.toISOString(),
    worker,
    workers,
    files: Array.from({ length: workers }, (_, i) => basename(workerAuditPath(path, i + 1))),
  };
}

/** The file names the `workers` records in `files` name (the chains that must be present beside them). */
export async function namedChains(files: readonly string[]): Promise<Set<string>> {
  const named = new Set<string>();
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const line of lines) {
      // Cheap test first: the file is mostly decision records.
      if (!line.includes('"workers"')) continue;
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        continue; // verification reports unreadable lines
      }
      const r = record as { type?: unknown; files?: unknown } | null;
      if (r?.type !== 'workers' || !Array.isArray(r.files)) continue;
      for (const name of r.files) if (typeof name === 'string') named.add(name);
    }
  }
  return named;
}
