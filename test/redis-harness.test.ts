/**
 * Tests for the real-Redis test harness (test/helpers/redis.ts). Checks go through redis-cli or
 * raw sockets rather than the harness's own client where possible, so a harness bug cannot hide
 * itself.
 */
import { execFile, spawn } from 'node:child_process';
import { access, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { redisCommand, startRedis, startRedisCluster, type RedisCluster, type RedisServer } from './helpers/redis.js';

/** Runs redis-cli against 127.0.0.1:port and returns its trimmed stdout. */
function cli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`redis-cli ${args.join(' ')}: ${error.message}\n${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

/** Resolves the connect outcome: 'refused' is what a dead server's port must give. */
function probe(port: number): Promise<'open' | 'refused' | string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('open');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED' ? 'refused' : String(error.code)));
  });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('startRedis (standalone)', () => {
  let redis: RedisServer | undefined;
  afterAll(async () => {
    await redis?.stop();
  });

  it('starts on a loopback port and serves PING and SET/GET', async () => {
    redis = await startRedis({ persistence: 'always' });
    expect(redis.host).toBe('127.0.0.1');
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await cli(redis.port, 'PING')).toBe('PONG');
    expect(await cli(redis.port, 'SET', 'harness:key', 'value-1')).toBe('OK');
    expect(await cli(redis.port, 'GET', 'harness:key')).toBe('value-1');
    // The harness's own config: no RDB snapshots, AOF as asked, loopback only.
    expect(await cli(redis.port, 'CONFIG', 'GET', 'save')).toBe('save');
    expect(await cli(redis.port, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nyes');
    expect(await cli(redis.port, 'CONFIG', 'GET', 'appendfsync')).toBe('appendfsync\nalways');
    expect(await cli(redis.port, 'CONFIG', 'GET', 'bind')).toBe('bind\n127.0.0.1');
  });

  it('kill() makes the port refuse connections; restart() brings it back on the same port with its data', async () => {
    const server = redis!;
    const port = server.port;
    await server.kill();
    expect(await probe(port)).toBe('refused');
    await server.kill(); // no-op when already dead

    await server.restart();
    expect(server.port).toBe(port);
    expect(await cli(port, 'PING')).toBe('PONG');
    // Same data dir + appendonly: the write acknowledged before the SIGKILL is reloaded.
    expect(await cli(port, 'GET', 'harness:key')).toBe('value-1');

    // restart() of a running server shuts it down first.
    await server.restart();
    expect(await redisCommand(port, ['GET', 'harness:key'])).toBe('value-1');
  });

  it('stop() kills the server, removes its dir, and is idempotent', async () => {
    const server = redis!;
    await server.stop();
    expect(await probe(server.port)).toBe('refused');
    expect(await exists(server.dir)).toBe(false);
    await server.stop();
    await expect(server.restart()).rejects.toThrow(/stopped/);
  });

  it('by default runs the AOF with appendfsync everysec, the least Signalbox accepts', async () => {
    const server = await startRedis();
    try {
      expect(await cli(server.port, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nyes');
      expect(await cli(server.port, 'CONFIG', 'GET', 'appendfsync')).toBe('appendfsync\neverysec');
    } finally {
      await server.stop();
    }
  });

  it('with persistence none, data does not survive kill() + restart()', async () => {
    const server = await startRedis({ persistence: 'none' });
    try {
      expect(await cli(server.port, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nno');
      await cli(server.port, 'SET', 'k', 'v');
      await server.kill();
      await server.restart();
      expect(await cli(server.port, 'EXISTS', 'k')).toBe('0');
    } finally {
      await server.stop();
    }
  });

  it('throws with the install hint when redis-server is not on PATH', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(startRedis()).rejects.toThrow(/redis-server not found on PATH.*scripts\/install-test-deps\.sh/);
      await expect(startRedisCluster()).rejects.toThrow(/install-test-deps\.sh/);
    } finally {
      process.env.PATH = path;
    }
  });

  // The servers must not outlive the test process, whether it exits normally without stop()
  // or is killed outright (vitest SIGTERM/SIGKILLs its workers, where no 'exit' listener runs).
  it.each(['exit', 'SIGKILL'] as const)('a server left running dies with its process (%s)', async (how) => {
    const helper = fileURLToPath(new URL('./helpers/redis.ts', import.meta.url));
    const code = `
      const { startRedis } = await import(${JSON.stringify(helper)});
      const r = await startRedis();
      console.log(JSON.stringify({ port: r.port, dir: r.dir }));
      process.on('SIGUSR2', () => process.exit(0)); // a normal exit, without stop()
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    const started = await new Promise<{ port: number; dir: string }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] ?? '') as { port: number; dir: string });
      });
      child.once('exit', (status) => reject(new Error(`child exited (${status}) before starting redis: ${out}`)));
    });
    expect(await cli(started.port, 'PING')).toBe('PONG');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(how === 'exit' ? 'SIGUSR2' : 'SIGKILL');
    await exited;
    // The kernel delivers the death signal asynchronously; allow it a moment.
    let state = await probe(started.port);
    for (let i = 0; i < 40 && state !== 'refused'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      state = await probe(started.port);
    }
    expect(state).toBe('refused');
    // A normal exit also removes the temp dir; after SIGKILL nothing can run, so only the process is guaranteed gone.
    if (how === 'exit') expect(await exists(started.dir)).toBe(false);
    else await rm(started.dir, { recursive: true, force: true });
  });
});

