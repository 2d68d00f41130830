/**
 * Provider failover across replicas: two `signalbox serve` processes share one real Redis and
 * run the default policy. Failures reported to one replica open the provider's breaker, and the
 * other replica routes around it at once; after the cool-down the provider gets its trial again,
 * and a success closes it for everyone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIENCE, ISSUER, JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { startReplica, type Replica } from './helpers/replicas.js';
import { ADMIN_HEADERS, checkRequest, headerValue, type CheckResponse } from './helpers/signalbox.js';

const OK = 0;
const COOL_DOWN_MS = 1500;
const BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 50, messages: [{ role: 'user', content: 'ping' }] });

function provider(response: CheckResponse): string | undefined {
  return headerValue(response.okResponse?.headers, 'x-signalbox-provider');
}

function decisionId(response: CheckResponse): string {
  return response.dynamicMetadata!.fields!.decision_id!.stringValue!;
}

describe('provider circuit breaker shared through Redis by two replicas', () => {
  let redis: RedisServer;
  let jwks: JwksServer;
  let key: SigningKey;
  let replicas: Replica[] = [];

  beforeAll(async () => {
    key = await signingKey('ES256', 'routing');
    jwks = await JwksServer.start([key.publicJwk]);
    redis = await startRedis();
    const yaml = [
      'store:',
      '  type: redis',
      `  redis_url: redis://127.0.0.1:${redis.port}`,
      'routing:',
      '  breaker:',
      '    failure_threshold: 3',
      '    failure_window_ms: 60000',
      `    cool_down_ms: ${COOL_DOWN_MS}`,
      '',
    ].join('\n');
    const env = { SIGNALBOX_JWKS_URL: jwks.url, SIGNALBOX_JWT_ISSUER: ISSUER, SIGNALBOX_JWT_AUDIENCE: AUDIENCE };
    replicas = await Promise.all([startReplica(yaml, env), startReplica(yaml, env)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.stop();
    await jwks?.close();
  });

  async function chat(replica: Replica): Promise<CheckResponse> {
    const token = await mint(key, { subject: 'router' });
    return replica.check(checkRequest({ body: BODY, token }));
  }

  async function report(replica: Replica, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await fetch(`${replica.http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    return (await res.json()) as Record<string, unknown>;
  }

  async function fail(replica: Replica, name: string, times: number): Promise<Record<string, unknown>> {
    let last: Record<string, unknown> = {};
    for (let i = 0; i < times; i++) {
      const decision = await chat(replica);
      last = await report(replica, { decision_id: decisionId(decision), provider: name, upstream_status: 503, outcome: 'failed' });
    }
    return last;
  }

  it('routes to the first provider while it is healthy, on every replica', async () => {
    for (const replica of replicas) {
      const response = await chat(replica);
      expect(response.status.code).toBe(OK);
      expect(provider(response)).toBe('openai');
      expect(headerValue(response.okResponse!.headers, 'x-signalbox-fallbacks')).toBe('azure-openai');
    }
  });

  it('failures reported to one replica open the breaker; the other replica skips the provider at once', async () => {
    const [a, b] = replicas as [Replica, Replica];
    // Two failures stay under the threshold.
    await fail(a, 'openai', 2);
    expect(provider(await chat(b))).toBe('openai');
    const third = await fail(a, 'openai', 1);
    expect(third.provider_state).toMatchObject({ provider: 'openai', state: 'open' });
    for (const replica of replicas) {
      const response = await chat(replica);
      expect(response.status.code).toBe(OK);
      expect(provider(response)).toBe('azure-openai');
      expect(headerValue(response.okResponse!.headers, 'x-signalbox-fallbacks')).toBeUndefined();
    }
  });

  it('with every provider of the model open, refuses with 503 rather than send to a dead provider', async () => {
    const [a, b] = replicas as [Replica, Replica];
    await fail(b, 'azure-openai', 3);
    const response = await chat(a);
    expect(response.status.code).not.toBe(OK);
    expect(response.deniedResponse?.status?.code).toBe(503);
    expect(JSON.parse(response.deniedResponse!.body!).error.reasons).toEqual(['route.no_healthy_provider']);
  });

  it('after the cool-down the provider gets its trial; a success closes it for every replica', async () => {
    const [a, b] = replicas as [Replica, Replica];
    await new Promise((done) => setTimeout(done, COOL_DOWN_MS + 200));
    const trial = await chat(b);
    expect(provider(trial)).toBe('openai');
    const closed = await report(b, { decision_id: decisionId(trial), provider: 'openai', upstream_status: 200, usage: { prompt_tokens: 5, completion_tokens: 3 } });
    expect(closed.provider_state).toMatchObject({ provider: 'openai', state: 'closed', failures: 0 });
    expect(closed.outcome).toBe('settled');
    const after = await chat(a);
    expect(provider(after)).toBe('openai');
  });

  it('a failed trial reopens the breaker for another cool-down', async () => {
    const [a, b] = replicas as [Replica, Replica];
    // azure-openai has been open longer than its cool-down too: it is half-open now.
    const reopened = await report(a, { decision_id: 'no-hold-for-this-id', provider: 'azure-openai', outcome: 'timeout' });
    expect(reopened).toMatchObject({ outcome: 'health_only', provider_state: { provider: 'azure-openai', state: 'open' } });
    const health = (await (await fetch(`${b.http}/v1/providers`)).json()) as { providers: Array<{ provider: string; state: string }> };
    expect(health.providers.map((p) => [p.provider, p.state])).toEqual([
      ['azure-openai', 'open'],
      ['openai', 'closed'],
    ]);
  });
});
