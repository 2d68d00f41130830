/**
 * Replacing a file so that a reader, or a crash, sees the old file or the new one, never half of
 * either: the new content goes to a temp file in the same directory, is flushed to disk, renamed
 * over the old file, and the directory is flushed so the rename itself survives a power loss.
 * Used for everything Signalbox writes that it reads back: bundles, capabilities, the vault.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Permissions for {@link writeFileAtomic}; the vault passes 0o600/0o700 so credentials never exist
 * world-readable, even briefly.
 */
export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o644); applied after creation, so a umask cannot weaken or widen it. */
  readonly mode?: number;
  /** Mode of directories created on the way (default 0o755). */
  readonly dirMode?: number;
}

/** A temp file name beside `path`, unique to this process and call, hidden from globs. */
function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Flushes a file or directory to disk. Not every platform lets a directory be opened: best effort there. */
async function flush(path: string, directory: boolean): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (directory) return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    // A directory fsync can be refused (EINVAL on some file systems); the data itself is flushed.
    if (!directory) throw error;
  } finally {
    await handle.close();
  }
}

/**
 * Moves a finished file (written by us or by another program, such as `opa build`) over `path`
 * durably: flush it, rename it, flush the directory. The file must be in the same directory.
 */
export async function commitFile(finished: string, path: string): Promise<void> {
  await flush(finished, false);
  await rename(finished, path);
  await flush(dirname(path), true);
}

/** Writes `data` to `path` atomically and durably (see the module comment). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: options.dirMode ?? 0o755 });
  const temp = tempBeside(path);
  try {
    const handle = await open(temp, 'wx', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
    await chmod(temp, options.mode ?? 0o644);
    await commitFile(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}
