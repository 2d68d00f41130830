/**
 * The two ext_authz engines of the peer benchmark, each started as its users start it:
 *
 *   Signalbox          `signalbox serve --config signalbox.yaml` (the built CLI, dist/), audit on
 *                      (buffered, the default), the in-memory store, default log level;
 *                      BENCH_WORKERS=N adds `server.workers: N`; BENCH_PROFILE=dir writes a
 *                      V8 CPU profile of each of its processes there (workers inherit the flags).
 *   opa-envoy-plugin   `opa-envoy-plugin run --server --config-file opa.yaml POLICY DATA` with the
 *                      envoy_ext_authz_grpc plugin and no decision_logs section, so decision logs
 *                      are off (its default), default log level. As `opa-logged` (the peer
 *                      benchmark's BENCH_OPA_DECISION_LOGS=console), with `decision_logs.console:
 *                      true`: every decision logged as a JSON line, written to a file in its work dir.
 *
 * Both listen on free loopback ports; `cpu` pins the server (and every process it starts) to one
 * core with taskset.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../../src/core/paths.js';
import { freePort } from '../../test/helpers/gateways.js';
import { startGroup, waitForPort, type Group } from './processes.js';

/** Which engine. */
export type EngineName = 'signalbox' | 'opa' | 'opa-logged';

/** A running engine: its gRPC ext_authz port and its process group. */
export interface RunningEngine {
  readonly engine: EngineName;
  readonly grpcPort: number;
  readonly group: Group;
  /** Stops the process group and removes its work dir (Signalbox's audit trail grows by tens of MiB per measurement). */
  stop(): Promise<void>;
}

function running(engine: EngineName, grpcPort: number, group: Group, work: string): RunningEngine {
  return {
    engine,
    grpcPort,
    group,
    stop: async () => {
      await group.stop();
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** Waits for the engine's port; on failure stops it and removes its work dir before rethrowing. */
async function whenListening(engine: RunningEngine): Promise<RunningEngine> {
  try {
    await waitForPort(engine.group, engine.grpcPort);
    return engine;
  } catch (error) {
    await engine.stop();
    throw error;
  }
}

/** What Signalbox runs: a bundle, its decision path, and the identity section (if any). */
export interface SignalboxSetup {
  readonly bundle: string;
  readonly decision: string;
  readonly identity?: { readonly jwksFile: string; readonly issuer: string; readonly audience: string };
}

/** What opa-envoy-plugin runs: a Rego file and a data file, decided at envoy/authz/allow. */
export interface OpaSetup {
  readonly rego: string;
  readonly data: string;
}

/** The number of Signalbox workers to configure (BENCH_WORKERS), or undefined for the default. */
export function signalboxWorkers(): number | undefined {
  const raw = process.env.BENCH_WORKERS;
  if (raw === undefined || raw === '') return undefined;
  const workers = Number(raw);
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`BENCH_WORKERS must be a whole number of at least 1, not "${raw}"`);
  return workers;
}

/** The Signalbox CLI as `npm start` runs it: the bundle, without tsx's loader in the measured process. */
function signalboxCli(): string {
  const cli = join(projectRoot(), 'dist', 'bundle', 'signalbox.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" (npm run bench:peer does)`);
  return cli;
}

/** The YAML config Signalbox is started with (the benchmark prints it, with placeholder ports). */
export function signalboxConfig(setup: SignalboxSetup, ports: { grpc: number; http: number }, auditPath: string): string {
  const workers = signalboxWorkers();
  const lines = [
    'server:',
    `  grpc_addr: 127.0.0.1:${ports.grpc}`,
    `  http_addr: 127.0.0.1:${ports.http}`,
    ...(workers === undefined ? [] : [`  workers: ${workers}`]),
    'policy:',
    `  bundle: ${JSON.stringify(setup.bundle)}`,
    `  decision: ${setup.decision}`,
    ...(setup.identity
      ? ['identity:', `  jwks_file: ${JSON.stringify(setup.identity.jwksFile)}`, `  issuer: ${JSON.stringify(setup.identity.issuer)}`, `  audience: [${JSON.stringify(setup.identity.audience)}]`]
      : []),
    'audit:',
    `  path: ${JSON.stringify(auditPath)}`,
    'store:',
    '  type: memory',
    '',
  ];
  return lines.join('\n');
}

/** Starts Signalbox with `setup` in a temp dir under `dir`; resolves once its gRPC port listens. */
export async function startSignalbox(setup: SignalboxSetup, dir: string, cpu?: number): Promise<RunningEngine> {
  const work = await mkdtemp(join(dir, 'signalbox-'));
  const grpc = await freePort();
  const http = await freePort();
  const config = join(work, 'signalbox.yaml');
  await writeFile(config, signalboxConfig(setup, { grpc, http }, join(work, 'audit', 'decisions.jsonl')));
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const group = startGroup('signalbox', process.execPath, [...profile, signalboxCli(), 'serve', '--config', config], { cwd: work, ...(cpu === undefined ? {} : { cpu }) });
  return whenListening(running('signalbox', grpc, group, work));
}

/**
 * Starts opa-envoy-plugin with `setup` in a temp dir under `dir`; resolves once its gRPC port
 * listens. With `decisionLogs`, it logs every decision to the console (its output goes to a file
 * in the work dir, not through the benchmark).
 */
export async function startOpa(binary: string, setup: OpaSetup, dir: string, cpu?: number, decisionLogs = false): Promise<RunningEngine> {
  const work = await mkdtemp(join(dir, 'opa-'));
  const grpc = await freePort();
  const http = await freePort();
  const config = join(work, 'opa.yaml');
  // Without a decision_logs section decision logging is off, as it is by default.
  const logs = decisionLogs ? ['decision_logs:', '  console: true'] : [];
  await writeFile(config, ['plugins:', '  envoy_ext_authz_grpc:', `    addr: 127.0.0.1:${grpc}`, '    path: envoy/authz/allow', ...logs, ''].join('\n'));
  const group = startGroup(
    'opa-envoy-plugin',
    binary,
    ['run', '--server', '--addr', `127.0.0.1:${http}`, '--config-file', config, '--disable-telemetry', setup.rego, setup.data],
    { cwd: work, ...(cpu === undefined ? {} : { cpu }), ...(decisionLogs ? { outputFile: join(work, 'opa.log') } : {}) },
  );
  return whenListening(running(decisionLogs ? 'opa-logged' : 'opa', grpc, group, work));
}
