/**
 * Buffered (whole JSON) responses: the usage and model each provider reports, in the shape a
 * usage report accepts; MCP tool lists and tool results; tool filtering; and that the request
 * body scan and redaction (content/) find and mask values in model output and tool results.
 */
import { describe, expect, it } from 'vitest';
import { contentFacts } from '../src/inspect/content/facts.js';
import { redactBody } from '../src/inspect/content/redact.js';
import { bufferedResponseFacts, mcpMessageFacts, removeTools } from '../src/inspect/response/buffered.js';
import { parseReport, tokenUsage } from '../src/enforce/report.js';

const CARD = '4111 1111 1111 1111';
const EMAIL = 'jane.doe@example.com';
const CONTENT = { enabled: true, maxStringBytes: 1024 * 1024, maxDepth: 64 };

/** OpenAI chat completion, as documented (API reference, "The chat completion object"). */
const chatCompletion = {
  id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
  object: 'chat.completion',
  created: 1741569952,
  model: 'gpt-4.1-2025-04-14',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: `Your card on file is ${CARD}.`,
        refusal: null,
        tool_calls: [{ id: 'call_abc123', type: 'function', function: { name: 'send_email', arguments: `{"to":"${EMAIL}","subject":"hi"}` } }],
        annotations: [],
      },
      logprobs: null,
      finish_reason: 'tool_calls',
    },
  ],
  usage: {
    prompt_tokens: 19,
    completion_tokens: 10,
    total_tokens: 29,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  },
  service_tier: 'default',
};

/** OpenAI Responses API response object. */
const responsesResponse = {
  id: 'resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41',
  object: 'response',
  created_at: 1741476777,
  status: 'completed',
  model: 'gpt-4o-2024-08-06',
  output: [
    {
      type: 'message',
      id: 'msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: `Write to ${EMAIL}.`, annotations: [] }],
    },
  ],
  usage: { input_tokens: 328, input_tokens_details: { cached_tokens: 128 }, output_tokens: 52, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 380 },
};

/** Anthropic Messages API response with prompt caching. */
const anthropicMessage = {
  id: 'msg_013Zva2CMHLNnXjNJJKqJ2EF',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-20250514',
  content: [
    { type: 'text', text: 'I will charge the card.' },
    { type: 'tool_use', id: 'toolu_01A09q90qw90lq917835lq9', name: 'charge', input: { card: CARD, amount: 12 } },
  ],
  stop_reason: 'tool_use',
  stop_sequence: null,
  usage: { input_tokens: 2095, output_tokens: 503, cache_creation_input_tokens: 100, cache_read_input_tokens: 2000, service_tier: 'standard' },
};

/** MCP `tools/list` result (spec 2025-06-18). */
const toolsList = {
  jsonrpc: '2.0',
  id: 1,
  result: {
    tools: [
      { name: 'get_weather', title: 'Weather', description: 'Get current weather', inputSchema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } },
      { name: 'delete_repo', description: 'Delete a repository', inputSchema: { type: 'object', properties: { repo: { type: 'string' } } } },
      { name: 'send_email', description: 'Send mail', inputSchema: { type: 'object' } },
    ],
    nextCursor: 'next-page-cursor',
  },
};

/** MCP `tools/call` result with text and structured content. */
const toolsCall = {
  jsonrpc: '2.0',
  id: 2,
  result: {
    content: [{ type: 'text', text: `Customer record: ${EMAIL}, card ${CARD}` }],
    structuredContent: { email: EMAIL },
    isError: false,
  },
};

