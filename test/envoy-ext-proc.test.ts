/**
 * Envoy's ext_proc filter, end to end: the real Envoy runs examples/envoy/envoy-ext-proc.yaml
 * (addresses moved to loopback by test/helpers/envoy.ts) with a real Signalbox as its external
 * processor, in front of a fake OpenAI / Anthropic / MCP upstream that streams. Signalbox runs
 * the shipped default policy and bundle (budgets, content rules, the response rule).
 */
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecords, decisionRecord, responseRecord as recordOf, settledSpendOf, streamedText, usdOf as usd } from './helpers/answers.js';
import { startEnvoyExample, type RunningEnvoy } from './helpers/envoy.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

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
const EMAIL_PIECES = ['Write to ', 'jane', '.doe', '@exa', 'mple', '.com', ' any time.'];
const LONG_PIECES = Array.from({ length: 30 }, (_, i) => `Sentence number ${i + 1} of a long and harmless answer. `);
/** A card early, and another one long after it: nothing after the first may leave. */
const CARD_THEN_MORE_PIECES = ['Your card ', '4111', ' 1111', ' 1111', ' 1111', ' is on file.', ...Array.from({ length: 8 }, () => ' Some more harmless words here.'), ' Also 5500 0000 0000 0004 works.', ' The end.'];
/** Long in time too (200 events, 5 ms apart): a client can go away in the middle of it. */
const ENDLESS_PIECES = Array.from({ length: 200 }, (_, i) => `Part ${i + 1} of an answer nobody waits for. `);

let key: SigningKey;
let jwks: JwksServer;
let sb: TestSignalbox;
const logs = capturedLogger();

