/**
 * Downloading a bundle from an HTTP bundle server with OPA's bundle service protocol, so a
 * bundle served to OPA (nginx, S3, a bundle service) serves Signalbox unchanged.
 *
 * The protocol, as OPA's downloader speaks it:
 * - `GET <url>` with `If-None-Match: <ETag of the bundle last downloaded>`; `304 Not Modified`
 *   means unchanged, `200` carries a gzipped bundle tarball and its new `ETag`.
 * - `Prefer: modes=snapshot` (Signalbox takes snapshot bundles, not delta bundles), plus
 *   `;wait=N` when long polling is configured: the server may hold the request up to N seconds
 *   and answer as soon as the bundle changes (304 when it does not). The client keeps long
 *   polling only while the server answers bundles with `Content-Type:
 *   application/vnd.openpolicyagent.bundles`; any other type (a plain file server) means the
 *   server does not long poll, and the client falls back to periodic polling.
 * - Periodic polling waits a random delay between the min and max delay after each success;
 *   an error backs off exponentially from 100 ms (factor 1.6, ±20% jitter) up to the max delay,
 *   and forgets the ETag, so the next success is a full download.
 *
 * What is downloaded is handed to `activate` (the same verify → create → swap path as a local
 * file); a bundle it rejects counts as an error for the backoff.
 */
import { readFile } from 'node:fs/promises';
import type { PolicyConfig } from './config.js';
import { SignalboxError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { backoffDelayMs } from '../core/backoff.js';

/** The Content-Type with which a bundle server says it supports long polling. */
export const OPA_BUNDLE_CONTENT_TYPE = 'application/vnd.openpolicyagent.bundles';

/** The `policy.service` section, present only when bundles come from a bundle server. */
export type BundleServiceConfig = NonNullable<PolicyConfig['service']>;

/** Retries after an error start here (OPA's minRetryDelay). */

/** What one request came to. */
export type DownloadOutcome = 'activated' | 'unchanged' | 'not_modified' | 'rejected' | 'failed';

/** The body and ETag of one `200` answer, before it is verified or parsed. */
export interface DownloadedBundle {
  readonly body: Buffer;
  /** The response's ETag; empty when the server sent none. */
  readonly etag: string;
}

/**
 * What a {@link BundleDownloader} needs: the service settings and where to hand each download (the
 * policy source's verify → create → swap path).
 */
export interface BundleDownloaderOptions {
  readonly config: BundleServiceConfig;
  /** Where `token_env` is read from (once, here). */
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  /**
   * Verifies, loads and swaps in a downloaded bundle. Resolves "activated", "unchanged" (the
   * active bundle already) or "rejected" (logged by the callee; the previous bundle serves on).
   */
  readonly activate: (bundle: DownloadedBundle) => Promise<'activated' | 'unchanged' | 'rejected'>;
  /** Observes every request's outcome (metrics). */
  readonly observe?: (outcome: DownloadOutcome) => void;
  /** The ETag of the bundle already active (a persisted copy), sent with the first request. */
  readonly etag?: string;
  /** For tests of the delays; default Math.random. */
  readonly random?: () => number;
}

/** Why a header value is refused; never followed by the value. */
const BAD_HEADER_VALUE = 'contains a line break, NUL or a character above U+00FF, which an HTTP header value cannot carry';

/** Whether fetch accepts `value` as a header value (no CR, LF or NUL; Latin-1 only). */
export function isHeaderValue(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\r\n\0\u0100-\uffff]/.test(value);
}

/** An error's `code` when it is a short identifier (never a message that could quote data). */
function errorCode(error: unknown): string | undefined {
  const code = error && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^[A-Za-z0-9_]{1,64}$/.test(code) ? code : undefined;
}

/** The URL without credentials or query (an S3 presigned URL carries its signature there), for logs. */
export function loggableUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}


/** One bundle server client: single requests ({@link once}) and the polling loop ({@link start}). */
export class BundleDownloader {
  readonly url: string;
  readonly #config: BundleServiceConfig;
  readonly #logger: Logger;
  readonly #activate: BundleDownloaderOptions['activate'];
  readonly #observe: BundleDownloaderOptions['observe'];
  readonly #random: () => number;
  readonly #token: string | undefined;
  readonly #closing = new AbortController();
  #etag: string;
  /** Long polling is asked for while configured and the server has not shown it cannot. */
  #longPolling: boolean;
  #loop: Promise<void> | undefined;
  #lastError: SignalboxError | undefined;
  #wake: (() => void) | undefined;

