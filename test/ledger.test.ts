/**
 * The spend ledger over the embedded database (PGlite, in memory), fed audit files written as the
 * audit log writes them: idempotent replays, rotation, a torn tail, worker chains, expiry and a
 * late settlement after it, denials, migrations from the first version, and reconciliation.
 */
import { appendFile, mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openEmbedded, type LedgerDatabase } from '../src/ledger/database.js';
import { MIGRATIONS, migrate, schemaVersion } from '../src/ledger/migrations.js';
import { SpendLedger } from '../src/ledger/ledger.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const T0 = Date.parse('2026-11-20T10:00:00Z');
let seq = 0;

function line(record: Record<string, unknown>): string {
  seq += 1;
  return `${JSON.stringify({ ...record, seq, prev_hash: 'x', hash: `h${seq}`.padEnd(64, '0') })}\n`;
}

function decision(id: string, atMs: number, who: { user: string; team: string; model?: string }, reservedUsd: number): string {
  return line({
    decision_id: id,
    timestamp: new Date(atMs).toISOString(),
    door: 'signalbox.v1.grpc',
    bundles: { signalbox: { revision: 'rev-1' } },
    input: { identity: { subject: who.user, team: who.team }, llm: { model: who.model ?? 'gpt-4o-mini', provider: 'openai' }, session: { id: `s-${who.user}` } },
    decision: { allowed: true, http_status: 200, reasons: [] },
    enforcement: { outcome: 'reserved', reserved_usd: reservedUsd, budgets: [{ scope: `team:${who.team}`, window: 'day', period: 'd2026-11-20' }] },
  });
}

function settlement(id: string, atMs: number, costUsd: number, late = false): string {
  return line({ type: 'settlement', decision_id: id, timestamp: new Date(atMs).toISOString(), door: 'signalbox.v1.http', usage: { input_tokens: 100, output_tokens: 20, cached_input_tokens: 10 }, model: null, cost_usd: costUsd, held_usd: 0.01, late });
}

function denial(id: string, atMs: number): string {
  return line({
    decision_id: id,
    timestamp: new Date(atMs).toISOString(),
    door: 'envoy.ext_authz',
    bundles: { signalbox: { revision: 'rev-1' } },
    input: { identity: { subject: 'mallory', team: 'red' }, attributes: { request: { http: { headers: { authorization: '[masked]' } } } } },
    decision: { allowed: false, http_status: 429, reasons: ['budget.exceeded'] },
  });
}

const open: (SpendLedger | LedgerDatabase)[] = [];
afterEach(async () => {
  for (const item of open.splice(0)) await item.close();
});

async function setup(options: { ttlMs?: number; now?: () => number; policy?: 'charge' | 'release' } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-ledger-'));
  const db = await openEmbedded('memory://');
  await migrate(db);
  const ledger = SpendLedger.over(db, { poll_ms: 60_000, retention_days: 0 }, {
    auditPath: join(dir, 'decisions.jsonl'),
    holdTtlMs: options.ttlMs ?? 600_000,
    expiredHolds: options.policy ?? 'charge',
    logger: capturedLogger().logger,
    load: false,
    clock: options.now ?? (() => T0 + 60_000),
  });
  open.push(ledger);
  return { dir, db, ledger, path: join(dir, 'decisions.jsonl') };
}

