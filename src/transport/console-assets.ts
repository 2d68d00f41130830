/**
 * The management console's static shell (`GET /console/`): its HTML, CSS and ES modules from
 * src/transport/console/, and uPlot's two files from node_modules. Every file is named in
 * {@link CONSOLE_ASSETS}; a path not in that list is a 404, so there is no directory listing and
 * no path to walk out of the folder (`..`, encoded or not, never reaches the file system).
 *
 * The shell holds no data and needs no credential: the page asks for the admin token and sends
 * it on each API call (README "Console"). Every answer carries a strict Content-Security-Policy:
 * scripts and styles only from this origin, no inline script, no framing, requests only back to
 * this origin.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { projectRoot } from '../core/paths.js';

/** Where the console's own files live, relative to the project root (shipped in the package). */
export const CONSOLE_DIR = 'src/transport/console';

/** The URL prefix the console is served under. */
export const CONSOLE_PREFIX = '/console/';

/**
 * The console page's security headers. `style-src 'self'` forbids inline `<style>` and style
 * attributes in markup; uPlot sizes its canvas through the CSSOM, which CSP allows.
 */
export const CONSOLE_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
});

/** One servable file: where it is and its media type. */
interface ConsoleAsset {
  readonly file: () => string;
  readonly type: string;
}

const require = createRequire(import.meta.url);
/** uPlot's dist folder, wherever npm put the package. */
const uplotDist = (): string => join(dirname(require.resolve('uplot/package.json')), 'dist');
const own = (name: string) => (): string => join(projectRoot(), CONSOLE_DIR, name);

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** Every file the console serves, by URL path. Adding a file to the console means adding it here. */
export const CONSOLE_ASSETS: ReadonlyMap<string, ConsoleAsset> = new Map<string, ConsoleAsset>([
  ['/console/', { file: own('index.html'), type: 'text/html; charset=utf-8' }],
  ['/console/console.css', { file: own('console.css'), type: CSS }],
  ['/console/main.js', { file: own('main.js'), type: JS }],
  ['/console/api.js', { file: own('api.js'), type: JS }],
  ['/console/dom.js', { file: own('dom.js'), type: JS }],
  ['/console/panels.js', { file: own('panels.js'), type: JS }],
  ['/console/chart.js', { file: own('chart.js'), type: JS }],
  ['/console/vendor/uPlot.esm.js', { file: () => join(uplotDist(), 'uPlot.esm.js'), type: JS }],
  ['/console/vendor/uPlot.min.css', { file: () => join(uplotDist(), 'uPlot.min.css'), type: CSS }],
]);

/** File contents read once per process: the assets do not change under a running server. */
const cache = new Map<string, Promise<Buffer>>();

function contents(path: string, asset: ConsoleAsset): Promise<Buffer> {
  let read = cache.get(path);
  if (!read) {
    read = readFile(asset.file());
    // A failed read is not remembered: the next request tries again.
    read.catch(() => cache.delete(path));
    cache.set(path, read);
  }
  return read;
}

/** Answers `GET|HEAD /console/...`: a listed asset, or 404. */
export async function serveConsoleAsset(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const asset = CONSOLE_ASSETS.get(url.pathname);
  if (!asset) {
    const text = 'not found';
    res.writeHead(404, { ...CONSOLE_SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
    return;
  }
  const body = await contents(url.pathname, asset);
  // The shell holds no data, but is revalidated so an upgrade is picked up at once.
  res.writeHead(200, { ...CONSOLE_SECURITY_HEADERS, 'content-type': asset.type, 'content-length': body.length, 'cache-control': 'no-cache' });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Answers `GET /console`: the page lives at `/console/`, so its relative module paths resolve. */
export async function redirectToConsole(_req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.writeHead(301, { location: CONSOLE_PREFIX, 'content-length': 0 });
  res.end();
}
