import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../src/transport/protos.js';
import { ADMIN_TOKEN, resolveCatalogued, type CheckResponse } from './signalbox.js';

/** A `signalbox serve` child process: a replica as it runs in production. */
export interface Replica {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly http: string;
  /** The primary's (or the only process's) pid. */
  readonly pid: number;
  /** The temp dir holding the config and the audit log (audit.jsonl, or audit.w<N>.jsonl per worker). */
  readonly dir: string;
  /** Spread over the replica's client connections in turn (see {@link ReplicaOptions.connections}). */
  check(request: object): Promise<CheckResponse>;
  /** Everything the process printed (JSON log lines). */
  output(): string;
  stop(): Promise<void>;
  /** SIGKILL, like a crash: no shutdown, no flush. Resolves once the process is gone. */
  kill(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** How a replica runs and how the test reaches it. */
export interface ReplicaOptions {
  /** server.workers (SIGNALBOX_WORKERS); default 1: one process, as a replica always was. */
  readonly workers?: number;
  /**
   * Separate gRPC connections `check` spreads its calls over; default 1. The workers share the
   * port by connection, so one connection reaches one worker.
   */
  readonly connections?: number;
  /**
   * The `signalbox` command to run, as node's arguments before `serve`; default the sources
   * under tsx (`--import tsx src/cli/main.ts`). test/bundle.test.ts passes a built bundle.
   */
  readonly command?: readonly string[];
}

/** Starts `signalbox serve` with the given YAML config on free loopback ports. */
export async function startReplica(yaml: string, env: Record<string, string> = {}, options: ReplicaOptions = {}): Promise<Replica> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-replica-'));
  const configPath = join(dir, 'signalbox.yaml');
  await writeFile(configPath, yaml);
  const child = spawn(process.execPath, [...(options.command ?? ['--import', 'tsx', 'src/cli/main.ts']), 'serve', '--config', configPath], {
    cwd: process.cwd(),
    env: {
      ...process.env,
      SIGNALBOX_GRPC_ADDR: '127.0.0.1:0',
      SIGNALBOX_HTTP_ADDR: '127.0.0.1:0',
      SIGNALBOX_AUDIT_PATH: join(dir, 'audit.jsonl'),
      SIGNALBOX_LOG_LEVEL: 'info',
      SIGNALBOX_WORKERS: String(options.workers ?? 1),
      SIGNALBOX_ADMIN_TOKEN: ADMIN_TOKEN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const ports = await new Promise<{ grpc: number; http: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start in 30 s: ${output}`)), 30_000);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const grpcPort = /"grpc_port":(\d+)/.exec(output);
      const httpPort = /"http_port":(\d+)/.exec(output);
      if (grpcPort && httpPort) {
        clearTimeout(timer);
        resolve({ grpc: Number(grpcPort[1]), http: Number(httpPort[1]) });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`replica exited early (${code}): ${output}`));
    });
  });
  // A local subchannel pool per client, or grpc-js would share one connection among them.
  const clients = Array.from(
    { length: options.connections ?? 1 },
    () =>
      new (loadServices().clients.Authorization)(`127.0.0.1:${ports.grpc}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & {
        Check: (req: object, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
      },
  );
  let turn = 0;
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    for (const client of clients) client.close();
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
    live.delete(child);
  };
  return {
    grpcPort: ports.grpc,
    httpPort: ports.http,
    http: `http://127.0.0.1:${ports.http}`,
    pid: child.pid!,
    dir,
    check: (request) => {
      const client = clients[turn++ % clients.length]!;
      return new Promise((resolve, reject) => client.Check(request, { deadline: Date.now() + 20_000 }, (e, r) => (e ? reject(e) : resolveCatalogued(r, resolve, reject))));
    },
    output: () => output,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}
