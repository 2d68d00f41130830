/**
 * Real Redis servers for tests: standalone servers and Redis Cluster, each started as
 * `redis-server` child processes bound to 127.0.0.1 on free ports, with data in a temp dir.
 *
 * The harness deliberately speaks RESP over node:net itself instead of using ioredis, so a
 * bug or version change in the client under test can never make the harness lie about the
 * server. Redis is required, never optional: when it is missing the helpers throw and tell
 * you to run scripts/install-test-deps.sh.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { access, constants, mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A running standalone `redis-server`, from {@link startRedis}. */
export interface RedisServer {
  /** Always `127.0.0.1`: the server is bound to loopback only. */
  readonly host: string;
  readonly port: number;
  /** `redis://127.0.0.1:<port>`, for clients that take a URL. */
  readonly url: string;
  /** Temp dir holding the server's data (AOF) and `redis.log`; removed by {@link RedisServer.stop}. */
  readonly dir: string;
  /** Shuts the server down (SIGTERM, SIGKILL after 5 s) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, like a crash: no shutdown, no final fsync. Resolves once the process is gone. */
  kill(): Promise<void>;
  /**
   * Start again on the same port with the same data dir (with AOF persistence the data
   * written before a {@link RedisServer.kill} is reloaded). If the server is still running it
   * is shut down first. Throws after {@link RedisServer.stop}.
   */
  restart(): Promise<void>;
}

/** A test server's persistence: see {@link StartRedisOptions.persistence}. */
export type RedisPersistence = 'none' | 'everysec' | 'always';

/** redis-server arguments for a persistence choice; RDB snapshots stay off (`--save ''`) in every case. */
function persistenceArgs(persistence: RedisPersistence): string[] {
  return persistence === 'none' ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', persistence];
}

/** Options for {@link startRedis}. */
export interface StartRedisOptions {
  /**
   * What the server persists, which Signalbox checks at start-up (store.unsafe_persistence):
   * - `everysec` (default): AOF, fsync once a second, the least a budget cap needs; a crash can
   *   lose the last second or two (Redis postpones AOF writes while a background fsync is slow).
   * - `always`: AOF, fsync before every reply; nothing acknowledged is lost even to a machine crash.
   * - `none`: no AOF and no RDB snapshots: a restart comes back empty (Signalbox refuses it).
   */
  persistence?: RedisPersistence;
  /**
   * Move the server's wall clock by this many seconds (TIME, and the clock it expires keys by),
   * through the LD_PRELOAD shim scripts/build-clock-shim.sh builds. Default 0: the real clock.
   */
  clockShiftS?: number;
}

/** A running Redis Cluster, from {@link startRedisCluster}: masters only, all 16384 slots assigned. */
export interface RedisCluster {
  /** One entry per master; any of them works as a cluster client's seed node. */
  readonly nodes: ReadonlyArray<{ host: string; port: number }>;
  /** Temp dir holding one sub-dir per node (`nodes.conf`, `redis.log`); removed by {@link RedisCluster.stop}. */
  readonly dir: string;
  /** Shuts every node down and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link startRedisCluster}. */
export interface StartRedisClusterOptions {
  /** Number of masters, at least 3 (the minimum `redis-cli --cluster create` accepts). Default 3. */
  masters?: number;
}

/** A decoded RESP2 reply. Errors nested in arrays (e.g. from EXEC) are `Error` values. */
export type RespValue = string | number | null | Error | RespValue[];

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const CLUSTER_SLOTS = 16_384;
/** Redis Cluster's bus listens on the data port + 10000; fixed by Redis unless cluster-port is set. */
const CLUSTER_BUS_OFFSET = 10_000;
const INSTALL_HINT = 'run "bash scripts/install-test-deps.sh" (installs redis-server and redis-tools)';

/**
 * Starts a standalone `redis-server` on a free loopback port with `--save ''` (no RDB snapshots),
 * the AOF as `options.persistence` says, and a fresh temp dir. Resolves once the server answers PING. Call `stop()` when done
 * (typically in `afterAll`); the process is also killed if the test process exits or dies.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const binaries = await redisBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-redis-'));
  liveDirs.add(dir);
  // Persistence is explicit: Signalbox refuses a Redis whose crash could lose holds.
  const extraArgs = persistenceArgs(options.persistence ?? 'everysec');
  let node: RedisNode | undefined;
  try {
    // The free port is only free when we looked: another process may take it before
    // redis-server binds. That is rare, so retry with a new port rather than lock.
    for (let attempt = 1; !node; attempt++) {
      const port = await reservePort(false);
      const candidate = new RedisNode(binaries, port, dir, extraArgs, clockShiftEnv(options.clockShiftS ?? 0));
      try {
        await candidate.start();
        node = candidate;
      } catch (error) {
        releasePort(port, false);
        if (!(error instanceof PortInUseError) || attempt >= 3) throw error;
      }
    }
  } catch (error) {
    await removeDir(dir);
    throw error;
  }

  const started = node;
  let stopped = false;
  return {
    host: HOST,
    port: started.port,
    url: `redis://${HOST}:${started.port}`,
    dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await started.stop();
      releasePort(started.port, false);
      await removeDir(dir);
    },
    kill: () => started.kill(),
    async restart() {
      if (stopped) throw new Error(`redis on port ${started.port} was stopped; start a new one with startRedis()`);
      await started.stop();
      await started.start();
    },
  };
}

/**
 * Starts a Redis Cluster of `masters` nodes (default 3, no replicas) on free loopback ports:
 * spawns the nodes with cluster mode on, joins them with `redis-cli --cluster create`, and
 * resolves once every node reports `cluster_state:ok` with all 16384 slots assigned and all
 * nodes known. Call `stop()` when done; the processes also die with the test process.
 */
export async function startRedisCluster(options: StartRedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 3) {
    throw new Error(`startRedisCluster: masters must be an integer >= 3 (redis-cli --cluster create needs 3 masters), got ${masters}`);
  }
  const binaries = await redisBinaries({ cli: true });
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-redis-cluster-'));
  liveDirs.add(dir);

