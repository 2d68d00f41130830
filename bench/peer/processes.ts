/**
 * Child processes of the peer benchmark, and what /proc says about them.
 *
 * Every server (Signalbox, opa-envoy-plugin, Envoy, nginx) runs in its own process group, so
 * stopping it (SIGTERM, then SIGKILL of the whole group) leaves no worker behind, and a benchmark
 * that fails or is interrupted kills every group it started. CPU time and peak memory are read
 * from /proc for the process and every descendant (Signalbox may run as a primary and cluster
 * workers; a figure of the primary alone would hide the workers' work).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, readdirSync, rmSync, fstatSync } from 'node:fs';
import { waitForPort as waitForListening } from '../../test/helpers/gateways.js';

/** A started process group. */
export interface Group {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** What the process wrote on stdout and stderr so far (bounded), for error messages. */
  output(): string;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the leader exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Group>();
const tempDirs = new Set<string>();
let exitHooked = false;

/** Kills every group still running and removes the temp dirs: on exit, and on SIGINT/SIGTERM of the benchmark. */
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = (): void => {
    for (const group of running) killGroup(group.pid, 'SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Removes `dir` when the benchmark exits, however it exits (an interrupted run skips its `finally`). */
export function removeOnExit(dir: string): void {
  hookExit();
  tempDirs.add(dir);
}

/** How much of a process's output an error quotes: the end of it, where the reason usually is. */
const OUTPUT_TAIL = 8192;

/** The last `bytes` bytes of a file, as text ('' when it cannot be read). */
function fileTail(path: string, bytes: number): string {
  try {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const buffer = Buffer.alloc(Math.min(size, bytes));
      readSync(fd, buffer, 0, buffer.length, size - buffer.length);
      return buffer.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

/**
 * Starts `command` in a process group of its own, optionally pinned to `cpu` with taskset.
 * With `outputFile`, its stdout and stderr go straight to that file instead of through a pipe to
 * the benchmark: a server that logs every decision would otherwise have the benchmark's own
 * process read megabytes a second, on the same cores as the measurement.
 */
export function startGroup(name: string, command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; cpu?: number; outputFile?: string } = {}): Group {
  hookExit();
  const [file, argv] = options.cpu === undefined ? [command, [...args]] : ['taskset', ['-c', String(options.cpu), command, ...args]];
  const outputFd = options.outputFile === undefined ? undefined : openSync(options.outputFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(file, argv, { cwd: options.cwd, env: options.env ?? process.env, detached: true, stdio: outputFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', outputFd, outputFd] });
  } finally {
    if (outputFd !== undefined) closeSync(outputFd);
  }
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  let captured = '';
  const keep = (chunk: Buffer): void => {
    captured = (captured + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let stopping: Promise<void> | undefined;
  const group: Group = {
    name,
    child,
    pid,
    output: () => (options.outputFile === undefined ? captured : fileTail(options.outputFile, OUTPUT_TAIL)),
    stop: (graceMs = 5_000) =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) killGroup(pid, 'SIGTERM');
        const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
        // Children of a leader that exited first (workers) would otherwise outlive it.
        killGroup(pid, 'SIGKILL');
        running.delete(group);
      })()),
  };
  running.add(group);
  return group;
}

/** Stops every group still running (the benchmark's `finally`). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((group) => group.stop()));
}

/** Resolves once `port` on 127.0.0.1 accepts connections; fails when the group exits or time runs out. */
export async function waitForPort(group: Group, port: number, timeoutMs = 60_000): Promise<void> {
  await waitForListening(port, group.child, group.output, timeoutMs, group.name);
}

/** One process of a tree, as /proc shows it. */
export interface ProcessSample {
  readonly pid: number;
  readonly command: string;
  /** utime + stime, in clock ticks. */
  readonly cpuTicks: number;
  /** Peak resident set (VmHWM), in KiB. */
  readonly peakRssKiB: number;
}

const CLOCK_TICKS_PER_SECOND = (() => {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const ticks = Number(result.stdout?.trim());
  return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
})();

/** Microseconds per clock tick of /proc/<pid>/stat's utime and stime. */
export const MICROS_PER_TICK = 1_000_000 / CLOCK_TICKS_PER_SECOND;

function readStat(pid: number): { ppid: number; command: string; cpuTicks: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command is in parentheses and may contain spaces or parentheses: split after the last ')'.
  const close = stat.lastIndexOf(')');
  const command = stat.slice(stat.indexOf('(') + 1, close);
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is state (field 3), so field N is fields[N - 3]: ppid 4, utime 14, stime 15.
  return { ppid: Number(fields[1]), command, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

function readPeakRssKiB(pid: number): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** The process `root` and all its descendants, each with its CPU ticks and peak RSS. */
export function sampleTree(root: number): ProcessSample[] {
  const parents = new Map<number, number>();
  const stats = new Map<number, { command: string; cpuTicks: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = readStat(pid);
    if (!stat) continue;
    parents.set(pid, stat.ppid);
    stats.set(pid, stat);
  }
  const inTree = (pid: number): boolean => {
    for (let at: number | undefined = pid; at !== undefined && at > 1; at = parents.get(at)) if (at === root) return true;
    return false;
  };
  const samples: ProcessSample[] = [];
  for (const [pid, stat] of stats) {
    if (inTree(pid)) samples.push({ pid, command: stat.command, cpuTicks: stat.cpuTicks, peakRssKiB: readPeakRssKiB(pid) });
  }
  return samples.sort((a, b) => a.pid - b.pid);
}

/** Total CPU time of a tree, in microseconds. */
export function treeCpuMicros(samples: readonly ProcessSample[]): number {
  return samples.reduce((sum, s) => sum + s.cpuTicks, 0) * MICROS_PER_TICK;
}

/** Runs a command to completion and returns its stdout; a non-zero exit throws with its stderr. */
export function runToEnd(name: string, command: string, args: readonly string[], options: { cpu?: number; stdin?: string } = {}): Promise<string> {
  const [file, argv] = options.cpu === undefined ? [command, [...args]] : ['taskset', ['-c', String(options.cpu), command, ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      err = (err + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`${name} failed (${code ?? signal}): ${err.trim()}`));
    });
    child.stdin.end(options.stdin ?? '');
  });
}

/** Busy time per CPU ("cpu" is all of them), in microseconds, from /proc/stat. */
export type CpuBusy = Record<string, number>;

/** Reads the busy time (everything but idle and iowait) of the machine and of each CPU. */
export function machineBusy(): CpuBusy {
  const busy: CpuBusy = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^(cpu\d*)\s+(.*)$/.exec(line);
    if (!match) continue;
    const ticks = match[2]!.trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    busy[match[1]!] = (total - ticks[3]! - ticks[4]!) * MICROS_PER_TICK;
  }
  return busy;
}
