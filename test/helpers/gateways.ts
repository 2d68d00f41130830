/**
 * Real gateways for tests: nginx and Caddy, each started as a child process on a free loopback
 * port with the project's example config (examples/nginx/nginx.conf, examples/caddy/Caddyfile),
 * only its addresses substituted, so the examples are what the tests prove.
 *
 * Both are required, never optional: nginx comes from scripts/install-test-deps.sh, Caddy from
 * scripts/install-caddy.sh (both run by `npm test`); when one is missing the helper throws.
 * Each gateway runs in its own process group, so stopping it (SIGTERM, then SIGKILL of the whole
 * group after 5 s) leaves no worker behind, and a test process that exits early kills it too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { projectRoot } from '../../src/core/paths.js';
import { buildBundle } from '../../src/bundles/build.js';

export interface RunningGateway {
  /** `http://127.0.0.1:<port>`: where clients send their requests. */
  readonly url: string;
  readonly port: number;
  /** The generated config the gateway runs (the example with its addresses substituted). */
  readonly config: string;
  /** The gateway's own log (nginx's error log, Caddy's stderr), for failure messages. */
  log(): Promise<string>;
  /** Stops the gateway and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface GatewayTargets {
  /** Signalbox's HTTP port. */
  readonly signalboxPort: number;
  /** The upstream's port (a FakeLlm). */
  readonly upstreamPort: number;
}

/** A port the kernel just handed out on 127.0.0.1 and that is free again. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function findOnPath(name: string, extra: readonly string[]): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extra]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Replaces `from` in `text`, failing when the example no longer contains it (so the test and the example never drift apart). */
function substitute(text: string, from: string, to: string, file: string): string {
  if (!text.includes(from)) throw new Error(`${file} no longer contains "${from}"; update test/helpers/gateways.ts`);
  return text.split(from).join(to);
}

/**
 * Resolves once something accepts connections on 127.0.0.1:`port`; fails with the process's
 * output if `child` exits first or nothing listens within `timeoutMs`.
 */
