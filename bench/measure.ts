/**
 * One measured run against a benchmark server process (bench/server.ts), shared by the in-repo
 * benchmarks that compare servers or doors in one run (npm run bench, npm run bench:ext-proc):
 * fork the server, warm up, read its CPU time, drive the load, read its CPU time again, stop it;
 * and the median-of-rounds table with ratios they print.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Driven } from './drive.js';

/** One mode's figures from one round. */
export interface Result {
  mode: string;
  decisions: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMicrosPerDecision: number;
  denied: number;
  /** Bundle swaps during the measured period (reloading), each from rename to active, in ms. */
  swapsMs: number[];
}

/** A load against one server: `run` drives it closed-loop for `seconds`; `close` releases its connections. */
export interface Load {
  run(seconds: number): Promise<Driven>;
  close(): void;
}

/** The load's timing, and which server to fork (bench/server.ts's argument) with which environment. */
export interface Measurement {
  readonly server: 'bare' | 'signalbox';
  readonly env: Record<string, string>;
  readonly warmupSeconds: number;
  readonly seconds: number;
}

function startServer(server: string, env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  // BENCH_PROFILE=dir writes a V8 CPU profile of each server process there, for chrome://inspect.
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const child = fork(join(import.meta.dirname, 'server.ts'), [server], { execArgv: [...profile, '--import', 'tsx'], env: { ...process.env, ...env } });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${server} server exited with ${code}`)));
    child.on('message', (m: { type: string; port?: number }) => {
      if (m.type === 'ready') resolve({ child, port: m.port! });
    });
  });
}

/** The server process's own CPU time (user + system, µs) and its bundle swaps so far. */
function serverCpu(child: ChildProcess): Promise<{ micros: number; swapsMs: number[] }> {
  return new Promise((resolve) => {
    const onMessage = (m: { type: string; micros?: number; swapsMs?: number[] }): void => {
      if (m.type === 'cpu') {
        child.off('message', onMessage);
        resolve({ micros: m.micros!, swapsMs: m.swapsMs ?? [] });
      }
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu' });
  });
}

/** The value at percentile `p` of an ascending list (0 when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * Forks the server, warms it up, then measures `load` for `seconds`: rate and latency from the
 * driver, CPU per decision from the server process alone (the load generator is apart).
 */
export async function measure(mode: string, setup: Measurement, connect: (port: number) => Load): Promise<Result> {
  const { child, port } = await startServer(setup.server, setup.env);
  const load = connect(port);
  try {
    await load.run(setup.warmupSeconds);
    const cpuBefore = await serverCpu(child);
    const started = performance.now();
    const { latencies, denied } = await load.run(setup.seconds);
    const elapsed = (performance.now() - started) / 1000;
    const cpuAfter = await serverCpu(child);
    latencies.sort((a, b) => a - b);
    return {
      mode,
      decisions: latencies.length,
      perSecond: latencies.length / elapsed,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      cpuMicrosPerDecision: (cpuAfter.micros - cpuBefore.micros) / latencies.length,
      denied,
      swapsMs: cpuAfter.swapsMs.slice(cpuBefore.swapsMs.length),
    };
  } finally {
    load.close();
    child.send({ type: 'stop' });
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

/** The median of one figure over a mode's rounds. */
export function median(results: readonly Result[], key: keyof Result): number {
  const values = results.map((r) => r[key] as number).sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)]!;
}

/** The line printed for each round of each mode. */
export function roundLine(round: number, result: Result, unit = 'decision', extra = ''): string {
  return `  round ${round} ${result.mode.padEnd(16)} ${result.perSecond.toFixed(0).padStart(7)}/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  cpu ${result.cpuMicrosPerDecision.toFixed(0)} µs/${unit}${extra}\n`;
}

/**
 * The median of a figure's ratio `a / b` round by round. Rounds alternate the modes, so a round
 * of `a` and the same round of `b` ran minutes apart at most: pairing them cancels most of a
 * shared machine's drift, which a ratio of the two medians keeps.
 */
function pairedRatio(a: readonly Result[], b: readonly Result[], key: keyof Result): number {
  const rounds = Math.min(a.length, b.length);
  const ratios = Array.from({ length: rounds }, (_, i) => (a[i]![key] as number) / (b[i]![key] as number)).sort((x, y) => x - y);
  return ratios.length % 2 === 1 ? ratios[(ratios.length - 1) / 2]! : (ratios[ratios.length / 2 - 1]! + ratios[ratios.length / 2]!) / 2;
}

/**
 * The median-of-rounds table (one row per mode, then `a / b` ratio rows for the pairs whose
 * modes both ran: the median of the rounds' ratios), as markdown. `unit` names what is counted:
 * a decision (Check) or a request.
 */
export function medianTable(all: Readonly<Record<string, readonly Result[]>>, modes: readonly string[], ratios: readonly (readonly [string, string])[], unit = 'decision'): string {
  const row = (mode: string): string => {
    const r = all[mode]!;
    return `| ${mode} | ${median(r, 'perSecond').toFixed(0)} | ${median(r, 'p50Ms').toFixed(2)} | ${median(r, 'p99Ms').toFixed(2)} | ${median(r, 'cpuMicrosPerDecision').toFixed(0)} |`;
  };
  const ratio = (a: string, b: string): string => {
    const of = (key: keyof Result): string => pairedRatio(all[a]!, all[b]!, key).toFixed(2);
    return `| ${a} / ${b} | ${of('perSecond')}x | ${of('p50Ms')}x | ${of('p99Ms')}x | ${of('cpuMicrosPerDecision')}x |`;
  };
  const lines = [`| server | ${unit}s/s | p50 ms | p99 ms | server CPU µs/${unit} |`, '|---|---|---|---|---|'];
  for (const mode of modes) lines.push(row(mode));
  for (const [a, b] of ratios) if (all[a] && all[b]) lines.push(ratio(a, b));
  return `${lines.join('\n')}\n`;
}
