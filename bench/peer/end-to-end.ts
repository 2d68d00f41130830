/**
 * What users feel: a request through a real Envoy (scripts/install-envoy.sh) to a local upstream
 * (nginx answering 200), with Signalbox, with opa-envoy-plugin, or with no ext_authz at all,
 * driven by vegeta (scripts/install-vegeta.sh) at a fixed arrival rate.
 *
 * Envoy runs examples/envoy/envoy.yaml with only what must change substituted: its addresses
 * (loopback ports), the upstream's TLS (nginx speaks plain HTTP), and the ext_authz cluster's gRPC
 * health check, which is dropped for every setup because opa-envoy-plugin serves no
 * grpc.health.v1 (Envoy would mark it unhealthy and answer in panic mode). "none" also drops the
 * ext_authz filter. Everything else (the filter's 0.5 s timeout, request body forwarding, failure
 * mode) is the example's.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../../src/core/paths.js';
import { freePort } from '../../test/helpers/gateways.js';
import { runToEnd, startGroup, waitForPort, type Group } from './processes.js';

/** A running Envoy or nginx. */
export interface RunningProxy {
  readonly port: number;
  readonly group: Group;
}

const EXAMPLE = 'examples/envoy/envoy.yaml';

/** Replaces `from` in `text`, failing when the example no longer contains it (so the benchmark and the example never drift apart). */
function substitute(text: string, from: string | RegExp, to: string): string {
  const found = typeof from === 'string' ? text.includes(from) : from.test(text);
  if (!found) throw new Error(`${EXAMPLE} no longer contains ${String(from)}; update bench/peer/end-to-end.ts`);
  return typeof from === 'string' ? text.split(from).join(to) : text.replace(from, to);
}

/** examples/envoy/envoy.yaml for one setup: `authzPort` undefined means no ext_authz filter. */
export async function envoyConfig(listenPort: number, upstreamPort: number, authzPort: number | undefined): Promise<string> {
  let yaml = await readFile(join(projectRoot(), EXAMPLE), 'utf8');
  yaml = substitute(yaml, 'socket_address: { address: 0.0.0.0, port_value: 8000 }', `socket_address: { address: 127.0.0.1, port_value: ${listenPort} }`);
  yaml = substitute(yaml, 'socket_address: { address: signalbox, port_value: 9191 }', `socket_address: { address: 127.0.0.1, port_value: ${authzPort ?? 9} }`);
  yaml = substitute(yaml, 'socket_address: { address: api.openai.com, port_value: 443 }', `socket_address: { address: 127.0.0.1, port_value: ${upstreamPort} }`);
  // The upstream is plain HTTP on loopback: drop its TLS transport socket (the file's last block).
  yaml = substitute(yaml, /\n {6}transport_socket:\n {8}name: envoy\.transport_sockets\.tls\n[\s\S]*$/, '\n');
  yaml = substitute(yaml, /\n {6}health_checks:\n(?: {8,}.*\n)+/, '\n');
  if (authzPort === undefined) {
    yaml = substitute(yaml, /\n {18}- name: envoy\.filters\.http\.ext_authz\n(?: {20,}.*\n)+/, '\n');
  }
  return yaml;
}

/** Starts Envoy with `config` (hot restart off, so several can run at once); resolves once it listens. */
export async function startEnvoy(binary: string, config: string, listenPort: number, dir: string): Promise<RunningProxy> {
  const work = await mkdtemp(join(dir, 'envoy-'));
  const file = join(work, 'envoy.yaml');
  await writeFile(file, config);
  const group = startGroup('envoy', binary, ['-c', file, '--disable-hot-restart', '--log-level', 'warn'], { cwd: work });
  await waitForPort(group, listenPort);
  return { port: listenPort, group };
}

/** Starts nginx answering every request with a small 200 JSON body (the upstream). */
export async function startUpstream(binary: string, dir: string): Promise<RunningProxy> {
  const work = await mkdtemp(join(dir, 'nginx-'));
  // Workers drop to an unprivileged user when run as root: let them reach their temp dirs.
  await chmod(work, 0o755);
  const port = await freePort();
  const conf = join(work, 'nginx.conf');
  await writeFile(
    conf,
    [
      `pid ${join(work, 'nginx.pid')};`,
      `error_log ${join(work, 'error.log')} warn;`,
      'worker_processes 1;',
      'events { worker_connections 4096; }',
      'http {',
      '    access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => `    ${d}_temp_path ${join(work, d)};`),
      '    server {',
      `        listen 127.0.0.1:${port};`,
      '        keepalive_requests 1000000;',
      `        location / { default_type application/json; return 200 '{"ok":true}'; }`,
      '    }',
      '}',
      '',
    ].join('\n'),
  );
  const group = startGroup('nginx', binary, ['-p', work, '-e', join(work, 'error.log'), '-c', conf, '-g', 'daemon off;'], { cwd: work });
  await waitForPort(group, port);
  return { port, group };
}

/** One vegeta target: an HTTP request with its headers and body. */
export interface HttpTarget {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
}

/** Writes `targets` as vegeta's JSON target lines for `port`. */
export async function writeTargets(file: string, port: number, targets: readonly HttpTarget[]): Promise<void> {
  const lines = targets.map((t) =>
    JSON.stringify({
      method: t.method,
      url: `http://127.0.0.1:${port}${t.path}`,
      header: Object.fromEntries(Object.entries(t.headers).map(([k, v]) => [k, [v]])),
      ...(t.body === undefined ? {} : { body: Buffer.from(t.body).toString('base64') }),
    }),
  );
  await writeFile(file, `${lines.join('\n')}\n`);
}

/** The figures of one vegeta attack. */
export interface VegetaResult {
  readonly requests: number;
  readonly rate: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Requests answered with anything but 200, by status ("0" is a transport error). */
  readonly failures: Record<string, number>;
}

/** Sends `targets` round-robin at `rps` for `seconds` and reports the latency percentiles. */
export async function attack(vegeta: string, targetsFile: string, rps: number, seconds: number, dir: string): Promise<VegetaResult> {
  const results = join(dir, `vegeta-${process.hrtime.bigint()}.bin`);
  try {
    await runToEnd('vegeta attack', vegeta, ['attack', '-format=json', `-targets=${targetsFile}`, `-rate=${rps}/1s`, `-duration=${seconds}s`, '-timeout=10s', `-output=${results}`]);
    const report = JSON.parse(await runToEnd('vegeta report', vegeta, ['report', '-type=json', results])) as {
      requests: number;
      rate: number;
      latencies: Record<string, number>;
      status_codes: Record<string, number>;
    };
    const failures = Object.fromEntries(Object.entries(report.status_codes).filter(([code]) => code !== '200'));
    return { requests: report.requests, rate: report.rate, p50Ms: (report.latencies['50th'] ?? 0) / 1e6, p99Ms: (report.latencies['99th'] ?? 0) / 1e6, failures };
  } finally {
    await rm(results, { force: true });
  }
}
