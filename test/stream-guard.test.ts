/**
 * The SSE reader and the stream guard on realistic OpenAI (chat, Responses), Anthropic and MCP
 * streams: values split across many events and across chunk boundaries (mid-line, mid-UTF-8)
 * are found and masked before any part of them leaves; blocking; usage from each provider's
 * stream and counted usage; the bounds.
 */
import { describe, expect, it } from 'vitest';
import type { FindingType } from '../src/inspect/content/detectors.js';
import type { Finding } from '../src/inspect/content/scan.js';
import { countTextTokens } from '../src/inspect/llm/tokenizer.js';
import { SseReader, type SseEvent } from '../src/inspect/response/sse.js';
import { StreamGuard, type StreamGuardOptions } from '../src/inspect/response/stream-guard.js';

const CARD = '4111 1111 1111 1111';
const EMAIL = 'jane.doe@example.com';

/** `text` in pieces of `size` characters, as models stream it. */
function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** Bytes cut every `size` bytes: mid-line, mid-event, mid-UTF-8 sequence. */
function cut(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

const sse = (data: unknown, event?: string): string => `${event === undefined ? '' : `event: ${event}\n`}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

// ---- OpenAI chat completions stream (stream: true, stream_options.include_usage: true) ----
const chatBase = { id: 'chatcmpl-123', object: 'chat.completion.chunk', created: 1694268190, model: 'gpt-4o-mini-2024-07-18', system_fingerprint: 'fp_44709d6fcb' };
const chatChunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}): string =>
  sse({ ...chatBase, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra });

function chatStream(deltas: readonly string[], usage = true): string {
  let out = chatChunk({ role: 'assistant', content: '', refusal: null }, null, usage ? { usage: null } : {});
  for (const d of deltas) out += chatChunk({ content: d }, null, usage ? { usage: null } : {});
  out += chatChunk({}, 'stop', usage ? { usage: null } : {});
  if (usage) {
    out += sse({ ...chatBase, choices: [], usage: { prompt_tokens: 37, completion_tokens: 25, total_tokens: 62, prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } } });
  }
  return out + sse('[DONE]');
}

// ---- Anthropic Messages stream ----
function anthropicStream(textDeltas: readonly string[], jsonDeltas: readonly string[]): string {
  let out = sse(
    {
      type: 'message_start',
      message: {
        id: 'msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY',
        type: 'message',
        role: 'assistant',
        content: [],
        model: 'claude-sonnet-4-20250514',
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 472, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, output_tokens: 2 },
      },
    },
    'message_start',
  );
  out += sse({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start');
  out += sse({ type: 'ping' }, 'ping');
  for (const d of textDeltas) out += sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: d } }, 'content_block_delta');
  out += sse({ type: 'content_block_stop', index: 0 }, 'content_block_stop');
  out += sse({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', name: 'charge', input: {} } }, 'content_block_start');
  for (const d of jsonDeltas) out += sse({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: d } }, 'content_block_delta');
  out += sse({ type: 'content_block_stop', index: 1 }, 'content_block_stop');
  out += sse({ type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 89 } }, 'message_delta');
  return out + sse({ type: 'message_stop' }, 'message_stop');
}

// ---- OpenAI Responses stream ----
function responsesStream(deltas: readonly string[]): string {
  const text = deltas.join('');
  const response = { id: 'resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654', object: 'response', created_at: 1741290958, model: 'gpt-4.1-2025-04-14', output: [] as unknown[], usage: null as unknown };
  const item = { id: 'msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654', type: 'message', status: 'in_progress', role: 'assistant', content: [] as unknown[] };
  let seq = 0;
  const ev = (type: string, rest: Record<string, unknown>): string => sse({ type, sequence_number: seq++, ...rest }, type);
  let out = ev('response.created', { response: { ...response, status: 'in_progress' } });
  out += ev('response.output_item.added', { output_index: 0, item });
  out += ev('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
  for (const d of deltas) out += ev('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta: d, logprobs: [] });
  out += ev('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text, logprobs: [] });
  const part = { type: 'output_text', text, annotations: [] };
  out += ev('response.content_part.done', { item_id: item.id, output_index: 0, content_index: 0, part });
  const done = { ...item, status: 'completed', content: [part] };
  out += ev('response.output_item.done', { output_index: 0, item: done });
  return (
    out +
    ev('response.completed', {
      response: { ...response, status: 'completed', output: [done], usage: { input_tokens: 37, input_tokens_details: { cached_tokens: 0 }, output_tokens: 11, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 48 } },
    })
  );
}

interface Run {
  readonly released: Buffer;
  readonly findings: Finding[];
  readonly guard: StreamGuard;
}

/**
 * Feeds `stream` cut every `chunkBytes` bytes; after each push the "policy" redacts every type
 * found so far (or blocks once `blockOn` is found), as the door will.
 */
function run(options: StreamGuardOptions, stream: string | Buffer, chunkBytes: number, policy: { blockOn?: FindingType; end?: boolean; stopAfterBytes?: number } = {}): Run {
  const guard = new StreamGuard(options);
  const bytes = typeof stream === 'string' ? Buffer.from(stream, 'utf8') : stream;
  const chunks = cut(bytes.subarray(0, policy.stopAfterBytes ?? bytes.length), chunkBytes);
  const redact = new Set<FindingType>();
  const findings: Finding[] = [];
  const out: Buffer[] = [];
  chunks.forEach((chunk, i) => {
    const last = i === chunks.length - 1 && (policy.end ?? true);
    const { newFindings, error } = guard.push(chunk, last);
    expect(error).toBeUndefined();
    findings.push(...newFindings);
    for (const f of newFindings) redact.add(f.type);
    const block = policy.blockOn !== undefined && redact.has(policy.blockOn);
    out.push(guard.release(block ? { block: true } : { redact }));
  });
  return { released: Buffer.concat(out), findings, guard };
}

function events(bytes: Buffer): SseEvent[] {
  const reader = new SseReader();
  const read = reader.push(bytes);
  const end = reader.end();
  if (!read.ok || !end.ok) throw new Error('released bytes do not parse as SSE');
  return [...read.events, ...end.events];
}

/** The output text a client assembles from released chat chunks. */
function chatText(bytes: Buffer): string {
  return events(bytes)
    .filter((e) => e.data !== undefined && e.data !== '[DONE]')
    .map((e) => (JSON.parse(e.data!) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '')
    .join('');
}

/** No part of the value that could identify it: any 4-digit group of the card, the email's local part or domain. */
function expectNoTrace(released: Buffer): void {
  const text = released.toString('utf8');
  expect(text).not.toMatch(/4111|1111/);
  expect(text).not.toContain('jane');
  expect(text).not.toContain('example.com');
}

describe('SseReader', () => {
  it('reads events split anywhere, with LF, CRLF and CR line ends, comments and multi-line data', () => {
    const stream = ': keep-alive\r\n\r\nevent: delta\r\ndata: {"t":"é😀"}\r\n\r\ndata: line one\rdata: line two\r\rid: 7\ndata:no-space\n\n';
    const bytes = Buffer.from(stream, 'utf8');
    for (const size of [1, 2, 3, 5, 7, bytes.length]) {
      const reader = new SseReader();
      const got: SseEvent[] = [];
      for (const chunk of cut(bytes, size)) {
        const r = reader.push(chunk);
        if (!r.ok) throw new Error('failed');
        got.push(...r.events);
      }
      expect(got.map((e) => [e.event, e.data])).toEqual([
        [undefined, undefined],
        ['delta', '{"t":"é😀"}'],
        [undefined, 'line one\nline two'],
        [undefined, 'no-space'],
      ]);
      // Every byte is in exactly one event, in order.
      expect(Buffer.concat(got.map((e) => e.raw)).toString('utf8')).toBe(stream);
    }
  });

  it('returns an event cut short at the end, and fails on an event over the limit without keeping it', () => {
    const reader = new SseReader(100);
    expect(reader.push(Buffer.from('data: partial'))).toEqual({ ok: true, events: [] });
    const end = reader.end();
    expect(end.ok && end.events.map((e) => e.data)).toEqual(['partial']);

    const small = new SseReader(100);
    let result = small.push(Buffer.from('data: '));
    for (let i = 0; i < 10 && result.ok; i++) result = small.push(Buffer.alloc(20, 0x61));
    expect(result).toEqual({ ok: false, reason: 'event_too_large' });
    expect(small.push(Buffer.from('\n\n'))).toEqual({ ok: false, reason: 'event_too_large' });
    // Whole oversized events inside one chunk fail too.
    expect(new SseReader(100).push(Buffer.from(`data: ${'b'.repeat(200)}\n\n`))).toEqual({ ok: false, reason: 'event_too_large' });
  });
});

describe('StreamGuard: values split across events and chunks', () => {
  const text = `Sure. Your card is ${CARD} and mail goes to ${EMAIL} — voilà, café ☕ done. ${'More text follows here. '.repeat(6)}`;

  for (const chunkBytes of [1, 3, 7, 64, 100_000]) {
    it(`OpenAI chat, 2-character deltas, chunks of ${chunkBytes} bytes: found and masked, no part leaves`, () => {
      const stream = chatStream(pieces(text, 2));
      const { released, findings, guard } = run({ api: 'openai.chat', model: 'gpt-4o-mini' }, stream, chunkBytes);
      expect(findings).toEqual([
        { type: 'payment_card', path: '$.choices[0].message.content', count: 1 },
        { type: 'email', path: '$.choices[0].message.content', count: 1 },
      ]);
      expectNoTrace(released);
      expect(chatText(released)).toBe(text.replace(CARD, '[REDACTED:payment_card]').replace(EMAIL, '[REDACTED:email]'));
      // Unchanged events leave byte for byte; the stream still ends with the usage chunk and [DONE].
      expect(released.toString('utf8').startsWith(chatChunk({ role: 'assistant', content: '', refusal: null }, null, { usage: null }))).toBe(true);
      expect(released.toString('utf8').endsWith('data: [DONE]\n\n')).toBe(true);
      expect(guard.usage()).toEqual({ source: 'provider', usage: { prompt_tokens: 37, completion_tokens: 25, prompt_tokens_details: { cached_tokens: 0 } } });
      expect(guard.model()).toBe('gpt-4o-mini-2024-07-18');
    });
  }

  it('leaves values alone the policy does not redact, and reports each value once', () => {
    const { released, findings } = (() => {
      const guard = new StreamGuard({ api: 'openai.chat' });
      const out: Buffer[] = [];
      const found: Finding[] = [];
      for (const chunk of cut(Buffer.from(chatStream(pieces(text, 2))), 5)) {
        found.push(...guard.push(chunk, false).newFindings);
        out.push(guard.release({ redact: new Set<FindingType>(['email']) }));
      }
      found.push(...guard.push(Buffer.alloc(0), true).newFindings);
      out.push(guard.release({ redact: new Set<FindingType>(['email']) }));
      return { released: Buffer.concat(out), findings: found };
    })();
    expect(findings.map((f) => f.type)).toEqual(['payment_card', 'email']);
    expect(chatText(released)).toBe(text.replace(EMAIL, '[REDACTED:email]'));
  });

  it('holds back output text but not the events before it', () => {
    const guard = new StreamGuard({ api: 'openai.chat' });
    const first = chatChunk({ role: 'assistant', content: '' });
    guard.push(Buffer.from(first + chatChunk({ content: 'Hello' })), false);
    expect(guard.release().toString('utf8')).toBe(first);
    guard.push(Buffer.from(chatChunk({ content: ' world' })), false);
    expect(guard.release().length).toBe(0);
    guard.push(Buffer.from(chatChunk({ content: 'x'.repeat(80) })), false);
    expect(chatText(guard.release())).toBe('Hello world');
    guard.push(Buffer.from(chatChunk({}, 'stop')), false);
    expect(chatText(guard.release())).toBe('x'.repeat(80));
  });

  it('OpenAI chat with parallel choices: a card split across one choice between the other’s deltas', () => {
    const chunk = (index: number, content: string): string => sse({ ...chatBase, choices: [{ index, delta: { content }, logprobs: null, finish_reason: null }] });
    let stream = '';
    const a = pieces(`card ${CARD} end`, 2);
    const b = pieces('the other answer is plain text', 2);
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (a[i]) stream += chunk(0, a[i]!);
      if (b[i]) stream += chunk(1, b[i]!);
    }
    stream += sse('[DONE]');
    const { released, findings } = run({ api: 'openai.chat' }, stream, 11);
    expect(findings).toEqual([{ type: 'payment_card', path: '$.choices[0].message.content', count: 1 }]);
    expectNoTrace(released);
  });

  it('OpenAI chat tool-call argument deltas are scanned on their own output', () => {
    const args = pieces(`{"to":"${EMAIL}","body":"hi"}`, 3);
    let stream = chatChunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_DdmO9pD3xa9XTPNJ32zg2hcA', type: 'function', function: { name: 'send_email', arguments: '' } }] });
    for (const a of args) stream += chatChunk({ tool_calls: [{ index: 0, function: { arguments: a } }] });
    stream += chatChunk({}, 'tool_calls') + sse('[DONE]');
    const { released, findings } = run({ api: 'openai.chat' }, stream, 13);
    expect(findings).toEqual([{ type: 'email', path: '$.choices[0].message.tool_calls[0].function.arguments', count: 1 }]);
    expectNoTrace(released);
    const assembled = events(released)
      .filter((e) => e.data !== '[DONE]')
      .map((e) => (JSON.parse(e.data!) as { choices: { delta: { tool_calls?: { function: { arguments: string } }[] } }[] }).choices[0]?.delta.tool_calls?.[0]?.function.arguments ?? '')
      .join('');
    expect(JSON.parse(assembled)).toEqual({ to: '[REDACTED:email]', body: 'hi' });
  });

  it('Anthropic text and input_json deltas: masked, usage of message_start and message_delta combined', () => {
    const stream = anthropicStream(pieces(`Charging ${CARD} now.`, 2), pieces(`{"card": "${CARD}", "email": "${EMAIL}"}`, 2));
    const { released, findings, guard } = run({ api: 'anthropic.messages', model: 'claude-sonnet-4-20250514' }, stream, 9);
    expect(findings).toEqual([
      { type: 'payment_card', path: '$.content[0].text', count: 1 },
      { type: 'payment_card', path: '$.content[1].input', count: 1 },
      { type: 'email', path: '$.content[1].input', count: 1 },
    ]);
    expectNoTrace(released);
    const json = events(released)
      .filter((e) => e.event === 'content_block_delta')
      .map((e) => JSON.parse(e.data!) as { index: number; delta: { text?: string; partial_json?: string } })
      .filter((e) => e.index === 1)
      .map((e) => e.delta.partial_json)
      .join('');
    expect(JSON.parse(json)).toEqual({ card: '[REDACTED:payment_card]', email: '[REDACTED:email]' });
    expect(guard.usage()).toEqual({ source: 'provider', usage: { input_tokens: 472, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, output_tokens: 89 } });
    expect(guard.model()).toBe('claude-sonnet-4-20250514');
  });

  it('OpenAI Responses: deltas and the events that repeat the text in full are masked; usage from response.completed', () => {
    const { released, findings, guard } = run({ api: 'openai.responses' }, responsesStream(pieces(`Mail ${EMAIL} or pay with ${CARD}.`, 2)), 17);
    expect(findings.filter((f) => f.path === '$.output[0].content[0].text').map((f) => f.type)).toEqual(['email', 'payment_card']);
    expectNoTrace(released);
    const done = events(released).find((e) => e.event === 'response.output_text.done');
    expect((JSON.parse(done!.data!) as { text: string }).text).toBe('Mail [REDACTED:email] or pay with [REDACTED:payment_card].');
    expect(guard.usage()).toEqual({ source: 'provider', usage: { input_tokens: 37, output_tokens: 11, input_tokens_details: { cached_tokens: 0 } } });
  });
});

describe('StreamGuard: block', () => {
  it('ends an OpenAI chat stream with an error chunk and [DONE] before the card leaves, then swallows the rest', () => {
    const text = `Here you go: ${CARD}. ${'and then a lot more. '.repeat(10)}`;
    const stream = chatStream(pieces(text, 2));
    const { released, guard } = run({ api: 'openai.chat' }, stream, 8, { blockOn: 'payment_card' });
    expectNoTrace(released);
    const out = released.toString('utf8');
    expect(out).toContain('data: {"error":{"message":"the response was blocked by policy","type":"policy_violation","param":null,"code":"response_blocked"}}\n\ndata: [DONE]\n\n');
    expect(out.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(out.indexOf('[DONE]')).toBe(out.lastIndexOf('[DONE]'));
    expect(chatText(Buffer.from(out.slice(0, out.indexOf('data: {"error"'))))).toBe('Here you go:');
    expect(guard.push(Buffer.from(chatChunk({ content: 'more' })), true).newFindings).toEqual([]);
    expect(guard.release().length).toBe(0);
  });

  it('ends an Anthropic stream with an error event', () => {
    const { released } = run({ api: 'anthropic.messages' }, anthropicStream(pieces(`Card ${CARD}`, 2), []), 10, { blockOn: 'payment_card' });
    expectNoTrace(released);
    const last = events(released).at(-1)!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data!)).toEqual({ type: 'error', error: { type: 'permission_error', message: 'the response was blocked by policy (response_blocked)' } });
  });
});

describe('StreamGuard: counted usage', () => {
  const text = `${'The quick brown fox jumps over the lazy dog. '.repeat(200)}Fin.`;

  it('counts the output when the stream reports no usage', () => {
    const { guard } = run({ api: 'openai.chat', model: 'gpt-4o' }, chatStream(pieces(text, 4), false), 333);
    expect(guard.usage()).toEqual({ source: 'counted', usage: { output_tokens: countTextTokens(text, 'o200k_base') } });
  });

  it('counts only what was delivered when the stream is cut short', () => {
    const stream = chatStream(pieces(text, 4), false);
    const { released, guard } = run({ api: 'openai.chat', model: 'gpt-4o' }, stream, 100, { end: false, stopAfterBytes: Math.floor(stream.length / 2) });
    const delivered = chatText(released);
    expect(delivered.length).toBeGreaterThan(100);
    expect(delivered.length).toBeLessThan(text.length / 2);
    expect(guard.usage()).toEqual({ source: 'counted', usage: { output_tokens: countTextTokens(delivered, 'o200k_base') } });
  });

  it('keeps the input counts Anthropic reported before the stream was cut', () => {
    const stream = anthropicStream(pieces(text, 4), []);
    const { released, guard } = run({ api: 'anthropic.messages' }, stream, 100, { end: false, stopAfterBytes: Math.floor(stream.length / 2) });
    const delivered = events(released)
      .filter((e) => e.event === 'content_block_delta')
      .map((e) => (JSON.parse(e.data!) as { delta: { text: string } }).delta.text)
      .join('');
    expect(guard.usage()).toEqual({
      source: 'counted',
      usage: { input_tokens: 472, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, output_tokens: countTextTokens(delivered, 'o200k_base') },
    });
  });
});

describe('StreamGuard: MCP over Streamable HTTP', () => {
  it('yields each JSON-RPC message, filters tools/list and masks tool results', () => {
    const list = { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'read_file', inputSchema: { type: 'object' } }, { name: 'delete_repo', inputSchema: { type: 'object' } }] } };
    const guard = new StreamGuard({ api: 'mcp' });
    const pushed = guard.push(Buffer.from(sse(list, 'message')), false);
    expect(pushed.mcpMessages).toEqual([list]);
    const out = events(guard.release({ removeTools: new Set(['delete_repo']) }));
    expect(JSON.parse(out[0]!.data!)).toEqual({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'read_file', inputSchema: { type: 'object' } }] } });

    const call = { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: `owner: ${EMAIL}` }], isError: false } };
    const second = guard.push(Buffer.from(sse(call, 'message')), true);
    expect(second.newFindings).toEqual([{ type: 'email', path: '$.result.content[0].text', count: 1 }]);
    const masked = guard.release({ redact: 'all' });
    expectNoTrace(masked);
    expect(JSON.parse(events(masked)[0]!.data!)).toEqual({ ...call, result: { ...call.result, content: [{ type: 'text', text: 'owner: [REDACTED:email]' }] } });
  });
});

describe('StreamGuard: bounds', () => {
  it('fails closed on an oversized event: the next release ends the stream with an error', () => {
    const guard = new StreamGuard({ api: 'openai.chat', maxEventBytes: 1000 });
    expect(guard.push(Buffer.from(chatChunk({ content: 'ok' })), false).error).toBeUndefined();
    expect(guard.push(Buffer.from(chatChunk({ content: 'x'.repeat(2000) })), false).error).toBe('event_too_large');
    const end = guard.release({});
    expect(end.toString('utf8')).toContain('"code":"response_event_too_large"');
    expect(end.toString('utf8')).not.toContain('xxxx');
    expect(guard.release({}).length).toBe(0);
  });

  it('a huge number of tiny events: held bytes stay bounded and the time linear', () => {
    const maxHeldBytes = 32 * 1024;
    const guard = new StreamGuard({ api: 'openai.chat', maxHeldBytes });
    const event = Buffer.from(chatChunk({ content: 'é' }));
    const count = 100_000;
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => event));
    let pushed = 0;
    let released = 0;
    const started = performance.now();
    for (let i = 0; i < count / 1000; i++) {
      // Cut mid-UTF-8 as well: 1000 events pushed in two uneven halves.
      const half = Math.floor(batch.length / 2) + 1;
      for (const chunk of [batch.subarray(0, half), batch.subarray(half)]) {
        guard.push(chunk, false);
        pushed += chunk.length;
        released += guard.release().length;
        expect(pushed - released).toBeLessThanOrEqual(maxHeldBytes + batch.length);
      }
    }
    guard.push(Buffer.alloc(0), true);
    released += guard.release().length;
    expect(released).toBe(pushed);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(guard.usage().usage.output_tokens).toBe(countTextTokens('é'.repeat(count), 'o200k_base'));
  });

  it('a flood of held text is released by age past maxHeldBytes, still scanned', () => {
    const guard = new StreamGuard({ api: 'openai.chat', maxHeldBytes: 4096, holdBackChars: 1_000_000 });
    let released = 0;
    let pushed = 0;
    const found: Finding[] = [];
    for (let i = 0; i < 200; i++) {
      const chunk = Buffer.from(chatChunk({ content: i === 100 ? `mail ${EMAIL} ` : 'word ' }));
      pushed += chunk.length;
      found.push(...guard.push(chunk, false).newFindings);
      released += guard.release({ redact: 'all' }).length;
      expect(pushed - released).toBeLessThanOrEqual(4096 + chunk.length);
    }
    expect(found.map((f) => f.type)).toEqual(['email']);
  });
});
