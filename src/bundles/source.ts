/**
 * The policy the server decides with: the active {@link PolicyEngine}, replaced atomically when
 * a new bundle arrives, from the bundle file (hot reload) or from a bundle server.
 *
 * Every bundle, wherever it comes from, takes one path: read → verify its signature (when
 * `policy.verification` is configured) → parse → instantiate the WASM and run a smoke
 * evaluation (`PolicyEngine.create`) → swap the reference. Only a bundle that passes every step
 * is swapped in; anything else is logged once, at error level, with its stable code and where it
 * came from, and the previous engine keeps serving. A bundle byte-identical to the active one is
 * not loaded again.
 *
 * A decision reads {@link PolicySource.current} once and evaluates with that engine to the end,
 * so a swap during a decision never mixes two bundles, and the decision's revision is the one of
 * the engine that made it.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import type { PolicyConfig } from './config.js';
import type { ErrorCode } from '../core/codes.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { FileWatch, fileFingerprint } from '../core/file-watch.js';
import type { Logger } from '../core/log.js';
import { parseBundle } from './bundle.js';
import { BundleDownloader, loggableUrl, type DownloadOutcome, type DownloadedBundle } from './download.js';
import { PolicyEngine } from '../policy/engine.js';
import { bundleVerification, type BundleVerificationConfig } from './signing.js';

/** Where a bundle came from: the bundle file, the bundle server, or the copy of its last download. */
export type BundleOrigin = 'file' | 'service' | 'persisted';

/** What the source reports to metrics. */
export type BundleObservation =
  | {
      readonly type: 'load';
      readonly origin: BundleOrigin;
      /** "activated", "unchanged" (identical to the active bundle) or the code it was rejected with. */
      readonly result: 'activated' | 'unchanged' | ErrorCode;
      /** The revision active after this load. */
      readonly revision: string | undefined;
    }
  | { readonly type: 'download'; readonly outcome: DownloadOutcome };

/**
 * What a {@link PolicySource} needs: the `policy` section, the resolved bundle file, and where
 * loads are logged and observed.
 */
export interface PolicySourceOptions {
  readonly config: PolicyConfig;
  /** The bundle file, resolved (`policy.bundle`); unused with `policy.service`. */
  readonly bundlePath: string;
  readonly logger: Logger;
  /** Where `policy.service.token_env` is read from. */
  readonly env?: NodeJS.ProcessEnv;
  readonly observe?: (observation: BundleObservation) => void;
  /** How long file events are collected before one reload. Default 100 ms. */
  readonly debounceMs?: number;
  /** Called with every bundle activated, first one included (the primary of several workers hands it on to them). */
  readonly onActivate?: (bundle: ActiveBundle) => void;
}

/** An activated bundle as it can be handed to another process: its bytes and where they came from. */
export interface ActiveBundle {
  readonly bytes: Buffer;
  readonly source: string;
  readonly origin: BundleOrigin;
  readonly revision: string;
}

interface Active {
  readonly engine: PolicyEngine;
  /** SHA-256 of the tarball bytes. */
  readonly digest: string;
  /** The tarball (kept so it can be handed to a worker started later), and where it came from. */
  readonly bytes: Buffer;
  readonly source: string;
  readonly origin: BundleOrigin;
}

/**
 * Sidecar of the persisted download: which server and ETag the bytes came from. The full URL is
 * kept as its SHA-256 only (a presigned URL carries its signature in the query, which must not
 * be written to disk); `url` is the loggable form, for people. Files from before, with the full
 * URL in `url` and no `url_sha256`, are still honoured.
 */
interface PersistedMeta {
  readonly url: string;
  readonly url_sha256: string;
  readonly etag: string;
  readonly sha256: string;
  readonly revision: string;
  readonly saved_at: string;
}

