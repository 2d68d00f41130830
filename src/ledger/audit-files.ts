/**
 * Finding and reading the audit files a process writes, without importing the audit room (the
 * ledger sits beside it): the configured file, its per-worker chains (`decisions.w2.jsonl`) and
 * their rotated predecessors (`decisions.w2.000000000420.jsonl`), oldest first per chain. A file
 * is known by the hash of its first line, not its name, so a rotation (a rename) keeps its
 * cursor; only whole lines are read, so a torn tail waits until it is complete or recovered.
 */
import { createHash } from 'node:crypto';
import { open, readdir } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';

/** An audit file of the family, and its chain (`""`, or `w2`). */
export interface AuditFile {
  readonly path: string;
  readonly chain: string;
}

/** Every file of the audit log at `path`: per chain, rotated files by seq, then the live one. */
export async function auditFiles(path: string): Promise<AuditFile[]> {
  const ext = extname(path);
  const stem = basename(path, ext);
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escape(stem)}(?:\\.(w\\d+))?(?:\\.(\\d{12}))?${escape(ext)}$`);
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return [];
  }
  const files = names.flatMap((name) => {
    const match = pattern.exec(name);
    return match ? [{ path: join(dirname(path), name), chain: match[1] ?? '', seq: match[2] === undefined ? Infinity : Number(match[2]) }] : [];
  });
  files.sort((a, b) => (a.chain === b.chain ? a.seq - b.seq : a.chain < b.chain ? -1 : 1));
  return files.map(({ path: p, chain }) => ({ path: p, chain }));
}

const HEAD_BYTES = 64 * 1024;

/** The identity of a file: the SHA-256 of its first whole line; undefined until it has one. */
export async function fileHead(path: string): Promise<string | undefined> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const buffer = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, HEAD_BYTES, 0);
    const end = buffer.subarray(0, bytesRead).indexOf(0x0a);
    return end < 0 ? undefined : createHash('sha256').update(buffer.subarray(0, end)).digest('hex');
  } finally {
    await handle.close();
  }
}

/** Whole lines read from `offset`: the lines, and the offset just past the last newline. */
export interface LinesRead {
  readonly lines: string[];
  readonly next: number;
  /** The file's size when read; past `next` lies a line not yet complete. */
  readonly size: number;
}

/** Reads at most `maxBytes` of whole lines from `offset` (a line longer than that is read whole). */
export async function readLines(path: string, offset: number, maxBytes = 4 * 1024 * 1024): Promise<LinesRead> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size <= offset) return { lines: [], next: offset, size };
    let length = Math.min(size - offset, maxBytes);
    for (;;) {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      const end = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (end >= 0) {
        const lines = buffer.subarray(0, end).toString('utf8').split('\n');
        return { lines, next: offset + end + 1, size };
      }
      if (offset + bytesRead >= size) return { lines: [], next: offset, size };
      length = Math.min(size - offset, length * 2);
    }
  } finally {
    await handle.close();
  }
}

/** How many whole lines lie past `offset` (the loader's lag, for /v1/ledger/status). */
export async function linesAfter(path: string, offset: number): Promise<number> {
  let pending = 0;
  let at = offset;
  for (;;) {
    const read = await readLines(path, at).catch(() => undefined);
    if (!read || read.next === at) return pending;
    pending += read.lines.length;
    at = read.next;
  }
}
