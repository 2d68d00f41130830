/**
 * Watching one file for replacement: `fs.watch` on its directory plus a stat poll, debounced,
 * with checks run one at a time.
 *
 * The directory is watched, not the file, because tools replace files by atomic rename
 * (`signalbox build`, `signalbox vault`, editors, Kubernetes volumes), which gives the path a new
 * inode that a watch on the old file never reports. `fs.watch` also misses changes on some
 * filesystems and setups (network mounts, a Kubernetes volume swapping a `..data` symlink), so
 * the file's identity is polled too. A check compares the file's fingerprint (device, inode,
 * size, mtime, ctime) with the one last seen and calls `onChange` only when it differs.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { describeCause } from './errors.js';
import { silentLogger, type Logger } from './log.js';

/** What a file looked like: a changed inode (rename), size or time means it changed. "missing" when it is not there. */
export async function fileFingerprint(path: string): Promise<string> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : `error:${code ?? describeCause(error)}`;
  }
}

/** How a {@link FileWatch} checks its file and whom it tells about a change. */
export interface FileWatchOptions {
  /** Watch and poll (default); false runs checks only when {@link FileWatch.check} is called. */
  readonly watch?: boolean;
  /** How often the file's fingerprint is polled, as a fallback to `fs.watch`. */
  readonly pollIntervalMs: number;
  /** How long `fs.watch` events are collected before one check. */
  readonly debounceMs: number;
  /** The fingerprint the caller already loaded; the first check compares against it. */
  readonly seen: string;
  /**
   * Called when the fingerprint differs from the last one seen (or on a forced check), with the
   * new fingerprint. Must not reject; checks wait for it, so it never runs twice at once.
   */
  readonly onChange: (fingerprint: string) => Promise<void>;
  /** For the debug line when the directory cannot be watched (polling goes on). */
  readonly logger?: Logger;
  /** Names the watched thing in that debug line ("policy bundle"). */
  readonly what?: string;
}

/** A running watch on one file; {@link FileWatch.close} stops it. */
export class FileWatch {
  readonly path: string;
  readonly #options: FileWatchOptions;
  readonly #logger: Logger;
  #seen: string;
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #again = false;
  #force = false;
  #closed = false;

  constructor(path: string, options: FileWatchOptions) {
    this.path = path;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger();
    this.#seen = options.seen;
    if (options.watch === false) return;
    this.#tryWatch();
    this.#poll = setInterval(() => {
      if (this.#watcher === undefined) this.#tryWatch();
      void this.check();
    }, options.pollIntervalMs);
    this.#poll.unref();
  }

  /**
   * Compares the file's fingerprint now, and calls `onChange` when it changed (or always, with
   * `force`). Checks run one at a time; a check asked for while one runs runs once more after it,
   * because the change may have happened after the running one took its fingerprint.
   */
  check(options: { force?: boolean } = {}): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (options.force) this.#force = true;
    if (this.#checking) {
      this.#again = true;
      return this.#checking;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        const force = this.#force;
        this.#force = false;
        // Taken before the caller reads the file: a change during the read makes the next check differ.
        const fingerprint = await fileFingerprint(this.path);
        if (!force && fingerprint === this.#seen) continue;
        this.#seen = fingerprint;
        await this.#options.onChange(fingerprint);
      } while (this.#again && !this.#closed);
    };
    const running = run().finally(() => {
      this.#checking = undefined;
    });
    this.#checking = running;
    return running;
  }

  /** Stops watching and polling; resolves once a check under way has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#debounce);
    clearInterval(this.#poll);
    this.#debounce = undefined;
    this.#poll = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#checking;
  }

  /** Watches the directory; when it cannot be watched (not there yet), the poll retries. */
  #tryWatch(): void {
    if (this.#closed) return;
    const name = basename(this.path);
    try {
      const watcher = watch(dirname(this.path), { persistent: false }, (_event, filename) => {
        // Some platforms do not say which file changed; then check.
        if (filename === null || filename === undefined || filename.toString() === name) this.#schedule();
      });
      watcher.on('error', (error) => {
        this.#logger.debug({ path: this.path, problem: describeCause(error) }, `${this.#options.what ?? 'file'} watcher failed; polling until it can be restarted`);
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
      });
      this.#watcher = watcher;
    } catch {
      this.#watcher = undefined;
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      void this.check();
    }, this.#options.debounceMs);
    this.#debounce.unref();
  }
}
