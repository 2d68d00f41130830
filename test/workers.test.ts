/**
 * `signalbox serve` with 2 workers, as a real process tree: a bundle swap (bundle file and bundle
 * server) reaches every worker; GET /metrics on any worker answers every worker's sum; each
 * worker's audit chain verifies as a set with `signalbox audit verify DIR` (in fsync mode too),
 * and a missing chain fails it; a worker that dies is restarted, a crash loop stops the service
 * with a non-zero exit, and workers do not outlive their primary; a worker or a bundle that
 * cannot start fails the start once, with exit 1. (Budgets and rate limits across
 * workers: budgets-redis.test.ts; SIGTERM draining every worker: lifecycle.test.ts.)
 */
import { execFile } from 'node:child_process';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServices } from '../src/transport/protos.js';
import { BundleServer, MARKER_REGO, bundleVariant } from './helpers/bundle-server.js';
import { buildTestBundle } from './helpers/bundles.js';
import { startReplica, type Replica } from './helpers/replicas.js';
import { checkRequest, headerValue, type CheckResponse } from './helpers/signalbox.js';

const WORKERS = 2;

/** One Check on a connection of its own: connections are what the workers share out. */
async function freshCheck(port: number): Promise<CheckResponse> {
  const client = new (loadServices().clients.Authorization)(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & {
    Check: (req: object, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
  };
  try {
    return await new Promise((resolve, reject) => client.Check(checkRequest({}), { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r))));
  } finally {
    client.close();
  }
}

/** GET on a connection of its own. */
function freshGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Polls until `condition` holds, or fails naming `what`. */
async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Each worker's pid, from the lines it logged (the latest wins: a restarted worker logs again). */
function workerPids(output: string): Map<number, number> {
  const pids = new Map<number, number>();
  for (const line of output.split('\n')) {
    if (!/"msg":"(worker serving|worker restarted)"/.test(line)) continue;
    const record = JSON.parse(line) as { worker: number; pid: number };
    pids.set(record.worker, record.pid);
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The decision records of one worker's audit file. */
async function decisionRecords(dir: string, worker: number): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(dir, `audit.w${worker}.jsonl`), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.includes('"decision_id"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function policyYaml(policy: string[]): string {
  return ['policy:', '  decision: reload/decision', ...policy.map((line) => `  ${line}`), ''].join('\n');
}

describe.each(['bundle file', 'bundle server'])('hot reload from the %s with 2 workers', (from) => {
  let replica: Replica;
  let server: BundleServer | undefined;
  let bundlePath: string;
  let next: Buffer;

  beforeAll(async () => {
    const base = await buildTestBundle(MARKER_REGO);
    const first = await bundleVariant(base, 'a', { revision: 'rev-a' });
    next = await bundleVariant(base, 'b', { revision: 'rev-b' });
    let policy: string[];
    if (from === 'bundle file') {
      bundlePath = join(base, '..', 'reloading.tar.gz');
      await writeFile(bundlePath, first);
      policy = [`bundle: ${bundlePath}`, 'watch: true', 'poll_interval_ms: 100'];
    } else {
      server = await BundleServer.start();
      server.publish(first);
      policy = ['service:', `  url: ${server.url}`, '  min_delay_ms: 100', '  max_delay_ms: 200', '  persist_file: null'];
    }
    replica = await startReplica(policyYaml(policy), {}, { workers: WORKERS });
  }, 60_000);

  afterAll(async () => {
    await replica?.stop();
    await server?.close();
  });

  it('switches every worker: after the swap, every fresh connection decides with the new revision', async () => {
    const before = await Promise.all(Array.from({ length: 8 }, () => freshCheck(replica.grpcPort)));
    expect(before.map((r) => headerValue(r.okResponse?.headers, 'x-bundle-marker'))).toEqual(Array(8).fill('a'));
    // Both workers decided: their records reach the files within audit.flush_ms and a write.
    await until(async () => (await Promise.all(Array.from({ length: WORKERS }, async (_, i) => (await decisionRecords(replica.dir, i + 1)).length))).every((n) => n > 0), 'a record from every worker');

    if (server) server.publish(next);
    else {
      await writeFile(`${bundlePath}.tmp`, next);
      await rename(`${bundlePath}.tmp`, bundlePath);
    }
    // The primary loads it once, then every worker reports the switch.
    const activated = (worker: number) => new RegExp(`"worker":${worker},[^\\n]*"msg":"policy bundle activated: revision rev-a → rev-b"`);
    await until(() => Array.from({ length: WORKERS }, (_, i) => activated(i + 1).test(replica.output())).every(Boolean), 'every worker to activate rev-b');
    expect(replica.output().match(/^(?![^\n]*"worker")[^\n]*policy bundle activated: revision rev-a → rev-b/gm)).toHaveLength(1);

    const after = await Promise.all(Array.from({ length: 12 }, () => freshCheck(replica.grpcPort)));
    expect(after.map((r) => headerValue(r.okResponse?.headers, 'x-bundle-marker'))).toEqual(Array(12).fill('b'));
    for (let i = 0; i < 6; i++) expect(JSON.parse((await freshGet(`${replica.http}/ready`)).body)).toEqual({ status: 'ready', revision: 'rev-b' });
    // Both workers decided after the swap, and both with rev-b (the audit trail says which).
    await until(async () => {
      const latest = await Promise.all(Array.from({ length: WORKERS }, async (_, i) => (await decisionRecords(replica.dir, i + 1)).at(-1)));
      return latest.every((record) => JSON.stringify(record?.bundles) === JSON.stringify({ signalbox: { revision: 'rev-b' } }));
    }, 'the last decision of every worker to carry rev-b', 5_000);
  }, 60_000);
});

describe('metrics, audit and supervision with 2 workers', () => {
  let replica: Replica;

  beforeAll(async () => {
    const bundle = await buildTestBundle(MARKER_REGO, { data: { marker: { id: 'm' } } });
    replica = await startReplica(policyYaml([`bundle: ${bundle}`]), { SIGNALBOX_AUDIT_DURABILITY: 'fsync' }, { workers: WORKERS, connections: 4 });
  }, 60_000);

  afterAll(async () => {
    await replica?.stop();
  });

  it('answers GET /metrics on any worker with the sum over every worker', async () => {
    const responses = await Promise.all(Array.from({ length: 40 }, () => replica.check(checkRequest({}))));
    expect(responses.every((r) => r.status.code === 0)).toBe(true);
    for (let worker = 1; worker <= WORKERS; worker++) expect((await decisionRecords(replica.dir, worker)).length, `worker ${worker}`).toBeGreaterThan(0);
    for (let i = 0; i < 6; i++) {
      const { status, body } = await freshGet(`${replica.http}/metrics`);
      expect(status).toBe(200);
      const decisions = [...body.matchAll(/^signalbox_decisions_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
      expect(decisions).toBe(40);
      expect(body).toMatch(/^signalbox_decision_duration_seconds_count\{door="envoy.ext_authz.grpc"\} 40$/m);
      expect(body).toMatch(/^signalbox_bundle_loads_total\{origin="file",result="activated"\} 1$/m);
      expect(body).toMatch(/^signalbox_worker_restarts_total 0$/m);
      expect(body).toMatch(/^process_resident_memory_bytes \d+/m);
    }
  }, 60_000);

  it('starts each worker with the bounded memory settings (server.worker_memory: bounded, the default)', async () => {
    const pids = [...workerPids(replica.output()).values()];
    expect(pids).toHaveLength(WORKERS);
    for (const pid of pids) {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
      expect(argv, `worker pid ${pid}`).toEqual(expect.arrayContaining(['--max-semi-space-size=8', '--heap-growing-percent=50']));
      const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
      expect(environ, `worker pid ${pid}`).toContain('MALLOC_MMAP_THRESHOLD_=131072');
      expect(environ, `worker pid ${pid}`).toContain('MALLOC_ARENA_MAX=2');
    }
  });

  it('keeps one chain per worker, fsynced, that audit verify checks as a set', async () => {
    const cli = (dir: string) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'audit', 'verify', dir], { cwd: process.cwd() }).then(
        ({ stdout }) => ({ code: 0, stdout }),
        (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }),
      );
    // In fsync mode an answered decision is on disk already.
    const records = (await decisionRecords(replica.dir, 1)).length + (await decisionRecords(replica.dir, 2)).length;
    expect(records).toBe(40);
    const ok = await cli(replica.dir);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ok: 42 records in 2 files, 2 chains, each intact, none missing\n {2}audit\.w1\.jsonl: \d+ records, last hash [0-9a-f]{64}\n {2}audit\.w2\.jsonl: /);

    // A copy without worker 2's chain: the other's workers record names it.
    const copy = join(replica.dir, 'copy');
    await promisify(execFile)('mkdir', ['-p', copy]);
    await writeFile(join(copy, 'audit.w1.jsonl'), await readFile(join(replica.dir, 'audit.w1.jsonl')));
    const missing = await cli(copy);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/^audit_chain_broken: worker chain\(s\) missing: audit\.w2\.jsonl/);
    await rm(copy, { recursive: true });
  }, 60_000);

  it('restarts a worker that dies, and gives up, exiting non-zero, when workers keep crashing', async () => {
    const first = workerPids(replica.output()).get(1)!;
    process.kill(first, 'SIGKILL');
    await until(() => workerPids(replica.output()).get(1) !== first, 'worker 1 to be restarted');
    expect(replica.output()).toMatch(/"worker":1,"pid":\d+,"exit_code":null,"signal":"SIGKILL","restart_in_ms":\d+,"msg":"worker exited unexpectedly; restarting it"/);
    const responses = await Promise.all(Array.from({ length: 8 }, () => freshCheck(replica.grpcPort)));
    expect(responses.every((r) => r.status.code === 0)).toBe(true);
    expect((await freshGet(`${replica.http}/metrics`)).body).toMatch(/^signalbox_worker_restarts_total 1$/m);

    // Five more crashes within the minute: a crash loop.
    for (let crash = 0; crash < 5; crash++) {
      const pid = workerPids(replica.output()).get(2)!;
      process.kill(pid, 'SIGKILL');
      await until(() => workerPids(replica.output()).get(2) !== pid || /workers keep crashing/.test(replica.output()), 'worker 2 to be restarted');
    }
    await until(() => /"msg":"signalbox stopped"/.test(replica.output()), 'the primary to give up');
    expect(replica.output()).toMatch(/"msg":"workers keep crashing; giving up"/);
    expect(replica.output()).toMatch(/"exit_code":1,"msg":"signalbox stopped"/);
    await until(() => !alive(replica.pid), 'the primary to exit');
    for (const pid of workerPids(replica.output()).values()) expect(alive(pid), `worker pid ${pid}`).toBe(false);
  }, 90_000);
});

