/**
 * The benchmark's server process: either Signalbox (default policy, verified JWT, audit on unless
 * BENCH_AUDIT=off, fsynced with BENCH_AUDIT=fsync; the
 * bundle and budget store chosen by BENCH_BUNDLE and BENCH_STORE/BENCH_REDIS_URL) or a bare
 * grpc-js server with the same Authorization service that answers OK without work. It runs in
 * its own process so its CPU time is measured apart from the load generator's.
 *
 * With BENCH_SWAP_BUNDLES=a,b and BENCH_SWAP_MS, it also replaces its bundle file (BENCH_BUNDLE)
 * by atomic rename every BENCH_SWAP_MS, alternating a and b, as a deploy would, and times each
 * swap from the rename until the new revision decides (hot reload: watch, load, verify, swap).
 */
import { copyFile, rename } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { RunningSignalbox } from '../src/app/app.js';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/core/log.js';
import { noopAuditSink } from '../src/audit/log.js';
import { startSignalbox } from '../src/app/app.js';
import { loadServices } from '../src/transport/protos.js';

type Message = { type: 'cpu' } | { type: 'stop' };

/** Swaps the bundle file until stopped; returns the swap times so far (ms) on demand. */
function swapBundles(running: RunningSignalbox, bundlePath: string, variants: readonly string[], everyMs: number): { swapsMs: number[]; stop: () => void } {
  const swapsMs: number[] = [];
  let stopped = false;
  let next = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, everyMs));
      const variant = variants[next++ % variants.length]!;
      const before = running.policy.revision;
      const partial = `${bundlePath}.partial`;
      await copyFile(variant, partial);
      const started = performance.now();
      await rename(partial, bundlePath);
      // Wait (bounded) for the new revision to decide; a swap that never lands is reported as a failure.
      const deadline = started + 10_000;
      while (running.policy.revision === before && performance.now() < deadline && !stopped) await new Promise((resolve) => setTimeout(resolve, 2));
      if (stopped) return;
      if (running.policy.revision === before) throw new Error(`bundle swap to ${variant} never activated`);
      swapsMs.push(performance.now() - started);
    }
  };
  loop().catch((error: unknown) => {
    process.stderr.write(`bench server: ${String(error)}\n`);
    process.exit(1);
  });
  return { swapsMs, stop: () => (stopped = true) };
}

async function startBare(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = new grpc.Server();
  server.addService(loadServices().authorization, {
    Check: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, { status: { code: 0 }, okResponse: {} }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, close: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  let handle: { port: number; close: () => Promise<void> };
  let swaps: number[] | undefined;
  if (mode === 'bare') {
    handle = await startBare();
  } else {
    // BENCH_CONTENT=off measures the pipeline without content scanning.
    // BENCH_AUDIT=summary keeps summary records (audit.input: summary).
    const yaml = (process.env.BENCH_CONTENT === 'off' ? 'content:\n  enabled: false\n' : '') + (process.env.BENCH_AUDIT === 'summary' ? 'audit:\n  input: summary\n' : '');
    const config = parseConfig(yaml, {
      SIGNALBOX_GRPC_ADDR: '127.0.0.1:0',
      SIGNALBOX_HTTP_ADDR: '127.0.0.1:0',
      SIGNALBOX_JWKS_FILE: process.env.BENCH_JWKS_FILE ?? '',
      SIGNALBOX_JWT_ISSUER: process.env.BENCH_ISSUER ?? '',
      SIGNALBOX_JWT_AUDIENCE: process.env.BENCH_AUDIENCE ?? '',
      SIGNALBOX_AUDIT_PATH: process.env.BENCH_AUDIT_PATH ?? '',
      SIGNALBOX_BUNDLE: process.env.BENCH_BUNDLE ?? '',
      SIGNALBOX_STORE: process.env.BENCH_STORE ?? '',
      SIGNALBOX_REDIS_URL: process.env.BENCH_REDIS_URL ?? '',
      SIGNALBOX_AUDIT_DURABILITY: process.env.BENCH_AUDIT === 'fsync' ? 'fsync' : 'buffered',
    });
    // BENCH_AUDIT=off drops every record (the cost of the audit trail, by difference).
    const running = await startSignalbox(config, silentLogger(), process.env.BENCH_AUDIT === 'off' ? { audit: noopAuditSink } : {});
    const variants = process.env.BENCH_SWAP_BUNDLES?.split(',').filter(Boolean) ?? [];
    const swapper = variants.length > 0 ? swapBundles(running, process.env.BENCH_BUNDLE ?? '', variants, Number(process.env.BENCH_SWAP_MS ?? 250)) : undefined;
    swaps = swapper?.swapsMs;
    handle = {
      port: running.grpcPort,
      close: async () => {
        swapper?.stop();
        await running.close();
      },
    };
  }
  process.on('message', (message: Message) => {
    if (message.type === 'cpu') {
      const usage = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: usage.user + usage.system, swapsMs: swaps ?? [] });
    } else {
      void handle.close().then(() => process.exit(0));
    }
  });
  process.send?.({ type: 'ready', port: handle.port });
}

void main();