export async function waitForPort(port: number, child: ChildProcess, log: () => Promise<string> | string, timeoutMs = 15_000, name = 'gateway'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before listening on ${port}:\n${await log()}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${name} did not listen on ${port} within ${timeoutMs} ms:\n${await log()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts `command` in its own process group and returns a stop function that leaves nothing
 * behind (SIGTERM, SIGKILL of the group after 5 s); what it prints goes to `stderrFile`.
 */
export function spawnGroup(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; stderrFile?: string[] }): {
  child: ChildProcess;
  stop: () => Promise<void>;
} {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = options.stderrFile;
  child.stdout?.on('data', (chunk: Buffer) => output?.push(chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => output?.push(chunk.toString('utf8')));
  const pid = child.pid;
  const killGroup = (signal: NodeJS.Signals): void => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  // A test process that dies without afterAll still takes its gateways with it.
  const onExit = (): void => killGroup('SIGKILL');
  process.once('exit', onExit);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      process.off('exit', onExit);
      if (child.exitCode === null && child.signalCode === null) killGroup('SIGTERM');
      const timer = setTimeout(() => killGroup('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      // Workers of a master that was killed hard would otherwise outlive it.
      killGroup('SIGKILL');
    })();
    return stopping;
  };
  return { child, stop };
}

/** The nginx binary: on PATH, or Debian's /usr/sbin (not on a non-root user's PATH). */
export function nginxBinary(): string {
  const found = findOnPath('nginx', ['/usr/sbin', '/usr/local/sbin']);
  if (!found) throw new Error('nginx not found on PATH or in /usr/sbin: run "bash scripts/install-test-deps.sh" (npm test runs it)');
  return found;
}

/** The pinned Caddy that scripts/install-caddy.sh puts in .tools/bin. */
export function caddyBinary(): string {
  const path = process.env.SIGNALBOX_CADDY ?? join(projectRoot(), '.tools', 'bin', 'caddy');
  if (!existsSync(path)) throw new Error(`Caddy not found at ${path}: run "bash scripts/install-caddy.sh" (npm test runs it)`);
  return path;
}

/** examples/nginx/nginx.conf with its addresses pointed at the test's servers, and its files in `dir`. */
export async function nginxConfig(dir: string, port: number, targets: GatewayTargets): Promise<string> {
  const file = 'examples/nginx/nginx.conf';
  let conf = await readFile(join(projectRoot(), file), 'utf8');
  conf = substitute(conf, 'server 127.0.0.1:8181;', `server 127.0.0.1:${targets.signalboxPort};`, file);
  conf = substitute(conf, 'server 127.0.0.1:4000;', `server 127.0.0.1:${targets.upstreamPort};`, file);
  conf = substitute(conf, 'listen 8080;', `listen 127.0.0.1:${port};`, file);
  // Everything nginx writes goes to the temp dir, not /var/log or /run.
  conf = substitute(
    conf,
    'http {',
    [
      'http {',
      `    access_log ${join(dir, 'access.log')};`,
      `    client_body_temp_path ${join(dir, 'client_body')};`,
      `    proxy_temp_path ${join(dir, 'proxy')};`,
      `    fastcgi_temp_path ${join(dir, 'fastcgi')};`,
      `    uwsgi_temp_path ${join(dir, 'uwsgi')};`,
      `    scgi_temp_path ${join(dir, 'scgi')};`,
    ].join('\n'),
    file,
  );
  return [`pid ${join(dir, 'nginx.pid')};`, `error_log ${join(dir, 'error.log')} info;`, 'worker_processes 1;', conf].join('\n');
}

/** Starts nginx (`nginx -p DIR -c CONF -g 'daemon off;'`) with examples/nginx/nginx.conf. */
export async function startNginx(targets: GatewayTargets): Promise<RunningGateway> {
  const binary = nginxBinary();
  const { dir, port } = await nginxDirAndPort();
  const config = await nginxConfig(dir, port, targets);
  return runNginx(binary, dir, port, config);
}

/** A temp dir for one nginx (readable by its workers) and a free loopback port. */
async function nginxDirAndPort(): Promise<{ dir: string; port: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-nginx-'));
  // Workers drop to an unprivileged user when the tests run as root: let them reach their temp dirs.
  await chmod(dir, 0o755);
  const port = await freePort();
  return { dir, port };
}

/** An nginx serving a folder as plain static files. */
export interface StaticNginx extends RunningGateway {
  /** The folder served at `/` (`http://127.0.0.1:<port>/<name>` is `<root>/<name>`); world-readable, for nginx's workers. */
  readonly root: string;
  /** The access log so far, one line per request in the `logFormat` given (empty before the first). */
  accessLog(): Promise<string>;
}

/**
 * Starts nginx as the plain file server OPA users put bundles on: `root` served as static files,
 * nothing else configured, so nginx does what it does by default (an `ETag` of mtime and size,
 * `304` to a matching `If-None-Match`, no long polling). `logFormat` is the access log's
 * `log_format` string (JSON-escaped variables, so one JSON object per line works).
 */
export async function startNginxStatic(options: { logFormat: string }): Promise<StaticNginx> {
  const binary = nginxBinary();
  const { dir, port } = await nginxDirAndPort();
  const root = join(dir, 'www');
  await mkdir(root);
  await chmod(root, 0o755);
  const accessLog = join(dir, 'access.log');
  const config = [
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} info;`,
    'worker_processes 1;',
    'events {',
    '    worker_connections 64;',
    '}',
    'http {',
    `    log_format signalbox_test escape=json '${options.logFormat.replace(/[\\']/g, (c) => `\\${c}`)}';`,
    `    access_log ${accessLog} signalbox_test;`,
    `    client_body_temp_path ${join(dir, 'client_body')};`,
    `    proxy_temp_path ${join(dir, 'proxy')};`,
    `    fastcgi_temp_path ${join(dir, 'fastcgi')};`,
    `    uwsgi_temp_path ${join(dir, 'uwsgi')};`,
    `    scgi_temp_path ${join(dir, 'scgi')};`,
    '    types {',
    '        application/gzip gz;',
    '    }',
    '    default_type application/octet-stream;',
    '    server {',
    `        listen 127.0.0.1:${port};`,
    '        location / {',
    `            root ${root};`,
    '        }',
    '    }',
    '}',
    '',
  ].join('\n');
  const running = await runNginx(binary, dir, port, config);
  return { ...running, root, accessLog: () => readFile(accessLog, 'utf8').catch(() => '') };
}