describe('bufferedResponseFacts', () => {
  it('reads the usage and model of each provider in the shape a usage report settles on', () => {
    const chat = bufferedResponseFacts('openai.chat', chatCompletion);
    expect(chat.model).toBe('gpt-4.1-2025-04-14');
    expect(chat.usage).toEqual({ prompt_tokens: 19, completion_tokens: 10, prompt_tokens_details: { cached_tokens: 0 } });
    const responses = bufferedResponseFacts('openai.responses', responsesResponse);
    expect(responses.usage).toEqual({ input_tokens: 328, output_tokens: 52, input_tokens_details: { cached_tokens: 128 } });
    const anthropic = bufferedResponseFacts('anthropic.messages', anthropicMessage);
    expect(anthropic.model).toBe('claude-sonnet-4-20250514');
    expect(anthropic.usage).toEqual({ input_tokens: 2095, output_tokens: 503, cache_creation_input_tokens: 100, cache_read_input_tokens: 2000 });

    // The usage report accepts each as is, and prices them as the provider bills.
    const settle = (usage: unknown) => tokenUsage(parseReport({ decision_id: 'd1', usage }).usage!);
    expect(settle(chat.usage)).toEqual({ input_tokens: 19, cached_input_tokens: 0, output_tokens: 10 });
    expect(settle(responses.usage)).toEqual({ input_tokens: 328, cached_input_tokens: 128, output_tokens: 52 });
    expect(settle(anthropic.usage)).toEqual({ input_tokens: 4195, cached_input_tokens: 2000, output_tokens: 503 });
  });

  it('has no usage for bodies without one or with malformed counts, and never throws', () => {
    expect(bufferedResponseFacts('openai.chat', { error: { message: 'x' } })).toEqual({ api: 'openai.chat', usage: undefined, model: null });
    expect(bufferedResponseFacts('openai.chat', 'not json')).toEqual({ api: 'openai.chat', usage: undefined, model: null });
    expect(bufferedResponseFacts('openai.chat', { usage: { prompt_tokens: -1, completion_tokens: 1.5 } }).usage).toBeUndefined();
    expect(bufferedResponseFacts('openai.chat', { usage: { prompt_tokens: 3, completion_tokens: 'x' } }).usage).toEqual({ prompt_tokens: 3 });
  });

  it('tells an MCP tool list (with names) from a tool result and an error', () => {
    expect(bufferedResponseFacts('mcp', toolsList).mcp).toEqual({ kind: 'tools/list', tools: ['get_weather', 'delete_repo', 'send_email'] });
    expect(bufferedResponseFacts('mcp', toolsCall).mcp).toEqual({ kind: 'tools/call', is_error: false });
    expect(mcpMessageFacts({ jsonrpc: '2.0', id: 3, result: { content: [], isError: true } })).toEqual({ kind: 'tools/call', is_error: true });
    expect(mcpMessageFacts({ jsonrpc: '2.0', id: 3, error: { code: -32602, message: 'Unknown tool' } })).toEqual({ kind: 'error' });
    expect(mcpMessageFacts({ jsonrpc: '2.0', id: 3, result: {} })).toEqual({ kind: 'other' });
    expect(bufferedResponseFacts('mcp', [toolsList, { ...toolsList, id: 9, result: { tools: [{ name: 'x' }] } }]).mcp).toEqual({
      kind: 'tools/list',
      tools: ['get_weather', 'delete_repo', 'send_email', 'x'],
    });
  });
});

describe('removeTools', () => {
  it('takes the named tools out and leaves every other byte of the JSON as it was', () => {
    const before = JSON.stringify(toolsList);
    const { body, removed } = removeTools(toolsList, new Set(['delete_repo', 'not_listed']));
    expect(removed).toEqual(['delete_repo']);
    expect(JSON.stringify(toolsList)).toBe(before);
    const expected = JSON.parse(before) as typeof toolsList;
    expected.result.tools.splice(1, 1);
    expect(JSON.stringify(body)).toBe(JSON.stringify(expected));
  });

  it('returns the same body when nothing is removed, and filters batches', () => {
    expect(removeTools(toolsList, new Set(['nope'])).body).toBe(toolsList);
    expect(removeTools(toolsCall, new Set(['send_email'])).body).toBe(toolsCall);
    const batch = removeTools([toolsList, toolsCall], new Set(['send_email', 'get_weather']));
    expect(batch.removed).toEqual(['get_weather', 'send_email']);
    expect((batch.body as [typeof toolsList, unknown])[0].result.tools.map((t) => t.name)).toEqual(['delete_repo']);
    expect((batch.body as unknown[])[1]).toBe(toolsCall);
  });
});

describe('content scan of buffered responses (content/facts.ts reused)', () => {
  const scan = (body: unknown) => contentFacts(body, Buffer.alloc(0), false, CONTENT).findings;

  it('reports findings at the paths of the model output and tool results', () => {
    expect(scan(chatCompletion)).toEqual([
      { type: 'payment_card', path: '$.choices[0].message.content', count: 1 },
      { type: 'email', path: '$.choices[0].message.tool_calls[0].function.arguments<json>.to', count: 1 },
    ]);
    expect(scan(responsesResponse)).toEqual([{ type: 'email', path: '$.output[0].content[0].text', count: 1 }]);
    expect(scan(anthropicMessage)).toEqual([{ type: 'payment_card', path: '$.content[1].input.card', count: 1 }]);
    expect(scan(toolsCall)).toEqual([
      { type: 'email', path: '$.result.content[0].text', count: 1 },
      { type: 'payment_card', path: '$.result.content[0].text', count: 1 },
      { type: 'email', path: '$.result.structuredContent.email', count: 1 },
    ]);
  });

  it('redactBody masks them, tool arguments staying a JSON string', () => {
    const { body, redactions } = redactBody(chatCompletion);
    expect(redactions).toBe(2);
    const text = JSON.stringify(body);
    expect(text).not.toContain('4111');
    expect(text).not.toContain(EMAIL);
    const message = (body as typeof chatCompletion).choices[0]!.message;
    expect(message.content).toBe('Your card on file is [REDACTED:payment_card].');
    expect(JSON.parse(message.tool_calls[0]!.function.arguments)).toEqual({ to: '[REDACTED:email]', subject: 'hi' });
    const mcp = JSON.stringify(redactBody(toolsCall).body);
    expect(mcp).not.toContain(EMAIL);
    expect(mcp).not.toContain('4111');
  });
});