  constructor(options: BundleDownloaderOptions) {
    this.#config = options.config;
    this.url = options.config.url;
    this.#logger = options.logger ?? silentLogger();
    this.#activate = options.activate;
    this.#observe = options.observe;
    this.#random = options.random ?? Math.random;
    this.#etag = options.etag ?? '';
    this.#longPolling = options.config.long_polling_timeout_s !== undefined;
    const name = options.config.token_env;
    if (name !== undefined) {
      const token = (options.env ?? process.env)[name]?.trim();
      if (!token) throw new SignalboxError('config_invalid', `policy.service.token_env: environment variable ${name} is not set`);
      // Never quote the value: it is the secret.
      if (!isHeaderValue(token)) throw new SignalboxError('config_invalid', `policy.service.token_env: environment variable ${name} ${BAD_HEADER_VALUE}`);
      this.#token = token;
    }
  }

  /** The ETag sent as If-None-Match on the next request. */
  get etag(): string {
    return this.#etag;
  }

  /** Why the last request failed (undefined after a success). */
  get lastError(): SignalboxError | undefined {
    return this.#lastError;
  }

  /** Whether the next request asks the server to hold it (`Prefer: wait=N`). */
  get longPolling(): boolean {
    return this.#longPolling;
  }

  /**
   * One request. With `wait: false` it never asks the server to hold it (start-up does not
   * wait for a bundle change). Never rejects: failures are logged and returned as "failed".
   */
  async once(options: { wait?: boolean } = {}): Promise<DownloadOutcome> {
    const outcome = await this.#request(options.wait !== false && this.#longPolling);
    this.#observe?.(outcome);
    return outcome;
  }

