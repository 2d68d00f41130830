/**
 * A real PostgreSQL server for tests, from the distribution's packages (Debian's `postgresql`,
 * installed by scripts/install-test-deps.sh): initdb in a temp dir, `postgres` on a free loopback
 * port with trust authentication, one database made for the test. Nothing is mocked and nothing
 * is skipped: without the binaries this throws, naming the script that installs them. PostgreSQL
 * refuses to run as root, so under root (CI containers) it runs as the `postgres` user the package
 * creates.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './gateways.js';

/** A running server, from {@link startPostgres}. */
export interface PostgresServer {
  /** `postgresql://signalbox@127.0.0.1:<port>/ledger`: no password (trust, loopback only). */
  readonly url: string;
  readonly port: number;
  /** A fresh, empty database on the same server, for a test that needs its own. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

const INSTALL_HINT = 'run "bash scripts/install-test-deps.sh" (installs Debian\'s postgresql package)';

/** The directory holding initdb and postgres: on PATH, else the newest /usr/lib/postgresql/<major>/bin. */
function binDir(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) {
    const real = spawnSync('readlink', ['-f', onPath], { encoding: 'utf8' }).stdout.trim();
    return join(real, '..');
  }
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const major of majors) if (existsSync(join(root, major, 'bin', 'initdb'))) return join(root, major, 'bin');
  throw new Error(`PostgreSQL (initdb, postgres) not found; ${INSTALL_HINT}`);
}

/** Under root, the uid and gid of the `postgres` user to run as; undefined otherwise. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || uid <= 0) throw new Error(`running as root, and there is no postgres user to run PostgreSQL as; ${INSTALL_HINT}`);
  return { uid, gid };
}


const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Starts PostgreSQL and creates the `ledger` database; resolves once it accepts connections. */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = binDir();
  const user = runAs();
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-postgres-'));
  await chmod(dir, 0o700);
  if (user) await chown(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'signalbox', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'], { encoding: 'utf8', ...(user ?? {}) });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr}${init.stdout}`);
  const port = await freePort();
  const child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=60'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ?? {}),
  });
  live.add(child);
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const base = `postgresql://signalbox@127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${output}`);
    const client = new pg.Client({ connectionString: `${base}/postgres` });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections in 20 s: ${String(error)}\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const createDatabase = async (name: string): Promise<string> => {
    const client = new pg.Client({ connectionString: `${base}/postgres` });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    return `${base}/${name}`;
  };
  const url = await createDatabase('ledger');
  return {
    url,
    port,
    createDatabase,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT'); // fast shutdown
        await exited;
      }
      live.delete(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
