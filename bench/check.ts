/**
 * npm run bench: drives Envoy's Check over gRPC at a fixed concurrency and prints decisions/s,
 * p50/p99 latency and server CPU µs per decision for, in the same run:
 *   bare            a grpc-js server answering OK without work (the floor);
 *   signalbox       the default policy with its limits data emptied: no budgets, no rate limits;
 *   no-audit        signalbox with every audit record dropped: signalbox / no-audit is the audit's cost;
 *   audit-fsync     signalbox with audit.durability fsync: answered only once the record is on disk;
 *   no-content      the same with content scanning switched off (content.enabled: false), so the
 *                   ratio signalbox / no-content is the price of scanning every body;
 *   budgets-memory  the default policy as shipped (4 budgets + a rate limit per request), in-memory store;
 *   budgets-redis   the same against a real Redis: one spend read and one atomic reservation per request;
 *   reloading       signalbox while its bundle file is replaced every BENCH_SWAP_MS (default 250) by
 *                   one of two revisions: the cost of hot reload under load, and how long a swap
 *                   takes from the file's rename until the new revision decides;
 * and the ratios between them, so the cost of exact enforcement is a printed number.
 *
 * Rounds alternate the modes so drift on a noisy machine hits all of them; the median round is
 * reported. Settings: BENCH_SECONDS (default 8), BENCH_CONCURRENCY (default 32), BENCH_ROUNDS
 * (default 3), BENCH_USERS (distinct tokens, default 100), BENCH_MODES (comma-separated subset).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../src/transport/protos.js';
import { AUDIENCE, ISSUER, mint, signingKey } from '../test/helpers/keys.js';
import { startRedis } from '../test/helpers/redis.js';
import { checkRequest } from '../test/helpers/signalbox.js';
import { chatBody, shippedBundle, unlimitedBundle, withData } from './bundles.js';
import { driveChecks, type CheckClient } from './drive.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const USERS = Number(process.env.BENCH_USERS ?? 100);
const WARMUP_SECONDS = 2;
const ALL_MODES = ['bare', 'signalbox', 'no-audit', 'audit-fsync', 'no-content', 'budgets-memory', 'budgets-redis', 'reloading'];
const SWAP_MS = Number(process.env.BENCH_SWAP_MS ?? 250);
const MODES = (process.env.BENCH_MODES ?? ALL_MODES.join(',')).split(',').filter((m) => ALL_MODES.includes(m));

interface Result {
  mode: string;
  decisions: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicrosPerDecision: number;
  denied: number;
  /** Bundle swaps during the measured period (reloading), each from rename to active, in ms. */
  swapsMs: number[];
}


