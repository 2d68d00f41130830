import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../src/core/canonical-json.js';
import { GENESIS_HASH, verifyAuditFile, writableRecord } from '../src/audit/chain.js';
import { FileAuditLog } from '../src/audit/log.js';
import { jsonByteLength, maskInput } from '../src/audit/mask.js';
import { containsSecret } from '../src/inspect/content/detectors.js';
import { parseConfig } from '../src/config/load.js';
import { maskedHeaders } from '../src/app/app.js';
import { capturedLogger } from './helpers/logs.js';

const run = promisify(execFile);

async function writeLog(records: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-audit-'));
  const path = join(dir, 'audit.jsonl');
  const log = await FileAuditLog.open(path, capturedLogger().logger);
  for (let i = 0; i < records; i++) log.append({ decision_id: `d${i}`, decision: { allowed: i % 2 === 0 } });
  await log.close();
  return path;
}

async function lines(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).trim().split('\n');
}

/** Runs the real CLI, as an operator would. */
async function cliVerify(path: string): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run('npx', ['tsx', 'src/cli/main.ts', 'audit', 'verify', path], { cwd: join(import.meta.dirname, '..') });
    return { code: 0, stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

describe('audit hash chain', () => {
  it('canonical JSON sorts keys at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}');
  });

  it('chains records from the genesis hash and verifies a clean log', async () => {
    const path = await writeLog(5);
    const records = (await lines(path)).map((l) => JSON.parse(l) as { seq: number; prev_hash: string; hash: string });
    expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(records[0]!.prev_hash).toBe(GENESIS_HASH);
    expect(records[1]!.prev_hash).toBe(records[0]!.hash);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 5 });
    const cli = await cliVerify(path);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^ok: 5 records/);
  });

  it('reports an edited record at its line and exits non-zero', async () => {
    const path = await writeLog(5);
    const all = await lines(path);
    all[2] = all[2]!.replace('"allowed":true', '"allowed":false');
    await writeFile(path, `${all.join('\n')}\n`);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 3, seq: 3, problem: 'hash_mismatch' });
    const cli = await cliVerify(path);
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/^audit_chain_broken: line 3 \(seq 3\): hash_mismatch/);
  });

  it('reports a deleted record where the gap starts', async () => {
    const path = await writeLog(5);
    const all = await lines(path);
    all.splice(1, 1);
    await writeFile(path, `${all.join('\n')}\n`);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 2, seq: 3, problem: 'seq_gap' });
    expect((await cliVerify(path)).code).toBe(1);
  });

  it('reports the deletion of the first record', async () => {
    const path = await writeLog(3);
    const all = await lines(path);
    await writeFile(path, `${all.slice(1).join('\n')}\n`);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 1, problem: 'seq_gap' });
  });

  it('reports two swapped records', async () => {
    const path = await writeLog(5);
    const all = await lines(path);
    [all[3], all[4]] = [all[4]!, all[3]!];
    await writeFile(path, `${all.join('\n')}\n`);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 4, seq: 5, problem: 'seq_gap' });
  });

  it('reports a record whose seq was rewritten to hide a swap (prev_hash still breaks)', async () => {
    const path = await writeLog(4);
    const records = (await lines(path)).map((l) => JSON.parse(l) as Record<string, unknown>);
    const { chainRecordInto } = await import('../src/audit/chain.js');
    const { LineChunks } = await import('../src/audit/line-chunks.js');
    // Swap records 2 and 3 and recompute their seq and own hash, as a careful forger would
    // (keeping each one's prev_hash, which the forger cannot fix without rewriting the rest).
    const forged = (r: Record<string, unknown>, seq: number): string => {
      const { seq: _s, prev_hash: prev, hash: _h, ...rest } = r;
      return chainRecordInto(new LineChunks(), rest, seq, prev as string).bytes.toString('utf8').trimEnd();
    };
    const swapped = [JSON.stringify(records[0]), forged(records[2]!, 2), forged(records[1]!, 3), JSON.stringify(records[3])];
    await writeFile(path, `${swapped.join('\n')}\n`);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 2, problem: 'prev_hash_mismatch' });
  });

  it('encodes lines one after another with no byte between them, so a batch is one range to write', async () => {
    const { chainRecordInto, GENESIS_HASH } = await import('../src/audit/chain.js');
    const { LineChunks } = await import('../src/audit/line-chunks.js');
    const chunks = new LineChunks();
    let prev = GENESIS_HASH;
    const chained = [];
    for (let seq = 1; seq <= 3; seq++) {
      const line = chainRecordInto(chunks, { decision_id: `d-${seq}`, note: 'é'.repeat(seq) }, seq, prev);
      prev = line.hash;
      chained.push(line);
    }
    for (let i = 1; i < chained.length; i++) {
      expect(chained[i]!.bytes.buffer).toBe(chained[0]!.bytes.buffer);
      expect(chained[i]!.bytes.byteOffset).toBe(chained[i - 1]!.bytes.byteOffset + chained[i - 1]!.bytes.length);
    }
    const text = Buffer.concat(chained.map((c) => c.bytes)).toString('utf8');
    expect(text.split('\n').slice(0, -1).map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3]);
  });

  it('reports a line that is not JSON', async () => {
    const path = await writeLog(2);
    await appendFile(path, 'garbage\n');
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 3, problem: 'malformed' });
  });

  it('continues the chain across restarts', async () => {
    const path = await writeLog(3);
    const log = await FileAuditLog.open(path, capturedLogger().logger);
    log.append({ decision_id: 'after-restart' });
    await log.close();
    const report = await verifyAuditFile(path);
    expect(report).toMatchObject({ ok: true, records: 4 });
  });

  it('a torn final write: verify says so (not an edit); the writer moves it aside and the chain continues intact', async () => {
    const path = await writeLog(2);
    await appendFile(path, '{"decision_id":"torn","se');
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 3, problem: 'torn_tail' });
    expect(await cliVerify(path)).toMatchObject({ code: 1, stdout: expect.stringMatching(/^audit_tail_torn: line 3: torn_tail/) });
    const captured = capturedLogger();
    const log = await FileAuditLog.open(path, captured.logger);
    log.append({ decision_id: 'next' });
    await log.close();
    const warned = captured.lines().find((l) => l.code === 'audit_tail_torn') as { torn_file: string; bytes: number } | undefined;
    expect(warned).toMatchObject({ bytes: 25 });
    expect(await readFile(warned!.torn_file, 'utf8')).toBe('{"decision_id":"torn","se');
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 3 });
    expect(captured.lines().some((l) => l.code === 'audit_chain_broken')).toBe(false);
  });

  it('zero bytes the disk never wrote, after a complete line or a partial one, are moved aside too', async () => {
    for (const tail of [Buffer.alloc(4096), Buffer.concat([Buffer.from('{"decision_id":"x"'), Buffer.alloc(100)])]) {
      const path = await writeLog(3);
      await appendFile(path, tail);
      expect((await verifyAuditFile(path)).firstBreak?.problem ?? 'ok').toMatch(/^(torn_tail|ok)$/);
      const log = await FileAuditLog.open(path, capturedLogger().logger);
      log.append({ decision_id: 'after' });
      await log.close();
      expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 4 });
    }
  });

  it('keeps a record written whole but for its newline', async () => {
    const path = await writeLog(2);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, -1));
    const captured = capturedLogger();
    const log = await FileAuditLog.open(path, captured.logger);
    log.append({ decision_id: 'next' });
    await log.close();
    expect(captured.lines().some((l) => l.code === 'audit_tail_torn')).toBe(false);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 3 });
  });

  it('never moves an edited last record aside: the chain continues after it and verify still reports the edit', async () => {
    const path = await writeLog(3);
    const all = await lines(path);
    await writeFile(path, `${[...all.slice(0, 2), all[2]!.replace('"d2"', '"dX"')].join('\n')}\n`);
    const captured = capturedLogger();
    const log = await FileAuditLog.open(path, captured.logger);
    log.append({ decision_id: 'next' });
    await log.close();
    expect(captured.lines().some((l) => l.code === 'audit_chain_broken')).toBe(true);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 3, problem: 'hash_mismatch' });
    expect(await lines(path)).toHaveLength(4);
  });

  it('recovers whatever the size of the file and of the torn write', async () => {
    const path = await writeLog(2_000);
    // A torn write larger than any fixed tail window (the old recovery read the last 1 MiB).
    await appendFile(path, `{"decision_id":"big","input":"${'x'.repeat(3 * 1024 * 1024)}`);
    const log = await FileAuditLog.open(path, capturedLogger().logger);
    log.append({ decision_id: 'after' });
    await log.close();
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 2_001 });
  });

  it('does not throw when the file cannot be written; the failure is logged with its code', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-audit-'));
    const captured = capturedLogger();
    // A directory where the file should be: open() fails with a clear code.
    await expect(FileAuditLog.open(dir, captured.logger)).rejects.toMatchObject({ code: 'audit_write_failed' });
  });
});

