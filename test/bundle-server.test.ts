/**
 * Downloading bundles with OPA's bundle service protocol, against a small HTTP bundle server on
 * loopback: If-None-Match carries the ETag, 304 keeps the bundle, a new ETag activates a new
 * revision, long polling (`Prefer: wait=N`) delivers a bundle published during a held request at
 * once, a server without OPA's media type is polled instead, signatures are verified, errors
 * back off and keep the previous bundle, and the persisted copy serves a restart.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import type { PolicyConfig } from '../src/bundles/config.js';
import { SignalboxError } from '../src/core/errors.js';
import { BundleDownloader, type BundleServiceConfig } from '../src/bundles/download.js';
import { backoffDelayMs } from '../src/core/backoff.js';
import { PolicySource } from '../src/bundles/source.js';
import { loadServices } from '../src/transport/protos.js';
import { BundleServer, bundleVariant, MARKER_REGO, OPA_BUNDLE_TYPE, waitFor } from './helpers/bundle-server.js';
import { buildTestBundle } from './helpers/bundles.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox } from './helpers/signalbox.js';

let dir: string;
let base: string;
let publicFile: string;
let signing: { key: string; algorithm: string; keyid: string };
const bundles = new Map<string, Buffer>();
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signalbox-bundle-server-'));
  base = await buildTestBundle(MARKER_REGO, { data: { marker: { id: 'base' } } });
  const pair = await generateKeyPair('RS256', { extractable: true });
  publicFile = join(dir, 'public.pem');
  await writeFile(publicFile, await exportSPKI(pair.publicKey));
  signing = { key: await exportPKCS8(pair.privateKey), algorithm: 'RS256', keyid: 'prod' };
  for (const marker of ['g1', 'g2', 'g3']) bundles.set(marker, await bundleVariant(base, marker));
  for (const marker of ['s1', 's2']) bundles.set(marker, await bundleVariant(base, marker, { signing }));
  bundles.set('tampered', await bundleVariant(base, 's3', { signing, change: (f) => f.set('/data.json', Buffer.from('{"marker":{"id":"evil"}}')) }));
}, 120_000);

afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

function bundle(marker: string): Buffer {
  return bundles.get(marker) as Buffer;
}

async function server(options: { longPoll?: boolean } = {}): Promise<BundleServer> {
  const s = await BundleServer.start(options);
  cleanup.push(() => s.close());
  return s;
}

/** The policy section for a bundle server at `url`, with `service` keys added (YAML lines). */
function policyConfig(url: string, service: string[] = [], extra: string[] = []): PolicyConfig {
  const yaml = ['policy:', '  decision: reload/decision', '  service:', `    url: ${url}`, ...service.map((l) => `    ${l}`), ...extra.map((l) => `  ${l}`), ''].join('\n');
  return parseConfig(yaml, {}, 'test').policy;
}

async function open(config: PolicyConfig, logger = capturedLogger().logger): Promise<PolicySource> {
  const source = await PolicySource.open({ config, bundlePath: join(dir, 'unused.tar.gz'), logger });
  cleanup.push(() => source.close());
  return source;
}

