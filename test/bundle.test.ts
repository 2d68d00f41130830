/**
 * The shipped command, `dist/bundle/signalbox.js` (scripts/bundle.ts): everything else in the
 * suite runs the sources under tsx, so this runs a freshly built bundle the way `npm start` and
 * the container image do, through the parts a bundle can break: chunks loaded on first use (the
 * Redis store, the spend ledger, `audit verify`), the packages left outside it (PGlite),
 * dependencies that find their own files through `__dirname` (gRPC reflection's .proto files),
 * files read from the installation (the console's uPlot), and workers started from it.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../scripts/bundle.js';
import { projectRoot } from '../src/core/paths.js';
import { grpcurl } from './helpers/grpcurl.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { startReplica, type Replica } from './helpers/replicas.js';
import { ADMIN_HEADERS, checkRequest } from './helpers/signalbox.js';

const run = promisify(execFile);

describe('the bundled signalbox command', () => {
  let outdir: string;
  let entry: string;
  let redis: RedisServer;
  let replica: Replica | undefined;

  beforeAll(async () => {
    // Inside the project, as dist/bundle is: the bundle finds node_modules and the install root from where it sits.
    await mkdir(join(projectRoot(), 'dist'), { recursive: true });
    outdir = await mkdtemp(join(projectRoot(), 'dist', 'bundle-test-'));
    await rm(outdir, { recursive: true });
    expect(await buildBundle(outdir)).toBe(true);
    entry = join(outdir, 'signalbox.js');
    redis = await startRedis();
  }, 120_000);
  afterAll(async () => {
    await replica?.stop();
    await redis?.stop();
    if (outdir) await rm(outdir, { recursive: true, force: true });
  });

  it('is one entry with its lazily loaded parts as chunks; a second build of unchanged inputs writes nothing, one with a file missing rebuilds', async () => {
    const chunks = await readdir(join(outdir, 'chunks'));
    expect(chunks.filter((name) => name.endsWith('.js')).length).toBeGreaterThan(5);
    const before = await readFile(entry);
    expect(await buildBundle(outdir)).toBe(false);
    expect(await readFile(entry)).toEqual(before);
    // A file of the build gone (deleted by hand, say) makes the next one run.
    const chunk = chunks.find((name) => name.endsWith('.js'))!;
    await rm(join(outdir, 'chunks', chunk));
    expect(await buildBundle(outdir)).toBe(true);
    expect(await readdir(join(outdir, 'chunks'))).toContain(chunk);
  });

  it('serves from the bundle with two workers, a Redis store, the embedded ledger, reflection and the console', { timeout: 120_000 }, async () => {
    const ledgerDir = await mkdtemp(join(tmpdir(), 'signalbox-bundle-ledger-'));
    const yaml = [
      'server:',
      '  grpc_reflection: true',
      'store:',
      '  type: redis',
      `  redis_url: ${redis.url}`,
      'ledger:',
      '  enabled: true',
      '  database: embedded',
      `  dir: ${ledgerDir}`,
      '',
    ].join('\n');
    replica = await startReplica(yaml, {}, { workers: 2, command: [entry] });

    // A decision through the whole pipeline: no token configured to verify, so a catalogued denial.
    const answer = await replica.check(checkRequest({ method: 'GET', path: '/v1/models' }));
    expect(answer.status?.code).not.toBe(0);
    expect(JSON.stringify(answer)).toContain('identity.token_missing');

    const listed = await grpcurl(['-plaintext', `127.0.0.1:${replica.grpcPort}`, 'list']);
    expect(listed.stderr).toBe('');
    // Reflection answers: @grpc/reflection read its own .proto files through `__dirname` at start.
    expect(listed.stdout.trim().split('\n').sort()).toEqual(['envoy.service.auth.v3.Authorization', 'envoy.service.ext_proc.v3.ExternalProcessor', 'grpc.health.v1.Health', 'signalbox.v1.DecisionService']);

    const uplot = await fetch(`${replica.http}/console/vendor/uPlot.esm.js`);
    expect(uplot.status).toBe(200);
    expect((await uplot.text()).length).toBeGreaterThan(10_000);

    const ledger = await fetch(`${replica.http}/v1/ledger/status`, { headers: ADMIN_HEADERS });
    expect(ledger.status).toBe(200);
    expect(await ledger.json()).toMatchObject({ database: 'embedded' });

    const metrics = await (await fetch(`${replica.http}/metrics`)).text();
    expect(metrics).toMatch(/^signalbox_decisions_total\{.*\} [1-9]/m);

    await replica.stop();
    const verified = await run(process.execPath, [entry, 'audit', 'verify', replica.dir]);
    expect(verified.stdout).toMatch(/^ok: [1-9]\d* records.*, 2 chains, each intact, none missing\n/);
    await rm(ledgerDir, { recursive: true, force: true });
  });
});
