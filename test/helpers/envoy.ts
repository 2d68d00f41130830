/**
 * A real Envoy (the pinned binary scripts/install-envoy.sh links at .tools/bin/envoy) for tests
 * and benchmarks, run from one of the project's examples/envoy/*.yaml with only what must change
 * rewritten, so the examples are what the tests prove:
 *
 * - every listener moves to a loopback port (a free one unless the caller names it);
 * - an admin listener is added on a free loopback port (the examples have none): readiness is
 *   its `/ready`;
 * - every cluster's endpoints point at the loopback port the caller gives for that cluster (a
 *   cluster the caller does not name is an error, so a new cluster in an example cannot quietly
 *   reach the internet), and an upstream TLS transport socket is dropped, since the tests'
 *   upstreams speak plain HTTP on loopback;
 * - on request only: the ext_authz filter or the clusters' active health checks are dropped (the
 *   peer benchmark), and a JSON access log is added (tests read Envoy's ext_authz dynamic
 *   metadata from it).
 *
 * The rewrite works on the parsed YAML, not on text, and fails loudly when the example lacks what
 * the caller names. Envoy runs in its own process group with hot restart off (several can run at
 * once) and its stdout and stderr captured for failure messages; a missing binary throws, naming
 * the script that installs it.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { projectRoot } from '../../src/core/paths.js';
import { freePort, spawnGroup, waitForPort } from './gateways.js';

/** The pinned Envoy that scripts/install-envoy.sh links at .tools/bin/envoy (or SIGNALBOX_ENVOY). */
export function envoyBinary(): string {
  const path = process.env.SIGNALBOX_ENVOY ?? join(projectRoot(), '.tools', 'bin', 'envoy');
  if (!existsSync(path)) throw new Error(`Envoy not found at ${path}: run "bash scripts/install-envoy.sh" (npm test runs it)`);
  return path;
}

/** Every Envoy example: examples/envoy/*.yaml, as paths relative to the project root, sorted. */
export function envoyExamples(): string[] {
  return readdirSync(join(projectRoot(), 'examples', 'envoy'))
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => join('examples', 'envoy', name));
}

/** What to change in an example, beyond moving it onto loopback. */
export interface EnvoyRewrite {
  /** The loopback port each cluster's endpoints go to, by cluster name; every cluster of the example must be named. */
  readonly clusters: Readonly<Record<string, number>>;
  /** Ports for listeners by name; a listener not named gets a free port. */
  readonly listeners?: Readonly<Record<string, number>>;
  /** Removes the ext_authz HTTP filter (Envoy with no authorization at all). */
  readonly withoutExtAuthz?: boolean;
  /** Removes the clusters' active health checks (for an authorization server that serves no grpc.health.v1). */
  readonly withoutHealthChecks?: boolean;
  /** Adds a JSON-lines access log at this path to every HTTP connection manager; see {@link ACCESS_LOG_FORMAT}. */
  readonly accessLog?: string;
}

/** An example rewritten to run on loopback. */
export interface EnvoyConfig {
  /** The example it came from, relative to the project root. */
  readonly example: string;
  /** The rewritten bootstrap, as YAML. */
  readonly yaml: string;
  /** The admin listener's port. */
  readonly adminPort: number;
  /** Each listener's port, by listener name. */
  readonly listeners: Readonly<Record<string, number>>;
  /** The access log added ({@link EnvoyRewrite.accessLog}), if any. */
  readonly accessLog?: string;
}

/** The fields of each access-log line a test can read (one JSON object per request). */
export interface EnvoyAccessLogLine {
  readonly status: number;
  readonly path: string;
  /** The ext_authz filter's dynamic metadata for that request (absent when it set none). */
  readonly ext_authz: Record<string, unknown> | null;
  /** Envoy's response flags (`UAEX` for an ext_authz denial). */
  readonly flags: string;
}

/** The access log {@link EnvoyRewrite.accessLog} adds: what Envoy answered and what ext_authz left as metadata. */
export const ACCESS_LOG_FORMAT = {
  status: '%RESPONSE_CODE%',
  path: '%REQ(:PATH)%',
  ext_authz: '%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%',
  flags: '%RESPONSE_FLAGS%',
} as const;

type Json = Record<string, unknown>;

const EXT_AUTHZ = 'envoy.filters.http.ext_authz';
const HCM = 'envoy.filters.network.http_connection_manager';
const TLS_SOCKET = 'envoy.transport_sockets.tls';

