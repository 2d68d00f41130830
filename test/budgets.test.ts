/**
 * Budgets end to end through the default policy and the in-memory store: Envoy Check → reserve
 * → deny with 429 when a budget has no room; usage reports over HTTP and gRPC settle holds to
 * the exact cost; spend is visible over HTTP, gRPC and the CLI; every settlement is audited in
 * the decision chain. (The multi-replica Redis cases are in budgets-redis.test.ts.)
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditFile } from '../src/audit/chain.js';
import { llmFacts } from '../src/inspect/llm.js';
import { PriceTable } from '../src/inspect/prices.js';
import { loadServices } from '../src/transport/protos.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, ADMIN_TOKEN, adminMetadata, checkRequest, headerValue, startTestSignalbox, type CheckResponse, type TestSignalbox } from './helpers/signalbox.js';

const OK = 0;
const prices = PriceTable.default();

function chatBody(maxTokens: number, content = 'Summarise the quarterly report in three bullet points.'): string {
  return JSON.stringify({ model: 'gpt-4o-mini', max_tokens: maxTokens, messages: [{ role: 'user', content }] });
}

/** The estimate Signalbox reserves for a body, in micro-USD, computed by the same code. */
function estimateMicro(body: string): number {
  const facts = llmFacts('/v1/chat/completions', JSON.parse(body), { prices, defaultMaxOutputTokens: 4096 });
  return facts!.estimated_cost_micro_usd!;
}

function decisionId(response: CheckResponse): string {
  return response.dynamicMetadata!.fields!.decision_id!.stringValue!;
}

