/**
 * Bundle delivery from a real nginx (Debian's package, scripts/install-test-deps.sh) serving the
 * bundle as a plain static file, as many OPA users do: nginx gives the file an ETag (its mtime and
 * size) and answers a matching If-None-Match with 304, does not long poll and answers with its
 * own Content-Type, so Signalbox must fall back to periodic polling. nginx's access log records
 * what Signalbox sent and what nginx answered.
 *
 * Proven here, with signed bundles and `policy.verification` on: revision 1 serves from start-up;
 * unchanged polls are conditional and get 304; an atomically replaced file (write + rename)
 * activates revision 2 while decisions keep succeeding; a corrupt file and a tampered signed
 * bundle are refused and logged, and revision 2 keeps serving; no `Prefer: ...;wait=` ever
 * reaches nginx (start-up never waits, and its first 200 without OPA's media type ends long
 * polling); a good bundle after the refusals activates again.
 */
import { mkdir, mkdtemp, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packBundle, readBundleFiles } from '../src/bundles/bundle.js';
import { buildTestBundle } from './helpers/bundles.js';
import { startNginxStatic, type StaticNginx } from './helpers/gateways.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, headerValue, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

/** One JSON object per request (log_format escape=json): what Signalbox sent, what nginx answered. */
const LOG_FORMAT =
  '{"msec":"$msec","method":"$request_method","uri":"$request_uri","status":"$status",' +
  '"if_none_match":"$http_if_none_match","prefer":"$http_prefer","etag":"$sent_http_etag",' +
  '"content_type":"$sent_http_content_type","bytes":"$body_bytes_sent"}';

interface AccessEntry {
  readonly msec: string;
  readonly method: string;
  readonly uri: string;
  readonly status: string;
  readonly if_none_match: string;
  readonly prefer: string;
  readonly etag: string;
  readonly content_type: string;
  readonly bytes: string;
}

const BUNDLE_PATH = '/bundles/signalbox.tar.gz';

/** A policy that allows and names its bundle in a response header. */
function markerRego(marker: string): string {
  return `package nginxdelivery

# METADATA
# entrypoint: true
decision := {"allowed": true, "headers": {"x-bundle-marker": "${marker}"}}
`;
}

let dir: string;
let nginx: StaticNginx | undefined;
let sb: TestSignalbox | undefined;
let one: Buffer;
let two: Buffer;
let publicFile: string;
const logs = capturedLogger();
/** Each publication gets its own mtime, so nginx's ETag (mtime-size) changes even when the size does not. */
let publications = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signalbox-bundle-nginx-'));
  const pair = await generateKeyPair('RS256', { extractable: true });
  publicFile = join(dir, 'public.pem');
  await writeFile(publicFile, await exportSPKI(pair.publicKey));
  const signing = { key: await exportPKCS8(pair.privateKey), algorithm: 'RS256', keyid: 'prod' };
  const [first, second] = await Promise.all([
    buildTestBundle(markerRego('nginx-one'), { signing }),
    buildTestBundle(markerRego('nginx-two'), { signing }),
  ]);
  one = await readFile(first);
  two = await readFile(second);
  // nginx is required: startNginxStatic throws (naming scripts/install-test-deps.sh) when it is missing.
  nginx = await startNginxStatic({ logFormat: LOG_FORMAT });
}, 120_000);