/** Writes `config` to DIR/nginx.conf and runs nginx with it until it listens on `port`. */
async function runNginx(binary: string, dir: string, port: number, config: string): Promise<RunningGateway> {
  const confPath = join(dir, 'nginx.conf');
  await writeFile(confPath, config);
  const output: string[] = [];
  const log = async (): Promise<string> => {
    const errorLog = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    return `${output.join('')}${errorLog}`;
  };
  const { child, stop } = spawnGroup(binary, ['-p', dir, '-e', join(dir, 'error.log'), '-c', confPath, '-g', 'daemon off;'], {
    cwd: dir,
    env: process.env,
    stderrFile: output,
  });
  return whenListening({ port, config, dir, child, stop, log });
}

/**
 * Waits until a started gateway listens on its port; on failure (or on `stop`) the process group
 * is stopped and its temp dir removed, so no gateway outlives its test.
 */
async function whenListening(started: {
  port: number;
  config: string;
  dir: string;
  child: ChildProcess;
  stop: () => Promise<void>;
  log: () => Promise<string>;
}): Promise<RunningGateway> {
  const { port, config, dir, child, log } = started;
  const stop = async (): Promise<void> => {
    await started.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, log);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, port, config, log, stop };
}

/** examples/caddy/Caddyfile with its addresses pointed at the test's servers and the admin API off. */
export async function caddyConfig(port: number, targets: GatewayTargets): Promise<string> {
  const file = 'examples/caddy/Caddyfile';
  let conf = await readFile(join(projectRoot(), file), 'utf8');
  conf = substitute(conf, 'admin localhost:2019', 'admin off', file);
  conf = substitute(conf, '\n:8080 {', `\nhttp://127.0.0.1:${port} {`, file);
  conf = substitute(conf, 'forward_auth 127.0.0.1:8181 {', `forward_auth 127.0.0.1:${targets.signalboxPort} {`, file);
  conf = substitute(conf, 'reverse_proxy 127.0.0.1:4000 {', `reverse_proxy 127.0.0.1:${targets.upstreamPort} {`, file);
  return conf;
}

/** Starts Caddy (`caddy run --config Caddyfile --adapter caddyfile`) with examples/caddy/Caddyfile. */
export async function startCaddy(targets: GatewayTargets): Promise<RunningGateway> {
  const binary = caddyBinary();
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-caddy-'));
  const port = await freePort();
  const config = await caddyConfig(port, targets);
  const confPath = join(dir, 'Caddyfile');
  await writeFile(confPath, config);
  const output: string[] = [];
  const log = async (): Promise<string> => output.join('');
  // Caddy keeps its data and autosaved config under HOME/XDG dirs: keep them in the temp dir.
  const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data') };
  const { child, stop } = spawnGroup(binary, ['run', '--config', confPath, '--adapter', 'caddyfile'], { cwd: dir, env, stderrFile: output });
  return whenListening({ port, config, dir, child, stop, log });
}

/**
 * Test-only routes for requests whose body the door never sees (no model, so routing.rego names
 * no route): chat completions go to openai with its vault key, embeddings to a credential the
 * vault does not hold (503 credential_unavailable).
 */
const BODILESS_ROUTES_REGO = `package signalbox.authz

routed["route"] := completed_target({"provider": "openai"}) if {
	not input.llm
	input.parsed_path == ["v1", "chat", "completions"]
}

routed["route"] := {"provider": "openai", "credential": "not-in-the-vault"} if {
	not input.llm
	input.parsed_path == ["v1", "embeddings"]
}
`;

/**
 * The default policy (policies/signalbox, its tests left out) compiled with a per-user rate limit
 * of `requestsPerMinute`, so a test reaches a 429 in a few requests, plus the test-only routes
 * above.
 */
export async function gatewayTestBundle(requestsPerMinute: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-gateway-policy-'));
  const src = join(dir, 'src');
  await mkdir(src);
  const policies = join(projectRoot(), 'policies', 'signalbox');
  for (const name of await readdir(policies)) {
    if (name.endsWith('.rego') && !name.endsWith('_test.rego')) await copyFile(join(policies, name), join(src, name));
  }
  const data = JSON.parse(await readFile(join(policies, 'data.json'), 'utf8')) as {
    signalbox: { limits: { rate_limits: { user: { requests_per_minute: number } } } };
  };
  data.signalbox.limits.rate_limits.user.requests_per_minute = requestsPerMinute;
  await writeFile(join(src, 'data.json'), JSON.stringify(data));
  await writeFile(join(src, 'test_routes.rego'), BODILESS_ROUTES_REGO);
  const out = join(dir, 'bundle.tar.gz');
  await buildBundle(src, out);
  return out;
}