function loopback(port: number): Json {
  return { socket_address: { address: '127.0.0.1', port_value: port } };
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? (value as Json[]) : [];
}

/** The HTTP connection managers of every listener's filter chains. */
function connectionManagers(listeners: readonly Json[]): Json[] {
  return listeners.flatMap((listener) =>
    list(listener.filter_chains).flatMap((chain) => list(chain.filters).filter((f) => f.name === HCM).map((f) => f.typed_config as Json)),
  );
}

/** `example` (a path relative to the project root) rewritten by `rewrite` to run on loopback; see the module comment. */
export async function envoyExampleConfig(example: string, rewrite: EnvoyRewrite): Promise<EnvoyConfig> {
  const fail = (what: string): never => {
    throw new Error(`${example}: ${what}; update the example or the caller of test/helpers/envoy.ts`);
  };
  const doc = parse(await readFile(join(projectRoot(), example), 'utf8')) as Json;
  const resources = (doc.static_resources ?? fail('no static_resources')) as Json;
  const listeners = list(resources.listeners);
  const clusters = list(resources.clusters);
  if (listeners.length === 0) fail('no listeners');

  const listenerPorts: Record<string, number> = {};
  for (const name of Object.keys(rewrite.listeners ?? {})) if (!listeners.some((l) => l.name === name)) fail(`no listener named ${name}`);
  for (const listener of listeners) {
    const name = String(listener.name);
    const port = rewrite.listeners?.[name] ?? (await freePort());
    listener.address = loopback(port);
    listenerPorts[name] = port;
  }

  for (const name of Object.keys(rewrite.clusters)) if (!clusters.some((c) => c.name === name)) fail(`no cluster named ${name}`);
  for (const cluster of clusters) {
    const name = String(cluster.name);
    const port = rewrite.clusters[name] ?? fail(`cluster ${name} has no test address (name it in clusters)`);
    const endpoints = list((cluster.load_assignment as Json | undefined)?.endpoints).flatMap((e) => list(e.lb_endpoints));
    if (endpoints.length === 0) fail(`cluster ${name} has no static endpoints`);
    for (const endpoint of endpoints) (endpoint.endpoint as Json).address = loopback(port);
    // The tests' upstreams speak plain HTTP on loopback.
    if ((cluster.transport_socket as Json | undefined)?.name === TLS_SOCKET) delete cluster.transport_socket;
    if (rewrite.withoutHealthChecks) delete cluster.health_checks;
  }

  const managers = connectionManagers(listeners);
  if (rewrite.withoutExtAuthz) {
    let removed = 0;
    for (const manager of managers) {
      const filters = list(manager.http_filters);
      manager.http_filters = filters.filter((f) => f.name !== EXT_AUTHZ);
      removed += filters.length - list(manager.http_filters).length;
    }
    if (removed === 0) fail(`no ${EXT_AUTHZ} filter to remove`);
  }
  if (rewrite.accessLog !== undefined) {
    if (managers.length === 0) fail('no HTTP connection manager to log');
    for (const manager of managers) {
      manager.access_log = [
        ...list(manager.access_log),
        {
          name: 'envoy.access_loggers.file',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
            path: rewrite.accessLog,
            log_format: { json_format: ACCESS_LOG_FORMAT },
          },
        },
      ];
    }
  }

  const adminPort = await freePort();
  doc.admin = { ...((doc.admin as Json | undefined) ?? {}), address: loopback(adminPort) };
  return { example, yaml: stringify(doc), adminPort, listeners: listenerPorts, ...(rewrite.accessLog !== undefined ? { accessLog: rewrite.accessLog } : {}) };
}