describe('hash forms', () => {
  it('verifies a file whose older records hashed canonical JSON, continued by records hashing their text', async () => {
    const { createHash } = await import('node:crypto');
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-audit-'));
    const path = join(dir, 'audit.jsonl');
    // Two records as the previous writer made them: hash = SHA-256 of the canonical JSON.
    let prev = GENESIS_HASH;
    const old: string[] = [];
    for (let seq = 1; seq <= 2; seq++) {
      const record = { decision_id: `old${seq}`, z: 1, a: { y: 2, b: 3 }, seq, prev_hash: prev };
      const hash = createHash('sha256').update(canonicalJson(record)).digest('hex');
      old.push(`${canonicalJson(record).slice(0, -1)},"hash":"${hash}"}`);
      prev = hash;
    }
    await writeFile(path, `${old.join('\n')}\n`);
    const log = await FileAuditLog.open(path, capturedLogger().logger);
    log.append({ decision_id: 'new', z: 1, a: { y: 2, b: 3 } });
    await log.close();
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 3 });
    // Any edit of the bytes, even one a canonical form would not see, breaks the new record.
    const all = await lines(path);
    await writeFile(path, `${[...all.slice(0, 2), all[2]!.replace('"z":1,"a":{"y":2,"b":3}', '"a":{"y":2,"b":3},"z":1')].join('\n')}\n`);
    expect((await verifyAuditFile(path)).firstBreak).toMatchObject({ line: 3, problem: 'hash_mismatch' });
  });
});

