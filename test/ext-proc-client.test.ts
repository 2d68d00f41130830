/**
 * Signalbox's Envoy ext_proc door, driven by the Go client that plays Envoy 1.40's ext_proc filter
 * (test/envoy-client `ext-proc`, Envoy's own generated types and validation rules) with the filter
 * settings of examples/envoy/envoy-ext-proc.yaml, in front of a fake OpenAI / Anthropic / MCP
 * upstream. Where test/envoy-ext-proc.test.ts shows the outcome through the real Envoy, this file
 * also shows the protocol: which messages went each way, which mode overrides Envoy honoured,
 * which mutations it applied, and that it warned about none. Signalbox runs the shipped default
 * policy and bundle.
 */
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditRecords, decisionRecord, streamedText as deltaText, responseRecord, settledSpendOf, usdOf } from './helpers/answers.js';
import { buildEnvoyClient, extProcFilterOf, runExtProc, type ExtProcFilter, type ExtProcOutput, type TraceEntry } from './helpers/envoy-client.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const EXAMPLE = 'examples/envoy/envoy-ext-proc.yaml';
const USAGE = { prompt_tokens: 31, completion_tokens: 23 };
const CARD_PIECES = ['Your card ', '4111', ' 11', '11 1', '111', ' 1', '111', ' is on file.'];
const EMAIL = 'jane.doe@example.com';
const EMAIL_PIECES = ['Write to ', 'jane', '.doe', '@exa', 'mple', '.com', ' any time.'];
/** Long enough that the stream guard lets most of it leave before it ends (it holds back 64 characters). */
/** A card early, and another one long after it: the second must not leave once the first stopped the stream. */
const CARD_THEN_MORE_PIECES = ['Your card ', '4111', ' 1111', ' 1111', ' 1111', ' is on file.', ...Array.from({ length: 8 }, () => ' Some more harmless words here.'), ' Also 5500 0000 0000 0004 works.', ' The end.'];
const LONG_PIECES = Array.from({ length: 30 }, (_, i) => `Sentence number ${i + 1} of a long and harmless answer. `);
const TOOL_RESULT = 'The page says: contact ops@example.com';

let key: SigningKey;
let jwks: JwksServer;
let sb: TestSignalbox;
let upstream: FakeLlm;
let filter: ExtProcFilter;
const logs = capturedLogger();

beforeAll(async () => {
  await buildEnvoyClient();
  filter = await extProcFilterOf(EXAMPLE);
  key = await signingKey('ES256', 'ext-proc-client');
  jwks = await JwksServer.start([key.publicJwk]);
  sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url });
  upstream = await FakeLlm.start({
    usage: USAGE,
    reply: `Write to me at ${EMAIL} any time.`,
    eventDelayMs: 15,
    streamUsage: 'when_asked',
    toolResult: TOOL_RESULT,
    scripts: {
      'plain please': { reply: 'Nothing to see here.' },
      'card please': { reply: 'Your card 4111 1111 1111 1111 is on file.' },
      'split card please': { pieces: CARD_PIECES },
      'split email please': { pieces: EMAIL_PIECES },
      'card then more please': { pieces: CARD_THEN_MORE_PIECES },
      'long please': { pieces: LONG_PIECES },
    },
  });
}, 600_000);

afterAll(async () => {
  await upstream?.close();
  await sb?.close();
  await jwks?.close();
});

