/**
 * Rotating the audit file by size, with the chain running on across files. The full file is
 * renamed `<name>.<last seq, 12 digits>.<ext>` (so names sort in chain order) and a new file is
 * started at the configured path, whose first record is a `rotation` record naming the previous
 * file, its last seq and its last hash; it is chained like any record. Retention deletes the
 * oldest rotated files beyond `audit.keep_files`.
 */
import { open, readdir, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { recoverTail, type RecoveredTail } from './recover.js';

/** A rotated file: its path and the seq of its last record. */
export interface RotatedFile {
  readonly path: string;
  readonly lastSeq: number;
}

/** The stem and extension of the live file's name (`decisions`, `.jsonl`). */
function parts(path: string): { stem: string; ext: string } {
  const ext = extname(path);
  return { stem: basename(path, ext), ext };
}

/** Where the live file goes when it is rotated after the record `lastSeq`. */
export function rotatedPath(path: string, lastSeq: number): string {
  const { stem, ext } = parts(path);
  return join(dirname(path), `${stem}.${String(lastSeq).padStart(12, '0')}${ext}`);
}

/** The rotated files of the log at `path`, oldest first. */
export async function rotatedFiles(path: string): Promise<RotatedFile[]> {
  const { stem, ext } = parts(path);
  const pattern = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d{12})${ext.replace('.', '\\.')}$`);
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return [];
  }
  return names
    .flatMap((name) => {
      const match = pattern.exec(name);
      return match ? [{ path: join(dirname(path), name), lastSeq: Number(match[1]) }] : [];
    })
    .sort((a, b) => a.lastSeq - b.lastSeq);
}

/** Where the chain stands at the end of the newest rotated file, if there is one. */
export async function newestRotatedTail(path: string): Promise<(RecoveredTail & { file: string }) | undefined> {
  const newest = (await rotatedFiles(path)).at(-1);
  if (!newest) return undefined;
  const handle = await open(newest.path, 'r+');
  try {
    return { ...(await recoverTail(handle, newest.path)), file: newest.path };
  } finally {
    await handle.close();
  }
}

/** Deletes the oldest rotated files so that at most `keep` remain (0: keep all). Returns those deleted. */
export async function applyRetention(path: string, keep: number): Promise<string[]> {
  if (keep <= 0) return [];
  const files = await rotatedFiles(path);
  const doomed = files.slice(0, Math.max(0, files.length - keep));
  for (const file of doomed) await unlink(file.path);
  return doomed.map((file) => file.path);
}

/** The record that opens a file started by rotation. */
export function rotationRecord(previousFile: string, previousSeq: number, previousHash: string, now: Date): Record<string, unknown> {
  return { type: 'rotation', timestamp: now.toISOString(), previous_file: basename(previousFile), previous_last_seq: previousSeq, previous_last_hash: previousHash };
}
