/**
 * Honest readiness: `/ready` and grpc.health.v1 answer NOT_SERVING, with the reasons, while the
 * JWKS has never been fetched or the budget store cannot be reached, and `/health` stays 200.
 * Real dependencies only: a JWKS server (test/helpers/keys.ts) that goes down on its own URL, a
 * real Redis the test kills and restarts, and the real Envoy running examples/envoy/envoy.yaml,
 * whose gRPC health check must take a not-ready Signalbox out of rotation and bring it back.
 */
import * as grpc from '@grpc/grpc-js';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServices } from '../src/transport/protos.js';
import { envoyExampleConfig, startEnvoy, type RunningEnvoy } from './helpers/envoy.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { checkRequest, headerValue, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const AUTHORIZATION = 'envoy.service.auth.v3.Authorization';
const FAST_CHECKS = 'server:\n  ready_check_ms: 100\n';

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Polls until `probe` returns true, or fails naming what it last saw. */
async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

type HealthClient = grpc.Client & {
  Check: (req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: number | string }) => void) => void;
  Watch: (req: { service: string }) => grpc.ClientReadableStream<{ status: number | string }>;
};

function healthClient(port: number): HealthClient {
  const { clients } = loadServices();
  return new clients.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as HealthClient;
}

/** The grpc.health.v1 status as a name (the loader may give the enum's number). */
function statusName(status: number | string): string {
  return typeof status === 'string' ? status : (['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'][status] ?? String(status));
}

function grpcHealth(client: HealthClient): Promise<string> {
  return new Promise((resolve, reject) => client.Check({ service: AUTHORIZATION }, (e, r) => (e ? reject(e) : resolve(statusName(r.status)))));
}

describe('readiness while the identity provider is down', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let health: HealthClient;
  const log = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'ready-k1');
    jwks = await JwksServer.start([key.publicJwk]);
    jwks.outage = true;
    sb = await startTestSignalbox(log.logger, { jwksUrl: jwks.url, yaml: `${FAST_CHECKS}identity:\n  jwks_timeout_ms: 1000\n` });
    health = healthClient(sb.running.grpcPort);
  }, 60_000);
  afterAll(async () => {
    health?.close();
    await sb?.close();
    await jwks?.close();
  });

  it('starts not ready, naming jwks_unavailable, while /health stays 200', async () => {
    const ready = await getJson(`http://127.0.0.1:${sb.running.httpPort}/ready`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ status: 'not_ready', reasons: ['jwks_unavailable'] });
    expect((await getJson(`http://127.0.0.1:${sb.running.httpPort}/health`)).status).toBe(200);
    expect(await grpcHealth(health)).toBe('NOT_SERVING');
    const line = log.lines().find((l) => l.msg === 'not ready: jwks_unavailable');
    expect(line).toMatchObject({ level: 40, reasons: ['jwks_unavailable'] });
    expect(JSON.stringify((line as { causes: unknown }).causes)).toMatch(/503|200 OK/);
  });

  it('denies a request during the outage with 503 identity.provider_unavailable, not 401', async () => {
    const response = await sb.check(checkRequest({ token: await mint(key), body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }) }));
    const denied = response.deniedResponse!;
    expect(denied.status?.code).toBe(503);
    expect(JSON.parse(denied.body!).error).toMatchObject({ code: 'identity.provider_unavailable', reasons: ['identity.provider_unavailable'] });
    expect(headerValue(denied.headers, 'www-authenticate')).toBeUndefined();
  });

  it('becomes ready once the JWKS is fetched, and logs the change', async () => {
    jwks.outage = false;
    await eventually('/ready 200', async () => (await fetch(`http://127.0.0.1:${sb.running.httpPort}/ready`)).status === 200);
    expect(await grpcHealth(health)).toBe('SERVING');
    expect(log.lines().some((l) => l.msg === 'ready again: every dependency answers')).toBe(true);
    const fetches = jwks.fetches;
    // Once fetched, readiness no longer fetches: jose's cache serves, and refreshes on its own schedule.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(jwks.fetches).toBe(fetches);
    const allowed = await sb.check(checkRequest({ token: await mint(key), body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) }));
    expect(allowed.okResponse).toBeDefined();
  });
});