afterAll(async () => {
  await sb?.close();
  await nginx?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Replaces the served file as a publisher should: write a temp file beside it, then rename. */
async function publish(body: Buffer): Promise<void> {
  const server = nginx as StaticNginx;
  await mkdir(join(server.root, 'bundles'), { recursive: true, mode: 0o755 });
  const target = join(server.root, BUNDLE_PATH);
  const partial = `${target}.partial`;
  await writeFile(partial, body, { mode: 0o644 });
  publications += 1;
  const mtime = Math.floor(Date.now() / 1000) - 1000 + publications * 10;
  await utimes(partial, mtime, mtime);
  await rename(partial, target);
}

async function accessLog(): Promise<AccessEntry[]> {
  const text = await (nginx as StaticNginx).accessLog();
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AccessEntry)
    .filter((entry) => entry.uri === BUNDLE_PATH);
}

/** Polls `condition` every 25 ms until it holds; fails naming `what` after `timeoutMs` (and at most timeoutMs/25 tries). */
async function eventually(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let tries = Math.ceil(timeoutMs / 25); tries > 0 && Date.now() <= deadline; tries--) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const recent = (await accessLog()).slice(-5);
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last nginx requests: ${JSON.stringify(recent)}\n${await (nginx as StaticNginx).log()}`);
}

interface Observed {
  readonly code: number | undefined;
  readonly marker: string | undefined;
  readonly revision: string | undefined;
  readonly error?: string;
}

async function decide(): Promise<Observed> {
  try {
    const response = await (sb as TestSignalbox).check(checkRequest({ method: 'GET', path: '/v1/models' }), { deadlineMs: 5_000 });
    return {
      code: response.status.code ?? 0,
      marker: headerValue(response.okResponse?.headers, 'x-bundle-marker'),
      revision: response.dynamicMetadata?.fields?.policy_revision?.stringValue,
    };
  } catch (error) {
    return { code: undefined, marker: undefined, revision: undefined, error: String(error) };
  }
}

async function readyRevision(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${(sb as TestSignalbox).running.httpPort}/ready`);
  return ((await response.json()) as { revision: string }).revision;
}

function rejections(code: string): Record<string, unknown>[] {
  return logs.lines().filter((l) => l.code === code && typeof l.msg === 'string' && l.msg.startsWith('policy bundle rejected'));
}

/** Signalbox's config: signed bundles from `url`, polled every 200-400 ms, kept at `persist`. */
function serviceConfig(url: string, persist: string): string {
  return [
    'policy:',
    '  decision: nginxdelivery/decision',
    `  verification: { public_key_file: ${publicFile}, key_id: prod, algorithm: RS256 }`,
    '  service:',
    `    url: ${url}`,
    '    min_delay_ms: 200',
    '    max_delay_ms: 400',
    '    long_polling_timeout_s: 5',
    `    persist_file: ${persist}`,
    '',
  ].join('\n');
}