/** A node:http server answering every request with `handle`; its base URL and the requests seen. */
async function rawServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ base: string; requests: { url: string; headers: IncomingHttpHeaders; at: number }[] }> {
  const requests: { url: string; headers: IncomingHttpHeaders; at: number }[] = [];
  const s = createServer((req, res) => {
    requests.push({ url: req.url ?? '', headers: req.headers, at: Date.now() });
    handle(req, res);
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  });
  return { base: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, requests };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function marker(source: PolicySource): unknown {
  const evaluation = source.current().evaluate({}, 0n);
  return (evaluation.result as { headers: Record<string, string> }).headers['x-bundle-marker'];
}

describe('bundle service protocol', () => {
  it('sends If-None-Match with the ETag; 304 keeps the bundle; a new ETag activates a new revision (end to end)', async () => {
    const bs = await server();
    bs.publish(bundle('g1'));
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'tok-5ecret-value-123\n');
    const log = capturedLogger();
    const sb = await startTestSignalbox(log.logger, {
      yaml: [
        'policy:',
        '  decision: reload/decision',
        '  service:',
        `    url: ${bs.url}`,
        '    min_delay_ms: 40',
        '    max_delay_ms: 80',
        `    token_file: ${tokenFile}`,
        '    headers: {X-Tenant: acme}',
        '    persist_file: null',
        '',
      ].join('\n'),
    });
    cleanup.push(() => sb.close());
    expect(sb.running.policy.revision).toBe('rev-g1');
    const first = bs.requests[0];
    expect(first?.headers['if-none-match']).toBeUndefined();
    expect(first?.headers.prefer).toBe('modes=snapshot');
    expect(first?.headers.authorization).toBe('Bearer tok-5ecret-value-123');
    expect(first?.headers['x-tenant']).toBe('acme');

    await waitFor(() => bs.requests.length >= 4, 'polls');
    const etag1 = BundleServer.etagOf(bundle('g1'));
    for (const request of bs.requests.slice(1, 4)) {
      expect(request.headers['if-none-match']).toBe(etag1);
      expect(request.status).toBe(304);
    }
    expect(sb.running.policy.revision).toBe('rev-g1');

    bs.publish(bundle('g2'));
    await waitFor(() => sb.running.policy.revision === 'rev-g2', 'rev-g2');
    const n = bs.requests.length;
    await waitFor(() => bs.requests.length > n + 1, 'a poll after the change');
    expect(bs.requests.at(-1)?.headers['if-none-match']).toBe(BundleServer.etagOf(bundle('g2')));

    // Decisions carry the downloaded revision; /ready and the log show it.
    const client = new (loadServices().clients.DecisionService)(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
      Decide: (req: object, cb: (e: grpc.ServiceError | null, r: { policyRevision: string; headers: { key: string; value: string }[] }) => void) => void;
      close: () => void;
    };
    const answer = await new Promise<{ policyRevision: string; headers: { key: string; value: string }[] }>((resolve, reject) =>
      client.Decide({ request: { method: 'GET', path: '/v1/models' } }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    client.close();
    expect(answer.policyRevision).toBe('rev-g2');
    expect(answer.headers).toContainEqual({ key: 'x-bundle-marker', value: 'g2' });
    const ready = (await (await fetch(`http://127.0.0.1:${sb.running.httpPort}/ready`)).json()) as { revision: string };
    expect(ready.revision).toBe('rev-g2');
    expect(log.lines()).toContainEqual(expect.objectContaining({ msg: 'policy bundle activated: revision rev-g1 → rev-g2', origin: 'service', source: bs.url }));
    expect(log.lines()).toContainEqual(expect.objectContaining({ msg: 'signalbox serving', revision: 'rev-g1', bundle: bs.url }));
    const metrics = await (await fetch(`http://127.0.0.1:${sb.running.httpPort}/metrics`)).text();
    expect(metrics).toContain('signalbox_bundle_info{revision="rev-g2"} 1');
    expect(metrics).toMatch(/signalbox_bundle_downloads_total\{outcome="not_modified"\} [1-9]/);
    // The token is sent, never logged.
    expect(log.text()).not.toContain('tok-5ecret');
  });

  it('long polls with Prefer: wait=N and activates a bundle published during a held request at once', async () => {
    const bs = await server({ longPoll: true });
    bs.publish(bundle('g1'));
    // Periodic polling would take a minute: only the long poll can deliver quickly.
    const source = await open(policyConfig(bs.url, ['long_polling_timeout_s: 20', 'min_delay_ms: 60000', 'max_delay_ms: 60000', 'persist_file: null']));
    expect(source.revision).toBe('rev-g1');
    // Start-up never waits for a change.
    expect(bs.requests[0]?.headers.prefer).toBe('modes=snapshot');
    source.start();
    await waitFor(() => bs.holding === 1, 'a held long poll');
    const held = bs.requests.at(-1);
    expect(held?.headers.prefer).toBe('modes=snapshot;wait=20');
    expect(held?.headers['if-none-match']).toBe(BundleServer.etagOf(bundle('g1')));

    await new Promise((resolve) => setTimeout(resolve, 200));
    const published = Date.now();
    bs.publish(bundle('g2'));
    await waitFor(() => source.revision === 'rev-g2', 'rev-g2 from the long poll', 3_000);
    expect(Date.now() - published).toBeLessThan(1_000);
    expect(held?.status).toBe(200);
    expect(held?.heldMs).toBeGreaterThanOrEqual(150);
    expect(marker(source)).toBe('g2');
    // And the next long poll goes out at once with the new ETag.
    await waitFor(() => bs.holding === 1 && bs.requests.at(-1)?.headers['if-none-match'] === BundleServer.etagOf(bundle('g2')), 'the next long poll');
  });

  it('falls back to periodic polling when the server does not answer with the OPA bundle media type', async () => {
    const bs = await server({ longPoll: true });
    bs.publish(bundle('g1'));
    const log = capturedLogger();
    const source = await open(policyConfig(bs.url, ['long_polling_timeout_s: 20', 'min_delay_ms: 50', 'max_delay_ms: 100', 'persist_file: null']), log.logger);
    source.start();
    await waitFor(() => bs.holding === 1, 'a held long poll');
    // The server becomes a plain file server (nginx, S3): application/gzip, no holding.
    bs.longPoll = false;
    bs.publish(bundle('g2'));
    await waitFor(() => source.revision === 'rev-g2', 'rev-g2');
    expect(log.lines()).toContainEqual(expect.objectContaining({ msg: 'bundle server does not support long polling; polling periodically' }));
    const switched = bs.requests.length;
    await waitFor(() => bs.requests.length >= switched + 3, 'periodic polls');
    for (const request of bs.requests.slice(switched)) {
      expect(request.headers.prefer).toBe('modes=snapshot');
      expect(request.status).toBe(304);
    }
    bs.publish(bundle('g3'));
    await waitFor(() => source.revision === 'rev-g3', 'rev-g3 by polling');
    // Served with OPA's media type again, the client long polls again.
    bs.longPoll = true;
    bs.publish(bundle('g1'));
    await waitFor(() => source.revision === 'rev-g1', 'rev-g1');
    await waitFor(() => bs.holding === 1, 'long polling resumed');
    expect(bs.requests.at(-1)?.headers.prefer).toBe('modes=snapshot;wait=20');
    expect(OPA_BUNDLE_TYPE).toBe('application/vnd.openpolicyagent.bundles');
  });

  it('does not busy-loop when a server claims long polling but answers 304 without holding', async () => {
    const bs = await server({ longPoll: true });
    bs.hold = false;
    bs.publish(bundle('g1'));
    const source = await open(policyConfig(bs.url, ['long_polling_timeout_s: 10', 'min_delay_ms: 150', 'max_delay_ms: 200', 'persist_file: null']));
    source.start();
    await waitFor(() => bs.requests.length >= 2, 'the first long poll');
    const n = bs.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 700));
    // One poll per 150–200 ms, not thousands.
    expect(bs.requests.length - n).toBeLessThanOrEqual(5);
    expect(bs.requests.at(-1)?.headers.prefer).toBe('modes=snapshot;wait=10');
  });

  it('does not busy-loop when a long-polling server ignores If-None-Match and answers 200 with the same bytes at once', async () => {
    const body = bundle('g1');
    const raw = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': OPA_BUNDLE_TYPE, etag: '"same"', 'content-length': body.length }).end(body);
    });
    const source = await open(policyConfig(`${raw.base}/b.tar.gz`, ['long_polling_timeout_s: 10', 'min_delay_ms: 150', 'max_delay_ms: 200', 'persist_file: null']));
    source.start();
    await waitFor(() => raw.requests.length >= 2, 'the first long poll');
    const n = raw.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Each answer is "unchanged" (the same bytes) without holding: one request per 150–200 ms,
    // not a tight loop of full downloads.
    expect(raw.requests.length - n).toBeLessThanOrEqual(8);
    expect(raw.requests.at(-1)?.headers.prefer).toBe('modes=snapshot;wait=10');
    expect(source.revision).toBe('rev-g1');
  });

  it('never logs the URL credentials or header values that fetch quotes in its errors; network codes are kept', async () => {
    const port = await closedPort();
    const service = policyConfig(`http://127.0.0.1:${port}/b.tar.gz`, ['persist_file: null']).service as BundleServiceConfig;
    const attempt = async (config: BundleServiceConfig): Promise<{ problem: unknown; text: string; message: string | undefined }> => {
      const log = capturedLogger();
      const downloader = new BundleDownloader({ config, logger: log.logger, activate: () => Promise.resolve('activated') });
      expect(await downloader.once()).toBe('failed');
      const line = log.lines().find((l) => l.msg === 'bundle download failed; the active bundle keeps serving');
      return { problem: line?.problem, text: log.text(), message: downloader.lastError?.message };
    };
    // Configurations the schema refuses, made by hand: fetch's TypeError quotes the secret.
    const withUserInfo = await attempt({ ...service, url: `http://user:s3cret-pw@127.0.0.1:${port}/b.tar.gz` });
    expect(withUserInfo.problem).toBe('the request could not be made');
    expect(withUserInfo.text).not.toContain('s3cret-pw');
    expect(withUserInfo.message).not.toContain('s3cret-pw');
    const badHeader = await attempt({ ...service, headers: { 'x-api-key': 'line1\nhdr-s3cret' } });
    expect(badHeader.problem).toBe('the request could not be made');
    expect(badHeader.text).not.toContain('hdr-s3cret');
    // A network error keeps its code.
    const refused = await attempt(service);
    expect(refused.problem).toBe('the request could not be made (ECONNREFUSED)');

    // Nor does the start-up error.
    const policy = policyConfig(`http://127.0.0.1:${port}/b.tar.gz`, ['persist_file: null']);
    const error = await open({ ...policy, service: { ...service, url: `http://user:s3cret-pw@127.0.0.1:${port}/b.tar.gz` } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'bundle_download_failed' });
    expect((error as Error).message).not.toContain('s3cret-pw');
  });

  it('refuses header values and tokens with line breaks, without quoting them', async () => {
    const bs = await server();
    bs.publish(bundle('g1'));
    // headers: at config time, naming the key.
    for (const value of ['"a\\nhdr-s3cret"', '"a\\rhdr-s3cret"', '"a\\0hdr-s3cret"']) {
      let caught: unknown;
      try {
        policyConfig(bs.url, [`headers: {X-Api-Key: ${value}}`]);
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ code: 'config_invalid', message: expect.stringMatching(/policy\.service\.headers\.X-Api-Key: must not contain a line break/) });
      expect((caught as Error).message).not.toContain('hdr-s3cret');
    }
    expect(() => policyConfig(bs.url, ['token_scheme: "Bearer\\nx"'])).toThrow(/policy\.service\.token_scheme: must not contain a line break/);

    // token_file: at read time; a single trailing newline is still trimmed (the end-to-end test).
    const tokenFile = join(dir, 'token-inner-newline');
    await writeFile(tokenFile, 'tok-part1\ntok-s3cret-part2\n');
    const log = capturedLogger();
    const error = await open(policyConfig(bs.url, [`token_file: ${tokenFile}`, 'persist_file: null']), log.logger).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'bundle_download_failed', message: expect.stringContaining('policy.service.token_file: the token contains a line break') });
    expect((error as Error).message).not.toContain('tok-s3cret');
    expect(log.text()).toContain('policy.service.token_file: the token contains a line break');
    expect(log.text()).not.toContain('tok-s3cret');
    expect(bs.requests).toHaveLength(0);

    // token_env: at start-up.
    const config = policyConfig(bs.url, ['token_env: SB_TEST_TOKEN', 'persist_file: null']).service as BundleServiceConfig;
    let caught: unknown;
    try {
      new BundleDownloader({ config, env: { SB_TEST_TOKEN: 'env-part1\r\nenv-s3cret' }, activate: () => Promise.resolve('activated') });
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'config_invalid', message: expect.stringContaining('policy.service.token_env: environment variable SB_TEST_TOKEN contains a line break') });
    expect((caught as Error).message).not.toContain('env-s3cret');
    // Surrounding whitespace is trimmed as before.
    expect(() => new BundleDownloader({ config, env: { SB_TEST_TOKEN: ' tok\n' }, activate: () => Promise.resolve('activated') })).not.toThrow();
  });

  it('keeps a presigned URL\'s signature out of the persisted sidecar, trusting the ETag only for the same URL', async () => {
    const body = bundle('g1');
    const etag = '"e1"';
    const raw = await rawServer((req, res) => {
      if (req.headers['if-none-match'] === etag) res.writeHead(304, { etag }).end();
      else res.writeHead(200, { 'content-type': 'application/gzip', etag }).end(body);
    });
    const persist = join(dir, 'presigned', 'signalbox.tar.gz');
    const url = `${raw.base}/b.tar.gz?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=sig-s3cret-0123`;
    const config = policyConfig(JSON.stringify(url), [`persist_file: ${persist}`]);
    await (await open(config)).close();
    const sidecar = await readFile(`${persist}.json`, 'utf8');
    expect(sidecar).not.toContain('sig-s3cret');
    expect(sidecar).not.toContain('X-Amz');
    expect(JSON.parse(sidecar)).toMatchObject({ url: `${raw.base}/b.tar.gz`, url_sha256: createHash('sha256').update(url).digest('hex'), etag });

    // The same URL: the ETag is sent and confirmed by a 304.
    const n = raw.requests.length;
    await (await open(config)).close();
    expect(raw.requests[n]?.headers['if-none-match']).toBe(etag);
    // Another URL (a new signature): the copy serves, but its ETag is not trusted.
    const other = policyConfig(JSON.stringify(url.replace('sig-s3cret-0123', 'sig-other')), [`persist_file: ${persist}`]);
    await (await open(other)).close();
    expect(raw.requests[n + 1]?.headers['if-none-match']).toBeUndefined();
    // A sidecar written before (the URL in clear) is still honoured.
    await writeFile(`${persist}.json`, JSON.stringify({ url, etag, sha256: createHash('sha256').update(body).digest('hex'), revision: 'rev-g1' }));
    await (await open(config)).close();
    expect(raw.requests[n + 2]?.headers['if-none-match']).toBe(etag);
  });

  it('refuses tampered and unsigned remote bundles when verification is configured', async () => {
    const bs = await server();
    const verification = ['verification:', `  public_key_file: ${publicFile}`, '  key_id: prod', '  algorithm: RS256'];
    const config = policyConfig(bs.url, ['min_delay_ms: 30', 'max_delay_ms: 60', 'persist_file: null'], verification);

    // Nothing good to start from: start-up fails with the bundle's own code.
    bs.publish(bundle('tampered'));
    await expect(open(config)).rejects.toMatchObject({ code: 'bundle_signature_invalid' });
    bs.publish(bundle('g1'));
    await expect(open(config)).rejects.toMatchObject({ code: 'bundle_signature_missing' });

    bs.publish(bundle('s1'));
    const log = capturedLogger();
    const source = await open(config, log.logger);
    expect(source.revision).toBe('rev-s1');
    source.start();
    const rejections = () => log.lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('policy bundle rejected'));

    bs.publish(bundle('tampered'));
    await waitFor(() => rejections().length >= 1, 'the tampered bundle rejected');
    expect(rejections()[0]).toMatchObject({ level: 50, code: 'bundle_signature_invalid', origin: 'service', source: bs.url, msg: 'policy bundle rejected (bundle_signature_invalid); revision rev-s1 keeps serving' });
    expect(source.revision).toBe('rev-s1');
    // As OPA, the ETag of a bundle that did not load is forgotten: the next request downloads it again.
    const n = bs.requests.length;
    await waitFor(() => bs.requests.length > n, 'the next request');
    expect(bs.requests[n]?.headers['if-none-match']).toBeUndefined();

    bs.publish(bundle('g2'));
    await waitFor(() => rejections().some((l) => l.code === 'bundle_signature_missing'), 'the unsigned bundle rejected');
    expect(source.revision).toBe('rev-s1');
    expect(marker(source)).toBe('s1');

    bs.publish(bundle('s2'));
    await waitFor(() => source.revision === 'rev-s2', 'rev-s2');
  });

  it('backs off on server errors and dropped connections, keeping the previous bundle', async () => {
    const bs = await server();
    bs.publish(bundle('g1'));
    const log = capturedLogger();
    const source = await open(policyConfig(bs.url, ['min_delay_ms: 20', 'max_delay_ms: 500', 'persist_file: null']), log.logger);
    source.start();
    await waitFor(() => bs.requests.length >= 2, 'a poll');

    bs.failure = 503;
    const firstFailure = bs.requests.length;
    await waitFor(() => bs.requests.length >= firstFailure + 6, 'six failed requests', 15_000);
    const failed = bs.requests.slice(firstFailure, firstFailure + 6);
    expect(failed.every((r) => r.status === 503)).toBe(true);
    const gaps = failed.slice(1).map((r, i) => r.at - (failed[i] as { at: number }).at);
    // 100 ms, 160, 256, 410, then the 500 ms cap, each ±20%.
    expect(gaps[0]).toBeGreaterThanOrEqual(70);
    expect(gaps[0]).toBeLessThan(250);
    expect(gaps[4]).toBeGreaterThanOrEqual(380);
    expect(gaps[4]).toBeLessThan(800);
    expect(source.revision).toBe('rev-g1');
    expect(marker(source)).toBe('g1');
    expect(log.lines()).toContainEqual(
      expect.objectContaining({ level: 40, code: 'bundle_download_failed', url: bs.url, problem: 'the server answered 503', msg: 'bundle download failed; the active bundle keeps serving' }),
    );

    bs.failure = 'reset';
    const resets = bs.requests.length;
    await waitFor(() => bs.requests.length >= resets + 2, 'dropped connections');
    expect(source.revision).toBe('rev-g1');

    // Back up: after errors the ETag was forgotten, so the bundle is downloaded in full, found
    // identical to the active one, and nothing is swapped.
    bs.failure = undefined;
    const back = bs.requests.length;
    await waitFor(() => bs.requests.slice(back).some((r) => r.status === 200), 'a full download');
    expect(bs.requests[back]?.headers['if-none-match']).toBeUndefined();
    expect(log.lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('policy bundle activated'))).toEqual([]);
    bs.publish(bundle('g2'));
    await waitFor(() => source.revision === 'rev-g2', 'rev-g2');
  }, 30_000);

  it('the backoff follows OPA: 100 ms doubling by 1.6 up to the max delay, ±20%', () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffDelayMs(n, 1_000, mid))).toEqual([100, 160, 256, 410, 655, 1000]);
    expect(backoffDelayMs(10, 1_000, () => 0)).toBe(800);
    expect(backoffDelayMs(10, 1_000, () => 1)).toBe(1200);
  });

  it('keeps the last good download and starts from it when the server is down at restart', async () => {
    const bs = await server();
    const persist = join(dir, 'persisted', 'signalbox.tar.gz');
    const config = policyConfig(bs.url, ['min_delay_ms: 30', 'max_delay_ms: 60', `persist_file: ${persist}`]);
    bs.publish(bundle('g1'));
    const first = await open(config);
    first.start();
    bs.publish(bundle('g2'));
    await waitFor(() => first.revision === 'rev-g2', 'rev-g2');
    await first.close();
    expect(await readFile(persist)).toEqual(bundle('g2'));
    const meta = JSON.parse(await readFile(`${persist}.json`, 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ url: bs.url, url_sha256: createHash('sha256').update(bs.url).digest('hex'), etag: BundleServer.etagOf(bundle('g2')), revision: 'rev-g2' });
    expect(existsSync(`${persist}.partial-${process.pid}`)).toBe(false);

    // The server is down: start from the copy.
    bs.failure = 503;
    const log = capturedLogger();
    const restarted = await open(config, log.logger);
    expect(restarted.revision).toBe('rev-g2');
    expect(marker(restarted)).toBe('g2');
    expect(log.lines()).toContainEqual(expect.objectContaining({ msg: 'policy bundle loaded', origin: 'persisted', revision: 'rev-g2' }));
    expect(log.lines()).toContainEqual(expect.objectContaining({ msg: 'bundle server unavailable; serving the persisted revision rev-g2' }));
    await restarted.close();

    // The server is back with the same bundle: the copy's ETag is confirmed by a 304.
    bs.failure = undefined;
    const n = bs.requests.length;
    const again = await open(config);
    expect(again.revision).toBe('rev-g2');
    expect(bs.requests[n]?.headers['if-none-match']).toBe(BundleServer.etagOf(bundle('g2')));
    expect(bs.requests[n]?.status).toBe(304);
    await again.close();

    // No copy and no server: start-up fails, naming the server and the missing copy.
    bs.failure = 503;
    const nowhere = policyConfig(bs.url, [`persist_file: ${join(dir, 'absent', 'x.tar.gz')}`]);
    const error = await open(nowhere).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SignalboxError);
    expect((error as SignalboxError).code).toBe('bundle_download_failed');
    expect((error as SignalboxError).message).toBe(
      `cannot download the policy bundle from ${bs.url} (the server answered 503) and there is no usable copy at ${join(dir, 'absent', 'x.tar.gz')}`,
    );
  }, 30_000);

  it('refuses a body over max_bundle_bytes and validates the service config', async () => {
    const bs = await server();
    bs.publish(Buffer.alloc(4096, 1));
    await expect(open(policyConfig(bs.url, ['max_bundle_bytes: 1024', 'persist_file: null']))).rejects.toMatchObject({
      code: 'bundle_download_failed',
      message: expect.stringContaining('over policy.service.max_bundle_bytes (1024)'),
    });
    const bad: [string[], RegExp][] = [
      [['min_delay_ms: 10', 'max_delay_ms: 5'], /policy\.service\.min_delay_ms: min_delay_ms must not exceed max_delay_ms/],
      [['token_env: A', 'token_file: /x'], /policy\.service\.token_file: set token_env or token_file, not both/],
      [['headers: {If-None-Match: x}'], /policy\.service\.headers: If-None-Match, Prefer/],
      [['long_polling_timeout_s: 0'], /policy\.service\.long_polling_timeout_s/],
    ];
    for (const [lines, message] of bad) expect(() => policyConfig(bs.url, lines)).toThrow(message);
    expect(() => policyConfig('ftp://example.com/b.tar.gz')).toThrow(/policy\.service\.url: must be an http/);
    let caught: unknown;
    try {
      policyConfig('http://user:s3cret@example.com/b.tar.gz');
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'config_invalid', message: expect.stringMatching(/policy\.service\.url: must not contain user info .*token_file, token_env or headers/) });
    expect((caught as Error).message).not.toContain('s3cret');
    expect(() => parseConfig('', { SIGNALBOX_BUNDLE_URL: 'http://:pw@example.com/b' }, 'env')).toThrow(/policy\.service\.url: must not contain user info/);
    expect(parseConfig('', { SIGNALBOX_BUNDLE_URL: bs.url }, 'env').policy.service?.url).toBe(bs.url);
    await expect(open(policyConfig(bs.url, ['token_env: SIGNALBOX_TEST_ABSENT_TOKEN']))).rejects.toMatchObject({ code: 'config_invalid' });
  });
});