function startServer(mode: string, env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  // BENCH_PROFILE=dir writes a V8 CPU profile of each server process there, for chrome://inspect.
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const child = fork(join(import.meta.dirname, 'server.ts'), [mode], { execArgv: [...profile, '--import', 'tsx'], env: { ...process.env, ...env } });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${mode} server exited with ${code}`)));
    child.on('message', (m: { type: string; port?: number }) => {
      if (m.type === 'ready') resolve({ child, port: m.port! });
    });
  });
}

function serverCpu(child: ChildProcess): Promise<{ micros: number; swapsMs: number[] }> {
  return new Promise((resolve) => {
    const onMessage = (m: { type: string; micros?: number; swapsMs?: number[] }): void => {
      if (m.type === 'cpu') {
        child.off('message', onMessage);
        resolve({ micros: m.micros!, swapsMs: m.swapsMs ?? [] });
      }
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu' });
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function measure(mode: string, env: Record<string, string>, requests: object[]): Promise<Result> {
  const { child, port } = await startServer(mode, env);
  const client = new (loadServices().clients.Authorization)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as CheckClient;
  try {
    await driveChecks([client], requests, WARMUP_SECONDS, CONCURRENCY);
    const cpuBefore = await serverCpu(child);
    const started = performance.now();
    const { latencies, denied } = await driveChecks([client], requests, SECONDS, CONCURRENCY);
    const elapsed = (performance.now() - started) / 1000;
    const cpuAfter = await serverCpu(child);
    latencies.sort((a, b) => a - b);
    return {
      mode,
      decisions: latencies.length,
      perSecond: latencies.length / elapsed,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      cpuMicrosPerDecision: (cpuAfter.micros - cpuBefore.micros) / latencies.length,
      denied,
      swapsMs: cpuAfter.swapsMs.slice(cpuBefore.swapsMs.length),
    };
  } finally {
    client.close();
    child.send({ type: 'stop' });
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

function swapPercentile(swapsMs: number[], p: number): string {
  return percentile([...swapsMs].sort((a, b) => a - b), p).toFixed(0);
}

function median(results: Result[], key: keyof Result): number {
  const values = results.map((r) => r[key] as number).sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)]!;
}

type Limits = Record<string, unknown>;

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-bench-'));
  const redis = MODES.includes('budgets-redis') ? await startRedis() : undefined;
  try {
    const shipped = shippedBundle();
    const unlimited = join(dir, 'no-limits.tar.gz');
    const budgeted = join(dir, 'budgets.tar.gz');
    const limitsOf = (data: Record<string, unknown>): Limits => (data.signalbox as { limits: Limits }).limits;
    await unlimitedBundle(unlimited);
    // The shipped budgets, with a rate limit high enough that the benchmark measures allows.
    await withData(shipped, budgeted, (data) => {
      limitsOf(data).rate_limits = { user: { requests_per_minute: 100_000_000, tokens_per_minute: 1_000_000_000_000 } };
    });
    // Two revisions of the unlimited bundle for the reloading mode, swapped into its own file.
    const swapA = join(dir, 'swap-a.tar.gz');
    const swapB = join(dir, 'swap-b.tar.gz');
    const reloadingBundle = join(dir, 'reloading', 'signalbox.tar.gz');
    if (MODES.includes('reloading')) {
      await mkdir(join(dir, 'reloading'));
      await withData(unlimited, swapA, () => {}, 'bench-swap-a');
      await withData(unlimited, swapB, () => {}, 'bench-swap-b');
      await copyFile(swapA, reloadingBundle);
    }
    const key = await signingKey('ES256', 'bench');
    const jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
    const body = chatBody();
    const requests: object[] = [];
    for (let i = 0; i < USERS; i++) {
      requests.push(checkRequest({ token: await mint(key, { subject: `user-${i}`, expiresIn: 3600 }), body }));
    }
    const common = { BENCH_JWKS_FILE: jwksFile, BENCH_ISSUER: ISSUER, BENCH_AUDIENCE: AUDIENCE, BENCH_AUDIT_PATH: join(dir, 'audit.jsonl') };
    const envs: Record<string, Record<string, string>> = {
      bare: common,
      signalbox: { ...common, BENCH_BUNDLE: unlimited, BENCH_STORE: 'memory' },
      'no-audit': { ...common, BENCH_BUNDLE: unlimited, BENCH_STORE: 'memory', BENCH_AUDIT: 'off' },
      'audit-fsync': { ...common, BENCH_BUNDLE: unlimited, BENCH_STORE: 'memory', BENCH_AUDIT: 'fsync' },
      'no-content': { ...common, BENCH_BUNDLE: unlimited, BENCH_STORE: 'memory', BENCH_CONTENT: 'off' },
      'budgets-memory': { ...common, BENCH_BUNDLE: budgeted, BENCH_STORE: 'memory' },
      'budgets-redis': { ...common, BENCH_BUNDLE: budgeted, BENCH_STORE: 'redis', BENCH_REDIS_URL: redis?.url ?? '' },
      reloading: { ...common, BENCH_BUNDLE: reloadingBundle, BENCH_STORE: 'memory', BENCH_SWAP_BUNDLES: `${swapB},${swapA}`, BENCH_SWAP_MS: String(SWAP_MS) },
    };
    process.stdout.write(
      `Check over gRPC, concurrency ${CONCURRENCY}, ${SECONDS}s per round after ${WARMUP_SECONDS}s warm-up, ${ROUNDS} rounds, ${USERS} users, body ${body.length} bytes\n`,
    );
    const all: Record<string, Result[]> = Object.fromEntries(MODES.map((m) => [m, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of MODES) {
        const result = await measure(mode === 'bare' ? 'bare' : 'signalbox', envs[mode]!, requests);
        result.mode = mode;
        if (mode !== 'bare' && result.denied > 0) throw new Error(`${mode} denied ${result.denied} benchmark requests; the benchmark must measure allows`);
        all[mode]!.push(result);
        const swaps = result.swapsMs.length > 0 ? `  swaps ${result.swapsMs.length}, rename→active p50 ${swapPercentile(result.swapsMs, 50)} ms max ${swapPercentile(result.swapsMs, 100)} ms` : '';
        process.stdout.write(
          `  round ${round} ${mode.padEnd(14)} ${result.perSecond.toFixed(0).padStart(7)}/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  cpu ${result.cpuMicrosPerDecision.toFixed(0)} µs/decision${swaps}\n`,
        );
      }
    }
    const row = (mode: string): string => {
      const r = all[mode]!;
      return `| ${mode} | ${median(r, 'perSecond').toFixed(0)} | ${median(r, 'p50Ms').toFixed(2)} | ${median(r, 'p99Ms').toFixed(2)} | ${median(r, 'cpuMicrosPerDecision').toFixed(0)} |`;
    };
    const ratio = (a: string, b: string): string => {
      const of = (key: keyof Result): string => (median(all[a]!, key) / median(all[b]!, key)).toFixed(2);
      return `| ${a} / ${b} | ${of('perSecond')}x | ${of('p50Ms')}x | ${of('p99Ms')}x | ${of('cpuMicrosPerDecision')}x |`;
    };
    process.stdout.write('\nmedian of rounds:\n| server | decisions/s | p50 ms | p99 ms | server CPU µs/decision |\n|---|---|---|---|---|\n');
    for (const mode of MODES) process.stdout.write(`${row(mode)}\n`);
    for (const [a, b] of [
      ['signalbox', 'bare'],
      ['signalbox', 'no-audit'],
      ['audit-fsync', 'signalbox'],
      ['signalbox', 'no-content'],
      ['budgets-memory', 'signalbox'],
      ['budgets-redis', 'signalbox'],
      ['reloading', 'signalbox'],
    ] as const) {
      if (all[a] && all[b]) process.stdout.write(`${ratio(a, b)}\n`);
    }
    if (all.reloading) {
      const swaps = all.reloading.flatMap((r) => r.swapsMs);
      process.stdout.write(
        `\nreloading: ${swaps.length} bundle swaps while measuring (every ${SWAP_MS} ms after the last landed), no request failed or was denied; rename → new revision deciding: p50 ${swapPercentile(swaps, 50)} ms, max ${swapPercentile(swaps, 100)} ms\n`,
      );
    }
  } finally {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

void main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${String(error)}\n`);
  process.exitCode = 1;
});