describe('budgets through the default policy (in-memory store)', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let http: string;
  const logs = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'budgets');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url });
    http = `http://127.0.0.1:${sb.running.httpPort}`;
  });

  afterAll(async () => {
    await sb?.close();
    await jwks?.close();
  });

  async function chat(subject: string, body: string, headers: Record<string, string> = {}): Promise<CheckResponse> {
    const token = await mint(key, { subject });
    return sb.check(checkRequest({ body, token, headers }));
  }

  async function report(body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  async function spend(scope: string, window?: string): Promise<Array<Record<string, number | string>>> {
    const url = new URL(`${http}/v1/spend`);
    url.searchParams.set('scope', scope);
    if (window) url.searchParams.set('window', window);
    const res = await fetch(url, { headers: ADMIN_HEADERS });
    expect(res.status).toBe(200);
    return ((await res.json()) as { budgets: Array<Record<string, number | string>> }).budgets;
  }

  it('holds the estimate, settles to usage × price exactly, and ignores a repeated report', async () => {
    const body = chatBody(500);
    const response = await chat('hold-user', body);
    expect(response.status.code).toBe(OK);
    const id = decisionId(response);
    const estimate = estimateMicro(body);
    const [held] = await spend('user:hold-user', 'day');
    expect(held).toMatchObject({ spent_usd: 0, held_usd: estimate / 1e6, holds: 1, limit_usd: 5 });

    const usage = { prompt_tokens: 21, completion_tokens: 87, prompt_tokens_details: { cached_tokens: 0 } };
    const settled = await report({ decision_id: id, usage });
    expect(settled.status).toBe(200);
    const cost = prices.costMicroUsd('gpt-4o-mini', { input_tokens: 21, cached_input_tokens: 0, output_tokens: 87 })!;
    expect(settled.json).toMatchObject({ decision_id: id, outcome: 'settled', cost_usd: cost / 1e6, held_usd: estimate / 1e6, late: false });
    const again = await report({ decision_id: id, usage: { prompt_tokens: 9999, completion_tokens: 9999 } });
    expect(again.json).toMatchObject({ outcome: 'already_settled', cost_usd: cost / 1e6 });

    for (const scope of ['user:hold-user', 'team:search', 'org:acme']) {
      const [balance] = await spend(scope, scope === 'user:hold-user' ? 'day' : 'month');
      expect(balance).toMatchObject({ held_usd: 0, holds: 0 });
    }
    const [after] = await spend('user:hold-user', 'day');
    expect(after!.spent_usd).toBe(cost / 1e6);
  });

  it('refuses with 429 and names the budget once the user cap has no room', async () => {
    // ci-bot has a $1 daily budget. Three calls settle at $0.30 each; the fourth may cost more
    // than the $0.10 left, so it is refused before it runs.
    for (let i = 0; i < 3; i++) {
      const id = decisionId(await chat('ci-bot', chatBody(100)));
      expect((await report({ decision_id: id, cost_usd: 0.3 })).status).toBe(200);
    }
    const body = chatBody(170_000);
    const estimate = estimateMicro(body);
    expect(estimate).toBeGreaterThan(100_000);
    const refused = await chat('ci-bot', body);
    expect(refused.deniedResponse!.status!.code).toBe(429);
    expect(Number(headerValue(refused.deniedResponse!.headers, 'retry-after'))).toBeGreaterThan(0);
    const error = JSON.parse(refused.deniedResponse!.body!).error;
    expect(error).toMatchObject({
      code: 'budget_exceeded',
      budget: { scope: 'user:ci-bot', window: 'day', limit_usd: 1, spent_usd: 0.9, held_usd: 0, remaining_usd: 0.1 },
      estimated_cost_usd: estimate / 1e6,
    });
    // Nothing was held for the refused request, and a cheaper one still fits.
    const [balance] = await spend('user:ci-bot', 'day');
    expect(balance).toMatchObject({ spent_usd: 0.9, held_usd: 0, holds: 0 });
    expect((await chat('ci-bot', chatBody(1000))).status.code).toBe(OK);
  });

  it('answers 404, 400 and 405 for reports it cannot take', async () => {
    expect((await report({ decision_id: 'no-such-decision', usage: { input_tokens: 1, output_tokens: 1 } })).json).toMatchObject({
      error: { code: 'hold_not_found' },
    });
    const bad = await report({ decision_id: 'x', usage: { input_tokens: -1 } });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ error: { code: 'report_malformed' } });
    const notJson = await fetch(`${http}/v1/report`, { method: 'POST', headers: ADMIN_HEADERS, body: '{' });
    expect(notJson.status).toBe(400);
    expect((await fetch(`${http}/v1/report`)).status).toBe(405);
    expect((await fetch(`${http}/v1/spend?window=fortnight`, { headers: ADMIN_HEADERS })).status).toBe(400);
  });

  it('releases a hold reported as not sent', async () => {
    const response = await chat('release-user', chatBody(100));
    const settled = await report({ decision_id: decisionId(response), outcome: 'not_sent' });
    expect(settled.json).toMatchObject({ outcome: 'settled', cost_usd: 0 });
    const [balance] = await spend('user:release-user', 'day');
    expect(balance).toMatchObject({ spent_usd: 0, held_usd: 0 });
  });

  it('catches an agent repeating the same MCP tool call, per session', async () => {
    const token = await mint(key, { subject: 'agent-1', claims: { roles: ['agent'] } });
    const otherUser = await mint(key, { subject: 'agent-2', claims: { roles: ['agent'] } });
    const call = (session: string, query: string, as = token) =>
      sb.check(
        checkRequest({
          path: '/mcp',
          token: as,
          headers: { 'mcp-session-id': session },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'web_search', arguments: { q: query } } }),
        }),
      );
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await call('sess-a', 'same')).status.code);
    expect(codes).toEqual([OK, OK, OK, 7]);
    const denied = await call('sess-a', 'same');
    expect(denied.deniedResponse!.status!.code).toBe(429);
    expect(JSON.parse(denied.deniedResponse!.body!).error).toMatchObject({ code: 'loop_repeated_call', loop: { session: 'session:agent-1/sess-a', reason: 'repeated_call', count: 4 } });
    // A different session, or a different call, is not a loop; nor is another user naming the
    // same session id (sessions are scoped to the verified user).
    expect((await call('sess-b', 'same')).status.code).toBe(OK);
    expect((await call('sess-a', 'same', otherUser)).status.code).toBe(OK);
    expect((await call('sess-a', 'different')).status.code).toBe(OK);
  });

  it('serves Report and GetSpend over gRPC', async () => {
    const { DecisionService } = loadServices().clients;
    const client = new DecisionService(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (req: object, metadata: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Record<string, unknown>) => void) => void>;
    const call = (method: string, req: object) => new Promise<Record<string, unknown>>((resolve, reject) => client[method]!(req, adminMetadata(), (e, r) => (e ? reject(e) : resolve(r))));
    try {
      const id = decisionId(await chat('grpc-user', chatBody(200)));
      const settled = await call('Report', { decisionId: id, usage: { inputTokens: 30, outputTokens: 40 } });
      const cost = prices.costMicroUsd('gpt-4o-mini', { input_tokens: 30, cached_input_tokens: 0, output_tokens: 40 })!;
      expect(settled).toMatchObject({ decisionId: id, outcome: 'settled', costUsd: cost / 1e6, late: false });
      const spent = await call('GetSpend', { scope: 'user:grpc-user', window: 'day' });
      expect(spent.budgets).toEqual([expect.objectContaining({ scope: 'user:grpc-user', window: 'day', spentUsd: cost / 1e6, heldUsd: 0 })]);
      await expect(call('Report', { decisionId: 'missing', usage: { inputTokens: 1 } })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      await expect(call('Report', { decisionId: '' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    } finally {
      client.close();
    }
  });

  it('prints spend from the CLI', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'spend', '--url', http, '--scope', 'user:ci-bot'], { cwd: process.cwd(), env: { ...process.env, SIGNALBOX_ADMIN_TOKEN: ADMIN_TOKEN } });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^SCOPE\s+WINDOW\s+PERIOD\s+LIMIT_USD\s+SPENT_USD\s+HELD_USD\s+REMAINING_USD\s+HOLDS$/);
    expect(lines.some((l) => /^user:ci-bot\s+day\s+d\d{4}-\d\d-\d\d\s+1\.000000/.test(l))).toBe(true);
    const json = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'spend', '--url', http, '--scope', 'user:ci-bot', '--window', 'day', '--json'], { cwd: process.cwd(), env: { ...process.env, SIGNALBOX_ADMIN_TOKEN: ADMIN_TOKEN } });
    expect(JSON.parse(json.stdout).budgets[0]).toMatchObject({ scope: 'user:ci-bot', window: 'day' });
  });

  it('audits reservations and settlements in one intact chain, without prompt text', async () => {
    await sb.running.audit.flush();
    const lines = (await readFile(sb.auditPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const settlement = lines.find((l) => l.type === 'settlement');
    expect(settlement).toMatchObject({ report_outcome: 'completed', late: false });
    const reserved = lines.find((l) => (l.enforcement as { outcome?: string } | undefined)?.outcome === 'reserved');
    expect(reserved).toBeDefined();
    const denied = lines.find((l) => (l.enforcement as { reason?: string } | undefined)?.reason === 'budget.exceeded');
    expect(denied).toMatchObject({ decision: { allowed: false, http_status: 429, reasons: ['budget.exceeded'] } });
    expect(JSON.stringify(lines)).not.toContain('quarterly report');
    expect((await verifyAuditFile(sb.auditPath)).ok).toBe(true);
  });
});