describe('bounded serialisation', () => {
  it('measures a body exactly as JSON.stringify would write it, without recursion', () => {
    for (const value of [{ a: [1, 'é', null, true, { 'k"ey': 'v\n' }], b: {} }, [], 'plain', 12.5, [[[]]], { u: undefined, x: [undefined] }]) {
      expect(jsonByteLength(value)).toBe(Buffer.byteLength(JSON.stringify(value)));
    }
    const deep = JSON.parse(`${'['.repeat(300_000)}${']'.repeat(300_000)}`) as unknown;
    expect(jsonByteLength(deep)).toBe(600_000);
  });

  it('replaces a field JSON cannot write by why, and names it', () => {
    const deep = JSON.parse(`${'['.repeat(200_000)}${']'.repeat(200_000)}`) as unknown;
    const record = writableRecord({ decision_id: 'd', result: deep, amount: 10n, decision: { allowed: false } });
    expect(record).toMatchObject({ decision_id: 'd', result: { omitted: expect.stringMatching(/call stack/) }, amount: { omitted: expect.stringMatching(/BigInt/) }, decision: { allowed: false }, audit_omitted: ['result', 'amount'] });
    expect(() => JSON.stringify(record)).not.toThrow();
  });

  it('the writer records a failure in place of a record it cannot write at all, and a throwing shipper stops nothing', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'signalbox-audit-')), 'audit.jsonl');
    const logs = capturedLogger();
    const shipped: string[] = [];
    const log = await FileAuditLog.open(path, logs.logger, {
      onLine: (line) => {
        shipped.push(line);
        throw new Error('shipper broke its contract');
      },
    });
    // Serialises only when writableRecord checks it: the writer's two attempts both fail.
    let calls = 0;
    const treacherous = {
      toJSON(): unknown {
        calls += 1;
        if (calls === 2) return 'fine';
        throw new Error('not this time');
      },
    };
    log.append({ decision_id: 'before' });
    log.append({ decision_id: 'unlucky', result: treacherous });
    log.append({ decision_id: 'after' });
    await log.flush();
    const records = (await lines(path)).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.map((r) => r.decision_id)).toEqual(['before', 'unlucky', 'after']);
    expect(records[1]).toMatchObject({ type: 'unwritable', reason: expect.stringContaining('not this time') });
    expect(shipped).toHaveLength(3);
    expect(logs.lines().some((l) => l.code === 'audit_write_failed')).toBe(true);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, records: 3 });
    await log.close();
  });
});

