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
  await runToEnd('ghz', run.ghz, args, run.cpu === undefined ? {} : { cpu: run.cpu });
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
  return { count: report.count, seconds, perSecond: report.count / seconds, p50Ms: latency(50), p99Ms: latency(99) };
}
