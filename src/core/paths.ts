import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/**
 * The project root (the folder holding Signalbox's package.json), found by walking up from this
 * module so it works from src/ under tsx and from dist/bundle/ after a build.
 */
export function projectRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate) && (JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string }).name === 'signalbox') {
      cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot locate the Signalbox project root');
    dir = parent;
  }
}

/** The OPA version pinned in package.json ("signalbox.opaVersion"). */
export function pinnedOpaVersion(): string {
  const pkg = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { signalbox: { opaVersion: string } };
  return pkg.signalbox.opaVersion;
}

/**
 * A relative bundle path is looked up in the working directory first, then in the Signalbox
 * installation, so the embedded default works from any directory.
 */
export function resolveBundlePath(path: string): string {
  if (isAbsolute(path)) return path;
  const fromCwd = resolve(path);
  return existsSync(fromCwd) ? fromCwd : join(projectRoot(), path);
}