describe('spend ledger', () => {
  it('loads settlements joined to their decisions, once, however often the files are replayed', async () => {
    const { ledger, path, db } = await setup();
    await writeFile(path, decision('d1', T0, { user: 'alice', team: 'blue' }, 0.01) + settlement('d1', T0 + 1000, 0.000221) + decision('d2', T0 + 10, { user: 'bob', team: 'green' }, 0.02) + settlement('d2', T0 + 2000, 0.0005));
    expect((await ledger.loadNow()).records).toBe(4);
    expect((await ledger.loadNow()).records).toBe(0);
    // A replay from scratch (the cursors lost) changes nothing.
    await db.query('DELETE FROM ledger_cursors');
    expect((await ledger.loadNow()).records).toBe(4);
    const rows = await ledger.report({ by: 'team' });
    expect(rows).toEqual([
      { key: 'green', cost_usd: 0.0005, cost_micro_usd: 500, input_tokens: 100, output_tokens: 20, cached_input_tokens: 10, requests: 1 },
      { key: 'blue', cost_usd: 0.000221, cost_micro_usd: 221, input_tokens: 100, output_tokens: 20, cached_input_tokens: 10, requests: 1 },
    ]);
    expect((await ledger.report({ by: 'user', since: new Date(T0 + 5) })).map((r) => r.key)).toEqual(['bob']);
    const bucketed = await ledger.report({ by: 'model', bucket: 'hour' });
    expect(bucketed).toEqual([expect.objectContaining({ key: 'gpt-4o-mini', bucket: '2026-11-20T10:00:00.000Z', cost_micro_usd: 721, requests: 2 })]);
    const records = (await ledger.decision('d1')) as { type?: string }[];
    expect(records.map((r) => r.type ?? 'decision')).toEqual(['decision', 'settlement']);
    await expect(ledger.decision('nope')).rejects.toMatchObject({ code: 'ledger_not_found' });
    expect(await ledger.entry('d1')).toMatchObject({ user: 'alice', team: 'blue', tenant: null, session: 's-alice', model: 'gpt-4o-mini', provider: 'openai', revision: 'rev-1', cost_micro_usd: 221, reserved_micro_usd: 10_000, settled_as: 'reported' });
  });

  it('marks a hold settled from the answer itself (ext_proc) as usage', async () => {
    const { ledger, path } = await setup();
    const response = line({ type: 'response', decision_id: 'd1', timestamp: new Date(T0 + 900).toISOString(), door: 'envoy.ext_proc', status: 200, settlement: 'provider_usage' });
    // The response record first: records of one decision may come in any order.
    await writeFile(path, response + decision('d1', T0, { user: 'alice', team: 'blue' }, 0.01) + settlement('d1', T0 + 1000, 0.0004));
    await ledger.loadNow();
    expect(await ledger.entry('d1')).toMatchObject({ settled_as: 'usage', cost_micro_usd: 400, door: 'signalbox.v1.grpc' });
    expect(await ledger.entry('d2')).toBeNull();
  });

  it('counts a call whose policy named no budget once its usage is reported, and nothing for an unknown decision', async () => {
    const { ledger, path } = await setup();
    const unheld = (id: string, user: string): string =>
      line({
        decision_id: id,
        timestamp: new Date(T0).toISOString(),
        door: 'envoy.ext_proc',
        bundles: { signalbox: { revision: 'rev-1' } },
        input: { identity: { subject: user, team: 'plain' }, llm: { api: 'openai.chat', model: 'gpt-4o-mini', provider: 'openai' } },
        decision: { allowed: true, http_status: 200, reasons: ['allowed'] },
      });
    const unheldSettlement = (id: string, costUsd: number): string =>
      line({ type: 'settlement', decision_id: id, timestamp: new Date(T0 + 500).toISOString(), door: 'envoy.ext_proc', hold: 'none', usage: { input_tokens: 10, output_tokens: 5, cached_input_tokens: 0 }, model: 'gpt-4o-mini', cost_usd: costUsd, held_usd: 0, late: false });
    await writeFile(path, unheld('u1', 'ann') + unheldSettlement('u1', 0.000012) + unheld('u2', 'ben') + unheldSettlement('ghost', 0.5));
    await ledger.loadNow();
    expect(await ledger.report({ by: 'team' })).toEqual([{ key: 'plain', cost_usd: 0.000012, cost_micro_usd: 12, input_tokens: 10, output_tokens: 5, cached_input_tokens: 0, requests: 1 }]);
    expect(await ledger.entry('u1')).toMatchObject({ user: 'ann', settled_as: 'reported', cost_micro_usd: 12 });
    // Reserved nothing, reported nothing: a row, but no spend and no hold to expire.
    expect(await ledger.entry('u2')).toMatchObject({ user: 'ben', settled_as: 'unreported', cost_micro_usd: 0 });
    expect(await ledger.status()).toMatchObject({ open_holds: 0 });
  });

  it('a settlement loaded before its decision (another replica\'s file) still joins', async () => {
    const { ledger, path } = await setup();
    await writeFile(path, settlement('d1', T0 + 1000, 0.003));
    await ledger.loadNow();
    await appendFile(path, decision('d1', T0, { user: 'carol', team: 'blue', model: 'claude' }, 0.01));
    await ledger.loadNow();
    expect(await ledger.report({ by: 'user' })).toEqual([expect.objectContaining({ key: 'carol', cost_micro_usd: 3000, requests: 1 })]);
    expect(await ledger.report({ by: 'model' })).toEqual([expect.objectContaining({ key: 'claude' })]);
    expect(await ledger.entry('d1')).toMatchObject({ door: 'signalbox.v1.grpc', settled_as: 'reported' });
  });

  it('follows the file across rotation and waits for a torn tail to be completed', async () => {
    const { ledger, path, dir } = await setup();
    await writeFile(path, decision('d1', T0, { user: 'alice', team: 'blue' }, 0.01));
    await ledger.loadNow();
    // Half a line: a write in progress, or a crash mid-append.
    const torn = settlement('d1', T0 + 1000, 0.001);
    await appendFile(path, torn.slice(0, 20));
    expect((await ledger.loadNow()).records).toBe(0);
    await appendFile(path, torn.slice(20));
    // Rotation renames the live file and starts a new one.
    await rename(path, join(dir, 'decisions.000000000002.jsonl'));
    await writeFile(path, line({ type: 'rotation', timestamp: new Date(T0).toISOString() }) + decision('d2', T0 + 5, { user: 'bob', team: 'blue' }, 0.01) + settlement('d2', T0 + 6, 0.002));
    const pass = await ledger.loadNow();
    expect(pass.records).toBe(4);
    expect(await ledger.report({ by: 'team' })).toEqual([expect.objectContaining({ key: 'blue', cost_micro_usd: 3000, requests: 2 })]);
    const status = await ledger.status();
    expect(status).toMatchObject({ database: 'embedded', rows: 2, open_holds: 0, lag_records: 0 });
    expect(status.files.map((f) => [f.path.slice(dir.length + 1), f.records])).toEqual([
      ['decisions.000000000002.jsonl', 2],
      ['decisions.jsonl', 3],
    ]);
  });

  it('loads every worker chain', async () => {
    const { ledger, dir } = await setup();
    await writeFile(join(dir, 'decisions.w1.jsonl'), decision('a', T0, { user: 'alice', team: 'blue' }, 0.01) + settlement('b', T0 + 9, 0.004));
    await writeFile(join(dir, 'decisions.w2.jsonl'), decision('b', T0, { user: 'bob', team: 'green' }, 0.01) + settlement('a', T0 + 9, 0.001));
    await ledger.loadNow();
    expect(await ledger.report({ by: 'team' })).toEqual([expect.objectContaining({ key: 'green', cost_micro_usd: 4000 }), expect.objectContaining({ key: 'blue', cost_micro_usd: 1000 })]);
  });

  it('charges an expired hold its estimate, then corrects it when a late report comes', async () => {
    let now = T0 + 500;
    const { ledger, path } = await setup({ ttlMs: 1000, now: () => now });
    await writeFile(path, decision('d1', T0, { user: 'alice', team: 'blue' }, 0.0125));
    await ledger.loadNow();
    expect(await ledger.report({ by: 'team' })).toEqual([]);
    expect((await ledger.status()).open_holds).toBe(1);
    now = T0 + 1500;
    expect((await ledger.loadNow()).expired).toBe(1);
    expect(await ledger.report({ by: 'team' })).toEqual([expect.objectContaining({ key: 'blue', cost_micro_usd: 12_500, requests: 1 })]);
    expect(await ledger.entry('d1')).toMatchObject({ settled_as: 'expired', cost_micro_usd: 12_500 });
    await appendFile(path, settlement('d1', T0 + 2000, 0.0003, true));
    await ledger.loadNow();
    expect(await ledger.entry('d1')).toMatchObject({ settled_as: 'late', cost_micro_usd: 300 });
    expect(await ledger.report({ by: 'team' })).toEqual([expect.objectContaining({ key: 'blue', cost_micro_usd: 300 })]);
    // A replay of the decision record does not bring the hold back.
    await ledger.loadNow();
    const reconciled = await ledger.reconcile([{ scope: 'team:blue', window: 'day', period: 'd2026-11-20', spent_usd: 0.0003, held_usd: 0 }]);
    expect(reconciled).toMatchObject({ mismatches: 0, counters: [{ difference_micro_usd: 0, ledger_micro_usd: 300 }] });
  });

  it('an expired hold costs nothing with expired_holds: release', async () => {
    const { ledger, path } = await setup({ ttlMs: 1000, now: () => T0 + 5000, policy: 'release' });
    await writeFile(path, decision('d1', T0, { user: 'alice', team: 'blue' }, 0.0125));
    await ledger.loadNow();
    expect(await ledger.report({ by: 'team' })).toEqual([expect.objectContaining({ cost_micro_usd: 0, requests: 1 })]);
  });

  it('keeps denials with their reasons and masked record, newest first', async () => {
    const { ledger, path } = await setup();
    await writeFile(path, denial('x1', T0) + denial('x2', T0 + 1));
    await ledger.loadNow();
    expect(await ledger.denials(10)).toEqual([
      { time: new Date(T0 + 1).toISOString(), decision_id: 'x2', door: 'envoy.ext_authz', user: 'mallory', team: 'red', reasons: ['budget.exceeded'], http_status: 429, revision: 'rev-1' },
      expect.objectContaining({ decision_id: 'x1' }),
    ]);
    const [record] = (await ledger.decision('x1')) as { input: { attributes: { request: { http: { headers: Record<string, string> } } } } }[];
    expect(record?.input.attributes.request.http.headers.authorization).toBe('[masked]');
  });

  it('reconciliation reports a counter that disagrees, and what it cannot compare', async () => {
    const { ledger, path } = await setup();
    await writeFile(path, decision('d1', T0, { user: 'alice', team: 'blue' }, 0.01) + settlement('d1', T0 + 1, 0.002) + decision('d2', T0, { user: 'bob', team: 'green' }, 0.01));
    await ledger.loadNow();
    const result = await ledger.reconcile([
      { scope: 'team:blue', window: 'day', period: 'd2026-11-20', spent_usd: 0.0025, held_usd: 0 },
      { scope: 'team:green', window: 'day', period: 'd2026-11-20', spent_usd: 0, held_usd: 0.01 },
    ]);
    expect(result.mismatches).toBe(1);
    expect(result.counters).toEqual([
      expect.objectContaining({ scope: 'team:blue', counter_spent_micro_usd: 2500, ledger_micro_usd: 2000, difference_micro_usd: 500 }),
      expect.objectContaining({ scope: 'team:green', difference_micro_usd: 0, counter_held_micro_usd: 10_000, ledger_open_holds: 1 }),
    ]);
    expect(result.notes.length).toBeGreaterThan(0);
  });

  it('migrates a database at the first schema version to the newest, each migration once', async () => {
    const db = await openEmbedded('memory://');
    open.push(db);
    expect(await migrate(db, 1)).toEqual([1]);
    expect(await schemaVersion(db)).toBe(1);
    await db.query("INSERT INTO ledger_entries (decision_id, state, cost_micro_usd) VALUES ('old', 'settled', 7)");
    expect(await migrate(db)).toEqual(MIGRATIONS.slice(1).map((m) => m.version));
    expect(await migrate(db)).toEqual([]);
    expect(await schemaVersion(db)).toBe(MIGRATIONS.at(-1)?.version);
    expect(await db.query('SELECT decision_id, instance FROM ledger_entries JOIN (SELECT NULL::text AS instance) i ON true')).toEqual([{ decision_id: 'old', instance: null }]);
    expect((await db.query('SELECT version FROM ledger_migrations ORDER BY version')).map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
  });
});

describe('the ledger API', () => {
  let sb: TestSignalbox | undefined;
  afterEach(async () => sb?.close());

  it('answers 503 ledger_unavailable when the ledger is not enabled', async () => {
    sb = await startTestSignalbox(capturedLogger().logger);
    const res = await fetch(`http://127.0.0.1:${sb.running.httpPort}/v1/ledger/status`, { headers: ADMIN_HEADERS });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'ledger_unavailable' } });
  });

  it('refuses malformed queries with 400 and unknown decisions with 404', async () => {
    sb = await startTestSignalbox(capturedLogger().logger, { yaml: 'ledger:\n  enabled: true\n  dir: "memory://"\n' });
    const http = `http://127.0.0.1:${sb.running.httpPort}`;
    for (const path of ['/v1/ledger/report?by=colour', '/v1/ledger/report?since=yesterday', '/v1/ledger/report?bucket=week', '/v1/ledger/denials?limit=0']) {
      const res = await fetch(`${http}${path}`, { headers: ADMIN_HEADERS });
      expect(res.status, path).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'ledger_query_malformed' } });
    }
    const missing = await fetch(`${http}/v1/ledger/decisions/nope`, { headers: ADMIN_HEADERS });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'ledger_not_found' } });
    expect(await (await fetch(`${http}/v1/ledger/status`, { headers: ADMIN_HEADERS })).json()).toMatchObject({ database: 'embedded', rows: 0 });
  });
});