  let nodes: RedisNode[] = [];
  const stopNodes = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const n of nodes) releasePort(n.port, true);
    nodes = [];
  };
  try {
    for (let attempt = 1; ; attempt++) {
      const ports: number[] = [];
      for (let i = 0; i < masters; i++) ports.push(await reservePort(true));
      nodes = [];
      for (const port of ports) {
        const nodeDir = join(dir, String(port));
        // Fresh dir even if an earlier attempt used this port: a stale nodes.conf would resurrect that cluster.
        await rm(nodeDir, { recursive: true, force: true });
        await mkdir(nodeDir);
        nodes.push(
          new RedisNode(binaries, port, nodeDir, [
            // AOF like a production cluster: Signalbox checks every master's persistence.
            ...persistenceArgs('everysec'),
            '--cluster-enabled', 'yes',
            '--cluster-config-file', 'nodes.conf',
            // Short timeout: nodes are local, and a failing test should not wait long for failure detection.
            '--cluster-node-timeout', '2000',
          ]),
        );
      }
      const results = await Promise.allSettled(nodes.map((n) => n.start()));
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (!failure) break;
      await stopNodes();
      if (!(failure.reason instanceof PortInUseError) || attempt >= 3) throw failure.reason;
    }

    const deadline = Date.now() + START_TIMEOUT_MS;
    await createCluster(binaries.cli, nodes, deadline);
    await waitForClusterOk(nodes, deadline);
  } catch (error) {
    await stopNodes();
    await removeDir(dir);
    throw error;
  }

  let stopped = false;
  return {
    nodes: nodes.map((n) => ({ host: HOST, port: n.port })),
    dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopNodes();
      await removeDir(dir);
    },
  };
}

/**
 * Sends one command to the Redis at `127.0.0.1:port` over a fresh connection and returns the
 * decoded RESP2 reply; an error reply rejects. Independent of ioredis on purpose (see the
 * module comment). `timeoutMs` (default 2000) bounds connect + reply.
 */
