/**
 * The cap holds across processes: three `signalbox serve` replicas share one real Redis (and, in
 * a second run, a real Redis Cluster partitioned by tenant); one `serve` with 2 workers shares
 * one Redis, and then the in-memory store its primary owns. 500 concurrent requests against a
 * small cap admit exactly what the cap admits, and against a rate limit no more than the bucket
 * holds; settlement leaves the counters equal to the sum of reported costs to the micro-dollar;
 * Redis killed mid-run denies with 503 and nothing over the cap gets through after it returns;
 * an unsettled hold expires as documented.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisKeys } from '../src/enforce/keys.js';
import { windowSlot } from '../src/enforce/windows.js';
import { llmFacts } from '../src/inspect/llm.js';
import { PriceTable } from '../src/inspect/prices.js';
import { buildTestBundle } from './helpers/bundles.js';
import { capturedLogger } from './helpers/logs.js';
import { redisCommand, startRedis, startRedisCluster, type RedisCluster, type RedisServer } from './helpers/redis.js';
import { startReplica, type Replica } from './helpers/replicas.js';
import { ADMIN_HEADERS, checkRequest, startTestSignalbox, type CheckResponse } from './helpers/signalbox.js';

const OK = 0;
const prices = PriceTable.default();
const BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 1000, messages: [{ role: 'user', content: 'Plan the migration in five steps.' }] });
const ESTIMATE = llmFacts('/v1/chat/completions', JSON.parse(BODY), { prices, defaultMaxOutputTokens: 4096 })!.estimated_cost_micro_usd!;
const CAP_USD = 0.05;
const ADMITTED = Math.floor((CAP_USD * 1e6) / ESTIMATE);
/** The rate-limit race: a bucket of 40 requests, refilled one per 1.5 s. */
const PER_MINUTE = 40;
const RATE_HEADERS = { 'x-race': 'rate' };

/**
 * Every request reserves against one small team budget; a request marked `x-race: rate` takes
 * one unit of a team rate limit instead.
 */
async function raceBundle(): Promise<string> {
  return buildTestBundle(
    [
      'package race',
      '',
      '# METADATA',
      '# entrypoint: true',
      'decision := {',
      '\t"allowed": true,',
      '\t"rate_limits": [{"scope": "team:race", "requests_per_minute": data.per_minute}],',
      '\t"reasons": ["allowed"],',
      '} if {',
      '\tinput.attributes.request.http.headers["x-race"] == "rate"',
      '} else := {',
      '\t"allowed": true,',
      '\t"budgets": [{"scope": "team:race", "window": "day", "limit_usd": data.cap_usd}],',
      '\t"reasons": ["allowed"],',
      '}',
      '',
    ].join('\n'),
    { data: { cap_usd: CAP_USD, per_minute: PER_MINUTE } },
  );
}

function replicaConfig(bundle: string, store: string): string {
  return [`policy:`, `  bundle: ${bundle}`, `  decision: race/decision`, `store:`, store, `  command_timeout_ms: 1000`, ''].join('\n');
}

function statusOf(response: CheckResponse): number {
  return response.status.code === OK ? 200 : (response.deniedResponse?.status?.code ?? 403);
}

function decisionId(response: CheckResponse): string {
  return response.dynamicMetadata!.fields!.decision_id!.stringValue!;
}

async function spendOf(replica: Replica): Promise<{ spent_usd: number; held_usd: number; holds: number } | undefined> {
  const res = await fetch(`${replica.http}/v1/spend?scope=team:race&window=day`, { headers: ADMIN_HEADERS });
  const body = (await res.json()) as { budgets: { spent_usd: number; held_usd: number; holds: number }[] };
  return body.budgets[0];
}

/** Reads the raw integer counters (micro-USD) straight from Redis. */
async function rawCounters(port: number, key: string): Promise<{ spent: number; held: number }> {
  const [spent, held] = (await redisCommand(port, ['HMGET', key, 'spent', 'held'])) as (string | null)[];
  return { spent: Number(spent ?? 0), held: Number(held ?? 0) };
}

const budgetKey = (partition: string) =>
  new RedisKeys('signalbox').budget(partition, { scope: 'team:race', window: 'day', slot: windowSlot('day', Date.now()).id });

/** How the processes under test share their counters. */
interface Deployment {
  readonly name: string;
  readonly store: 'redis' | 'cluster' | 'memory';
  /** `serve` processes, each with `workers` workers. */
  readonly replicas: number;
  readonly workers: number;
}

