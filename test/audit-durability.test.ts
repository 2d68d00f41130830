/**
 * audit.durability: in fsync mode a decision is answered only once its record is on disk, so a
 * crash loses no answered decision; in buffered mode a crash can lose the last ones. Both are
 * proved with a real `signalbox serve` killed with SIGKILL under load, then restarted on the
 * same file: the file verifies, and every decision answered in fsync mode is in it.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyAuditFile } from '../src/audit/chain.js';
import { FileAuditLog, type AuditSink } from '../src/audit/log.js';
import { capturedLogger } from './helpers/logs.js';
import { startReplica } from './helpers/replicas.js';
import { checkRequest, startTestSignalbox } from './helpers/signalbox.js';

async function decisionIds(path: string): Promise<Set<string>> {
  const text = await readFile(path, 'utf8');
  return new Set(
    text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => (JSON.parse(line) as { decision_id: string }).decision_id),
  );
}

describe('a file audit log in fsync mode', () => {
  it('resolves each append once its record is in the file, many at once', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'signalbox-durable-')), 'audit.jsonl');
    const log = await FileAuditLog.open(path, capturedLogger().logger, { durability: 'fsync' });
    await log.append({ decision_id: 'first' });
    expect(await readFile(path, 'utf8')).toContain('"decision_id":"first"');
    await Promise.all(Array.from({ length: 500 }, (_, i) => log.append({ decision_id: `d${i}` })));
    expect((await decisionIds(path)).size).toBe(501);
    await log.close();
    await expect(log.append({ decision_id: 'late' })).rejects.toMatchObject({ code: 'audit_write_failed' });
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 501 });
  });
});

describe('the pipeline with durable audit', () => {
  const durable = 'audit:\n  durability: fsync\n  durable_timeout_ms: 100\n';

  it('answers 503 audit_write_failed when the record does not reach the disk in time', async () => {
    const stuck: AuditSink = { append: () => new Promise<void>(() => undefined), flush: async () => undefined, close: async () => undefined };
    const sb = await startTestSignalbox(capturedLogger().logger, { yaml: durable, audit: stuck });
    try {
      const response = await sb.check(checkRequest({}));
      expect(response.deniedResponse?.status?.code).toBe(503);
      expect(JSON.parse(response.deniedResponse!.body!).error).toMatchObject({ code: 'audit_write_failed' });
    } finally {
      await sb.close();
    }
  });

  it('answers as the policy decided once the record is on disk', async () => {
    const sb = await startTestSignalbox(capturedLogger().logger, { yaml: durable });
    try {
      const response = await sb.check(checkRequest({}));
      expect(response.deniedResponse?.status?.code).toBe(401);
      const id = response.dynamicMetadata!.fields!.decision_id!.stringValue!;
      // Answered, so already in the file: no flush needed.
      expect(await decisionIds(sb.auditPath)).toContain(id);
    } finally {
      await sb.close();
    }
  });
});

describe('kill -9 under load', () => {
  it.each(['fsync', 'buffered'] as const)('%s: the file verifies after a restart; in fsync mode no answered decision is missing', async (durability) => {
    const path = join(await mkdtemp(join(tmpdir(), 'signalbox-crash-')), 'audit.jsonl');
    const env = { SIGNALBOX_AUDIT_PATH: path, SIGNALBOX_AUDIT_DURABILITY: durability };
    const replica = await startReplica('', env);
    const answered: string[] = [];
    let running = true;
    const client = async (): Promise<void> => {
      while (running) {
        try {
          const response = await replica.check(checkRequest({}));
          const id = response.dynamicMetadata?.fields?.decision_id?.stringValue;
          if (id) answered.push(id);
        } catch {
          return; // the process is gone
        }
      }
    };
    const clients = Array.from({ length: 16 }, () => client());
    await new Promise((done) => setTimeout(done, 1_500));
    await replica.kill();
    running = false;
    await Promise.all(clients);
    expect(answered.length).toBeGreaterThan(50);

    // The next start recovers the file; then it verifies.
    const restarted = await startReplica('', env);
    await restarted.stop();
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true });
    const recorded = await decisionIds(path);
    const missing = answered.filter((id) => !recorded.has(id)).length;
    console.log(`audit durability ${durability}: ${answered.length} decisions answered before kill -9, ${missing} missing from the audit file`);
    if (durability === 'fsync') expect(missing).toBe(0);
  }, 60_000);
});