describe('input masking', () => {
  it('masks every header a credential can travel in, not only the configured list', () => {
    const config = parseConfig(
      'identity:\n  header: x-user-token\nrouting:\n  providers:\n    acme-llm: { credential_header: X-Acme-Key }\n',
      {},
      'test',
    );
    const masked = maskedHeaders(config);
    for (const name of ['authorization', 'x-api-key', 'api-key', 'x-goog-api-key', 'x-acme-key', 'x-user-token', 'proxy-authorization', 'cookie']) {
      expect(masked.has(name), name).toBe(true);
    }
    expect(masked.has('content-type')).toBe(false);
  });

  const input = {
    attributes: {
      request: {
        http: {
          headers: { authorization: 'Bearer secret.token.value', 'content-type': 'application/json', 'x-api-key': 'sk-live-123' },
          path: '/v1/chat?api_key=sk-abc&model=x',
          query: 'api_key=sk-abc&model=x',
          body: '{"messages":[{"content":"private prompt"}]}',
        },
      },
    },
    parsed_query: { api_key: ['sk-abc'], model: ['x'] },
    parsed_body: { messages: [{ content: 'private prompt' }] },
  };

  it('masks a credential by its value under any header or query name, by the secret detectors', () => {
    const openai = 'sk-68wnQrnynySgKWW3QWXnZI2IijRJ9VlexhNA7bpZKUhTs1jV';
    const anthropic = 'sk-ant-api03-Hhr0PF6iEZbuyf6qdNPcPfiRitg4TsLwEHbfrgJJ';
    const github = 'ghp_3SlNmEJfwMvKk9VhfB5DZZrEV6pLftoVibbL';
    const keyed = {
      attributes: {
        request: {
          http: {
            headers: { 'anthropic-api-key': anthropic, 'x-openai-api-key': openai, 'x-upstream-auth': `token ${github}`, 'user-agent': 'curl/8.5.0' },
            headerMap: { headers: [{ key: 'x-openai-api-key', value: openai }, { key: 'accept', value: '*/*' }] },
            path: `/v1/chat?q=${github}&model=x`,
            query: `q=${github}&model=x`,
          },
        },
      },
      parsed_query: { q: [github], model: ['x'] },
    };
    const masked = JSON.stringify(maskInput(keyed, new Set(['authorization']), containsSecret));
    for (const secret of [openai, anthropic, github]) expect(masked).not.toContain(secret);
    expect(masked).toContain('curl/8.5.0');
    expect(masked).toContain('"model":["x"]');
    expect(masked).toContain('*/*');
    // Without the detector, only names count: the keys would have been written in clear.
    expect(JSON.stringify(maskInput(keyed, new Set(['authorization'])))).toContain(openai);
  });

  it('masks credentials, bodies and secret query values, and leaves the original untouched', () => {
    const masked = maskInput(input, new Set(['authorization', 'x-api-key']));
    const text = JSON.stringify(masked);
    expect(text).not.toContain('secret.token.value');
    expect(text).not.toContain('sk-live-123');
    expect(text).not.toContain('sk-abc');
    expect(text).not.toContain('private prompt');
    expect(text).toContain('"model":["x"]');
    expect(text).toContain('application/json');
    expect(input.attributes.request.http.headers.authorization).toBe('Bearer secret.token.value');
  });
});