  /** Starts the polling loop; the first request goes out after the first delay. */
  start(firstOutcome: DownloadOutcome): void {
    if (this.#loop || this.#closing.signal.aborted) return;
    this.#loop = this.#run(firstOutcome);
  }

  /** Stops the loop, aborting a request or long poll under way. */
  async close(): Promise<void> {
    this.#closing.abort();
    this.#wake?.();
    await this.#loop;
  }

  async #run(first: DownloadOutcome): Promise<void> {
    let retries = 0;
    let outcome = first;
    let tookMs = Infinity;
    const waitMs = (this.#config.long_polling_timeout_s ?? 0) * 1000;
    while (!this.#closing.signal.aborted) {
      const failed = outcome === 'failed' || outcome === 'rejected';
      let delay: number;
      if (failed) delay = backoffDelayMs(retries++, this.#config.max_delay_ms, this.#random);
      else {
        retries = 0;
        const { min_delay_ms: min, max_delay_ms: max } = this.#config;
        // A long poll goes out again at once after a new bundle, or when the server held the
        // request. Any other answer given without holding it (a 304, or a 200 with the same
        // bytes from a server that ignores If-None-Match) waits the periodic delay: asking again
        // at once would be a busy loop.
        const held = outcome === 'activated' || tookMs >= waitMs / 2;
        delay = this.#longPolling && held ? 0 : Math.round(min + (max - min) * this.#random());
      }
      this.#logger.debug({ url: loggableUrl(this.url), delay_ms: delay }, 'next bundle download');
      await this.#sleep(delay);
      if (this.#closing.signal.aborted) break;
      const started = Date.now();
      outcome = await this.once();
      tookMs = Date.now() - started;
    }
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  async #headers(wait: boolean): Promise<Record<string, string>> {
    const headers: Record<string, string> = { ...this.#config.headers, 'accept-encoding': 'identity' };
    if (this.#etag) headers['if-none-match'] = this.#etag;
    headers.prefer = wait ? `modes=snapshot;wait=${this.#config.long_polling_timeout_s}` : 'modes=snapshot';
    let token = this.#token;
    if (this.#config.token_file !== undefined) {
      try {
        token = (await readFile(this.#config.token_file, 'utf8')).trim();
      } catch (error) {
        throw new SignalboxError('bundle_download_failed', `cannot read policy.service.token_file: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      // Never quote the value: it is the secret. (Surrounding whitespace, such as the file's
      // trailing newline, was trimmed; only characters inside the token are refused.)
      if (token && !isHeaderValue(token)) throw new SignalboxError('bundle_download_failed', `policy.service.token_file: the token ${BAD_HEADER_VALUE}`);
    }
    if (token) headers.authorization = `${this.#config.token_scheme} ${token}`;
    return headers;
  }

  async #request(wait: boolean): Promise<DownloadOutcome> {
    const url = loggableUrl(this.url);
    let downloaded: DownloadedBundle | undefined;
    try {
      downloaded = await this.#fetch(wait);
    } catch (error) {
      if (this.#closing.signal.aborted) return 'failed';
      this.#etag = '';
      // Not quoted: an unexpected error's message may carry the URL or a header value.
      const e = error instanceof SignalboxError ? error : new SignalboxError('bundle_download_failed', `the download failed (${(error as Error | undefined)?.name ?? 'error'})`, { cause: error });
      this.#lastError = e;
      this.#logger.warn({ code: e.code, url, problem: e.message }, 'bundle download failed; the active bundle keeps serving');
      return 'failed';
    }
    this.#lastError = undefined;
    if (!downloaded) return 'not_modified';
    const result = await this.#activate(downloaded);
    // As OPA: a bundle that does not load is an error, and its ETag is forgotten, so it is
    // downloaded (and reported) again after the backoff rather than confirmed by a 304.
    this.#etag = result === 'rejected' ? '' : downloaded.etag;
    return result;
  }

  /** The new bundle, or undefined on 304. Throws bundle_download_failed. */
  async #fetch(wait: boolean): Promise<DownloadedBundle | undefined> {
    const headers = await this.#headers(wait);
    const timeoutMs = this.#config.timeout_ms + (wait ? (this.#config.long_polling_timeout_s ?? 0) * 1000 : 0);
    const controller = new AbortController();
    const onClose = (): void => controller.abort(this.#closing.signal.reason);
    this.#closing.signal.addEventListener('abort', onClose, { once: true });
    const timer = setTimeout(() => controller.abort(new SignalboxError('bundle_download_failed', `no complete answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      let response: Response;
      try {
        response = await fetch(this.url, { headers, signal: controller.signal, redirect: 'follow' });
      } catch (error) {
        throw this.#failure(controller.signal, error, 'the request could not be made');
      }
      if (response.status === 304) {
        await response.body?.cancel();
        this.#etag = response.headers.get('etag') ?? this.#etag;
        return undefined;
      }
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => undefined);
        throw new SignalboxError('bundle_download_failed', `the server answered ${response.status}`, { details: { status: response.status } });
      }
      // Only a server answering with OPA's bundle media type long polls; any other is polled.
      if (this.#config.long_polling_timeout_s !== undefined) {
        const supported = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() === OPA_BUNDLE_CONTENT_TYPE;
        if (this.#longPolling && !supported) this.#logger.info({ url: loggableUrl(this.url) }, 'bundle server does not support long polling; polling periodically');
        if (!this.#longPolling && supported) this.#logger.info({ url: loggableUrl(this.url) }, 'bundle server supports long polling again');
        this.#longPolling = supported;
      }
      const body = await this.#readBody(response, controller.signal);
      return { body, etag: response.headers.get('etag') ?? '' };
    } finally {
      clearTimeout(timer);
      this.#closing.signal.removeEventListener('abort', onClose);
    }
  }

  async #readBody(response: Response, signal: AbortSignal): Promise<Buffer> {
    const limit = this.#config.max_bundle_bytes;
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > limit) {
      await response.body?.cancel().catch(() => undefined);
      throw new SignalboxError('bundle_download_failed', `the bundle is ${declared} bytes, over policy.service.max_bundle_bytes (${limit})`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    if (!response.body) return Buffer.alloc(0);
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit) {
          await reader.cancel().catch(() => undefined);
          throw new SignalboxError('bundle_download_failed', `the bundle is over policy.service.max_bundle_bytes (${limit})`);
        }
        chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      }
    } catch (error) {
      if (error instanceof SignalboxError) throw error;
      throw this.#failure(signal, error, 'the body could not be read');
    }
    return Buffer.concat(chunks, total);
  }

  /**
   * A failed request or body read. fetch's own messages may quote the URL or a header value
   * ("Request cannot be constructed from a URL that includes credentials: <url>",
   * `Headers.append: "<value>" is an invalid header value`), so they are never repeated: the
   * problem names what failed and only the error codes (ECONNREFUSED, ENOTFOUND,
   * UND_ERR_SOCKET, …), which carry no request data.
   */
  #failure(signal: AbortSignal, error: unknown, what: string): SignalboxError {
    if (signal.aborted && signal.reason instanceof SignalboxError) return signal.reason;
    const codes = [...new Set([errorCode(error), errorCode((error as { cause?: unknown } | undefined)?.cause)].filter((c) => c !== undefined))];
    return new SignalboxError('bundle_download_failed', codes.length ? `${what} (${codes.join(', ')})` : what, codes.length ? { details: { codes } } : {});
  }
}