describe('a worker that cannot start', () => {
  it('fails the start once, naming the cause, with exit 1', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(taken.address() as AddressInfo).port}`;
    try {
      const bundle = await buildTestBundle(MARKER_REGO, { data: { marker: { id: 'm' } } });
      const started = startReplica(policyYaml([`bundle: ${bundle}`]), { SIGNALBOX_HTTP_ADDR: address }, { workers: WORKERS });
      const error = (await started.then(
        () => new Error('it started'),
        (failure: Error) => failure,
      )) as Error;
      expect(error.message).toMatch(/replica exited early \(1\)/);
      expect(error.message).toMatch(/signalbox: worker \d: config_invalid: server\.http_addr: cannot listen on 127\.0\.0\.1:\d+/);
      expect(error.message).toMatch(/"msg":"a worker failed to start; stopping"/);
      expect(error.message.match(/"msg":"starting 2 workers"/g)).toHaveLength(1);
    } finally {
      taken.close();
    }
  }, 60_000);
});

describe('a bundle that cannot be loaded', () => {
  it('fails the start in the primary, before any worker starts', async () => {
    const error = (await startReplica(policyYaml(['bundle: /nonexistent/bundle.tar.gz']), {}, { workers: WORKERS }).then(
      () => new Error('it started'),
      (failure: Error) => failure,
    )) as Error;
    expect(error.message).toMatch(/replica exited early \(1\)/);
    expect(error.message).toMatch(/signalbox: bundle_unreadable: cannot read bundle \/nonexistent\/bundle\.tar\.gz/);
    expect(error.message).not.toMatch(/starting 2 workers/);
  }, 60_000);
});

describe('a primary that dies', () => {
  it('takes its workers with it', async () => {
    const bundle = await buildTestBundle(MARKER_REGO, { data: { marker: { id: 'm' } } });
    const replica = await startReplica(policyYaml([`bundle: ${bundle}`]), {}, { workers: WORKERS });
    // The port listens once the first worker serves; the others may log a moment later.
    await until(() => workerPids(replica.output()).size === WORKERS, 'every worker to log that it serves');
    const pids = [...workerPids(replica.output()).values()];
    expect(pids).toHaveLength(WORKERS);
    expect(pids.every(alive)).toBe(true);
    await replica.kill();
    await until(() => !pids.some(alive), 'every worker to exit after its primary', 10_000);
  }, 60_000);
});

