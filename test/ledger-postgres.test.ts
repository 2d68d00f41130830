/**
 * The ledger shared by replicas through one PostgreSQL server: each replica's loader follows its
 * own audit files, and the records of one decision are spread over several replicas' files (the
 * decision on one, its settlement on another). Loaders running at the same moment must take
 * turns rather than lock the same rows in crossing orders, which PostgreSQL ends as a deadlock;
 * replicas starting at once on a fresh database must take turns migrating it.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgres } from '../src/ledger/database.js';
import { SpendLedger } from '../src/ledger/ledger.js';
import { MIGRATIONS, migrate } from '../src/ledger/migrations.js';
import { capturedLogger } from './helpers/logs.js';
import { startPostgres, type PostgresServer } from './helpers/postgres.js';

let postgres: PostgresServer;
beforeAll(async () => {
  postgres = await startPostgres();
}, 120_000);
afterAll(async () => {
  await postgres?.stop();
});

const DECISIONS = 400;
let seq = 0;

function record(body: Record<string, unknown>): string {
  seq += 1;
  return `${JSON.stringify({ ...body, seq, prev_hash: 'x', hash: `h${seq}`.padEnd(64, '0') })}\n`;
}

function decision(id: string, at: string): string {
  return record({
    decision_id: id,
    timestamp: at,
    door: 'signalbox.v1.grpc',
    input: { identity: { subject: 'ann', team: 'blue' }, llm: { model: 'gpt-4o-mini', provider: 'openai' } },
    decision: { allowed: true, http_status: 200, reasons: [] },
    enforcement: { outcome: 'reserved', reserved_usd: 0.01, budgets: [{ scope: 'team:blue', window: 'day', period: 'd1' }] },
  });
}

function settlement(id: string, at: string): string {
  return record({ type: 'settlement', decision_id: id, timestamp: at, door: 'signalbox.v1.http', usage: { input_tokens: 10, output_tokens: 2 }, cost_usd: 0.001, late: false });
}

describe('ledger loaders sharing one PostgreSQL server', () => {
  it('load crossing records of the same decisions at the same moment without a deadlock, and count each once', async () => {
    const url = await postgres.createDatabase('crossing');
    const now = Date.now();
    const at = new Date(now).toISOString();
    const ids = Array.from({ length: DECISIONS }, (_, i) => `d-${String(i).padStart(4, '0')}`);
    // Replica A holds the decisions in one order, replica B their settlements in the reverse
    // order, and both hold the other half too: every batch touches the same rows, crossing.
    const half = ids.slice(0, DECISIONS / 2);
    const rest = ids.slice(DECISIONS / 2);
    const fileA = [...half.map((id) => decision(id, at)), ...[...rest].reverse().map((id) => settlement(id, at))].join('');
    const fileB = [...[...half].reverse().map((id) => settlement(id, at)), ...rest.map((id) => decision(id, at))].join('');
    const ledgers: SpendLedger[] = [];
    for (const content of [fileA, fileB]) {
      const dir = await mkdtemp(join(tmpdir(), 'signalbox-ledger-pg-'));
      await writeFile(join(dir, 'decisions.jsonl'), content);
      const db = await openPostgres(url);
      await migrate(db);
      ledgers.push(SpendLedger.over(db, { poll_ms: 60_000, retention_days: 0 }, {
        auditPath: join(dir, 'decisions.jsonl'),
        holdTtlMs: 600_000,
        expiredHolds: 'charge',
        logger: capturedLogger().logger,
        load: false,
        clock: () => now,
      }));
    }
    try {
      const passes = await Promise.allSettled(ledgers.map((l) => l.loadNow()));
      expect(passes.filter((p) => p.status === 'rejected').map((p) => String((p as PromiseRejectedResult).reason))).toEqual([]);
      const rows = await ledgers[0]!.report({ by: 'team' });
      expect(rows).toEqual([expect.objectContaining({ key: 'blue', requests: DECISIONS, cost_micro_usd: DECISIONS * 1000 })]);
    } finally {
      for (const ledger of ledgers) await ledger.close();
    }
  }, 120_000);

  it('migrates a fresh database from many replicas starting at once: each migration applied exactly once, none fails', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const url = await postgres.createDatabase(`fresh_${attempt}`);
      const replicas = await Promise.all(Array.from({ length: 6 }, () => openPostgres(url)));
      try {
        const runs = await Promise.allSettled(replicas.map((db) => migrate(db)));
        expect(runs.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
        const applied = runs.flatMap((r) => (r as PromiseFulfilledResult<number[]>).value).sort();
        expect(applied).toEqual(MIGRATIONS.map((m) => m.version).sort());
      } finally {
        for (const db of replicas) await db.close();
      }
    }
  }, 120_000);
});