describe('bundle server: a real nginx serving static files', () => {
  it('delivers signed bundles with ETag/304, falls back to polling, swaps atomically and refuses corrupt and tampered files', async () => {
    await publish(one);
    const server = nginx as StaticNginx;
    const url = `${server.url}${BUNDLE_PATH}`;
    const persist = join(dir, 'persisted', 'signalbox.tar.gz');
    sb = await startTestSignalbox(logs.logger, { yaml: serviceConfig(url, persist) });
    const running = sb.running;

    // Revision 1 serves from start-up.
    const rev1 = running.policy.revision;
    const first = await decide();
    expect(first).toEqual({ code: 0, marker: 'nginx-one', revision: rev1 });
    expect(await readyRevision()).toBe(rev1);

    // The start-up request: unconditional, never asks to wait, answered 200 with nginx's own type and ETag.
    let entries = await accessLog();
    expect(entries[0]).toMatchObject({ method: 'GET', status: '200', if_none_match: '', prefer: 'modes=snapshot', content_type: 'application/gzip', bytes: String(one.length) });
    const etag1 = entries[0]?.etag ?? '';
    expect(etag1).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    // That answer lacked OPA's bundle media type: long polling is given up, once.
    const fallbacks = logs.lines().filter((l) => l.msg === 'bundle server does not support long polling; polling periodically');
    expect(fallbacks).toHaveLength(1);
    expect(fallbacks[0]).toMatchObject({ url });

    // Unchanged: periodic conditional polls, each answered 304 with the same ETag.
    await eventually(async () => (await accessLog()).length >= 4, 'three polls after start-up');
    entries = await accessLog();
    for (const entry of entries.slice(1)) {
      expect(entry).toMatchObject({ status: '304', if_none_match: etag1, prefer: 'modes=snapshot', etag: etag1 });
    }
    // Periodic, not a busy loop: at least min_delay_ms (200) between polls, less a margin for the log's clock.
    const times = entries.map((e) => Number(e.msec) * 1000);
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(150);
    expect(running.policy.revision).toBe(rev1);

    // Decisions run throughout the swap (sequentially, bounded in time and count).
    const observed: Observed[] = [];
    let stop = false;
    const decisions = (async () => {
      const until = Date.now() + 30_000;
      for (let i = 0; i < 2_000 && !stop && Date.now() < until; i++) {
        observed.push(await decide());
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    // Atomic replacement with bundle 2: activated by the next poll.
    const before = (await accessLog()).length;
    await publish(two);
    try {
      await eventually(async () => (await readyRevision()) !== rev1, 'revision 2 on /ready');
      await eventually(() => observed.some((o) => o.marker === 'nginx-two'), 'a decision by revision 2');
    } finally {
      stop = true;
      await decisions;
    }
    const rev2 = running.policy.revision;
    expect(rev2).not.toBe(rev1);
    expect(await readyRevision()).toBe(rev2);
    expect(await decide()).toEqual({ code: 0, marker: 'nginx-two', revision: rev2 });

    // No decision failed during the swap, each came from one whole bundle, and 1 never followed 2.
    expect(observed.length).toBeGreaterThan(0);
    for (const o of observed) {
      expect(o.error).toBeUndefined();
      expect(o.code).toBe(0);
      expect([`nginx-one@${rev1}`, `nginx-two@${rev2}`]).toContain(`${o.marker}@${o.revision}`);
    }
    const firstTwo = observed.findIndex((o) => o.marker === 'nginx-two');
    expect(observed.slice(firstTwo).every((o) => o.marker === 'nginx-two')).toBe(true);

    // The download of bundle 2 was a conditional request that nginx answered 200 with a new ETag.
    await eventually(async () => (await accessLog()).length >= before + 3, 'polls after revision 2');
    entries = await accessLog();
    const swapped = entries.slice(before);
    const download = swapped.find((e) => e.status === '200');
    expect(download).toMatchObject({ if_none_match: etag1, prefer: 'modes=snapshot', content_type: 'application/gzip', bytes: String(two.length) });
    const etag2 = download?.etag ?? '';
    expect(etag2).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(etag2).not.toBe(etag1);
    for (const entry of swapped.slice(swapped.indexOf(download!) + 1)) expect(entry).toMatchObject({ status: '304', if_none_match: etag2 });
    // Nothing failed: every request was a 200 or a 304, and no download error was logged.
    expect(entries.every((e) => e.status === '200' || e.status === '304')).toBe(true);
    expect(entries.filter((e) => e.status === '200')).toHaveLength(2);
    expect(logs.lines().filter((l) => l.msg === 'bundle download failed; the active bundle keeps serving')).toEqual([]);
    expect(logs.lines()).toContainEqual(expect.objectContaining({ msg: `policy bundle activated: revision ${rev1} → ${rev2}`, origin: 'service', source: url }));
    // The good download is kept, with nginx's ETag, for a restart while nginx is down.
    expect(await readFile(persist)).toEqual(two);
    expect(JSON.parse(await readFile(`${persist}.json`, 'utf8'))).toMatchObject({ url, etag: etag2, revision: rev2 });

    // A corrupt file (half a tarball) is refused; revision 2 keeps serving.
    await publish(two.subarray(0, Math.floor(two.length / 2)));
    await eventually(() => rejections('bundle_unreadable').length >= 1, 'the corrupt bundle refused');
    expect(rejections('bundle_unreadable')[0]).toMatchObject({
      level: 50,
      origin: 'service',
      source: url,
      revision: rev2,
      msg: `policy bundle rejected (bundle_unreadable); revision ${rev2} keeps serving`,
    });
    expect(running.policy.revision).toBe(rev2);
    expect(await decide()).toEqual({ code: 0, marker: 'nginx-two', revision: rev2 });

    // A signed bundle whose content was changed after signing is refused the same way.
    const files = await readBundleFiles(await writeTemp('two.tar.gz', two));
    files.set('/data.json', Buffer.from('{"nginxdelivery":{"injected":true}}'));
    const tampered = await packBundle(files);
    const tamperedAt = (await accessLog()).length;
    await publish(tampered);
    await eventually(() => rejections('bundle_signature_invalid').length >= 1, 'the tampered bundle refused');
    expect(rejections('bundle_signature_invalid')[0]).toMatchObject({ level: 50, origin: 'service', source: url, revision: rev2 });
    expect(running.policy.revision).toBe(rev2);
    expect(await decide()).toEqual({ code: 0, marker: 'nginx-two', revision: rev2 });
    // Rejected bytes are never persisted.
    expect(await readFile(persist)).toEqual(two);
    // As OPA: a refused bundle's ETag is forgotten, so the next request is unconditional (downloaded and refused again).
    const tamperedDownloads = async (): Promise<AccessEntry[]> => (await accessLog()).slice(tamperedAt).filter((e) => e.bytes === String(tampered.length));
    await eventually(async () => (await tamperedDownloads()).length >= 2, 'the tampered bundle downloaded again');
    const again = (await tamperedDownloads())[1];
    expect(again).toMatchObject({ status: '200', if_none_match: '' });
    expect(rejections('bundle_signature_invalid').length).toBeGreaterThanOrEqual(1);

    // A good bundle after the refusals activates again (here: a rollback to bundle 1).
    await publish(one);
    await eventually(() => running.policy.revision === rev1, 'revision 1 again');
    expect(await decide()).toEqual({ code: 0, marker: 'nginx-one', revision: rev1 });

    // Long polling was never asked of nginx: no request carried `wait=`.
    entries = await accessLog();
    expect(entries.length).toBeGreaterThan(8);
    expect(entries.filter((e) => e.prefer !== 'modes=snapshot')).toEqual([]);
    expect(logs.lines().filter((l) => l.msg === 'bundle server does not support long polling; polling periodically')).toHaveLength(1);
    expect(logs.lines().filter((l) => l.msg === 'bundle server supports long polling again')).toEqual([]);
  }, 90_000);

  it('restarted from its persisted copy, asks nginx to long poll only until nginx answers a bundle without OPA\'s media type', async () => {
    await sb?.close();
    sb = undefined;
    await publish(one);
    const server = nginx as StaticNginx;
    const url = `${server.url}${BUNDLE_PATH}`;
    const persist = join(dir, 'restart', 'signalbox.tar.gz');
    const yaml = serviceConfig(url, persist);
    // A first run downloads bundle 1 and keeps it with nginx's ETag.
    const firstRun = await startTestSignalbox(capturedLogger().logger, { yaml });
    const rev1 = firstRun.running.policy.revision;
    await firstRun.close();
    const etag1 = (JSON.parse(await readFile(`${persist}.json`, 'utf8')) as { etag: string }).etag;
    expect(etag1).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);

    // The restart loads the copy; its start-up request is confirmed by a 304, which says nothing
    // about long polling, so the polls after it still ask to wait. nginx ignores Prefer and
    // answers 304 at once; the client then waits the periodic delay instead of asking again at once.
    const log = capturedLogger();
    const mark = (await accessLog()).length;
    sb = await startTestSignalbox(log.logger, { yaml });
    expect(sb.running.policy.revision).toBe(rev1);
    expect(log.lines()).toContainEqual(expect.objectContaining({ msg: 'policy bundle loaded', origin: 'persisted', revision: rev1 }));
    await eventually(async () => (await accessLog()).length >= mark + 4, 'three polls after the restart');
    let entries = (await accessLog()).slice(mark);
    expect(entries[0]).toMatchObject({ status: '304', if_none_match: etag1, prefer: 'modes=snapshot' });
    for (const entry of entries.slice(1, 4)) expect(entry).toMatchObject({ status: '304', if_none_match: etag1, prefer: 'modes=snapshot;wait=5' });
    const times = entries.slice(0, 4).map((e) => Number(e.msec) * 1000);
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(150);

    // The first 200 comes with application/gzip: long polling ends there, logged once.
    await publish(two);
    await eventually(() => sb?.running.policy.revision !== rev1, 'revision 2 after the restart');
    const rev2 = sb.running.policy.revision;
    expect(await decide()).toEqual({ code: 0, marker: 'nginx-two', revision: rev2 });
    const downloadAt = (await accessLog()).findIndex((e, i) => i >= mark && e.status === '200');
    await eventually(async () => (await accessLog()).length >= downloadAt + 3, 'polls after the download');
    entries = (await accessLog()).slice(downloadAt);
    expect(entries[0]).toMatchObject({ status: '200', if_none_match: etag1, prefer: 'modes=snapshot;wait=5', content_type: 'application/gzip' });
    for (const entry of entries.slice(1)) expect(entry).toMatchObject({ status: '304', prefer: 'modes=snapshot' });
    expect(log.lines().filter((l) => l.msg === 'bundle server does not support long polling; polling periodically')).toHaveLength(1);
  }, 60_000);
});

async function writeTemp(name: string, body: Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, body);
  return path;
}
