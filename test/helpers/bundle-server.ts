/**
 * A small bundle server speaking OPA's bundle service protocol, on loopback, for tests: ETag /
 * If-None-Match / 304, long polling (`Prefer: wait=N`, answered with OPA's bundle media type),
 * or a plain file server (no long polling), and switchable failures. Plus helpers that turn one
 * compiled bundle into marked variants (own data and revision), signed or tampered.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { packBundle, readBundleFiles } from '../../src/bundles/bundle.js';
import { SIGNATURES_FILE, signBundleFiles, type BundleSigningOptions } from '../../src/bundles/signing.js';

export const OPA_BUNDLE_TYPE = 'application/vnd.openpolicyagent.bundles';

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** When it arrived (Date.now()). */
  readonly at: number;
  /** How the server answered: 200, 304, an error status, or 0 for a dropped connection. */
  status?: number;
  /** Milliseconds the request was held (long poll). */
  heldMs?: number;
}

interface Held {
  readonly res: ServerResponse;
  readonly record: RecordedRequest;
  readonly since: number;
  readonly timer: NodeJS.Timeout;
}

export class BundleServer {
  readonly requests: RecordedRequest[] = [];
  /** Answer bundles with OPA's media type and hold conditional requests that ask to wait. */
  longPoll: boolean;
  /** With `longPoll`, hold requests that ask to wait; false: answer at once (a misbehaving server). */
  hold = true;
  /** The Content-Type of a 200 when not long polling (a plain file server). */
  contentType = 'application/gzip';
  /** When set, every request is answered with this status, or dropped ("reset"). */
  failure: number | 'reset' | undefined;
  #bundle: { body: Buffer; etag: string } | undefined;
  #held = new Set<Held>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
    longPoll: boolean,
  ) {
    this.longPoll = longPoll;
  }

  static async start(options: { longPoll?: boolean; path?: string } = {}): Promise<BundleServer> {
    const path = options.path ?? '/bundles/signalbox.tar.gz';
    let self: BundleServer | undefined;
    const server = createServer((req, res) => self?.handle(req.method ?? 'GET', req.url ?? '/', req.headers, res, path));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    self = new BundleServer(server, `http://127.0.0.1:${port}${path}`, options.longPoll ?? false);
    return self;
  }

  /** The ETag a body is served with by default: a quoted content hash, as nginx/S3 give one. */
  static etagOf(body: Buffer): string {
    return `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  }

  get etag(): string | undefined {
    return this.#bundle?.etag;
  }

  /** Requests held in a long poll right now. */
  get holding(): number {
    return this.#held.size;
  }

  /** Serves `body` from now on; held long polls are answered with it at once. */
  publish(body: Buffer, etag = BundleServer.etagOf(body)): void {
    this.#bundle = { body, etag };
    for (const held of [...this.#held]) {
      clearTimeout(held.timer);
      this.#held.delete(held);
      held.record.heldMs = Date.now() - held.since;
      this.#send(held.res, held.record);
    }
  }

  async close(): Promise<void> {
    for (const held of this.#held) {
      clearTimeout(held.timer);
      held.res.destroy();
    }
    this.#held.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(method: string, url: string, headers: IncomingHttpHeaders, res: ServerResponse, path: string): void {
    const record: RecordedRequest = { method, path: url, headers, at: Date.now() };
    this.requests.push(record);
    if (this.failure === 'reset') {
      record.status = 0;
      res.socket?.destroy();
      return;
    }
    if (this.failure !== undefined) {
      record.status = this.failure;
      res.writeHead(this.failure, { 'content-type': 'text/plain' }).end('unavailable');
      return;
    }
    if (method !== 'GET' || url !== path || !this.#bundle) {
      record.status = 404;
      res.writeHead(404).end();
      return;
    }
    const wait = /(?:^|[;,\s])wait=(\d+)/.exec(String(headers.prefer ?? ''));
    if (headers['if-none-match'] === this.#bundle.etag) {
      if (this.longPoll && this.hold && wait) {
        const since = Date.now();
        const held: Held = {
          res,
          record,
          since,
          timer: setTimeout(() => {
            this.#held.delete(held);
            record.heldMs = Date.now() - since;
            this.#send(res, record);
          }, Number(wait[1]) * 1000),
        };
        this.#held.add(held);
        res.on('close', () => {
          clearTimeout(held.timer);
          this.#held.delete(held);
        });
        return;
      }
    }
    this.#send(res, record);
  }

  #send(res: ServerResponse, record: RecordedRequest): void {
    const bundle = this.#bundle;
    if (!bundle) return;
    if (record.headers['if-none-match'] === bundle.etag) {
      record.status = 304;
      res.writeHead(304, { etag: bundle.etag }).end();
      return;
    }
    record.status = 200;
    res
      .writeHead(200, { 'content-type': this.longPoll ? OPA_BUNDLE_TYPE : this.contentType, etag: bundle.etag, 'content-length': bundle.body.length })
      .end(bundle.body);
  }
}

/**
 * A variant of a compiled bundle with its own data `{"marker": {"id": marker}}` and revision
 * (same policy.wasm), optionally signed: how a data-only update looks.
 */
export async function bundleVariant(
  base: string,
  marker: string,
  options: { revision?: string; signing?: BundleSigningOptions; change?: (files: Map<string, Buffer>) => void } = {},
): Promise<Buffer> {
  const files = await readBundleFiles(base);
  files.delete(`/${SIGNATURES_FILE}`);
  files.set('/data.json', Buffer.from(JSON.stringify({ marker: { id: marker } })));
  const manifest = JSON.parse((files.get('/.manifest') as Buffer).toString('utf8')) as Record<string, unknown>;
  manifest.revision = options.revision ?? `rev-${marker}`;
  files.set('/.manifest', Buffer.from(JSON.stringify(manifest)));
  if (options.signing) files.set(`/${SIGNATURES_FILE}`, await signBundleFiles(files, options.signing));
  options.change?.(files);
  return packBundle(files);
}

/** Rego whose decision allows and names its bundle's marker in a header, to correlate answers with revisions. */
export const MARKER_REGO = `package reload

# METADATA
# entrypoint: true
decision := {"allowed": true, "headers": {"x-bundle-marker": data.marker.id}}
`;

/** The same decision under another entrypoint name: a bundle missing "reload/decision". */
export const OTHER_ENTRYPOINT_REGO = `package reload

# METADATA
# entrypoint: true
verdict := {"allowed": true, "headers": {"x-bundle-marker": data.marker.id}}
`;

/** Polls `condition` every 10 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
