/**
 * Opening an audit file after a crash. Records are appended whole, so a crash can only tear the
 * last write: a final line without its newline (and, on some file systems, a run of zero bytes
 * where the data never reached the disk). That fragment is moved aside to `<file>.torn-<time>`,
 * kept for forensics and never silently deleted, the file is cut back to its last complete line,
 * and the chain continues from the last record. Complete lines are never moved: a bad one is an
 * edit (or a disk fault) that `audit verify` must keep reporting where it is.
 *
 * The file is read backwards in chunks, so recovery works whatever its size.
 */
import type { FileHandle } from 'node:fs/promises';
import { writeFile } from 'node:fs/promises';
import { GENESIS_HASH, lineHashMatches } from './chain.js';

const CHUNK_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

/** Where the chain continues, and what recovery found. */
export interface RecoveredTail {
  /** The last record's seq and hash (0 and the genesis hash for an empty file). */
  readonly seq: number;
  readonly hash: string;
  /** Bytes of a torn final write that were moved aside (0: none). */
  readonly tornBytes: number;
  /** Where they were moved. */
  readonly tornFile?: string;
  /** The last complete line is not an intact record (edited, or garbled by the disk). */
  readonly lastLineBroken: boolean;
}

/** The offset just after the last byte in [0, end) for which `keep` is false, scanning backwards. */
async function scanBack(handle: FileHandle, end: number, stopAt: (byte: number) => boolean): Promise<number> {
  const buffer = Buffer.alloc(CHUNK_BYTES);
  let position = end;
  while (position > 0) {
    const length = Math.min(CHUNK_BYTES, position);
    await handle.read(buffer, 0, length, position - length);
    for (let i = length - 1; i >= 0; i--) if (stopAt(buffer[i] as number)) return position - length + i + 1;
    position -= length;
  }
  return 0;
}

async function readRange(handle: FileHandle, start: number, end: number): Promise<Buffer> {
  const buffer = Buffer.alloc(end - start);
  if (buffer.length > 0) await handle.read(buffer, 0, buffer.length, start);
  return buffer;
}

/** The seq and hash a line carries when it is an intact record. */
function intact(line: string): { seq: number; hash: string } | undefined {
  try {
    const record = JSON.parse(line) as { seq?: unknown; hash?: unknown };
    if (typeof record.seq === 'number' && typeof record.hash === 'string' && lineHashMatches(line, record)) return { seq: record.seq, hash: record.hash };
  } catch {
    // not JSON
  }
  return undefined;
}

/** The seq and hash a line carries, whether or not its content still matches the hash. */
function chainFields(line: string): { seq: number; hash: string } | undefined {
  try {
    const record = JSON.parse(line) as { seq?: unknown; hash?: unknown };
    if (typeof record.seq === 'number' && typeof record.hash === 'string') return { seq: record.seq, hash: record.hash };
  } catch {
    // not JSON
  }
  return undefined;
}

/**
 * Recovers the end of an audit file opened for appending: moves a torn final write aside, cuts
 * the file back to its last complete line, and returns where the chain continues.
 */
export async function recoverTail(handle: FileHandle, path: string, now: Date = new Date()): Promise<RecoveredTail> {
  const { size } = await handle.stat();
  if (size === 0) return { seq: 0, hash: GENESIS_HASH, tornBytes: 0, lastLineBroken: false };
  // Zero bytes at the end are data the disk never got; then the last line, up to its newline.
  const dataEnd = await scanBack(handle, size, (byte) => byte !== 0);
  const lineStart = await scanBack(handle, dataEnd, (byte) => byte === NEWLINE);
  let tornBytes = 0;
  let tornFile: string | undefined;
  let end = size;
  if (lineStart < dataEnd || dataEnd < size) {
    // An unterminated final line: a record written whole but for its newline is kept.
    const fragment = await readRange(handle, lineStart, dataEnd);
    if (lineStart < dataEnd && intact(fragment.toString('utf8'))) {
      await handle.truncate(dataEnd);
      await handle.write('\n');
      end = dataEnd + 1;
    } else {
      tornBytes = size - lineStart;
      tornFile = `${path}.torn-${now.toISOString().replace(/[:.]/g, '-')}`;
      await writeFile(tornFile, await readRange(handle, lineStart, size), { flag: 'wx', mode: 0o600 });
      await handle.truncate(lineStart);
      await handle.sync();
      end = lineStart;
    }
  }
  // The chain continues from the last line that carries chain fields. A complete last line that
  // is not an intact record stays where it is, for verify to report.
  let lastLineBroken = false;
  let lineEnd = end;
  while (lineEnd > 0) {
    const start = await scanBack(handle, lineEnd - 1, (byte) => byte === NEWLINE);
    const line = (await readRange(handle, start, lineEnd - 1)).toString('utf8');
    if (line.trim() !== '') {
      const fields = chainFields(line);
      if (fields) return { ...fields, tornBytes, ...(tornFile ? { tornFile } : {}), lastLineBroken: lastLineBroken || !intact(line) };
      lastLineBroken = true;
    }
    lineEnd = start;
  }
  return { seq: 0, hash: GENESIS_HASH, tornBytes, ...(tornFile ? { tornFile } : {}), lastLineBroken };
}
