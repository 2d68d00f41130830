/**
 * audit.input: summary keeps who asked, through which door, for what and what was found, under
 * the paths the full input has them, with the body's size and SHA-256 instead of the body and
 * no headers: smaller records, and still one per decision, in a chain that verifies.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditFile } from '../src/audit/chain.js';
import { parseConfig } from '../src/config/load.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

type AuditRecord = { decision_id?: string; input: Record<string, unknown>; result: unknown; decision: { allowed: boolean } };

async function records(path: string): Promise<AuditRecord[]> {
  return (await readFile(path, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as AuditRecord);
}

const SECRET_PROMPT = 'Summarise the merger memo for Project Kestrel.';
const body = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'user', content: SECRET_PROMPT },
    { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'web_search', arguments: JSON.stringify({ query: 'kestrel merger' }) } }] },
  ],
  tools: [{ type: 'function', function: { name: 'web_search', parameters: { type: 'object' } } }],
});

describe('audit.input', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let full: TestSignalbox;
  let summary: TestSignalbox;

  beforeAll(async () => {
    key = await signingKey('ES256', 'audit-summary');
    jwks = await JwksServer.start([key.publicJwk]);
    full = await startTestSignalbox(capturedLogger().logger, { jwksUrl: jwks.url });
    summary = await startTestSignalbox(capturedLogger().logger, { jwksUrl: jwks.url, yaml: 'audit:\n  input: summary\n' });
  }, 60_000);

  afterAll(async () => {
    await full?.close();
    await summary?.close();
    await jwks?.close();
  });

  it('is full by default', () => {
    expect(parseConfig('', {}).audit.input).toBe('full');
  });

  it('keeps identity, door, LLM facts, findings and tool names at their usual paths, the body as size and digest, and no headers or prompt', async () => {
    const token = await mint(key, { subject: 'alice' });
    const request = checkRequest({ token, body });
    await full.check(request);
    await summary.check(request);
    await full.running.audit.flush();
    await summary.running.audit.flush();
    const [fullRecord] = (await records(full.auditPath)).filter((r) => r.decision_id);
    const [summaryRecord] = (await records(summary.auditPath)).filter((r) => r.decision_id);
    expect(fullRecord!.decision).toEqual(summaryRecord!.decision);
    const input = summaryRecord!.input;
    expect(input.summary).toBe(true);
    expect(input.request).toEqual({
      method: 'POST',
      path: '/v1/chat/completions',
      host: 'llm.internal',
      body_bytes: Buffer.byteLength(body),
      body_sha256: createHash('sha256').update(body).digest('hex'),
    });
    expect(input.identity).toMatchObject({ verified: true, subject: 'alice', team: 'search', tenant: 'acme', roles: ['llm-user'] });
    expect(input.door).toEqual(fullRecord!.input.door);
    expect(input.llm).toEqual(fullRecord!.input.llm);
    expect(input.content).toEqual(fullRecord!.input.content);
    expect(input.tool_calls).toEqual([{ name: 'web_search', source: 'openai.chat' }]);
    for (const left of ['attributes', 'parsed_body', 'spend', 'providers', 'credentials']) expect(input).not.toHaveProperty(left);
    const text = JSON.stringify(summaryRecord);
    expect(text).not.toContain(SECRET_PROMPT);
    expect(text).not.toContain('kestrel merger');
    expect(text).not.toContain(token);
    // The result keeps what was decided and enforced, not the HTTP response it shaped.
    expect(summaryRecord!.result).toMatchObject({ allowed: true });
    expect(summaryRecord!.result).not.toHaveProperty('headers');
    expect(text.length).toBeLessThan(JSON.stringify(fullRecord).length * 0.7);
  });

  it('records a denial the same way, and the file verifies', async () => {
    await summary.check(checkRequest({ body }));
    await summary.running.audit.flush();
    const all = (await records(summary.auditPath)).filter((r) => r.decision_id);
    const denied = all.find((r) => !r.decision.allowed)!;
    expect(denied.input.identity).toMatchObject({ verified: false, error: { code: 'token_missing' } });
    await summary.running.close();
    expect(await verifyAuditFile(summary.auditPath)).toMatchObject({ ok: true });
  });
});
