/**
 * How much memory a worker keeps resident under load (`server.worker_memory`, README "Memory").
 *
 * With Node's defaults a worker under saturating load grows from about 110 MiB to 150–180: V8
 * lets its young generation reach 32 MiB (two 16 MiB semi-spaces) and lets the old generation
 * fill with garbage up to four times the live heap before a full collection, and glibc keeps the
 * memory of large freed blocks (start-up's file reads and compiler zones) in its heap. `bounded`
 * (the default) starts each worker with:
 *
 * - `--max-semi-space-size=8`: a 16 MiB young generation;
 * - `--heap-growing-percent=50`: a full collection once the old generation is 1.5 times the live
 *   heap after the last one;
 * - `MALLOC_MMAP_THRESHOLD_=131072`: glibc maps blocks of 128 KiB and more on their own and
 *   returns them when freed (its default raises that threshold as large blocks are freed);
 * - `MALLOC_ARENA_MAX=2`: glibc keeps at most two heaps (arenas) for the process's threads
 *   instead of up to eight per core, so the memory V8's and libuv's helper threads free is reused
 *   rather than held in heaps of their own and touched afresh (a page fault costs microseconds).
 *
 * Under the peer benchmark's JWT + RBAC load (paired rounds, README "Memory"), workers peaked at
 * 116–123 MiB instead of 145–171 MiB, for about 4% more CPU per decision. Capping the arenas,
 * measured after, took about a MiB more off and the same CPU, and the p99 at a fixed 1,000 rps
 * was lower in 8 of 8 paired rounds (3.2–6.3 ms against 4.2–10.8). An operator who sets
 * any of these themselves (node's own arguments, NODE_OPTIONS where Node allows the flag, or the
 * environment variable) keeps their value; `node` leaves every one to Node.
 */
import type { ServerConfig } from '../transport/config.js';

/** `server.worker_memory`: `bounded` (the settings above) or `node` (Node's and glibc's defaults). */
type WorkerMemory = ServerConfig['worker_memory'];

/** The V8 flags `bounded` adds to a worker's node arguments, by flag name. */
const BOUNDED_V8_FLAGS: readonly (readonly [name: string, value: string])[] = [
  ['max-semi-space-size', '8'],
  ['heap-growing-percent', '50'],
];

/** The glibc tunables `bounded` puts in a worker's environment. */
const BOUNDED_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_ARENA_MAX: '2' };

/** What a worker process is started with: node arguments and environment additions. */
export interface WorkerProcessSettings {
  readonly execArgv: string[];
  readonly env: Record<string, string>;
}

/** Whether `args` (node arguments, or NODE_OPTIONS split on spaces) set the V8 flag `name`, in either spelling. */
function setsFlag(args: readonly string[], name: string): boolean {
  const spellings = [name, name.replace(/-/g, '_')];
  return args.some((arg) => spellings.some((spelling) => arg === `--${spelling}` || arg.startsWith(`--${spelling}=`)));
}

/**
 * A worker's node arguments and environment additions for `mode`: the primary's own node
 * arguments (workers inherit them, as cluster does by default) plus, for `bounded`, each setting
 * the operator has not made themselves.
 */
export function workerProcessSettings(mode: WorkerMemory, execArgv: readonly string[], env: NodeJS.ProcessEnv): WorkerProcessSettings {
  if (mode === 'node') return { execArgv: [...execArgv], env: {} };
  const operatorArgs = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)];
  const added = BOUNDED_V8_FLAGS.filter(([name]) => !setsFlag(operatorArgs, name)).map(([name, value]) => `--${name}=${value}`);
  const extraEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(BOUNDED_MALLOC_ENV)) if (env[name] === undefined) extraEnv[name] = value;
  return { execArgv: [...execArgv, ...added], env: extraEnv };
}
