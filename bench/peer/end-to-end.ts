/**
 * What users feel: a request through a real Envoy (scripts/install-envoy.sh) to a local upstream
 * (nginx answering 200), with Signalbox, with opa-envoy-plugin, or with no ext_authz at all,
 * driven by vegeta (scripts/install-vegeta.sh) at a fixed arrival rate.
 *
 * Envoy runs examples/envoy/envoy.yaml rewritten as the tests run it (test/helpers/envoy.ts: its
 * addresses on loopback ports, the upstream's TLS dropped since nginx speaks plain HTTP), plus the
 * ext_authz cluster's gRPC health check dropped for every setup because opa-envoy-plugin serves
 * no grpc.health.v1 (Envoy would mark it unhealthy and answer in panic mode). "none" also drops
 * the ext_authz filter. Everything else (the filter's 0.5 s timeout, request body forwarding,
 * failure mode) is the example's.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { envoyExampleConfig, startEnvoy as startEnvoyProcess, type EnvoyConfig, type RunningEnvoy } from '../../test/helpers/envoy.js';
import { freePort } from '../../test/helpers/gateways.js';
import { runToEnd, startGroup, waitForPort, type Group } from './processes.js';

/** A running nginx. */
export interface RunningProxy {
  readonly port: number;
  readonly group: Group;
}

/**
 * examples/envoy/envoy.yaml for one setup, through the tests' rewrite (test/helpers/envoy.ts):
 * loopback addresses, no upstream TLS, and no active health checks; `authzPort` undefined means no
 * ext_authz filter.
 */
export function envoyConfig(listenPort: number, upstreamPort: number, authzPort: number | undefined): Promise<EnvoyConfig> {
  return envoyExampleConfig('examples/envoy/envoy.yaml', {
    listeners: { llm_ingress: listenPort },
    // Port 9 (discard) for "none": the cluster stays, but nothing refers to it.
    clusters: { signalbox: authzPort ?? 9, llm_upstream: upstreamPort },
    withoutHealthChecks: true,
    withoutExtAuthz: authzPort === undefined,
  });
}

/** Starts Envoy with `config` and one worker thread per core (Envoy's default); resolves once it is ready. */
export function startEnvoy(config: EnvoyConfig): Promise<RunningEnvoy> {
  return startEnvoyProcess(config, { concurrency: availableParallelism() });
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
