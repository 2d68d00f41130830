/**
 * Envoy's ext_proc filter, end to end: the real Envoy runs examples/envoy/envoy-ext-proc.yaml
 * (addresses moved to loopback by test/helpers/envoy.ts) with a real Signalbox as its external
 * processor, in front of a fake OpenAI / Anthropic / MCP upstream that streams. Signalbox runs
 * the shipped default policy and bundle (budgets, content rules, the response rule).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEnvoyExample, type RunningEnvoy } from './helpers/envoy.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';
import { PriceTable } from '../src/inspect/prices.js';

interface Outcome {
  status: number;
  headers: Record<string, string>;
  body: string;
}

async function send(url: string, path: string, init: { headers?: Record<string, string>; body?: string; method?: string } = {}): Promise<Outcome> {
  const response = await fetch(`${url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  return { status: response.status, headers: Object.fromEntries(response.headers.entries()), body: await response.text() };
}

const CARD = '4111 1111 1111 1111';
const USAGE = { prompt_tokens: 31, completion_tokens: 23 };

let key: SigningKey;
let jwks: JwksServer;
let sb: TestSignalbox;
const logs = capturedLogger();
const prices = PriceTable.default();

/** A caller with its own subject, so each test reads its own budget. */
async function caller(subject: string, roles = ['llm-user']): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await mint(key, { subject, claims: { roles } })}`, 'content-type': 'application/json' };
}

async function spend(subject: string): Promise<{ spent_usd: number; held_usd: number; holds: number }> {
  const res = await fetch(`http://127.0.0.1:${sb.running.httpPort}/v1/spend?scope=user:${subject}&window=day`, { headers: ADMIN_HEADERS });
  const body = (await res.json()) as { budgets: Array<{ spent_usd: number; held_usd: number; holds: number }> };
  return body.budgets[0] ?? { spent_usd: 0, held_usd: 0, holds: 0 };
}

/** Spend once the answer's settlement landed (it is written after the last byte left). */
async function settledSpend(subject: string): Promise<{ spent_usd: number; held_usd: number; holds: number }> {
  let current = await spend(subject);
  for (let i = 0; i < 50 && current.holds > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    current = await spend(subject);
  }
  return current;
}

function usd(model: string, usage: { input_tokens: number; output_tokens: number }): number {
  return Number(prices.costMicroUsd(model, { ...usage, cached_input_tokens: 0 })) / 1e6;
}