describe('startRedisCluster', () => {
  let cluster: RedisCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('starts 3 masters with cluster_state:ok on every node and all 16384 slots covered', async () => {
    cluster = await startRedisCluster();
    expect(cluster.nodes).toHaveLength(3);
    const ports = cluster.nodes.map((n) => n.port);
    expect(new Set(ports).size).toBe(3);
    for (const node of cluster.nodes) {
      expect(node.host).toBe('127.0.0.1');
      expect(node.port + 10_000).toBeLessThanOrEqual(65_535);
      const info = await cli(node.port, 'CLUSTER', 'INFO');
      expect(info).toMatch(/^cluster_state:ok\r?$/m);
      expect(info).toMatch(/^cluster_slots_assigned:16384\r?$/m);
      expect(info).toMatch(/^cluster_known_nodes:3\r?$/m);
    }

    // Slot ranges from CLUSTER SLOTS: disjoint, covering 0..16383, served by our three ports.
    const slots = (await redisCommand(ports[0]!, ['CLUSTER', 'SLOTS'])) as [number, number, [string, number, string]][];
    const covered = new Array<boolean>(16_384).fill(false);
    for (const [from, to, [host, port]] of slots) {
      expect(host).toBe('127.0.0.1');
      expect(ports).toContain(port);
      for (let slot = from; slot <= to; slot++) {
        expect(covered[slot]).toBe(false);
        covered[slot] = true;
      }
    }
    expect(covered.every(Boolean)).toBe(true);
    expect(new Set(slots.map(([, , [, port]]) => port)).size).toBe(3);

    // Keys in different slots work through redirects (-c follows MOVED).
    for (const key of ['a', 'b', 'c', '{user:1}.x']) {
      expect(await cli(ports[0]!, '-c', 'SET', key, `v-${key}`)).toBe('OK');
      expect(await cli(ports[1]!, '-c', 'GET', key)).toBe(`v-${key}`);
    }
  });

  it('stop() kills every node (data and bus ports) and removes the dir', async () => {
    const running = cluster!;
    await running.stop();
    for (const node of running.nodes) {
      expect(await probe(node.port)).toBe('refused');
      expect(await probe(node.port + 10_000)).toBe('refused');
    }
    expect(await exists(running.dir)).toBe(false);
    await running.stop();
  });

  it('rejects fewer than 3 masters', async () => {
    await expect(startRedisCluster({ masters: 2 })).rejects.toThrow(/masters must be an integer >= 3/);
  });
});