export function redisCommand(port: number, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<RespValue> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: HOST, port });
    let buffer = Buffer.alloc(0);
    const finish = (error: Error | undefined, value?: RespValue): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value ?? null);
    };
    const timer = setTimeout(
      () => finish(new Error(`redis ${HOST}:${port}: no reply to ${args[0] ?? ''} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('error', (error) => finish(error));
    socket.once('close', () => finish(new Error(`redis ${HOST}:${port}: connection closed before a reply to ${args[0] ?? ''}`)));
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      let parsed: { value: RespValue; end: number } | undefined;
      try {
        parsed = parseResp(buffer, 0);
      } catch (error) {
        finish(error as Error);
        return;
      }
      if (!parsed) return; // reply not complete yet
      if (parsed.value instanceof Error) finish(new Error(`redis ${HOST}:${port}: ${parsed.value.message}`));
      else finish(undefined, parsed.value);
    });
    socket.write(encodeCommand(args));
  });
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping

/** Children still running and temp dirs not yet removed, for the last-resort 'exit' cleanup. */
const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

/**
 * On a normal exit (including a test that forgot `stop()`), kill what is left. Only synchronous
 * work runs in an 'exit' listener, hence kill() and spawnSync('rm'). A worker killed by a signal
 * (vitest SIGTERMs its fork workers) never emits 'exit'; the --pdeathsig wrapper covers that.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    if (liveDirs.size > 0) spawnSync('rm', ['-rf', ...liveDirs], { stdio: 'ignore' });
  });
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** Ports handed out by this module and not yet released, so two concurrent starts never pick the same one. */
const reservedPorts = new Set<number>();

/**
 * Picks a free loopback port (listen on port 0, read it, close). With `bus`, also requires
 * port + 10000 to be free and ≤ 65535, for Redis Cluster's bus.
 */
async function reservePort(bus: boolean): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await listenAndClose(0);
    if (port === undefined || reservedPorts.has(port)) continue;
    if (bus) {
      const busPort = port + CLUSTER_BUS_OFFSET;
      if (busPort > 65_535 || reservedPorts.has(busPort)) continue;
      if ((await listenAndClose(busPort)) === undefined) continue;
      reservedPorts.add(busPort);
    }
    reservedPorts.add(port);
    return port;
  }
  throw new Error(`could not find a free loopback port${bus ? ' with a free cluster bus port (+10000)' : ''}`);
}

function releasePort(port: number, bus: boolean): void {
  reservedPorts.delete(port);
  if (bus) reservedPorts.delete(port + CLUSTER_BUS_OFFSET);
}

/** Listens on 127.0.0.1:`port` and closes again; resolves the bound port, or undefined if it was taken. */
function listenAndClose(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ host: HOST, port, exclusive: true }, () => {
      const bound = (server.address() as AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// One redis-server process (restartable on the same port and dir)

interface RedisBinaries {
  server: string;
  cli: string;
  /** `setpriv` supporting --pdeathsig, when available (Linux util-linux). */
  setpriv: string | undefined;
}

/** redis-server failed because its port was taken between picking and binding; the caller may retry. */
class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
}

const CLOCK_SHIM = fileURLToPath(new URL('../../.tools/lib/shift-clock.so', import.meta.url));

/** The environment of a server whose wall clock is `shiftS` seconds off this process's. */
function clockShiftEnv(shiftS: number): NodeJS.ProcessEnv {
  if (shiftS === 0) return process.env;
  if (!existsSync(CLOCK_SHIM)) throw new Error(`${CLOCK_SHIM} is missing; run "bash scripts/build-clock-shim.sh"`);
  // On top of any shift this process already runs with (scripts/test-future.sh).
  const inherited = Number(process.env.SIGNALBOX_CLOCK_SHIFT_S ?? 0);
  const preload = process.env.LD_PRELOAD?.includes(CLOCK_SHIM) ? process.env.LD_PRELOAD : [CLOCK_SHIM, process.env.LD_PRELOAD].filter(Boolean).join(' ');
  return { ...process.env, LD_PRELOAD: preload, SIGNALBOX_CLOCK_SHIFT_S: String(inherited + shiftS) };
}

class RedisNode {
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  readonly logPath: string;

  constructor(
    private readonly binaries: RedisBinaries,
    readonly port: number,
    readonly dir: string,
    private readonly extraArgs: readonly string[],
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.logPath = join(dir, 'redis.log');
  }

  /** Spawns redis-server and resolves once this very process answers PING. */
  async start(): Promise<void> {
    if (this.child) throw new Error(`redis on port ${this.port} is already running`);
    installExitHook();
    const args = [
      '--port', String(this.port),
      '--bind', HOST,
      '--save', '',
      '--dir', this.dir,
      // Logs go to stdout, which is the log file: that also captures errors printed before
      // redis-server has read its config (bad option, missing dir), which --logfile would not.
      '--logfile', '',
      '--daemonize', 'no',
      ...this.extraArgs,
    ];
    // Append, so after restart() the log still shows why the previous run ended.
    const log = await open(this.logPath, 'a');
    let child: ChildProcess;
    try {
      // setpriv --pdeathsig makes the kernel SIGKILL redis-server when the test process dies
      // for any reason, including the SIGTERM/SIGKILL vitest sends its workers, where no
      // 'exit' listener runs. setpriv execs redis-server, so child.pid is the server's pid.
      child = this.binaries.setpriv
        ? spawn(this.binaries.setpriv, ['--pdeathsig', 'SIGKILL', '--', this.binaries.server, ...args], { stdio: ['ignore', log.fd, log.fd], env: this.env })
        : spawn(this.binaries.server, args, { stdio: ['ignore', log.fd, log.fd], env: this.env });
      // Listen before anything awaits: a server that fails fast (bad option, port taken) can
      // exit within one event-loop turn, and a missed 'exit' would leave us waiting forever.
      this.exited = new Promise((resolve) => {
        const done = (): void => {
          liveChildren.delete(child);
          resolve();
        };
        child.once('exit', done);
        child.once('error', done); // spawn failure: no 'exit' follows
      });
      this.child = child;
      liveChildren.add(child);
      // A forgotten server must not keep the test process alive; the exit hook kills it.
      child.unref();
    } finally {
      // The child got its own copy of the descriptor during spawn().
      await log.close();
    }
    try {
      await this.waitUntilReady(child);
    } catch (error) {
      await this.kill();
      throw error;
    }
  }

  private async waitUntilReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let exited = false;
    void this.exited?.then(() => (exited = true));
    let lastError = 'no reply yet';
    while (Date.now() < deadline) {
      if (exited) {
        const tail = await this.logTail();
        const message = `redis-server on port ${this.port} exited during startup (${describeExit(child)}); last lines of its log:\n${tail}`;
        throw /Address already in use/i.test(tail) ? new PortInUseError(message) : new Error(message);
      }
      try {
        // PING answers -LOADING while the AOF is being replayed, so PONG also means the data is back.
        if ((await redisCommand(this.port, ['PING'], { timeoutMs: 1_000 })) === 'PONG') {
          // Make sure it is our process answering, not something that grabbed the port first.
          const info = await redisCommand(this.port, ['INFO', 'server'], { timeoutMs: 1_000 });
          const pid = typeof info === 'string' ? /^process_id:(\d+)/m.exec(info)?.[1] : undefined;
          if (pid === String(child.pid)) return;
          throw new PortInUseError(`port ${this.port} is answered by another redis (pid ${pid ?? '?'}, ours ${child.pid ?? '?'})`);
        }
      } catch (error) {
        if (error instanceof PortInUseError) throw error;
        lastError = (error as Error).message;
      }
      await sleep(25);
    }
    throw new Error(
      `redis-server on port ${this.port} did not answer PING within ${START_TIMEOUT_MS} ms (last: ${lastError}); last lines of its log:\n${await this.logTail()}`,
    );
  }

  /** SIGKILL and wait for the process to be gone (its port then refuses connections). */
  async kill(): Promise<void> {
    await this.signalAndWait('SIGKILL', STOP_TIMEOUT_MS);
  }

  /** SIGTERM (Redis shuts down cleanly, fsyncing the AOF), escalating to SIGKILL. */
  async stop(): Promise<void> {
    if (!(await this.signalAndWait('SIGTERM', STOP_TIMEOUT_MS))) await this.kill();
  }

  /** Resolves true once the process exited (or none was running), false on timeout. */
  private async signalAndWait(signal: NodeJS.Signals, timeoutMs: number): Promise<boolean> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited) return true;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    // The timer is ref'd on purpose: it keeps the event loop alive while we wait on the unref'd child.
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const ok = await Promise.race([exited.then(() => true), timedOut]);
    clearTimeout(timer);
    if (!ok && signal === 'SIGKILL') {
      throw new Error(`redis-server pid ${child.pid ?? '?'} on port ${this.port} did not exit ${timeoutMs} ms after SIGKILL`);
    }
    if (ok) {
      this.child = undefined;
      this.exited = undefined;
    }
    return ok;
  }

  async logTail(lines = 30): Promise<string> {
    try {
      const text = await readFile(this.logPath, 'utf8');
      return text.trimEnd().split('\n').slice(-lines).join('\n') || '(log is empty)';
    } catch (error) {
      return `(no log: ${(error as Error).message})`;
    }
  }
}

function describeExit(child: ChildProcess): string {
  if (child.signalCode) return `signal ${child.signalCode}`;
  if (child.exitCode !== null) return `exit code ${child.exitCode}`;
  return 'failed to spawn';
}

// ---------------------------------------------------------------------------------------------
// Cluster formation

async function createCluster(cli: string, nodes: readonly RedisNode[], deadline: number): Promise<void> {
  const args = ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'];
  const timeout = Math.max(1_000, deadline - Date.now());
  await new Promise<void>((resolve, reject) => {
    execFile(cli, args, { timeout, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      if (!error) return resolve();
      const why = error.killed ? `timed out after ${timeout} ms` : error.message.split('\n')[0];
      reject(new Error(`redis-cli ${args.join(' ')} failed: ${why}\n${tail(`${stdout}\n${stderr}`, 30)}`));
    });
  });
}

/** Every node must agree: state ok, every slot assigned and ok, and every other node known. */
async function waitForClusterOk(nodes: readonly RedisNode[], deadline: number): Promise<void> {
  const expected: Record<string, string> = {
    cluster_state: 'ok',
    cluster_slots_assigned: String(CLUSTER_SLOTS),
    cluster_slots_ok: String(CLUSTER_SLOTS),
    cluster_known_nodes: String(nodes.length),
  };
  let pending = '';
  while (Date.now() < deadline) {
    pending = '';
    for (const node of nodes) {
      let info: Record<string, string>;
      try {
        info = parseInfo(await redisCommand(node.port, ['CLUSTER', 'INFO'], { timeoutMs: 1_000 }));
      } catch (error) {
        pending = `node ${node.port}: ${(error as Error).message}`;
        break;
      }
      const wrong = Object.entries(expected).filter(([key, value]) => info[key] !== value);
      if (wrong.length > 0) {
        pending = `node ${node.port}: ${wrong.map(([key]) => `${key}:${info[key] ?? '?'}`).join(' ')}`;
        break;
      }
    }
    if (!pending) return;
    await sleep(50);
  }
  const logs = await Promise.all(nodes.map(async (n) => `--- node ${n.port} log:\n${await n.logTail(10)}`));
  throw new Error(`redis cluster did not reach cluster_state:ok within ${START_TIMEOUT_MS} ms (${pending})\n${logs.join('\n')}`);
}

function parseInfo(reply: RespValue): Record<string, string> {
  const fields: Record<string, string> = {};
  if (typeof reply !== 'string') return fields;
  for (const line of reply.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// Binaries

let setprivLookup: Promise<string | undefined> | undefined;

/** Finds redis-server (and redis-cli) on PATH, or throws with the install hint; never skip. */
async function redisBinaries(need: { cli?: boolean } = {}): Promise<RedisBinaries> {
  // Looked up on every start (a few access() calls) rather than cached, so a PATH change or an
  // install during the run is seen; only the setpriv probe, which spawns, is cached.
  const [server, cli] = await Promise.all([which('redis-server'), which('redis-cli')]);
  if (!server || (need.cli && !cli)) {
    const missing = [!server && 'redis-server', need.cli && !cli && 'redis-cli'].filter(Boolean).join(' and ');
    throw new Error(`${missing} not found on PATH; the Redis tests need a real Redis: ${INSTALL_HINT}`);
  }
  setprivLookup ??= findSetpriv();
  return { server, cli: cli ?? 'redis-cli', setpriv: await setprivLookup };
}

async function which(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  return undefined;
}

/** setpriv with --pdeathsig (util-linux ≥ 2.33, Essential on Debian); absent on macOS, then the exit hook is all we have. */
async function findSetpriv(): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined;
  const setpriv = await which('setpriv');
  if (!setpriv) return undefined;
  const help = await new Promise<string>((resolve) =>
    execFile(setpriv, ['--help'], { timeout: 5_000 }, (_error, stdout) => resolve(String(stdout))),
  );
  return help.includes('--pdeathsig') ? setpriv : undefined;
}

// ---------------------------------------------------------------------------------------------
// RESP2

function encodeCommand(args: readonly string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.from(arg, 'utf8');
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Parses one RESP2 value at `pos`; undefined when the buffer does not hold all of it yet. */
function parseResp(buf: Buffer, pos: number): { value: RespValue; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', pos);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[pos] ?? 0);
  const line = buf.toString('utf8', pos + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buf.length < next + length + 2) return undefined;
      return { value: buf.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buf, at);
        if (!item) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)}`);
  }
}

function tail(text: string, lines: number): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