const DEFAULT_DEBOUNCE_MS = 100;

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function readBundleBytes(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new SignalboxError('bundle_unreadable', `cannot read bundle ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
}


/** The active policy engine and what keeps it current. */
export class PolicySource {
  readonly #config: PolicyConfig;
  readonly #logger: Logger;
  readonly #observe: PolicySourceOptions['observe'];
  readonly #verification: BundleVerificationConfig | undefined;
  readonly #bundlePath: string;
  readonly #persistPath: string | undefined;
  readonly #debounceMs: number;
  readonly #onActivate: PolicySourceOptions['onActivate'];
  #active: Active;
  /** Loads run one at a time, so "from → to" in the logs is what happened. */
  #queue: Promise<unknown> = Promise.resolve();
  #watch: FileWatch | undefined;
  #downloader: BundleDownloader | undefined;
  #firstDownload: DownloadOutcome = 'activated';
  /** The bundle file's fingerprint when it was first read. */
  #fileSeen = 'missing';
  #started = false;
  #closed = false;

  private constructor(options: PolicySourceOptions, active: Active) {
    this.#config = options.config;
    this.#logger = options.logger;
    this.#observe = options.observe;
    this.#verification = bundleVerification(options.config.verification);
    this.#bundlePath = options.bundlePath;
    const persist = options.config.service?.persist_file;
    this.#persistPath = persist ? resolve(persist) : undefined;
    this.#debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.#onActivate = options.onActivate;
    this.#active = active;
  }

  /**
   * Loads the first bundle: the bundle file, or with `policy.service` the bundle server (and,
   * when the server cannot be used, the persisted copy of its last good download). Throws the
   * bundle's error code when nothing can be activated. Watching and polling begin with
   * {@link start}.
   */
  static async open(options: PolicySourceOptions): Promise<PolicySource> {
    const service = options.config.service;
    if (!service) {
      const seen = await fileFingerprint(options.bundlePath);
      let active: Active;
      try {
        const bytes = await readBundleBytes(options.bundlePath);
        active = await loadActive(bytes, options.bundlePath, 'file', options.config, bundleVerification(options.config.verification));
      } catch (error) {
        options.observe?.({ type: 'load', origin: 'file', result: codeOf(error), revision: undefined });
        throw error;
      }
      const source = new PolicySource(options, active);
      source.#fileSeen = seen;
      source.#activated(undefined, active, 'file', options.bundlePath);
      return source;
    }
    return PolicySource.#openFromService(options, service);
  }

  /**
   * A source that only ever holds the bundles it is handed (a worker: its primary watches the
   * file or polls the bundle server, and passes every activated bundle on with {@link offer}).
   * It neither watches nor downloads nor keeps a copy; the first bundle is verified and loaded
   * like any other, and a failure throws its code.
   */
  static async follow(options: Omit<PolicySourceOptions, 'config'> & { readonly config: PolicyConfig }, first: ActiveBundle): Promise<PolicySource> {
    const { service: _downloadedByThePrimary, ...config } = options.config;
    const followerConfig: PolicyConfig = { ...config, watch: false };
    const active = await loadActive(first.bytes, first.source, first.origin, followerConfig, bundleVerification(followerConfig.verification));
    const source = new PolicySource({ ...options, config: followerConfig }, active);
    source.#activated(undefined, active, first.origin, first.source);
    return source;
  }

  /** The engine deciding now. Read it once per decision. */
  current(): PolicyEngine {
    return this.#active.engine;
  }

  /** The active bundle's bytes, origin and revision. */
  get bundle(): ActiveBundle {
    const { bytes, source, origin, engine } = this.#active;
    return { bytes, source, origin, revision: engine.revision };
  }

  /** The revision of the active bundle. */
  get revision(): string {
    return this.#active.engine.revision;
  }

  /** Where bundles come from: the bundle file's path or the bundle server's URL (without credentials). */
  get origin(): string {
    return this.#config.service ? loggableUrl(this.#config.service.url) : this.#bundlePath;
  }

  /** Begins watching the bundle file (`policy.watch`) or polling the bundle server. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    if (this.#downloader) {
      this.#downloader.start(this.#firstDownload);
      return;
    }
    if (!this.#config.watch) return;
    this.#watch = new FileWatch(this.#bundlePath, {
      pollIntervalMs: this.#config.poll_interval_ms,
      debounceMs: this.#debounceMs,
      seen: this.#fileSeen,
      logger: this.#logger,
      what: 'policy bundle',
      onChange: async (fingerprint) => {
        await this.#fileChanged(fingerprint);
      },
    });
  }

  /**
   * Loads the bundle file, or asks the bundle server, now. Resolves what happened; never
   * rejects (a rejected bundle is logged and the active one keeps serving).
   */
  async reload(): Promise<'activated' | 'unchanged' | 'not_modified' | 'rejected' | 'failed'> {
    if (this.#downloader) return this.#downloader.once({ wait: false });
    const fingerprint = await fileFingerprint(this.#bundlePath);
    return this.#fileChanged(fingerprint);
  }

  /** Stops watching and downloading; resolves once a load under way has finished. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#watch?.close();
    await this.#downloader?.close();
    await this.#queue;
  }

  async #fileChanged(fingerprint: string): Promise<'activated' | 'unchanged' | 'rejected'> {
    if (fingerprint === 'missing') {
      const code: ErrorCode = 'bundle_unreadable';
      this.#logger.error(
        { code, source: this.#bundlePath, origin: 'file', revision: this.revision },
        `policy bundle file is missing; revision ${this.revision} keeps serving`,
      );
      this.#observe?.({ type: 'load', origin: 'file', result: code, revision: this.revision });
      return 'rejected';
    }
    let bytes: Buffer;
    try {
      bytes = await readBundleBytes(this.#bundlePath);
    } catch (error) {
      this.#rejected(error, 'file', this.#bundlePath);
      return 'rejected';
    }
    return this.offer(bytes, this.#bundlePath, 'file');
  }

  /**
   * Verifies, loads and swaps in a bundle tarball. "unchanged" when it is byte-identical to the
   * active one; "rejected" (logged with its code) when any step fails.
   */
  offer(bytes: Buffer, source: string, origin: BundleOrigin): Promise<'activated' | 'unchanged' | 'rejected'> {
    const run = async (): Promise<'activated' | 'unchanged' | 'rejected'> => {
      const digest = sha256(bytes);
      if (digest === this.#active.digest) {
        this.#logger.debug({ source, origin, revision: this.revision }, 'policy bundle unchanged');
        this.#observe?.({ type: 'load', origin, result: 'unchanged', revision: this.revision });
        return 'unchanged';
      }
      let next: Active;
      try {
        next = await loadActive(bytes, source, origin, this.#config, this.#verification, digest);
      } catch (error) {
        this.#rejected(error, origin, source);
        return 'rejected';
      }
      if (this.#closed) return 'rejected';
      const previous = this.#active;
      this.#active = next;
      this.#activated(previous, next, origin, source);
      return 'activated';
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #activated(previous: Active | undefined, next: Active, origin: BundleOrigin, source: string): void {
    const to = next.engine.revision;
    if (previous === undefined) {
      this.#logger.info({ source, origin, revision: to, decision: next.engine.entrypoint }, 'policy bundle loaded');
    } else {
      const from = previous.engine.revision;
      this.#logger.info({ source, origin, from, to }, `policy bundle activated: revision ${from} → ${to}`);
      if (from === to) {
        this.#logger.warn({ source, origin, revision: to }, 'the new policy bundle has the same revision as the previous one; audit records cannot tell their decisions apart');
      }
    }
    this.#observe?.({ type: 'load', origin, result: 'activated', revision: to });
    this.#onActivate?.({ bytes: next.bytes, source, origin, revision: to });
  }

  #rejected(error: unknown, origin: BundleOrigin, source: string): void {
    const code = codeOf(error);
    this.#logger.error(
      { code, source, origin, problem: describeCause(error), revision: this.revision },
      `policy bundle rejected (${code}); revision ${this.revision} keeps serving`,
    );
    this.#observe?.({ type: 'load', origin, result: code, revision: this.revision });
  }

  /**
   * Start-up with a bundle server: the persisted copy first (when there is one and it loads), then
   * one request that never waits (a 304 confirms the copy). Nothing activated is an error.
   */
  static async #openFromService(options: PolicySourceOptions, service: ServiceConfig): Promise<PolicySource> {
    const { logger } = options;
    const url = loggableUrl(service.url);
    const verification = bundleVerification(options.config.verification);
    const persistPath = service.persist_file ? resolve(service.persist_file) : undefined;
    let source: PolicySource | undefined;
    let etag = '';
    const bytes = persistPath ? await readFile(persistPath).catch(() => undefined) : undefined;
    if (persistPath && bytes) {
      try {
        source = new PolicySource(options, await loadActive(bytes, persistPath, 'persisted', options.config, verification));
        source.#activated(undefined, source.#active, 'persisted', persistPath);
        const meta = JSON.parse(await readFile(metaPath(persistPath), 'utf8').catch(() => '{}')) as Partial<PersistedMeta>;
        // The ETag only vouches for these bytes from this server (this exact URL).
        const sameUrl = meta.url_sha256 !== undefined ? meta.url_sha256 === urlDigest(service.url) : meta.url === service.url;
        if (sameUrl && meta.sha256 === sha256(bytes) && typeof meta.etag === 'string') etag = meta.etag;
      } catch (error) {
        logger.warn({ code: codeOf(error), path: persistPath, problem: describeCause(error) }, 'the persisted policy bundle cannot be loaded; ignoring it');
        options.observe?.({ type: 'load', origin: 'persisted', result: codeOf(error), revision: undefined });
      }
    }
    let firstRejection: unknown;
    const downloader = new BundleDownloader({
      config: service,
      env: options.env ?? process.env,
      logger,
      etag,
      observe: (outcome) => options.observe?.({ type: 'download', outcome }),
      activate: async (downloaded) => {
        if (source) return source.#acceptDownload(downloaded);
        // Nothing is serving yet: the first good download becomes the source.
        try {
          source = new PolicySource(options, await loadActive(downloaded.body, url, 'service', options.config, verification));
        } catch (error) {
          firstRejection = error;
          logger.error({ code: codeOf(error), source: url, origin: 'service', problem: describeCause(error) }, `policy bundle rejected (${codeOf(error)})`);
          options.observe?.({ type: 'load', origin: 'service', result: codeOf(error), revision: undefined });
          return 'rejected';
        }
        source.#activated(undefined, source.#active, 'service', url);
        await source.#persist(downloaded);
        return 'activated';
      },
    });
    const first = await downloader.once({ wait: false });
    if (!source) {
      if (firstRejection !== undefined) throw firstRejection;
      throw new SignalboxError(
        'bundle_download_failed',
        `cannot download the policy bundle from ${url} (${downloader.lastError?.message ?? 'no bundle'})` +
          (persistPath ? ` and there is no usable copy at ${persistPath}` : ''),
      );
    }
    if (first === 'failed') logger.warn({ url, revision: source.revision }, `bundle server unavailable; serving the persisted revision ${source.revision}`);
    source.#downloader = downloader;
    source.#firstDownload = first;
    return source;
  }

  /** A download from the running loop: the common path, then a copy when it activated. */
  async #acceptDownload(downloaded: DownloadedBundle): Promise<'activated' | 'unchanged' | 'rejected'> {
    const url = this.origin;
    const result = await this.offer(downloaded.body, url, 'service');
    if (result === 'activated') await this.#persist(downloaded);
    return result;
  }

  /** Keeps the last good download, with the ETag it came with, for a restart while the server is down. */
  async #persist(downloaded: DownloadedBundle): Promise<void> {
    const url = this.#config.service?.url;
    if (!this.#persistPath || !url) return;
    const meta: PersistedMeta = {
      url: loggableUrl(url),
      url_sha256: urlDigest(url),
      etag: downloaded.etag,
      sha256: sha256(downloaded.body),
      revision: this.revision,
      saved_at: new Date().toISOString(),
    };
    try {
      await writeFileAtomic(this.#persistPath, downloaded.body);
      await writeFileAtomic(metaPath(this.#persistPath), `${JSON.stringify(meta, null, 2)}\n`);
    } catch (error) {
      this.#logger.warn({ path: this.#persistPath, problem: describeCause(error) }, 'cannot keep a copy of the downloaded policy bundle; a restart will need the bundle server');
    }
  }
}

type ServiceConfig = NonNullable<PolicyConfig['service']>;

/** What the persisted sidecar keeps of the URL: enough to recognise it, nothing to reuse. */
function urlDigest(url: string): string {
  return createHash('sha256').update(url, 'utf8').digest('hex');
}

function metaPath(persistPath: string): string {
  return `${persistPath}.json`;
}

function codeOf(error: unknown): ErrorCode {
  return error instanceof SignalboxError ? error.code : 'bundle_invalid';
}

async function loadActive(
  bytes: Buffer,
  source: string,
  origin: BundleOrigin,
  config: PolicyConfig,
  verification: BundleVerificationConfig | undefined,
  digest = sha256(bytes),
): Promise<Active> {
  const bundle = await parseBundle(bytes, source, { verification });
  const engine = await PolicyEngine.create(bundle, { entrypoint: config.decision, maxMemoryMiB: config.max_memory_mib });
  return { engine, digest, bytes, source, origin };
}

