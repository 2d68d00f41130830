/**
 * Hot reload under load: while decisions flow over loopback, the bundle file is replaced 20
 * times, with good, corrupt, entrypoint-less, tampered, unsigned and foreign-signed bundles.
 * No request fails, every decision names the revision whose policy made it (each bundle's
 * policy puts its own marker in a header), bad bundles are rejected with one log line and the
 * previous revision keeps serving, and the last good bundle is the one serving at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { packBundle, readBundleFiles } from '../src/bundles/bundle.js';
import { PolicySource } from '../src/bundles/source.js';
import { loadServices } from '../src/transport/protos.js';
import { buildTestBundle } from './helpers/bundles.js';
import { bundleVariant, MARKER_REGO, OTHER_ENTRYPOINT_REGO, waitFor } from './helpers/bundle-server.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

interface DecideResponse {
  allowed: boolean;
  headers: { key: string; value: string }[];
  policyRevision: string;
}

type Step =
  | { readonly kind: 'good'; readonly marker: string }
  | { readonly kind: 'bad'; readonly name: string; readonly code: string }
  | { readonly kind: 'same' };

const STEPS: Step[] = [
  { kind: 'good', marker: 'g1' },
  { kind: 'bad', name: 'random bytes', code: 'bundle_unreadable' },
  { kind: 'good', marker: 'g2' },
  { kind: 'bad', name: 'no reload/decision entrypoint', code: 'bundle_entrypoint_missing' },
  { kind: 'bad', name: 'data.json modified after signing', code: 'bundle_signature_invalid' },
  { kind: 'good', marker: 'g3' },
  { kind: 'bad', name: 'unsigned', code: 'bundle_signature_missing' },
  { kind: 'good', marker: 'g4' },
  { kind: 'bad', name: 'truncated gzip', code: 'bundle_unreadable' },
  { kind: 'good', marker: 'g5' },
  { kind: 'bad', name: 'signed, but without policy.wasm', code: 'bundle_invalid' },
  { kind: 'good', marker: 'g6' },
  { kind: 'bad', name: 'signed with another key', code: 'bundle_signature_invalid' },
  { kind: 'good', marker: 'g7' },
  { kind: 'same' },
  { kind: 'good', marker: 'g8' },
  { kind: 'bad', name: 'empty file', code: 'bundle_unreadable' },
  { kind: 'good', marker: 'g9' },
  { kind: 'bad', name: 'manifest revision swapped after signing', code: 'bundle_signature_invalid' },
  { kind: 'good', marker: 'g10' },
];

describe('hot reload of the bundle file under load', () => {
  let dir: string;
  let bundlePath: string;
  let sb: TestSignalbox;
  let log: ReturnType<typeof capturedLogger>;
  let decide: (req: object) => Promise<DecideResponse>;
  let closeClient: () => void;
  const bytes = new Map<string, Buffer>();
  let badBytes: Buffer[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'signalbox-reload-'));
    const pair = await generateKeyPair('RS256', { extractable: true });
    const other = await generateKeyPair('RS256', { extractable: true });
    const publicFile = join(dir, 'public.pem');
    await writeFile(publicFile, await exportSPKI(pair.publicKey));
    const signing = { key: await exportPKCS8(pair.privateKey), algorithm: 'RS256', keyid: 'prod' };
    const foreign = { key: await exportPKCS8(other.privateKey), algorithm: 'RS256', keyid: 'prod' };

    const base = await buildTestBundle(MARKER_REGO, { data: { marker: { id: 'base' } } });
    const otherEntrypoint = await buildTestBundle(OTHER_ENTRYPOINT_REGO, { data: { marker: { id: 'other' } } });
    for (const marker of ['g0', ...STEPS.flatMap((s) => (s.kind === 'good' ? [s.marker] : []))]) {
      bytes.set(marker, await bundleVariant(base, marker, { signing }));
    }
    const good = bytes.get('g1') as Buffer;
    const withoutWasm = await readBundleFiles(base);
    withoutWasm.delete('/policy.wasm');
    badBytes = [
      randomBytes(4096),
      await bundleVariant(otherEntrypoint, 'x-entry', { signing }),
      await bundleVariant(base, 'x-tampered', { signing, change: (f) => f.set('/data.json', Buffer.from('{"marker":{"id":"evil"}}')) }),
      await bundleVariant(base, 'x-unsigned'),
      good.subarray(0, Math.floor(good.length / 2)),
      await (async () => {
        const files = new Map([...withoutWasm].filter(([name]) => name !== '/.signatures.json'));
        const { signBundleFiles } = await import('../src/bundles/signing.js');
        files.set('/.signatures.json', await signBundleFiles(files, signing));
        return packBundle(files);
      })(),
      await bundleVariant(base, 'x-foreign', { signing: foreign }),
      Buffer.alloc(0),
      await bundleVariant(base, 'x-swapped', {
        signing,
        change: (f) => {
          const manifest = JSON.parse((f.get('/.manifest') as Buffer).toString()) as Record<string, unknown>;
          manifest.revision = 'rev-g9';
          f.set('/.manifest', Buffer.from(JSON.stringify(manifest)));
        },
      }),
    ];

    bundlePath = join(dir, 'signalbox.tar.gz');
    await writeFile(bundlePath, bytes.get('g0') as Buffer);
    log = capturedLogger();
    sb = await startTestSignalbox(log.logger, {
      yaml: [
        'policy:',
        `  bundle: ${bundlePath}`,
        '  decision: reload/decision',
        '  poll_interval_ms: 200',
        '  verification:',
        `    public_key_file: ${publicFile}`,
        '    key_id: prod',
        '    algorithm: RS256',
        '',
      ].join('\n'),
    });
    const client = new (loadServices().clients.DecisionService)(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
      Decide: (req: object, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: DecideResponse) => void) => void;
      close: () => void;
    };
    decide = (req) => new Promise((resolve, reject) => client.Decide(req, { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r))));
    closeClient = () => client.close();
  }, 120_000);

  afterAll(async () => {
    closeClient?.();
    await sb?.close();
  });

  /** Replaces the bundle file the way `signalbox build` does: write aside, rename into place. */
  async function swap(content: Buffer, n: number): Promise<void> {
    const aside = join(dir, `.next-${n}.tar.gz`);
    await writeFile(aside, content);
    await rename(aside, bundlePath);
  }

  const linesAfter = (start: number) => log.lines().slice(start);

  it('swaps 20 times while requests flow: no request fails, every decision names the revision that made it', async () => {
    expect(sb.running.policy.revision).toBe('rev-g0');
    const answers: DecideResponse[] = [];
    const failures: unknown[] = [];
    let running = true;
    const worker = async (): Promise<void> => {
      // Bounded: stops when the swaps are done, or after 20 000 requests per worker at most.
      for (let i = 0; running && i < 20_000; i++) {
        try {
          answers.push(await decide({ request: { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') } }));
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const workers = Array.from({ length: 6 }, () => worker());

    let active = 'rev-g0';
    let bad = 0;
    const rejected: { code: string; keeps: string }[] = [];
    for (const [i, step] of STEPS.entries()) {
      const start = log.lines().length;
      const before = answers.length;
      if (step.kind === 'good') {
        await swap(bytes.get(step.marker) as Buffer, i);
        const to = `rev-${step.marker}`;
        await waitFor(() => linesAfter(start).some((l) => l.msg === `policy bundle activated: revision ${active} → ${to}`), `activation of ${to}`);
        expect(sb.running.policy.revision).toBe(to);
        active = to;
      } else if (step.kind === 'bad') {
        await swap(badBytes[bad++] as Buffer, i);
        await waitFor(() => linesAfter(start).some((l) => typeof l.msg === 'string' && l.msg.startsWith('policy bundle rejected')), `rejection of ${step.name}`);
        const line = linesAfter(start).find((l) => typeof l.msg === 'string' && l.msg.startsWith('policy bundle rejected')) as Record<string, unknown>;
        expect(line, step.name).toMatchObject({ level: 50, code: step.code, source: bundlePath, origin: 'file', revision: active });
        expect(line.msg).toBe(`policy bundle rejected (${step.code}); revision ${active} keeps serving`);
        rejected.push({ code: String(line.code), keeps: String(line.revision) });
        expect(sb.running.policy.revision).toBe(active);
      } else {
        // The active bundle written again (new inode, same bytes): nothing to load.
        await swap(bytes.get(active.slice(4)) as Buffer, i);
        await waitFor(() => linesAfter(start).some((l) => l.msg === 'policy bundle unchanged'), 'the unchanged check');
        expect(linesAfter(start).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('policy bundle activated'))).toEqual([]);
      }
      // Requests went on during the swap, and the revision serving now is the expected one.
      await waitFor(() => answers.length > before + 6, 'requests after the swap');
      const after = await decide({ request: { method: 'GET', path: '/v1/models' } });
      expect(after.policyRevision).toBe(active);
    }
    running = false;
    await Promise.all(workers);

    expect(failures).toEqual([]);
    expect(answers.length).toBeGreaterThan(200);
    const good = new Set(['rev-g0', ...STEPS.flatMap((s) => (s.kind === 'good' ? [`rev-${s.marker}`] : []))]);
    const seen = new Set<string>();
    for (const answer of answers) {
      expect(answer.allowed).toBe(true);
      const marker = answer.headers.find((h) => h.key === 'x-bundle-marker')?.value;
      expect(answer.policyRevision).toBe(`rev-${marker}`);
      expect(good.has(answer.policyRevision)).toBe(true);
      seen.add(answer.policyRevision);
    }
    expect(seen.size).toBeGreaterThan(5);
    expect(rejected.map((r) => r.code)).toEqual(STEPS.flatMap((s) => (s.kind === 'bad' ? [s.code] : [])));
    expect(sb.running.policy.revision).toBe('rev-g10');
    expect(sb.running.engine.revision).toBe('rev-g10');

    // /ready and /metrics name the active revision.
    const ready = (await (await fetch(`http://127.0.0.1:${sb.running.httpPort}/ready`)).json()) as { revision: string };
    expect(ready.revision).toBe('rev-g10');
    const metrics = await (await fetch(`http://127.0.0.1:${sb.running.httpPort}/metrics`)).text();
    expect(metrics).toContain('signalbox_bundle_info{revision="rev-g10"} 1');
    expect(metrics).toContain('signalbox_bundle_loads_total{origin="file",result="activated"} 11');
    expect(metrics).toContain('signalbox_bundle_loads_total{origin="file",result="bundle_signature_invalid"} 3');

    // The audit trail: every record's revision is the bundle whose policy produced its result.
    await sb.close();
    const records = (await readFile(sb.auditPath, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { bundles: { signalbox: { revision: string } }; result: { headers: Record<string, string> } });
    expect(records.length).toBe(answers.length + STEPS.length);
    for (const record of records) {
      expect(record.bundles.signalbox.revision).toBe(`rev-${record.result.headers['x-bundle-marker']}`);
    }
  }, 180_000);
});

describe('bundle file watching', () => {
  let base: string;
  beforeAll(async () => {
    base = await buildTestBundle(MARKER_REGO, { data: { marker: { id: 'base' } } });
  }, 60_000);

  async function source(yaml: string, path: string, log: ReturnType<typeof capturedLogger>): Promise<PolicySource> {
    const config = parseConfig(`policy:\n  bundle: ${path}\n  decision: reload/decision\n${yaml}`, {}, 'test').policy;
    const policy = await PolicySource.open({ config, bundlePath: path, logger: log.logger, debounceMs: 20 });
    policy.start();
    return policy;
  }

  it('a deleted bundle file keeps the active bundle serving; its return is loaded', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-reload-'));
    const path = join(dir, 'b.tar.gz');
    await writeFile(path, await bundleVariant(base, 'a'));
    const log = capturedLogger();
    const policy = await source('  poll_interval_ms: 100\n', path, log);
    try {
      await rm(path);
      await waitFor(() => log.lines().some((l) => l.msg === 'policy bundle file is missing; revision rev-a keeps serving'), 'the missing-file line');
      expect(log.lines().find((l) => l.code === 'bundle_unreadable')).toMatchObject({ level: 50, source: path, origin: 'file' });
      expect(policy.revision).toBe('rev-a');
      // Written in place (not renamed): the poll or the watch picks it up once complete.
      await writeFile(path, await bundleVariant(base, 'b'));
      await waitFor(() => policy.revision === 'rev-b', 'rev-b');
    } finally {
      await policy.close();
    }
  });

  it('policy.watch: false serves what was loaded at start-up', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-reload-'));
    const path = join(dir, 'b.tar.gz');
    await writeFile(path, await bundleVariant(base, 'a'));
    const log = capturedLogger();
    const policy = await source('  watch: false\n  poll_interval_ms: 50\n', path, log);
    try {
      await writeFile(join(dir, 'next'), await bundleVariant(base, 'b'));
      await rename(join(dir, 'next'), path);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(policy.revision).toBe('rev-a');
      // An explicit reload still works (what a SIGHUP handler or an admin call would use).
      expect(await policy.reload()).toBe('activated');
      expect(policy.revision).toBe('rev-b');
    } finally {
      await policy.close();
    }
  });
});