describe('readiness while Redis is unreachable, with the real Envoy health-checking Signalbox', () => {
  let redis: RedisServer;
  let sb: TestSignalbox;
  let upstream: FakeLlm;
  let envoy: RunningEnvoy;
  let health: HealthClient;
  const log = capturedLogger();

  beforeAll(async () => {
    redis = await startRedis();
    sb = await startTestSignalbox(log.logger, { yaml: `${FAST_CHECKS}store:\n  type: redis\n  redis_url: ${redis.url}\n` });
    health = healthClient(sb.running.grpcPort);
    upstream = await FakeLlm.start();
    const config = await envoyExampleConfig('examples/envoy/envoy.yaml', { clusters: { signalbox: sb.running.grpcPort, llm_upstream: upstream.port } });
    // The example checks every 5 s, twice before it ejects; the test checks faster, with the example's own check otherwise.
    const doc = parse(config.yaml) as { static_resources: { clusters: Array<{ name: string; health_checks?: Array<Record<string, unknown>> }> } };
    const check = doc.static_resources.clusters.find((c) => c.name === 'signalbox')?.health_checks?.[0];
    if (!check) throw new Error('examples/envoy/envoy.yaml: the signalbox cluster has no health check');
    expect(check.grpc_health_check).toEqual({ service_name: AUTHORIZATION });
    Object.assign(check, { interval: '0.2s', no_traffic_interval: '0.2s', unhealthy_interval: '0.2s', healthy_edge_interval: '0.1s', unhealthy_edge_interval: '0.1s' });
    envoy = await startEnvoy({ ...config, yaml: stringify(doc) });
  }, 120_000);
  afterAll(async () => {
    health?.close();
    await envoy?.stop();
    await upstream?.close();
    await sb?.close();
    await redis?.stop();
  });

  /** Envoy's view of the signalbox host: healthy, or the health flags it carries. */
  async function envoyHealth(): Promise<string> {
    const text = await (await fetch(`http://127.0.0.1:${envoy.adminPort}/clusters`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`signalbox::127.0.0.1:${sb.running.grpcPort}::health_flags::`));
    return line?.split('::health_flags::')[1] ?? `no signalbox host in /clusters: ${text.slice(0, 500)}`;
  }

  it('is ready, in Envoy\'s rotation, while Redis answers', async () => {
    const ready = await getJson(`http://127.0.0.1:${sb.running.httpPort}/ready`);
    expect(ready).toEqual({ status: 200, body: { status: 'ready', revision: sb.running.engine.revision } });
    await eventually('Envoy to see Signalbox healthy', async () => (await envoyHealth()) === 'healthy');
  });

  it('turns NOT_SERVING when Redis dies: /ready 503 budget_store_unavailable, a Watch stream hears it, Envoy ejects it', async () => {
    const stream = health.Watch({ service: AUTHORIZATION });
    const seen: string[] = [];
    stream.on('data', (message: { status: number | string }) => seen.push(statusName(message.status)));
    stream.on('error', () => undefined);
    await eventually('the Watch stream to start', async () => seen.length > 0);
    expect(seen).toEqual(['SERVING']);

    await redis.kill();
    await eventually('/ready 503', async () => (await fetch(`http://127.0.0.1:${sb.running.httpPort}/ready`)).status === 503);
    expect((await getJson(`http://127.0.0.1:${sb.running.httpPort}/ready`)).body).toMatchObject({ status: 'not_ready', reasons: ['budget_store_unavailable'] });
    expect((await getJson(`http://127.0.0.1:${sb.running.httpPort}/health`)).status).toBe(200);
    await eventually('the Watch stream to hear NOT_SERVING', async () => seen.includes('NOT_SERVING'));
    expect(log.lines().some((l) => l.msg === 'not ready: budget_store_unavailable' && l.level === 40)).toBe(true);
    await eventually('Envoy to eject Signalbox', async () => (await envoyHealth()).includes('failed_active_hc'));

    await redis.restart();
    await eventually('/ready 200 again', async () => (await fetch(`http://127.0.0.1:${sb.running.httpPort}/ready`)).status === 200);
    await eventually('the Watch stream to hear SERVING again', async () => seen.at(-1) === 'SERVING');
    await eventually('Envoy to take Signalbox back', async () => (await envoyHealth()) === 'healthy');
    expect(log.lines().some((l) => l.msg === 'ready again: every dependency answers')).toBe(true);
    stream.cancel();
  }, 60_000);
});
