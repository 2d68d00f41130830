/**
 * npm run bench:workers: decisions/s of `signalbox serve` with server.workers 1 against 2 (and
 * more, BENCH_WORKERS=1,2,4), same policy as bench/check.ts's `signalbox` mode (verified ES256
 * JWT, the default policy with its limits emptied, audit on), driven over several gRPC
 * connections: workers share the port by connection, so one connection would reach one worker.
 * Server CPU is read from /proc for the whole process tree (primary and workers).
 *
 * Rounds alternate the worker counts; the median round is reported. Settings: BENCH_SECONDS
 * (default 8), BENCH_CONCURRENCY (in-flight calls, default 32), BENCH_CONNECTIONS (default 8),
 * BENCH_ROUNDS (default 3), BENCH_USERS (distinct tokens, default 100).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { projectRoot } from '../src/core/paths.js';
import { loadServices } from '../src/transport/protos.js';
import { AUDIENCE, ISSUER, mint, signingKey } from '../test/helpers/keys.js';
import { checkRequest } from '../test/helpers/signalbox.js';
import { chatBody, unlimitedBundle } from './bundles.js';
import { driveChecks, type CheckClient } from './drive.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const USERS = Number(process.env.BENCH_USERS ?? 100);
const WORKER_COUNTS = (process.env.BENCH_WORKERS ?? '1,2').split(',').map(Number);
const WARMUP_SECONDS = 2;
const TICKS_PER_SECOND = 100; // USER_HZ on Linux


/** CPU time of a process and all its descendants, and of the process alone, in µs (utime + stime from /proc). */
async function treeCpuMicros(root: number): Promise<{ tree: number; root: number }> {
  const children = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields.length < 15) continue;
    const pid = Number(name);
    const parent = Number(fields[1]);
    ticks.set(pid, Number(fields[11]) + Number(fields[12]));
    children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    total += ticks.get(pid) ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return { tree: (total * 1e6) / TICKS_PER_SECOND, root: ((ticks.get(root) ?? 0) * 1e6) / TICKS_PER_SECOND };
}

async function startServe(workers: number, env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
    cwd: projectRoot(),
    env: { ...process.env, ...env, SIGNALBOX_WORKERS: String(workers), SIGNALBOX_GRPC_ADDR: '127.0.0.1:0', SIGNALBOX_HTTP_ADDR: '127.0.0.1:0', SIGNALBOX_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"grpc_port":(\d+)/.exec(output);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${output}`)));
  });
  child.stdout!.resume();
  return { child, port };
}

interface Result {
  readonly workers: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuMicrosPerDecision: number;
  /** Of which the primary's (the store, connection hand-off, metrics): 0 with one process, whose root is the server itself. */
  readonly primaryMicrosPerDecision: number;
  readonly coresUsed: number;
}

async function measure(workers: number, env: Record<string, string>, requests: object[]): Promise<Result> {
  const { child, port } = await startServe(workers, env);
  const clients = Array.from(
    { length: CONNECTIONS },
    () => new (loadServices().clients.Authorization)(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as CheckClient,
  );
  try {
    await driveChecks(clients, requests, WARMUP_SECONDS, CONCURRENCY);
    const cpuBefore = await treeCpuMicros(child.pid!);
    const started = performance.now();
    const { latencies, denied } = await driveChecks(clients, requests, SECONDS, CONCURRENCY);
    if (denied > 0) throw new Error(`${denied} benchmark requests were denied; the benchmark measures allows`);
    const elapsed = (performance.now() - started) / 1000;
    const cpuAfter = await treeCpuMicros(child.pid!);
    const cpu = cpuAfter.tree - cpuBefore.tree;
    const primary = workers > 1 ? cpuAfter.root - cpuBefore.root : 0;
    latencies.sort((a, b) => a - b);
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
    return { workers, perSecond: latencies.length / elapsed, p50Ms: at(50), p99Ms: at(99), cpuMicrosPerDecision: cpu / latencies.length, primaryMicrosPerDecision: primary / latencies.length, coresUsed: cpu / 1e6 / elapsed };
  } finally {
    for (const client of clients) client.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-bench-workers-'));
  try {
    const unlimited = join(dir, 'unlimited.tar.gz');
    await unlimitedBundle(unlimited);
    const key = await signingKey('ES256', 'bench');
    const jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
    const body = chatBody();
    const requests: object[] = [];
    for (let i = 0; i < USERS; i++) requests.push(checkRequest({ token: await mint(key, { subject: `user-${i}`, expiresIn: 3600 }), body }));
    const results = new Map<number, Result[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const workers of WORKER_COUNTS) {
        const env = { SIGNALBOX_JWKS_FILE: jwksFile, SIGNALBOX_JWT_ISSUER: ISSUER, SIGNALBOX_JWT_AUDIENCE: AUDIENCE, SIGNALBOX_BUNDLE: unlimited, SIGNALBOX_AUDIT_PATH: join(dir, `audit-${workers}-${round}`, 'audit.jsonl') };
        const result = await measure(workers, env, requests);
        results.set(workers, [...(results.get(workers) ?? []), result]);
        process.stderr.write(`round ${round + 1}: ${workers} worker(s): ${Math.round(result.perSecond)} decisions/s\n`);
      }
    }
    const median = (list: Result[]) => [...list].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(list.length / 2)]!;
    const base = median(results.get(WORKER_COUNTS[0]!)!);
    process.stdout.write(`\n${CONCURRENCY} in flight over ${CONNECTIONS} connections, ${SECONDS} s rounds, median of ${ROUNDS}; the load generator shares the machine\n\n`);
    process.stdout.write('| workers | decisions/s | ratio | p50 ms | p99 ms | server CPU µs/decision | of which primary | server cores used |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n');
    for (const workers of WORKER_COUNTS) {
      const r = median(results.get(workers)!);
      process.stdout.write(
        `| ${workers} | ${Math.round(r.perSecond)} | ${(r.perSecond / base.perSecond).toFixed(2)}× | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${Math.round(r.cpuMicrosPerDecision)} | ${Math.round(r.primaryMicrosPerDecision)} | ${r.coresUsed.toFixed(2)} |\n`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
