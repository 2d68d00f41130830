/**
 * ghz, the gRPC load generator both engines are driven with: Envoy's Check, from the project's
 * own proto (wire-identical to Envoy's), a JSON array of requests sent round-robin, a fixed
 * concurrency spread over a fixed number of HTTP/2 connections, for a duration, optionally at a
 * fixed rate. The JSON report is parsed into the figures the benchmark prints.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../../src/core/paths.js';
import { runToEnd } from './processes.js';

/** How to drive one run. */
export interface GhzRun {
  readonly ghz: string;
  readonly port: number;
  /** A JSON array of CheckRequests (protojson), sent round-robin. */
  readonly dataFile: string;
  readonly seconds: number;
  readonly concurrency: number;
  readonly connections: number;
  /** A fixed rate (requests per second), or undefined for as fast as the server answers. */
  readonly rps?: number;
  /** Pin ghz to this core with taskset. */
  readonly cpu?: number;
  /** Where to write the report (removed after reading). */
  readonly reportFile: string;
}

/** The figures of one run. */
export interface GhzResult {
  readonly count: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** ghz's own CPU time (user + system) over the run, in microseconds. */
  readonly generatorCpuMicros: number;
}

/** The children's line of bash's `times` ("0m1.250s 0m0.310s", the last line) in microseconds. */
function childrenCpuMicros(stdout: string): number {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  const match = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(line.trim());
  if (!match) throw new Error(`cannot read ghz's CPU time from bash's times: ${JSON.stringify(line)}`);
  const [, um, us, sm, ss] = match.map(Number) as [number, number, number, number, number];
  return ((um + sm) * 60 + us + ss) * 1e6;
}

interface GhzReport {
  count: number;
  total: number;
  rps: number;
  errorDistribution?: Record<string, number> | null;
  statusCodeDistribution?: Record<string, number> | null;
  latencyDistribution?: { percentage: number; latency: number }[] | null;
}

/** Runs ghz to the end and returns its figures; any call that was not OK fails the run. */
export async function runGhz(run: GhzRun): Promise<GhzResult> {
  const proto = join(projectRoot(), 'proto');
  const args = [
    '--insecure',
    '--proto',
    join(proto, 'envoy', 'service', 'auth', 'v3', 'external_auth.proto'),
    '--import-paths',
    proto,
    '--call',
    'envoy.service.auth.v3.Authorization.Check',
    '--data-file',
    run.dataFile,
    '--concurrency',
    String(run.concurrency),
    '--connections',
    String(run.connections),
    '--duration',
    `${run.seconds}s`,
    // Calls still in flight when the time is up are left out, not reported as errors.
    '--duration-stop',
    'ignore',
    '--timeout',
    '10s',
    ...(run.rps === undefined ? [] : ['--rps', String(run.rps)]),
    '--format',
    'json',
    '--output',
    run.reportFile,
    `127.0.0.1:${run.port}`,
  ];
  // bash's `times` after ghz prints the CPU time of its children (ghz, through taskset's exec): the
  // generator's own cost per call, which grows with the size of the responses it decodes.
  const pin = run.cpu === undefined ? [] : ['taskset', '-c', String(run.cpu)];
  const stdout = await runToEnd('ghz', 'bash', ['-c', '"$@"; status=$?; times; exit $status', 'ghz', ...pin, run.ghz, ...args]);
  const generatorCpuMicros = childrenCpuMicros(stdout);
  const report = JSON.parse(await readFile(run.reportFile, 'utf8')) as GhzReport;
  await rm(run.reportFile, { force: true });
  const errors = Object.entries(report.errorDistribution ?? {});
  const notOk = Object.entries(report.statusCodeDistribution ?? {}).filter(([status]) => status !== 'OK');
  if (errors.length > 0 || notOk.length > 0) {
    throw new Error(`ghz saw failed calls: ${JSON.stringify({ errors: Object.fromEntries(errors), statuses: Object.fromEntries(notOk) })}`);
  }
  if (report.count === 0) throw new Error('ghz completed no call');
  const latency = (percentage: number): number => {
    const entry = report.latencyDistribution?.find((l) => l.percentage === percentage);
    if (!entry) throw new Error(`ghz report has no p${percentage}`);
    return entry.latency / 1e6;
  };
  const seconds = report.total / 1e9;
  return { count: report.count, seconds, perSecond: report.count / seconds, p50Ms: latency(50), p99Ms: latency(99), generatorCpuMicros };
}