/** A caller with its own subject, so each test reads its own budget. */
async function caller(subject: string, roles = ['llm-user']): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await mint(key, { subject, claims: { roles } })}`, 'content-type': 'application/json' };
}

const settledSpend = (subject: string): ReturnType<typeof settledSpendOf> => settledSpendOf(sb, subject);
const responseRecord = (decisionId: string): Promise<Record<string, unknown>> => recordOf(sb, decisionId);

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
      scripts: {
        'split email please': { pieces: EMAIL_PIECES },
        'long please': { pieces: LONG_PIECES },
        'endless please': { pieces: ENDLESS_PIECES },
        'card then more please': { pieces: CARD_THEN_MORE_PIECES },
      },
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
    // The client saw nothing after the block, but the provider billed the whole answer: the rest
    // of the stream is read for its final usage chunk, and the hold settles to it exactly.
    const settled = await settledSpend('frank');
    expect(settled).toMatchObject({ held_usd: 0, holds: 0 });
    expect(settled.spent_usd).toBeCloseTo(usd('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
  });

  const streamed = (text: string): string =>
    JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: text }] });

  it('streams: once a stream is blocked, nothing more of it leaves (not a later secret, not its usage, not a second [DONE])', async () => {
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: await caller('gwen'), body: streamed('card then more please') });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(streamedText(outcome.body)).not.toMatch(/[0-9]/);
    expect(outcome.body).not.toMatch(/5500|works|The end|"usage"/);
    expect(outcome.body).toMatch(/"code":"content\.payment_card"\}\}\n\ndata: \[DONE\]\n\n$/);
  });

  it('streams: an email typed over several events is masked; no piece of it leaves', async () => {
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: await caller('ivy'), body: streamed('split email please') });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(outcome.headers['content-type']).toContain('text/event-stream');
    expect(streamedText(outcome.body)).toBe('Write to [REDACTED:email] any time.');
    expect(outcome.body).not.toMatch(/jane|\.doe|@exa/);
    const record = await responseRecord(outcome.headers['x-signalbox-decision-id']!);
    expect(record).toMatchObject({ action: 'redacted', stream: true, settlement: 'provider_usage', door: 'envoy.ext_proc' });
  });

  it('streams: settles from the include_usage chunk to the micro-dollar, no hold left', async () => {
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: await caller('jack'), body: streamed('long please') });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(streamedText(outcome.body)).toBe(LONG_PIECES.join(''));
    expect(outcome.body).toContain('"usage":{"prompt_tokens":31');
    const settled = await settledSpend('jack');
    expect(settled).toMatchObject({ held_usd: 0, holds: 0 });
    expect(settled.spent_usd).toBeCloseTo(usd('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
  });

  it('streams: a client that goes away mid-stream leaves no hold; what left is settled, not the whole answer', async () => {
    const controller = new AbortController();
    const response = await fetch(`${envoy.url}/v1/chat/completions`, { method: 'POST', headers: await caller('kate'), body: streamed('endless please'), signal: controller.signal });
    expect(response.status).toBe(200);
    const decisionId = response.headers.get('x-signalbox-decision-id')!;
    const reader = response.body!.getReader();
    let received = '';
    while (!received.includes('Part 3 ')) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended before the client left');
      received += Buffer.from(value).toString('utf8');
    }
    controller.abort();
    const record = await responseRecord(decisionId);
    expect(record).toMatchObject({ action: 'aborted', settlement: 'counted' });
    const settled = await settledSpend('kate');
    expect(settled).toMatchObject({ held_usd: 0, holds: 0 });
    // At least what the client read, far less than the whole answer (the upstream was cut off too).
    const inputTokens = ((await decisionRecord(sb, decisionId)).input as { llm: { input_tokens: number } }).llm.input_tokens;
    const complete = streamedText(received.slice(0, received.lastIndexOf('\n\n') + 2));
    expect(settled.spent_usd).toBeGreaterThanOrEqual(usd('gpt-4o-mini', { input_tokens: inputTokens, output_tokens: countTokens(complete) }));
    expect(settled.spent_usd).toBeLessThan(usd('gpt-4o-mini', { input_tokens: inputTokens, output_tokens: countTokens(ENDLESS_PIECES.join('')) }));
    expect(upstream.seen.at(-1)?.body).toContain('endless please');
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

  it('under sustained load Envoy keeps its one connection (the example turns on graceful close, so streams are not reset)', async () => {
    // Without envoy.reloadable_features.ext_proc_graceful_grpc_close Envoy resets every ext_proc
    // stream, and Node's HTTP/2 server (nghttp2's rapid-reset guard: a burst of 1,000, then 33 a
    // second) drops a connection that receives more, failing the requests in flight on it
    // (7 of 2,400 answered 500 in a run without the flag). 2,400 exchanges at 16 in flight cross that.
    const stats = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${envoy.adminPort}/stats?filter=cluster.signalbox.upstream_cx_total`)).text();
      return Number(/upstream_cx_total: (\d+)/.exec(text)?.[1] ?? NaN);
    };
    const connectionsBefore = await stats();
    const tokens = await Promise.all(Array.from({ length: 100 }, (_, i) => caller(`load-${i}`)));
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < 2400; i = next++) {
          // Half denied on the headers (an immediate response), half allowed with an answer to read.
          const headers = i % 2 === 0 ? {} : tokens[i % 100]!;
          const response = await fetch(`${envoy.url}/v1/models`, { headers });
          await response.arrayBuffer();
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        }
      }),
    );
    expect(Object.fromEntries(statuses), envoy.log()).toEqual({ 200: 1200, 401: 1200 });
    // At most the one connection a fresh Envoy opens; none dropped and reopened.
    expect(await stats()).toBeLessThanOrEqual(Math.max(connectionsBefore, 1));
  }, 120_000);

  it('records one response record per answer, with no value the answers or requests carried', async () => {
    const records = await auditRecords(sb);
    const allowed = records.filter((r) => r.type === undefined && r.door === 'envoy.ext_proc' && (r.decision as { allowed: boolean }).allowed);
    expect(allowed.length).toBeGreaterThanOrEqual(6);
    for (const decision of allowed) {
      const answers = records.filter((r) => r.type === 'response' && r.decision_id === decision.decision_id);
      expect(answers, String(decision.decision_id)).toHaveLength(1);
      // Ids, times and chain hashes aside (random hex may spell 4111), nothing of the content.
      const { decision_id: _id, timestamp: _at, prev_hash: _prev, hash: _hash, ...content } = answers[0] as Record<string, unknown>;
      const text = JSON.stringify(content);
      for (const value of ['jane', 'ops@example.com', '4111', 'Bearer ']) expect(text).not.toContain(value);
    }
    const trail = JSON.stringify(records);
    for (const value of ['jane.doe@example.com', 'ops@example.com', CARD]) expect(trail).not.toContain(value);
  });
});
