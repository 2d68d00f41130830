/**
 * Size rotation: the chain runs on across files, each rotated-into file names the file before
 * it, retention keeps the newest, and `audit verify DIR` checks the files and the links between
 * them; with one chain per worker, each worker's files rotate on their own and verify as a set.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rename, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { verifyAuditFile } from '../src/audit/chain.js';
import { FileAuditLog, type FileAuditLogOptions } from '../src/audit/log.js';
import { verifyAuditLog } from '../src/audit/verify-log.js';
import { workerAuditPath, workersRecord } from '../src/audit/worker-chains.js';
import { capturedLogger } from './helpers/logs.js';

async function writeRotated(records: number, options: FileAuditLogOptions): Promise<{ dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-rotate-'));
  const path = join(dir, 'decisions.jsonl');
  const log = await FileAuditLog.open(path, capturedLogger().logger, options);
  await Promise.all(Array.from({ length: records }, (_, i) => log.append({ decision_id: `d${i}`, note: 'x'.repeat(100) })));
  await log.close();
  return { dir, path };
}

describe('audit rotation', () => {
  it.each(['buffered', 'fsync'] as const)('rotates by size and the chain runs on across the files (%s)', async (durability) => {
    const { dir } = await writeRotated(300, { durability, rotation: { maxBytes: 8192, keepFiles: 0 } });
    const files = (await readdir(dir)).sort();
    expect(files.length).toBeGreaterThan(3);
    expect(files.at(-1)).toBe('decisions.jsonl');
    expect(files[0]).toMatch(/^decisions\.\d{12}\.jsonl$/);
    const report = await verifyAuditLog(dir);
    expect(report).toMatchObject({ ok: true });
    // Every decision is there once, plus one rotation record per rotated file.
    expect(report.records).toBe(300 + files.length - 1);
    // Each file verifies on its own too.
    for (const file of files) expect(await verifyAuditFile(join(dir, file))).toMatchObject({ ok: true });
  });

  it('keeps the newest files under retention, and verify says where the kept chain starts', async () => {
    const { dir } = await writeRotated(300, { rotation: { maxBytes: 8192, keepFiles: 2 } });
    const files = (await readdir(dir)).sort();
    expect(files).toHaveLength(3);
    const report = await verifyAuditLog(dir);
    expect(report).toMatchObject({ ok: true, startsAfter: expect.stringMatching(/^decisions\.\d{12}\.jsonl$/) });
  });

  it('finds a rotated file deleted from the middle', async () => {
    const { dir } = await writeRotated(300, { rotation: { maxBytes: 8192, keepFiles: 0 } });
    const files = (await readdir(dir)).sort();
    await unlink(join(dir, files[1]!));
    const report = await verifyAuditLog(dir);
    expect(report).toMatchObject({ ok: false, firstBreak: { file: join(dir, files[2]!), problem: 'prev_hash_mismatch' } });
    const cli = await promisify(execFile)('npx', ['tsx', 'src/cli/main.ts', 'audit', 'verify', dir], { cwd: join(import.meta.dirname, '..') }).catch((e: { code: number; stdout: string }) => e);
    expect(cli).toMatchObject({ code: 1, stdout: expect.stringMatching(/^audit_chain_broken: decisions\.\d{12}\.jsonl line 1/) });
  });

  it('continues after a crash between the rename and the first record of the new file', async () => {
    const { dir, path } = await writeRotated(20, {});
    // As if the process died right after rotating: the live file is gone.
    await rename(path, join(dir, 'decisions.000000000020.jsonl'));
    const log = await FileAuditLog.open(path, capturedLogger().logger, { rotation: { maxBytes: 8192, keepFiles: 0 } });
    log.append({ decision_id: 'after' });
    await log.close();
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: true, records: 22 });
  });

  it('rotates each worker chain on its own; verify checks the set, and finds a chain missing or broken', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-rotate-workers-'));
    const path = join(dir, 'decisions.jsonl');
    for (const worker of [1, 2]) {
      const log = await FileAuditLog.open(workerAuditPath(path, worker), capturedLogger().logger, { rotation: { maxBytes: 8192, keepFiles: 0 } });
      log.append(workersRecord(path, worker, 2, new Date()));
      await Promise.all(Array.from({ length: 150 }, (_, i) => log.append({ decision_id: `w${worker}-${i}`, note: 'x'.repeat(100) })));
      await log.close();
    }
    const files = (await readdir(dir)).sort();
    expect(files.filter((f) => /^decisions\.w1\.\d{12}\.jsonl$/.test(f)).length).toBeGreaterThan(1);
    expect(files.filter((f) => /^decisions\.w2\.\d{12}\.jsonl$/.test(f)).length).toBeGreaterThan(1);
    const report = await verifyAuditLog(dir);
    expect(report).toMatchObject({ ok: true, missing: [] });
    expect(report.chains.map((c) => [c.name, c.ok])).toEqual([
      ['decisions.w1.jsonl', true],
      ['decisions.w2.jsonl', true],
    ]);
    expect(report.records).toBe(files.length - 2 + 2 + 300); // rotation records, workers records, decisions

    // A rotated file of worker 2 deleted from the middle: that chain breaks, named.
    const w2 = files.filter((f) => f.startsWith('decisions.w2.'));
    await unlink(join(dir, w2[1]!));
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, firstBreak: { file: join(dir, w2[2]!), problem: 'prev_hash_mismatch' } });
    // Worker 2's chain gone altogether: worker 1's workers record names it.
    for (const file of w2) await unlink(join(dir, file)).catch(() => undefined);
    expect(await verifyAuditLog(dir)).toMatchObject({ ok: false, missing: ['decisions.w2.jsonl'] });
  });
});