describe.each<Deployment>([
  { name: 'three replicas, one Redis', store: 'redis', replicas: 3, workers: 1 },
  { name: 'three replicas, Redis Cluster by tenant', store: 'cluster', replicas: 3, workers: 1 },
  { name: '2 workers, one Redis', store: 'redis', replicas: 1, workers: 2 },
  { name: '2 workers, in-memory store (primary)', store: 'memory', replicas: 1, workers: 2 },
])('$name', (deployment) => {
  let redis: RedisServer | undefined;
  let cluster: RedisCluster | undefined;
  let replicas: Replica[] = [];
  let partition: string;
  const spread = (i: number) => replicas[i % replicas.length]!;

  beforeAll(async () => {
    const bundle = await raceBundle();
    let store: string;
    if (deployment.store === 'cluster') {
      cluster = await startRedisCluster();
      store = `  type: redis\n  redis_cluster: [${cluster.nodes.map((n) => `${n.host}:${n.port}`).join(', ')}]\n  partition: tenant`;
      partition = 't:-'; // unauthenticated callers have no tenant
    } else if (deployment.store === 'redis') {
      redis = await startRedis();
      store = `  type: redis\n  redis_url: ${redis.url}`;
      partition = '';
    } else {
      store = '  type: memory';
      partition = '';
    }
    // Workers share the port by connection: several connections reach every worker.
    const options = { workers: deployment.workers, connections: deployment.workers > 1 ? 8 : 1 };
    replicas = await Promise.all(Array.from({ length: deployment.replicas }, () => startReplica(replicaConfig(bundle, store), {}, options)));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.stop();
    await cluster?.stop();
  });

  /** The node holding the budget key's slot (any node for standalone). */
  async function counterPort(): Promise<number> {
    if (!cluster) return redis!.port;
    for (const node of cluster.nodes) {
      const owner = await redisCommand(node.port, ['CLUSTER', 'COUNTKEYSINSLOT', String(await redisCommand(node.port, ['CLUSTER', 'KEYSLOT', budgetKey(partition)]))]);
      if (Number(owner) > 0) return node.port;
    }
    throw new Error('budget key not found on any node');
  }

  /** The team budget's counters in micro-USD: raw from Redis, or from the primary's store through a worker. */
  async function counters(): Promise<{ spent: number; held: number }> {
    if (deployment.store !== 'memory') return rawCounters(await counterPort(), budgetKey(partition));
    const view = await spendOf(replicas[0]!);
    return { spent: Math.round((view?.spent_usd ?? 0) * 1e6), held: Math.round((view?.held_usd ?? 0) * 1e6) };
  }

  /** With workers, every worker must have decided some of the race (else it proves nothing across workers). */
  async function expectEveryWorkerDecided(): Promise<void> {
    if (deployment.workers === 1) return;
    for (const replica of replicas) {
      for (let worker = 1; worker <= deployment.workers; worker++) {
        const file = join(replica.dir, `audit.w${worker}.jsonl`);
        let decisions = 0;
        for (let tries = 0; tries < 40 && decisions === 0; tries++) {
          decisions = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter((line) => line.includes('"decision_id"')).length;
          if (decisions === 0) await new Promise((done) => setTimeout(done, 50));
        }
        expect(decisions, `worker ${worker} decided none of the race`).toBeGreaterThan(0);
      }
    }
  }

  // On failure, say why a process refused otherwise than with 429 (the store's own cause).
  const storeErrors = () => replicas.flatMap((r) => r.output().split('\n').filter((line) => line.includes('budget_store_unavailable'))).slice(0, 5).join('\n');

  it('admits exactly what the cap admits out of 500 concurrent requests, and settles exactly', async () => {
    expect(ADMITTED).toBeGreaterThan(20);
    expect(ADMITTED).toBeLessThan(200);
    const responses = await Promise.all(Array.from({ length: 500 }, (_, i) => spread(i).check(checkRequest({ body: BODY }))));
    const allowed = responses.filter((r) => r.status.code === OK);
    const statuses = new Set(responses.filter((r) => r.status.code !== OK).map(statusOf));
    expect(allowed).toHaveLength(ADMITTED);
    expect([...statuses], storeErrors()).toEqual([429]);
    for (const denied of responses.filter((r) => r.status.code !== OK)) {
      expect(JSON.parse(denied.deniedResponse!.body!).error.code).toBe('budget_exceeded');
    }
    const raw = await counters();
    expect(raw).toEqual({ spent: 0, held: ADMITTED * ESTIMATE });
    expect(raw.held).toBeLessThanOrEqual(CAP_USD * 1e6);

    // Settle every hold with random usage, each report sent twice (to different replicas, or
    // over different connections, so to different workers).
    let expected = 0;
    const reports: Promise<Response>[] = [];
    for (const [i, response] of allowed.entries()) {
      const usage = { input_tokens: randomInt(1, 50), output_tokens: randomInt(1, 1000) };
      expected += prices.costMicroUsd('gpt-4o-mini', { ...usage, cached_input_tokens: 0 })!;
      const body = JSON.stringify({ decision_id: decisionId(response), usage });
      for (const replica of [spread(i), spread(i + 1)]) {
        reports.push(fetch(`${replica.http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body }));
      }
    }
    const settled = await Promise.all(reports);
    expect(settled.every((r) => r.status === 200)).toBe(true);
    const outcomes = await Promise.all(settled.map(async (r) => ((await r.json()) as { outcome: string }).outcome));
    expect(outcomes.filter((o) => o === 'settled')).toHaveLength(ADMITTED);
    expect(outcomes.filter((o) => o === 'already_settled')).toHaveLength(ADMITTED);
    expect(await counters()).toEqual({ spent: expected, held: 0 });
    const view = await spendOf(spread(2));
    expect(view).toMatchObject({ held_usd: 0, holds: 0 });
    expect(Math.round(view!.spent_usd * 1e6)).toBe(expected);
    await expectEveryWorkerDecided();
  }, 120_000);

  it('admits no more than the rate limit bucket holds out of 500 concurrent requests', async () => {
    const started = Date.now();
    const responses = await Promise.all(Array.from({ length: 500 }, (_, i) => spread(i).check(checkRequest({ body: BODY, headers: RATE_HEADERS }))));
    const elapsedMs = Date.now() - started;
    const allowed = responses.filter((r) => r.status.code === OK).length;
    expect([...new Set(responses.filter((r) => r.status.code !== OK).map(statusOf))], storeErrors()).toEqual([429]);
    for (const denied of responses.filter((r) => r.status.code !== OK)) {
      expect(JSON.parse(denied.deniedResponse!.body!).error.code).toBe('rate_limit_exceeded');
    }
    // The full bucket, plus what refilled while the race ran (one request per 1.5 s): a bucket
    // per process would admit a multiple of it.
    expect(allowed).toBeGreaterThanOrEqual(PER_MINUTE);
    expect(allowed).toBeLessThanOrEqual(PER_MINUTE + Math.floor(elapsedMs / (60_000 / PER_MINUTE)));
    await expectEveryWorkerDecided();
  }, 120_000);
});

describe('Redis killed mid-run', () => {
  let redis: RedisServer;
  let replicas: Replica[] = [];

  beforeAll(async () => {
    redis = await startRedis({ persistence: 'always' });
    const bundle = await raceBundle();
    replicas = await Promise.all([0, 1, 2].map(() => startReplica(replicaConfig(bundle, `  type: redis\n  redis_url: ${redis.url}`))));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.stop();
  });

  const burst = (n: number) => Promise.all(Array.from({ length: n }, (_, i) => replicas[i % 3]!.check(checkRequest({ body: BODY }))));

  it('denies with 503 budget_store_unavailable while Redis is down, resumes after, and never passes the cap', async () => {
    const allowed = (responses: CheckResponse[]) => responses.filter((r) => r.status.code === OK).length;
    const before = await burst(30);
    expect(allowed(before)).toBe(30);

    // Kill Redis while 60 requests are in flight: each is either admitted or refused with 503.
    const racing = burst(60);
    await redis.kill();
    const killed = await racing;
    expect(killed.every((r) => [200, 503].includes(statusOf(r)))).toBe(true);

    const during = await burst(30);
    expect(during.every((r) => statusOf(r) === 503)).toBe(true);
    expect(new Set(during.map((r) => JSON.parse(r.deniedResponse!.body!).error.code))).toEqual(new Set(['budget_store_unavailable']));

    await redis.restart();
    // Every replica reconnects on its own, without a restart.
    const probes: CheckResponse[] = [];
    const deadline = Date.now() + 20_000;
    for (const replica of replicas) {
      for (;;) {
        const probe = await replica.check(checkRequest({ body: BODY }));
        if (statusOf(probe) !== 503) {
          probes.push(probe);
          break;
        }
        if (Date.now() > deadline) throw new Error('replica did not reconnect to Redis');
        await new Promise((done) => setTimeout(done, 200));
      }
    }
    const after = await burst(300);
    expect(after.every((r) => [200, 429].includes(statusOf(r)))).toBe(true);

    // The AOF (fsync always) kept every acknowledged reservation across the crash. A reservation
    // Redis made but whose reply was lost in the crash was refused (503), and each replica gave
    // it back when Redis returned, before its own next reservation. So: held is exactly what was
    // admitted, and the cap was filled.
    const admitted = allowed(before) + allowed(killed) + allowed(probes) + allowed(after);
    const raw = await rawCounters(redis.port, budgetKey(''));
    expect(raw.spent).toBe(0);
    expect(raw.held).toBe(admitted * ESTIMATE);
    expect(raw.held).toBeLessThanOrEqual(CAP_USD * 1e6);
    expect(raw.held).toBe(ADMITTED * ESTIMATE);
  }, 120_000);
});

describe('holds that are never settled', () => {
  let redis: RedisServer;

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('expire after hold_ttl_ms, charged at the estimate, and a late report corrects them without drift', async () => {
    const bundle = await raceBundle();
    const sb = await startTestSignalbox(capturedLogger().logger, {
      bundle,
      decision: 'race/decision',
      yaml: `store:\n  type: redis\n  redis_url: ${redis.url}\nbudgets:\n  hold_ttl_ms: 1000\n`,
    });
    try {
      const http = `http://127.0.0.1:${sb.running.httpPort}`;
      const spend = async () =>
        ((await (await fetch(`${http}/v1/spend?scope=team:race&window=day`, { headers: ADMIN_HEADERS })).json()) as { budgets: { spent_usd: number; held_usd: number; holds: number }[] }).budgets[0]!;
      const first = await sb.check(checkRequest({ body: BODY }));
      expect(first.status.code).toBe(OK);
      expect(await spend()).toMatchObject({ spent_usd: 0, held_usd: ESTIMATE / 1e6, holds: 1 });
      await new Promise((done) => setTimeout(done, 1_200));
      // Expired: charged its estimate, no longer held.
      expect(await spend()).toMatchObject({ spent_usd: ESTIMATE / 1e6, held_usd: 0, holds: 0 });
      const second = await sb.check(checkRequest({ body: BODY }));
      expect(second.status.code).toBe(OK);
      expect(await spend()).toMatchObject({ spent_usd: ESTIMATE / 1e6, held_usd: ESTIMATE / 1e6, holds: 1 });
      // The late report replaces the charged estimate by the actual cost.
      const usage = { input_tokens: 12, output_tokens: 34 };
      const cost = prices.costMicroUsd('gpt-4o-mini', { ...usage, cached_input_tokens: 0 })!;
      const late = await fetch(`${http}/v1/report`, { method: 'POST', headers: ADMIN_HEADERS, body: JSON.stringify({ decision_id: decisionId(first), usage }) });
      expect(await late.json()).toMatchObject({ outcome: 'settled', late: true, cost_usd: cost / 1e6 });
      expect(await rawCounters(redis.port, budgetKey(''))).toEqual({ spent: cost, held: ESTIMATE });
    } finally {
      await sb.close();
    }
  });
});

describe('when the store cannot answer', () => {
  /** A loopback port nobody listens on. */
  async function deadPort(): Promise<number> {
    const { createServer } = await import('node:net');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }

  async function start(onStoreError: string | null): Promise<Awaited<ReturnType<typeof startTestSignalbox>>> {
    const bundle = await buildTestBundle(
      [
        'package race',
        '',
        '# METADATA',
        '# entrypoint: true',
        'decision := object.union(base, extra)',
        'base := {"allowed": true, "budgets": [{"scope": "team:race", "window": "day", "limit_usd": 1}], "reasons": ["allowed"]}',
        onStoreError === null ? 'extra := {}' : `extra := {"on_store_error": "${onStoreError}"}`,
        '',
      ].join('\n'),
    );
    const { logger } = capturedLogger();
    return startTestSignalbox(logger, {
      bundle,
      decision: 'race/decision',
      yaml: `store:\n  type: redis\n  redis_url: redis://127.0.0.1:${await deadPort()}\n  connect_timeout_ms: 200\n`,
    });
  }

  it('denies with 503 budget_store_unavailable by default', async () => {
    const sb = await start(null);
    try {
      const response = await sb.check(checkRequest({ body: BODY }));
      expect(statusOf(response)).toBe(503);
      expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('budget_store_unavailable');
    } finally {
      await sb.close();
    }
  });

  it('allows unenforced, saying so in the reasons, when the policy opts to fail open', async () => {
    const sb = await start('allow');
    try {
      const response = await sb.check(checkRequest({ body: BODY }));
      expect(response.status.code).toBe(OK);
      await sb.running.audit.flush();
      const records = (await import('node:fs/promises')).readFile(sb.auditPath, 'utf8');
      const last = JSON.parse((await records).trim().split('\n').at(-1)!);
      expect(last.decision.reasons).toEqual(['allowed', 'budget_store_unavailable']);
      expect(last.enforcement).toEqual({ outcome: 'store_unavailable', fail_open: true });
    } finally {
      await sb.close();
    }
  });

  it('denies with 403 budget_estimate_unavailable when budgets apply to a model without a price', async () => {
    const sb = await start(null);
    try {
      const body = JSON.stringify({ model: 'in-house-model-7', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
      const response = await sb.check(checkRequest({ body }));
      expect(statusOf(response)).toBe(403);
      expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('budget_estimate_unavailable');
    } finally {
      await sb.close();
    }
  });
});