/** A running Envoy. */
export interface RunningEnvoy {
  /** `http://127.0.0.1:<port>` of the first listener. */
  readonly url: string;
  /** The first listener's port. */
  readonly port: number;
  readonly adminPort: number;
  readonly config: EnvoyConfig;
  /** What Envoy wrote on stdout and stderr so far, for failure messages. */
  log(): string;
  /** Stops Envoy (SIGTERM, SIGKILL after 5 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** How to run Envoy. */
export interface EnvoyRunOptions {
  /** Worker threads (`--concurrency`): 1 unless given; the benchmark gives every core. */
  readonly concurrency?: number;
  /** `--log-level`: `warn` unless given. */
  readonly logLevel?: string;
  /** How long Envoy may take to become ready: 60 s unless given. */
  readonly timeoutMs?: number;
}

/** Resolves once Envoy's admin `/ready` answers 200 (`LIVE`: clusters initialised, listeners up). */
async function waitUntilReady(adminPort: number, exited: () => boolean, log: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (exited()) throw new Error(`Envoy exited before it was ready:\n${log()}`);
    try {
      const response = await fetch(`http://127.0.0.1:${adminPort}/ready`, { signal: AbortSignal.timeout(1_000) });
      last = `${response.status} ${(await response.text()).trim()}`;
      if (response.status === 200) return;
    } catch (error) {
      last = String(error);
    }
    if (Date.now() > deadline) throw new Error(`Envoy was not ready within ${timeoutMs} ms (admin /ready: ${last}):\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Starts Envoy with `config` and resolves once it is ready and its listeners accept connections. */
export async function startEnvoy(config: EnvoyConfig, options: EnvoyRunOptions = {}): Promise<RunningEnvoy> {
  const binary = envoyBinary();
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-envoy-'));
  const file = join(dir, 'envoy.yaml');
  await writeFile(file, config.yaml);
  const output: string[] = [];
  const log = (): string => output.join('').slice(-65_536);
  const args = ['-c', file, '--disable-hot-restart', '--concurrency', String(options.concurrency ?? 1), '--log-level', options.logLevel ?? 'warn'];
  // Envoy writes access logs every 10 s by default; a test waiting for a line should not.
  if (config.accessLog) args.push('--file-flush-interval-msec', '50');
  const { child, stop: stopGroup } = spawnGroup(binary, args, { cwd: dir, env: process.env, stderrFile: output });
  const stop = async (): Promise<void> => {
    await stopGroup();
    await rm(dir, { recursive: true, force: true });
  };
  const ports = Object.values(config.listeners);
  try {
    const timeoutMs = options.timeoutMs ?? 60_000;
    await waitUntilReady(config.adminPort, () => child.exitCode !== null || child.signalCode !== null, log, timeoutMs);
    for (const port of ports) await waitForPort(port, child, log, timeoutMs, 'Envoy');
  } catch (error) {
    await stop();
    throw error;
  }
  const port = ports[0]!;
  return { url: `http://127.0.0.1:${port}`, port, adminPort: config.adminPort, config, log, stop };
}

/** Rewrites `example` and starts Envoy with it: {@link envoyExampleConfig}, then {@link startEnvoy}. */
export async function startEnvoyExample(example: string, rewrite: EnvoyRewrite, options: EnvoyRunOptions = {}): Promise<RunningEnvoy> {
  return startEnvoy(await envoyExampleConfig(example, rewrite), options);
}

/** The outcome of `envoy --mode validate`. */
export interface EnvoyValidation {
  readonly ok: boolean;
  /** Everything Envoy printed (its verdict, errors and warnings such as deprecated fields). */
  readonly output: string;
}

/** Runs `envoy --mode validate -c <file>` (nothing is bound or connected) on a bootstrap file. */
export function validateEnvoyFile(file: string): Promise<EnvoyValidation> {
  const binary = envoyBinary();
  return new Promise((resolve) => {
    execFile(binary, ['--mode', 'validate', '-c', file, '--log-level', 'warn', '--disable-hot-restart'], { maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ ok: error === null, output: `${stdout}${stderr}` });
    });
  });
}

/** Validates a rewritten config with the real binary (written to a temp file for it). */
export async function validateEnvoyConfig(config: EnvoyConfig): Promise<EnvoyValidation> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-envoy-validate-'));
  try {
    const file = join(dir, 'envoy.yaml');
    await writeFile(file, config.yaml);
    return await validateEnvoyFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The access-log lines written so far ({@link EnvoyRewrite.accessLog}); {@link startEnvoy} has Envoy flush the file every 50 ms. */
export async function readAccessLog(path: string): Promise<EnvoyAccessLogLine[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as EnvoyAccessLogLine);
}

/** Waits (up to `timeoutMs`) for the access-log line `match` picks, since Envoy writes the log in batches. */
export async function accessLogLine(path: string, match: (line: EnvoyAccessLogLine) => boolean, timeoutMs = 10_000): Promise<EnvoyAccessLogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await readAccessLog(path)).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no access-log line matched within ${timeoutMs} ms:\n${(await readFile(path, 'utf8').catch(() => '(no log)')).slice(-4096)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