async function auditRecords(): Promise<Array<Record<string, unknown>>> {
  return (await readFile(sb.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function responseRecord(decisionId: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50; i++) {
    const found = (await auditRecords()).find((r) => r.type === 'response' && r.decision_id === decisionId);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no response record for ${decisionId}`);
}

beforeAll(async () => {
  key = await signingKey('ES256', 'envoy-ext-proc');
  jwks = await JwksServer.start([key.publicJwk]);
  sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url });
}, 120_000);

afterAll(async () => {
  await sb?.close();
  await jwks?.close();
});

describe('Envoy ext_proc (examples/envoy/envoy-ext-proc.yaml, the real Envoy)', () => {
  let upstream: FakeLlm;
  let envoy: RunningEnvoy;

  beforeAll(async () => {
    upstream = await FakeLlm.start({
      usage: USAGE,
      reply: 'Write to me at jane.doe@example.com any time.',
      replyPieces: ['Your card ', '4111', ' 11', '11 1', '111', ' 1', '111', ' is on file.'],
      eventDelayMs: 5,
      streamUsage: 'when_asked',
      toolResult: 'The page says: contact ops@example.com',
    });
    envoy = await startEnvoyExample('examples/envoy/envoy-ext-proc.yaml', { clusters: { signalbox: sb.running.grpcPort, llm_upstream: upstream.port } });
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await upstream?.close();
  });

  it('denies without a token with 401 and the JSON body Check answers with; nothing reaches the upstream', async () => {
    const before = upstream.seen.length;
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
    expect(outcome.status, envoy.log()).toBe(401);
    expect(outcome.headers['content-type']).toBe('application/json');
    expect(outcome.headers['www-authenticate']).toContain('Bearer');
    expect((JSON.parse(outcome.body) as { error: { code: string } }).error.code).toBe('identity.token_missing');
    expect(upstream.seen.length).toBe(before);
  });

  it('denies on the request body (a tool the role does not grant), decided on the body Envoy buffered for it', async () => {
    const before = upstream.seen.length;
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'delete_repo', parameters: {} } }] });
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: await caller('dave'), body });
    expect(outcome.status, envoy.log()).toBe(403);
    expect((JSON.parse(outcome.body) as { error: { reasons: string[] } }).error.reasons).toContain('tool.not_allowed');
    expect(upstream.seen.length).toBe(before);
  });

  it('allows: the upstream sees verified identity, no authorization, no forged x-signalbox-*; the hold settles to usage × price exactly', async () => {
    const headers = { ...(await caller('erin')), 'x-signalbox-user': 'mallory', 'x-signalbox-team': 'forged' };
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }) });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    const seen = upstream.last()!;
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-signalbox-user']).toBe('erin');
    expect(seen.headers['x-signalbox-team']).toBe('search');
    expect(outcome.headers['x-signalbox-decision-id']).toMatch(/^[0-9a-f-]{36}$/);
    // The answer carried an email: the default policy redacts it on the way back.
    expect(outcome.body).not.toContain('jane.doe@example.com');
    expect(outcome.body).toContain('[REDACTED:email]');
    expect(Number(outcome.headers['content-length'])).toBe(Buffer.byteLength(outcome.body));
    const settled = await settledSpend('erin');
    expect(settled).toMatchObject({ held_usd: 0, holds: 0 });
    expect(settled.spent_usd).toBeCloseTo(usd('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
    const record = await responseRecord(outcome.headers['x-signalbox-decision-id']!);
    expect(record).toMatchObject({ action: 'redacted', settlement: 'provider_usage', door: 'envoy.ext_proc' });
    expect(JSON.stringify(record)).not.toContain('jane.doe');
  });

  it('streams: a card number typed over several events is stopped before any digit of it leaves', async () => {
    const outcome = await send(envoy.url, '/v1/chat/completions', {
      headers: await caller('frank'),
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'my card?' }] }),
    });
    expect(outcome.status).toBe(200);
    expect(outcome.headers['content-type']).toContain('text/event-stream');
    const text = outcome.body;
    expect(text.replace(/[^0-9]/g, '')).not.toContain('4111');
    expect(text).toContain('content.payment_card');
    // What was delivered before the block is settled (the provider's final usage never came).
    const settled = await settledSpend('frank');
    expect(settled).toMatchObject({ held_usd: 0, holds: 0 });
    expect(settled.spent_usd).toBeGreaterThan(0);
  });

  it('MCP tools/list offers only the tools a tools/call would be allowed for', async () => {
    const outcome = await send(envoy.url, '/mcp', {
      headers: await caller('gina', ['agent']),
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
    });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    const names = (JSON.parse(outcome.body) as { result: { tools: Array<{ name: string }> } }).result.tools.map((t) => t.name);
    expect(names).toEqual(['web_search', 'fetch_url']);
    const record = await responseRecord(outcome.headers['x-signalbox-decision-id']!);
    expect(record).toMatchObject({ action: 'filtered', tools_removed: ['delete_repo'] });
  });

  it('a card in the request is still blocked by the request rule (403), before the upstream', async () => {
    const before = upstream.seen.length;
    const outcome = await send(envoy.url, '/v1/chat/completions', {
      headers: await caller('hank'),
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `my card ${CARD}` }] }),
    });
    expect(outcome.status).toBe(403);
    expect(upstream.seen.length).toBe(before);
  });
});
