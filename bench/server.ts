/**
 * The benchmark's server process: either Signalbox (default policy, verified JWT, audit on; the
 * bundle and budget store chosen by BENCH_BUNDLE and BENCH_STORE/BENCH_REDIS_URL) or a bare
 * grpc-js server with the same Authorization service that answers OK without work. It runs in
 * its own process so its CPU time is measured apart from the load generator's.
 */
import * as grpc from '@grpc/grpc-js';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/log.js';
import { startSignalbox } from '../src/server/app.js';
import { loadServices } from '../src/server/protos.js';

type Message = { type: 'cpu' } | { type: 'stop' };

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
  if (mode === 'bare') {
    handle = await startBare();
  } else {
    // BENCH_CONTENT=off measures the pipeline without content scanning.
    const yaml = process.env.BENCH_CONTENT === 'off' ? 'content:\n  enabled: false\n' : '';
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
    });
    const running = await startSignalbox(config, silentLogger());
    handle = { port: running.grpcPort, close: running.close };
  }
  process.on('message', (message: Message) => {
    if (message.type === 'cpu') {
      const usage = process.cpuUsage();
      process.send?.({ type: 'cpu', micros: usage.user + usage.system });
    } else {
      void handle.close().then(() => process.exit(0));
    }
  });
  process.send?.({ type: 'ready', port: handle.port });
}

void main();
