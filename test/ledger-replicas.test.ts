/**
 * The spend ledger end to end, on real servers: three `signalbox serve` replicas sharing one
 * Redis and one PostgreSQL (started from Debian's packages), traffic from several teams and
 * users, most of it settled by usage reports sent to another replica (once more, as a retry),
 * some holds left to expire (charged their estimate), one of those settled late, and a few
 * denials. Then `signalbox spend report --by team` equals the reported costs plus the expired
 * estimates to the micro-dollar, and `signalbox spend reconcile` finds no difference from the
 * Redis counters. The same again with the embedded database (PGlite) on one replica, whose
 * audit records are summaries (`audit.input: summary`): the ledger reads both forms; and on one
 * replica of two workers, where the primary owns the embedded database.
 */
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { llmFacts } from '../src/inspect/llm.js';
import { PriceTable } from '../src/inspect/prices.js';
import { buildTestBundle } from './helpers/bundles.js';
import { AUDIENCE, ISSUER, JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { startPostgres, type PostgresServer } from './helpers/postgres.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { startReplica, type Replica } from './helpers/replicas.js';
import { ADMIN_HEADERS, ADMIN_TOKEN, checkRequest, type CheckResponse } from './helpers/signalbox.js';

const prices = PriceTable.default();
const BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'Summarise the quarter.' }] });
const ESTIMATE = llmFacts('/v1/chat/completions', JSON.parse(BODY), { prices, defaultMaxOutputTokens: 4096 })!.estimated_cost_micro_usd!;
const HOLD_TTL_MS = 1_000;
const PEOPLE = [
  { user: 'alice', team: 'blue' },
  { user: 'bob', team: 'blue' },
  { user: 'carol', team: 'green' },
  { user: 'dave', team: 'red' },
  { user: 'erin', team: 'red' },
];

/** Every allowed request reserves against its team's and its user's day budget; `x-deny: 1` is denied. */
async function ledgerBundle(): Promise<string> {
  return buildTestBundle(
    [
      'package ledger_test',
      '',
      '# METADATA',
      '# entrypoint: true',
      'decision := {"allowed": false, "http_status": 403, "reasons": ["test.denied"]} if {',
      '\tinput.attributes.request.http.headers["x-deny"] == "1"',
      '} else := {',
      '\t"allowed": true,',
      '\t"budgets": [',
      '\t\t{"scope": concat(":", ["team", input.identity.team]), "window": "day", "limit_usd": 1000},',
      '\t\t{"scope": concat(":", ["user", input.identity.subject]), "window": "day", "limit_usd": 1000},',
      '\t],',
      '\t"reasons": ["allowed"],',
      '}',
      '',
    ].join('\n'),
  );
}

function config(bundle: string, store: string, ledger: string, auditInput: string): string {
  return ['audit:', `  input: ${auditInput}`, 'policy:', `  bundle: ${bundle}`, '  decision: ledger_test/decision', 'store:', store, 'budgets:', `  hold_ttl_ms: ${HOLD_TTL_MS}`, 'ledger:', '  enabled: true', '  poll_ms: 200', ledger, ''].join('\n');
}