/** A verified caller with its own subject, so each test reads its own budget. */
async function caller(subject: string, roles = ['llm-user']): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await mint(key, { subject, claims: { roles } })}`, 'content-type': 'application/json' };
}

/** One request through the client's filter (configured as the example's) to the fake upstream. */
function through(request: { method?: string; path: string; headers: Record<string, string>; body?: object }, abortAfterChunks?: number): Promise<ExtProcOutput> {
  return runExtProc({
    ...filter,
    addr: `127.0.0.1:${sb.running.grpcPort}`,
    upstream: upstream.url,
    request: {
      method: request.method ?? (request.body === undefined ? 'GET' : 'POST'),
      path: request.path,
      authority: 'llm.internal',
      headers: request.headers,
      ...(request.body !== undefined ? { body: JSON.stringify(request.body) } : {}),
    },
    ...(abortAfterChunks !== undefined ? { abort_after_response_chunks: abortAfterChunks } : {}),
  });
}

function chat(text: string, extra: object = {}): object {
  return { model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }], ...extra };
}

function first(headers: Record<string, string[]>, name: string): string | undefined {
  return headers[name]?.[0];
}

/** The trace as "dir type" lines, for comparing the shape of a conversation. */
function shape(trace: readonly TraceEntry[]): string[] {
  return trace.map((entry) => `${entry.dir} ${entry.type}`);
}

function decisionIdOf(output: ExtProcOutput): string {
  const id = first(output.client.headers, 'x-signalbox-decision-id');
  if (id === undefined) throw new Error(`no decision id in ${JSON.stringify(output.client.headers)}`);
  return id;
}

describe('the request side', () => {
  it('allows a chat request: asks for the body, decides on it, sets identity headers; Envoy warns about nothing', async () => {
    const before = upstream.seen.length;
    const output = await through({ path: '/v1/chat/completions', headers: { ...(await caller('ann')), 'x-signalbox-user': 'mallory' }, body: chat('plain please') });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(output.local_reply).toBeUndefined();
    // The configured mode sends only the request headers; Signalbox asks for the body.
    const headersAnswer = output.trace.find((e) => e.dir === 'received' && e.type === 'request_headers')!;
    expect(headersAnswer.mode_override?.requestBodyMode).toBe('BUFFERED');
    expect(headersAnswer.mode_override_applied).toBe(true);
    expect(shape(output.trace).slice(0, 4)).toEqual(['sent request_headers', 'received request_headers', 'sent request_body', 'received request_body']);
    expect(output.trace.find((e) => e.dir === 'sent' && e.type === 'request_body')).toMatchObject({ end_of_stream: true });
    // The upstream saw the verified identity, not the forged one, and no credential.
    expect(upstream.seen.length).toBe(before + 1);
    const seen = upstream.last()!;
    expect(seen.headers['x-signalbox-user']).toBe('ann');
    expect(seen.headers['x-signalbox-team']).toBe('search');
    expect(seen.headers.authorization).toBeUndefined();
    expect(output.upstream?.headers.authorization).toBeUndefined();
    // The response side: Signalbox asked for the JSON answer whole.
    const responseHeadersAnswer = output.trace.find((e) => e.dir === 'received' && e.type === 'response_headers')!;
    expect(responseHeadersAnswer.mode_override?.responseBodyMode).toBe('BUFFERED');
    expect(JSON.parse(output.client.body)).toMatchObject({ choices: [{ message: { content: 'Nothing to see here.' } }] });
    expect(decisionIdOf(output)).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('decides a request without a body on its headers: no body is asked for', async () => {
    const output = await through({ path: '/v1/models', headers: await caller('bob') });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(output.trace[0]).toMatchObject({ dir: 'sent', type: 'request_headers', end_of_stream: true });
    const headersAnswer = output.trace.find((e) => e.dir === 'received' && e.type === 'request_headers')!;
    expect(headersAnswer.header_mutation).toBe(true);
    expect(headersAnswer.mode_override?.requestBodyMode ?? 'NONE').toBe('NONE');
    expect(output.trace.some((e) => e.type === 'request_body')).toBe(false);
    expect(upstream.last()!.headers['x-signalbox-user']).toBe('bob');
  });

  it('denies without a token: an immediate response with Signalbox status, headers and JSON body; nothing reaches the upstream', async () => {
    const before = upstream.seen.length;
    const output = await through({ path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chat('plain please') });
    expect(output.immediate_response, JSON.stringify(output)).toBeDefined();
    expect(output.client.status).toBe(401);
    expect(first(output.client.headers, 'content-type')).toBe('application/json');
    expect(first(output.client.headers, 'www-authenticate')).toContain('Bearer');
    expect(Number(first(output.client.headers, 'content-length'))).toBe(Buffer.byteLength(output.client.body));
    expect((JSON.parse(output.client.body) as { error: { code: string } }).error.code).toBe('identity.token_missing');
    expect(output.upstream).toBeNull();
    expect(upstream.seen.length).toBe(before);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
  });

  it('denies on the body (a tool the role does not grant) with 403 and the reasons', async () => {
    const before = upstream.seen.length;
    const body = chat('plain please', { tools: [{ type: 'function', function: { name: 'delete_repo', parameters: {} } }] });
    const output = await through({ path: '/v1/chat/completions', headers: await caller('carl'), body });
    expect(output.client.status, JSON.stringify(output)).toBe(403);
    expect(output.trace.at(-2)).toMatchObject({ dir: 'received', type: 'immediate_response' });
    expect((JSON.parse(output.client.body) as { error: { reasons: string[] } }).error.reasons).toContain('tool.not_allowed');
    expect(output.upstream).toBeNull();
    expect(upstream.seen.length).toBe(before);
  });

  it('redacts an email in the request: the upstream gets the rewritten body with a content-length that matches', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('dora'), body: chat(`please mail ${EMAIL}`) });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(output.trace.find((e) => e.dir === 'received' && e.type === 'request_body')).toMatchObject({ body_mutation: 'body' });
    const seen = upstream.last()!;
    expect(seen.body).not.toContain(EMAIL);
    expect(seen.body).toContain('[REDACTED:email]');
    expect(Number(seen.headers['content-length'])).toBe(Buffer.byteLength(seen.body));
    expect(output.upstream?.body).toBe(seen.body);
  });
});

describe('the response side, buffered', () => {
  it('blocks an answer carrying a card number: Envoy answers with the response rule 403 instead', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('eve'), body: chat('card please') });
    expect(output.immediate_response, JSON.stringify(output)).toBeDefined();
    expect(output.client.status).toBe(403);
    expect(output.client.body).not.toMatch(/4111/);
    expect((JSON.parse(output.client.body) as { error: { code: string } }).error.code).toBe('content.payment_card');
    expect(first(output.client.headers, 'content-type')).toBe('application/json');
    // Blocked is not free: the provider billed the answer, so its usage settles the hold.
    const settled = await settledSpendOf(sb, 'eve');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
    expect(settled.spent_usd).toBeCloseTo(usdOf('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
  });

  it('redacts an email in the answer with a content-length that matches; settles usage × price exactly', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('fay'), body: chat('the default reply') });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(output.client.body).not.toContain(EMAIL);
    expect((JSON.parse(output.client.body) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('Write to me at [REDACTED:email] any time.');
    expect(Number(first(output.client.headers, 'content-length'))).toBe(Buffer.byteLength(output.client.body));
    const settled = await settledSpendOf(sb, 'fay');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
    expect(settled.spent_usd).toBeCloseTo(usdOf('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
    const record = await responseRecord(sb, decisionIdOf(output));
    expect(record).toMatchObject({ action: 'redacted', settlement: 'provider_usage', door: 'envoy.ext_proc', stream: false, redactions: 1 });
    expect(JSON.stringify(record)).not.toContain('jane.doe');
  });

  it('passes an upstream error answer and releases its hold at zero (providers do not bill errors)', async () => {
    upstream.failWith = 503;
    let output: ExtProcOutput;
    try {
      output = await through({ path: '/v1/chat/completions', headers: await caller('fin'), body: chat('plain please') });
    } finally {
      upstream.failWith = undefined;
    }
    expect(output.client.status, JSON.stringify(output)).toBe(503);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    const settled = await settledSpendOf(sb, 'fin');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0, spent_usd: 0 });
    expect(await responseRecord(sb, decisionIdOf(output))).toMatchObject({ status: 503, settlement: 'error_response' });
  });
});

describe('the response side, streamed', () => {
  const streamed = (text: string, usage = false): object => chat(text, { stream: true, ...(usage ? { stream_options: { include_usage: true } } : {}) });

  it('stops a card number typed over several events before any digit of it leaves', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('gus'), body: streamed('split card please', true) });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    const headersAnswer = output.trace.find((e) => e.dir === 'received' && e.type === 'response_headers')!;
    expect(headersAnswer.mode_override?.responseBodyMode).toBe('STREAMED');
    // The upstream sent it in several body messages.
    expect(output.trace.filter((e) => e.dir === 'sent' && e.type === 'response_body').length).toBeGreaterThan(3);
    // Not one digit of the card left, in any chunk (the text before it was still held back with it).
    expect('Your card '.startsWith(deltaText(output.client.body))).toBe(true);
    for (const chunk of output.client.chunks) expect(deltaText(chunk)).not.toMatch(/[0-9]/);
    expect(output.client.body).not.toMatch(/4111|1111/);
    // The stream ends with an OpenAI error event naming the reason.
    expect(output.client.body).toMatch(/data: \{"error":\{[^\n]*"code":"content\.payment_card"\}\}\n\ndata: \[DONE\]\n\n$/);
    const settled = await settledSpendOf(sb, 'gus');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
  });

  it('sends nothing of the upstream stream once it blocked it: not the text after the value, not its usage chunk, not a second [DONE]', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('gil'), body: streamed('card then more please', true) });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    for (const chunk of output.client.chunks) expect(deltaText(chunk)).not.toMatch(/[0-9]/);
    expect(output.client.body).not.toMatch(/5500|works|The end/);
    expect(output.client.body).toMatch(/data: \{"error":\{[^\n]*"code":"content\.payment_card"\}\}\n\ndata: \[DONE\]\n\n$/);
    expect(output.client.body.match(/\[DONE\]/g)).toHaveLength(1);
    const record = await responseRecord(sb, decisionIdOf(output));
    expect(record).toMatchObject({ action: 'blocked', stream: true, reasons: ['content.payment_card'] });
    const settled = await settledSpendOf(sb, 'gil');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
  });

  it('redacts an email typed over several events: no piece of it reaches the client', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('hal'), body: streamed('split email please', true) });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(output.client.headers['content-length']).toBeUndefined();
    const text = deltaText(output.client.body);
    expect(text).toBe('Write to [REDACTED:email] any time.');
    for (const chunk of output.client.chunks) expect(deltaText(chunk)).not.toMatch(/jane|\.doe|@exa|mple|\.com/);
    expect(output.client.body).not.toMatch(/jane|@exa/);
    const record = await responseRecord(sb, decisionIdOf(output));
    expect(record).toMatchObject({ action: 'redacted', stream: true, settlement: 'provider_usage' });
    expect(JSON.stringify(record)).not.toContain('jane');
  });

  it('settles a stream from its include_usage chunk: usage × price to the micro-dollar, no hold left', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('ida'), body: streamed('long please', true) });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(deltaText(output.client.body)).toBe(LONG_PIECES.join(''));
    const settled = await settledSpendOf(sb, 'ida');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
    expect(settled.spent_usd).toBeCloseTo(usdOf('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
    expect(await responseRecord(sb, decisionIdOf(output))).toMatchObject({ action: 'passed', settlement: 'provider_usage' });
  });

  it('settles a stream without a usage block by counting: the request estimate in, the delivered text out', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('jon'), body: streamed('long please') });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.client.body).not.toContain('"usage"');
    const delivered = deltaText(output.client.body);
    expect(delivered).toBe(LONG_PIECES.join(''));
    const decision = await decisionRecord(sb, decisionIdOf(output));
    const inputTokens = (decision.input as { llm: { input_tokens: number } }).llm.input_tokens;
    expect(inputTokens).toBeGreaterThan(0);
    const settled = await settledSpendOf(sb, 'jon');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
    expect(settled.spent_usd).toBeCloseTo(usdOf('gpt-4o-mini', { input_tokens: inputTokens, output_tokens: countTokens(delivered) }), 6);
    expect(await responseRecord(sb, decisionIdOf(output))).toMatchObject({ settlement: 'counted' });
  });

  it('settles an aborted stream at what was delivered, and leaves no hold', async () => {
    const output = await through({ path: '/v1/chat/completions', headers: await caller('kim'), body: streamed('long please', true) }, 3);
    expect(output.aborted, JSON.stringify(output)).toBe(true);
    expect(output.client.chunks.length).toBe(3);
    const delivered = deltaText(output.client.body);
    expect(delivered.length).toBeGreaterThan(0);
    expect(delivered.length).toBeLessThan(LONG_PIECES.join('').length);
    const decision = await decisionRecord(sb, decisionIdOf(output));
    const inputTokens = (decision.input as { llm: { input_tokens: number } }).llm.input_tokens;
    const settled = await settledSpendOf(sb, 'kim');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
    expect(settled.spent_usd).toBeCloseTo(usdOf('gpt-4o-mini', { input_tokens: inputTokens, output_tokens: countTokens(delivered) }), 6);
    expect(await responseRecord(sb, decisionIdOf(output))).toMatchObject({ action: 'aborted', settlement: 'counted' });
  });

  it('settles an Anthropic stream from message_start and message_delta usage', async () => {
    const model = 'claude-3-5-haiku-20241022';
    const body = { model, max_tokens: 200, stream: true, messages: [{ role: 'user', content: 'long please' }] };
    const output = await through({ path: '/v1/messages', headers: await caller('lea'), body });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(deltaText(output.client.body)).toBe(LONG_PIECES.join(''));
    const settled = await settledSpendOf(sb, 'lea');
    expect(settled).toMatchObject({ holds: 0, held_usd: 0 });
    expect(settled.spent_usd).toBeCloseTo(usdOf(model, { input_tokens: USAGE.prompt_tokens, output_tokens: USAGE.completion_tokens }), 6);
    expect(await responseRecord(sb, decisionIdOf(output))).toMatchObject({ api: 'anthropic.messages', settlement: 'provider_usage' });
  });
});

describe('MCP', () => {
  it('filters tools/list down to the tools a tools/call would be allowed for', async () => {
    const output = await through({ path: '/mcp', headers: await caller('max', ['agent']), body: { jsonrpc: '2.0', id: 7, method: 'tools/list' } });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(Number(first(output.client.headers, 'content-length'))).toBe(Buffer.byteLength(output.client.body));
    const answer = JSON.parse(output.client.body) as { id: number; result: { tools: Array<{ name: string }> } };
    expect(answer.id).toBe(7);
    expect(answer.result.tools.map((t) => t.name)).toEqual(['web_search', 'fetch_url']);
    expect(await responseRecord(sb, decisionIdOf(output))).toMatchObject({ action: 'filtered', tools_removed: ['delete_repo'], api: 'mcp' });
  });

  it('redacts an email in a tools/call result', async () => {
    const call = { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'web_search', arguments: { query: 'ops contact' } } };
    const output = await through({ path: '/mcp', headers: await caller('ned', ['agent']), body: call });
    expect(output.client.status, JSON.stringify(output)).toBe(200);
    expect(output.header_mutation_warnings ?? []).toEqual([]);
    expect(output.client.body).not.toContain('ops@example.com');
    const answer = JSON.parse(output.client.body) as { result: { content: Array<{ text: string }> } };
    expect(answer.result.content[0]!.text).toBe('The page says: contact [REDACTED:email]');
    expect(Number(first(output.client.headers, 'content-length'))).toBe(Buffer.byteLength(output.client.body));
    const record = await responseRecord(sb, decisionIdOf(output));
    expect(record).toMatchObject({ action: 'redacted', api: 'mcp' });
    expect(JSON.stringify(record)).not.toContain('ops@');
  });
});

describe('the audit trail', () => {
  it('holds no value the answers carried', async () => {
    const trail = JSON.stringify(await auditRecords(sb));
    for (const secret of ['jane.doe', 'ops@example.com', '4111 1111']) expect(trail).not.toContain(secret);
  });
});
