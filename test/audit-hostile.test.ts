/**
 * Every answered decision has exactly one audit record, whatever the request carried. Hostile
 * bodies (nested hundreds of thousands of levels, which JSON.parse accepts and a recursive
 * serialiser does not) go through every door that takes a body; each answer's decision id must
 * appear once in the audit file, and the file must verify.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditFile } from '../src/audit/chain.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, startTestSignalbox, type TestSignalbox, decideClient } from './helpers/signalbox.js';

const DEPTH = 200_000;
const HOSTILE: Record<string, string> = {
  'arrays nested 200,000 deep': `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`,
  'objects nested 100,000 deep': `${'{"a":'.repeat(DEPTH / 2)}1${'}'.repeat(DEPTH / 2)}`,
  'a chat whose message content is nested 200,000 deep': `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}]}`,
  'a chat whose tool arguments are nested 100,000 deep': `{"model":"gpt-4o-mini","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":${JSON.stringify(`${'{"a":'.repeat(DEPTH / 2)}1${'}'.repeat(DEPTH / 2)}`)}}}]}]}`,
};

interface DecideResponse {
  decisionId: string;
}

describe('hostile bodies', () => {
  let sb: TestSignalbox;
  let http: string;
  let decide: (req: object) => Promise<DecideResponse>;
  let closeClient: () => void;
  /** Decision ids the doors answered with, by door. */
  const answered: { door: string; id: string | undefined }[] = [];

  beforeAll(async () => {
    sb = await startTestSignalbox(capturedLogger().logger);
    http = `http://127.0.0.1:${sb.running.httpPort}`;
    ({ decide, close: closeClient } = decideClient<DecideResponse>(sb.running.grpcPort));
  });
  afterAll(async () => {
    closeClient?.();
    await sb?.close();
  });

  it.each(Object.entries(HOSTILE))('are decided and recorded through every door: %s', async (_name, body) => {
    const json = { 'content-type': 'application/json' };
    const check = await sb.check(checkRequest({ method: 'POST', path: '/v1/chat/completions', headers: json, body }));
    answered.push({ door: 'envoy.ext_authz.grpc', id: check.dynamicMetadata?.fields?.decision_id?.stringValue });
    const native = await decide({ request: { method: 'POST', path: '/v1/chat/completions', headers: json, body: Buffer.from(body) } });
    answered.push({ door: 'signalbox.v1.grpc', id: native.decisionId });
    const envoyHttp = await fetch(`${http}/authz/envoy/v1/chat/completions`, { method: 'POST', headers: json, body });
    await envoyHttp.arrayBuffer();
    answered.push({ door: 'envoy.ext_authz.http', id: envoyHttp.headers.get('x-signalbox-decision-id') ?? undefined });
    const opa = await fetch(`${http}/v1/data/signalbox/authz/decision`, { method: 'POST', headers: json, body: `{"input":{"attributes":{"request":{"http":{"method":"POST","path":"/v1/chat/completions","body":${JSON.stringify(body)}}}},"parsed_body":${body}}}` });
    const opaBody = (await opa.json()) as { decision_id?: string };
    answered.push({ door: 'opa.rest', id: opaBody.decision_id });
    const litellm = await fetch(`${http}/beta/litellm_basic_guardrail_api`, { method: 'POST', headers: json, body: `{"input_type":"request","texts":["hi"],"request_data":${body},"litellm_call_id":"hostile"}` });
    await litellm.arrayBuffer();
    for (const { door, id } of answered.slice(-4)) expect(id, `${door} answered without a decision id`).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('keys under header and query names no list holds never reach the audit file', async () => {
    const openai = 'sk-NJSy5ZxLfsUCmhozvNxhSmgqDlCnY4EbQWR1NBKGt6HB5ZuL';
    const github = 'ghs_zGrcSKhtqRuu3TzS7GZ4ByRNOSa96B9rEAtl';
    await sb.check(checkRequest({ path: `/v1/models?access=${github}`, headers: { 'x-openai-api-key': openai, 'anthropic-api-key': openai } }));
    await fetch(`${http}/authz/envoy/v1/models?access=${github}`, { headers: { 'openai-api-key': openai } }).then((r) => r.arrayBuffer());
    await sb.running.audit.flush();
    const text = await readFile(sb.auditPath, 'utf8');
    expect(text).not.toContain(openai);
    expect(text).not.toContain(github);
  });

  it('leave exactly one record per decision id, in a file that verifies', async () => {
    await sb.running.audit.flush();
    const records = (await readFile(sb.auditPath, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { decision_id: string; door: string; audit_omitted?: string[] });
    const count = new Map<string, number>();
    for (const record of records) count.set(record.decision_id, (count.get(record.decision_id) ?? 0) + 1);
    for (const { door, id } of answered) expect(count.get(id as string), `${door} decision ${id}`).toBe(1);
    // The LiteLLM door returns no decision id: one record per request there too.
    expect(records.filter((r) => r.door === 'litellm.generic_guardrail_api')).toHaveLength(Object.keys(HOSTILE).length);
    expect(await verifyAuditFile(sb.auditPath)).toMatchObject({ ok: true, records: records.length });
  });
});