/** Runs `signalbox spend ...` as a user would; resolves its exit code and output. */
function cli(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'spend', ...args, '--url', url], {
      cwd: process.cwd(),
      env: { ...process.env, SIGNALBOX_ADMIN_TOKEN: ADMIN_TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { headers: ADMIN_HEADERS });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

function decisionId(response: CheckResponse): string {
  return response.dynamicMetadata!.fields!.decision_id!.stringValue!;
}

interface Setup {
  readonly name: string;
  readonly replicas: number;
  readonly database: 'postgres' | 'embedded';
  readonly auditInput: 'full' | 'summary';
  /** `server.workers` of each replica (1 when absent). */
  readonly workers?: number;
}

describe.each<Setup>([
  { name: 'three replicas, one Redis, one PostgreSQL', replicas: 3, database: 'postgres', auditInput: 'full' },
  { name: 'one replica, one Redis, the embedded database, summary audit records', replicas: 1, database: 'embedded', auditInput: 'summary' },
  // The embedded database belongs to the primary, which loads both workers' chains; the workers
  // answer the ledger's API by asking it.
  { name: 'one replica of two workers, the embedded database in the primary', replicas: 1, database: 'embedded', auditInput: 'full', workers: 2 },
])('spend ledger: $name', (setup) => {
  let redis: RedisServer;
  let postgres: PostgresServer | undefined;
  let jwks: JwksServer;
  let key: SigningKey;
  let replicas: Replica[] = [];
  const at = (i: number): Replica => replicas[i % replicas.length]!;

  beforeAll(async () => {
    key = await signingKey('ES256', 'ledger-key');
    jwks = await JwksServer.start([key.publicJwk]);
    redis = await startRedis();
    const bundle = await ledgerBundle();
    let ledger: string;
    const env: Record<string, string> = { SIGNALBOX_JWKS_URL: jwks.url, SIGNALBOX_JWT_ISSUER: ISSUER, SIGNALBOX_JWT_AUDIENCE: AUDIENCE };
    if (setup.database === 'postgres') {
      postgres = await startPostgres();
      ledger = '  database: postgres';
      env.SIGNALBOX_LEDGER_POSTGRES_URL = postgres.url;
    } else {
      ledger = `  database: embedded\n  dir: ${await mkdtemp(join(tmpdir(), 'signalbox-ledger-db-'))}`;
    }
    const yaml = config(bundle, `  type: redis\n  redis_url: ${redis.url}`, ledger, setup.auditInput);
    replicas = await Promise.all(Array.from({ length: setup.replicas }, () => startReplica(yaml, env, setup.workers ? { workers: setup.workers, connections: 4 } : {})));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis?.stop();
    await postgres?.stop();
    await jwks?.close();
  });

  it('reports what was spent to the micro-dollar, and reconciles with the counters', async () => {
    const tokens = new Map(await Promise.all(PEOPLE.map(async (p) => [p.user, await mint(key, { subject: p.user, expiresIn: 600, claims: { team: p.team } })] as const)));
    const expected = new Map<string, number>();
    const add = (team: string, micro: number): void => void expected.set(team, (expected.get(team) ?? 0) + micro);

    const sent = Array.from({ length: 40 }, (_, i) => ({ i, person: PEOPLE[i % PEOPLE.length]! }));
    const answers = await Promise.all(sent.map(({ i, person }) => at(i).check(checkRequest({ body: BODY, token: tokens.get(person.user)! }))));
    expect(answers.every((a) => a.status.code === 0)).toBe(true);
    const denied = await Promise.all([0, 1, 2].map((i) => at(i).check(checkRequest({ body: BODY, token: tokens.get('dave')!, headers: { 'x-deny': '1' } }))));
    expect(denied.every((a) => a.status.code !== 0)).toBe(true);

    // Settle 32 of 40, each at another replica than the one that decided, and once more (a retry).
    const unsettled: { id: string; team: string }[] = [];
    for (const [n, answer] of answers.entries()) {
      const { person, i } = sent[n]!;
      const id = decisionId(answer);
      if (n % 5 === 4) {
        unsettled.push({ id, team: person.team });
        continue;
      }
      const usage = { input_tokens: randomInt(1, 400), output_tokens: randomInt(1, 500), cached_input_tokens: 0 };
      add(person.team, prices.costMicroUsd('gpt-4o-mini', usage)!);
      const body = JSON.stringify({ decision_id: id, usage });
      for (const replica of [at(i + 1), at(i + 2)]) {
        const res = await fetch(`${replica.http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body });
        expect(res.status).toBe(200);
      }
    }
    // Let the 8 others expire (charged their estimate), then settle one of them late.
    await new Promise((r) => setTimeout(r, HOLD_TTL_MS + 1_000));
    const [late, ...expired] = unsettled;
    for (const hold of expired) add(hold.team, ESTIMATE);
    const lateUsage = { input_tokens: 7, output_tokens: 11, cached_input_tokens: 0 };
    add(late!.team, prices.costMicroUsd('gpt-4o-mini', lateUsage)!);
    const lateRes = await fetch(`${at(0).http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body: JSON.stringify({ decision_id: late!.id, usage: lateUsage }) });
    expect(await lateRes.json()).toMatchObject({ outcome: 'settled', late: true });

    // Every replica has loaded all it wrote: 40 rows, no hold open, nothing left to read.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const statuses = await Promise.all(replicas.map((r) => getJson<{ rows: number; open_holds: number; lag_records: number; database: string }>(`${r.http}/v1/ledger/status`)));
      await Promise.all(replicas.map((r) => getJson(`${r.http}/v1/ledger/report?by=team&fresh=1`)));
      const total = await getJson<{ rows: { cost_micro_usd: number }[] }>(`${at(0).http}/v1/ledger/report?by=team&fresh=1`);
      const sum = total.rows.reduce((s, r) => s + r.cost_micro_usd, 0);
      const want = [...expected.values()].reduce((s, v) => s + v, 0);
      if (statuses.every((s) => s.lag_records === 0 && s.open_holds === 0) && statuses.every((s) => s.rows === 40) && sum === want) {
        expect(statuses.every((s) => s.database === setup.database)).toBe(true);
        break;
      }
      if (Date.now() > deadline) throw new Error(`the ledger did not catch up: ${JSON.stringify(statuses)}, ${sum} of ${want} micro-USD`);
      await new Promise((r) => setTimeout(r, 200));
    }

    const report = await cli(['report', '--by', 'team', '--format', 'json'], at(1).http);
    expect(report.code, report.stderr).toBe(0);
    const rows = (JSON.parse(report.stdout) as { rows: { key: string; cost_micro_usd: number; requests: number }[] }).rows;
    expect(Object.fromEntries(rows.map((r) => [r.key, r.cost_micro_usd]))).toEqual(Object.fromEntries(expected));
    expect(rows.reduce((s, r) => s + r.requests, 0)).toBe(40);

    const table = await cli(['report', '--by', 'user'], at(2).http);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^USER\s+COST_USD/);
    for (const p of PEOPLE) expect(table.stdout).toContain(p.user);
    const csv = await cli(['report', '--by', 'model', '--format', 'csv'], at(0).http);
    expect(csv.stdout.split('\n')[1]).toMatch(/^gpt-4o-mini,/);

    const reconcile = await cli(['reconcile', '--format', 'json'], at(0).http);
    expect(reconcile.code, reconcile.stdout + reconcile.stderr).toBe(0);
    const result = JSON.parse(reconcile.stdout) as { mismatches: number; counters: { scope: string; difference_micro_usd: number; ledger_micro_usd: number }[] };
    expect(result.mismatches).toBe(0);
    // A counter per team and per user the traffic named.
    expect(result.counters.map((c) => c.scope).sort()).toEqual([...new Set(PEOPLE.flatMap((p) => [`team:${p.team}`, `user:${p.user}`]))].sort());
    expect(result.counters.find((c) => c.scope === 'team:blue')?.ledger_micro_usd).toBe(expected.get('blue'));
    const text = await cli(['reconcile'], at(0).http);
    expect(text.stdout).toContain('reconciled: every counter equals the ledger');

    // Denials, with the masked record behind each.
    const { denials } = await getJson<{ denials: { decision_id: string; reasons: string[]; http_status: number; user: string; team: string }[] }>(`${at(0).http}/v1/ledger/denials?limit=10&fresh=1`);
    expect(denials).toHaveLength(3);
    expect(denials[0]).toMatchObject({ reasons: ['test.denied'], http_status: 403, user: 'dave', team: 'red' });
    const records = await getJson<{ records: { input: { attributes: { request: { http: { headers: Record<string, string> } } } } }[] }>(`${at(0).http}/v1/ledger/decisions/${denials[0]!.decision_id}`);
    expect(JSON.stringify(records)).not.toContain(tokens.get('dave'));
    // Admin endpoints stay closed without the admin credential.
    expect((await fetch(`${at(0).http}/v1/ledger/report?by=team`)).status).toBe(401);
    // The database URL is a secret: never in the logs. No load failed.
    for (const replica of replicas) {
      if (postgres) expect(replica.output()).not.toContain(postgres.url);
      expect(replica.output()).not.toContain('ledger_unavailable');
    }
  }, 180_000);
});
