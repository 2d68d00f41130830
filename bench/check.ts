/**
 * npm run bench: drives Envoy's Check over gRPC at a fixed concurrency and prints decisions/s,
 * p50/p99 latency and server CPU µs per decision for, in the same run:
 *   bare            a grpc-js server answering OK without work (the floor);
 *   signalbox       the default policy with its limits data emptied: no budgets, no rate limits;
 *   no-audit        signalbox with no audit record masked, built or written: signalbox / no-audit is
 *                   the audit's whole cost;
 *   audit-fsync     signalbox with audit.durability fsync: answered only once the record is on disk;
 *   audit-summary   signalbox with audit.input summary (smaller records): audit-summary / no-audit
 *                   is the summary audit's cost;
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
import { measure, medianTable, percentile, roundLine, type Load, type Result } from './measure.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const USERS = Number(process.env.BENCH_USERS ?? 100);
const WARMUP_SECONDS = 2;
const ALL_MODES = ['bare', 'signalbox', 'no-audit', 'audit-fsync', 'audit-summary', 'no-content', 'budgets-memory', 'budgets-redis', 'reloading'];
const SWAP_MS = Number(process.env.BENCH_SWAP_MS ?? 250);
const MODES = (process.env.BENCH_MODES ?? ALL_MODES.join(',')).split(',').filter((m) => ALL_MODES.includes(m));

const connectCheck = (requests: readonly object[]) => (port: number): Load => {
  const client = new (loadServices().clients.Authorization)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as CheckClient;
  return { run: (seconds) => driveChecks([client], requests, seconds, CONCURRENCY), close: () => client.close() };
};

function swapPercentile(swapsMs: number[], p: number): string {
  return percentile([...swapsMs].sort((a, b) => a - b), p).toFixed(0);
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
      'audit-summary': { ...common, BENCH_BUNDLE: unlimited, BENCH_STORE: 'memory', BENCH_AUDIT: 'summary' },
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
        const setup = { server: mode === 'bare' ? 'bare' : 'signalbox', env: envs[mode]!, warmupSeconds: WARMUP_SECONDS, seconds: SECONDS } as const;
        const result: Result = await measure(mode, setup, connectCheck(requests));
        if (mode !== 'bare' && result.denied > 0) throw new Error(`${mode} denied ${result.denied} benchmark requests; the benchmark must measure allows`);
        all[mode]!.push(result);
        const swaps = result.swapsMs.length > 0 ? `  swaps ${result.swapsMs.length}, rename→active p50 ${swapPercentile(result.swapsMs, 50)} ms max ${swapPercentile(result.swapsMs, 100)} ms` : '';
        process.stdout.write(roundLine(round, result, 'decision', swaps));
      }
    }
    const ratios = [
      ['signalbox', 'bare'],
      ['signalbox', 'no-audit'],
      ['audit-fsync', 'signalbox'],
      ['audit-summary', 'no-audit'],
      ['signalbox', 'no-content'],
      ['budgets-memory', 'signalbox'],
      ['budgets-redis', 'signalbox'],
      ['reloading', 'signalbox'],
    ] as const;
    process.stdout.write(`\nmedian of rounds (ratios: the median of the rounds' ratios):\n${medianTable(all, MODES, ratios)}`);
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
