import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { countTokens as cl100kCount, encode as cl100kEncode, encodeChat as cl100kChat } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200kCount, encodeChat as o200kChat } from 'gpt-tokenizer/encoding/o200k_base';
import { afterAll, describe, expect, it } from 'vitest';
import { isSignalboxError } from '../src/core/errors.js';
import { llmFacts, type LlmOptions } from '../src/inspect/llm.js';
import { llmApiForPath } from '../src/inspect/llm/api.js';
import { AUDIO_PART_TOKENS, FILE_PART_TOKENS, IMAGE_PART_TOKENS } from '../src/inspect/llm/counter.js';
import { ANTHROPIC_TOOLS_SYSTEM_PROMPT_TOKENS } from '../src/inspect/llm/input-tokens.js';
import { clearTokenCountCache, countTextTokens, encodingForModel } from '../src/inspect/llm/tokenizer.js';
import { latestToolCalls } from '../src/inspect/llm/tool-calls.js';
import { PriceTable } from '../src/inspect/prices.js';

const options: LlmOptions = { prices: PriceTable.default(), defaultMaxOutputTokens: 4096 };
const o200k = (text: string): number => o200kCount(text);
const cl100k = (text: string): number => cl100kCount(text);

/** A table with one round-number model, for cost arithmetic. */
function table(models: Record<string, unknown>): PriceTable {
  return PriceTable.fromObject({ version: 1, models }, 'test');
}

function configError(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (isSignalboxError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected a config_invalid error');
}

describe('price table', () => {
  const prices = PriceTable.default();

  it('ships list prices for the common OpenAI and Anthropic models', () => {
    for (const model of [
      'gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'o3', 'o4-mini', 'gpt-5', 'gpt-5-mini',
      'gpt-5-nano', 'text-embedding-3-small', 'text-embedding-3-large', 'claude-3-5-haiku', 'claude-3-7-sonnet',
      'claude-sonnet-4', 'claude-opus-4', 'claude-haiku-4-5', 'claude-sonnet-4-5', 'claude-opus-4-5',
    ]) {
      expect(prices.lookup(model)?.key, model).toBe(model);
    }
    expect(prices.lookup('gpt-4o-mini')?.price).toEqual({ input_per_mtok: 0.15, cached_input_per_mtok: 0.075, output_per_mtok: 0.6 });
    expect(prices.lookup('claude-3-5-haiku')?.price).toEqual({ input_per_mtok: 0.8, cached_input_per_mtok: 0.08, output_per_mtok: 4 });
  });

  it('matches the exact name first, then the longest prefix followed by "-", case-insensitively', () => {
    expect(prices.lookup('gpt-4o-2024-08-06')?.key).toBe('gpt-4o');
    expect(prices.lookup('gpt-4o-mini-2024-07-18')?.key).toBe('gpt-4o-mini');
    expect(prices.lookup('gpt-4o-2024-05-13')?.key).toBe('gpt-4o-2024-05-13');
    expect(prices.lookup('gpt-4o-2024-05-13')?.price.input_per_mtok).toBe(5);
    expect(prices.lookup('gpt-4.1-2025-04-14')?.key).toBe('gpt-4.1');
    expect(prices.lookup('GPT-4O')?.key).toBe('gpt-4o');
    expect(prices.lookup('claude-sonnet-4-20250514')?.key).toBe('claude-sonnet-4');
    expect(prices.lookup('claude-3-5-haiku-latest')?.key).toBe('claude-3-5-haiku');
    expect(prices.lookup('claude-haiku-4-5-20251001')?.key).toBe('claude-haiku-4-5');
    expect(prices.lookup('o3-mini-2025-01-31')?.key).toBe('o3-mini');
    // A prefix must end at a "-": gpt-4 prices neither gpt-4o nor gpt-4.1-style names.
    expect(prices.lookup('gpt-4omni')).toBeUndefined();
    expect(table({ 'gpt-4': { input_per_mtok: 1, output_per_mtok: 1 } }).lookup('gpt-4.1')).toBeUndefined();
    expect(prices.lookup('llama-3.1-70b')).toBeUndefined();
    // Fine-tunes are billed above their base model: unpriced, not priced as the base.
    expect(prices.lookup('ft:gpt-4o-mini-2024-07-18:acme::abc123')).toBeUndefined();
    expect(prices.lookup('')).toBeUndefined();
  });

  it('computes costs exactly and rounds up to whole micro-USD', () => {
    const t = table({ m: { input_per_mtok: 0.075, output_per_mtok: 0.07 } });
    // 7 × 0.075 = 0.525 µUSD → 1
    expect(t.costMicroUsd('m', { input_tokens: 7, output_tokens: 0 })).toBe(1);
    // 100 × 0.07 is 7.000000000000001 in floating point; exactly 7.
    expect(t.costMicroUsd('m', { input_tokens: 0, output_tokens: 100 })).toBe(7);
    expect(t.costMicroUsd('m', { input_tokens: 0, output_tokens: 0 })).toBe(0);
    expect(t.costMicroUsd('m', { input_tokens: 1_000_000, output_tokens: 1_000_000 })).toBe(145_000);
    expect(t.costMicroUsd('unknown', { input_tokens: 1, output_tokens: 1 })).toBeUndefined();
    // gpt-4o: 1234 × 2.5 + 567 × 10 = 3085 + 5670
    expect(prices.costMicroUsd('gpt-4o-2024-11-20', { input_tokens: 1234, output_tokens: 567 })).toBe(8755);
  });

  it('bills cached input tokens (a subset of input tokens) at the cached price', () => {
    // gpt-4o-mini: 600 × 0.15 + 400 × 0.075 + 100 × 0.6 = 90 + 30 + 60
    expect(prices.costMicroUsd('gpt-4o-mini', { input_tokens: 1000, cached_input_tokens: 400, output_tokens: 100 })).toBe(180);
    // Without a cached price, cached tokens cost the input price.
    const t = table({ m: { input_per_mtok: 2, output_per_mtok: 0 } });
    expect(t.costMicroUsd('m', { input_tokens: 10, cached_input_tokens: 10, output_tokens: 0 })).toBe(20);
    // 3 cached tokens at 0.075 = 0.225 → rounded up once, on the total
    expect(prices.costMicroUsd('gpt-4o-mini', { input_tokens: 3, cached_input_tokens: 3, output_tokens: 0 })).toBe(1);
  });

  it('rejects impossible usage and totals beyond Number.MAX_SAFE_INTEGER', () => {
    expect(() => prices.costMicroUsd('gpt-4o', { input_tokens: 1, cached_input_tokens: 2, output_tokens: 0 })).toThrow(RangeError);
    expect(() => prices.costMicroUsd('gpt-4o', { input_tokens: -1, output_tokens: 0 })).toThrow(RangeError);
    expect(() => prices.costMicroUsd('gpt-4o', { input_tokens: 1.5, output_tokens: 0 })).toThrow(RangeError);
    expect(() => prices.costMicroUsd('o1-pro', { input_tokens: 0, output_tokens: Number.MAX_SAFE_INTEGER })).toThrow(/MAX_SAFE_INTEGER/);
    const t = table({ m: { input_per_mtok: 1, output_per_mtok: 0 } });
    expect(t.costMicroUsd('m', { input_tokens: Number.MAX_SAFE_INTEGER, output_tokens: 0 })).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('accepts prices with up to 6 decimal places in any JSON number form', () => {
    const t = table({ m: { input_per_mtok: 1.5e-5, cached_input_per_mtok: 0, output_per_mtok: 1e3 } });
    expect(t.costMicroUsd('m', { input_tokens: 1_000_000, output_tokens: 0 })).toBe(15);
    expect(t.costMicroUsd('m', { input_tokens: 1_000_000, cached_input_tokens: 1_000_000, output_tokens: 1 })).toBe(1000);
  });

  it.each([
    ['a non-object', [], '(root)'],
    ['a missing version', { models: {} }, 'version'],
    ['another version', { version: 2, models: {} }, 'version'],
    ['an unknown top-level key', { version: 1, models: {}, currency: 'EUR' }, 'currency'],
    ['models of the wrong type', { version: 1, models: [] }, 'models'],
    ['a model that is not an object', { version: 1, models: { m: 1 } }, 'models."m"'],
    ['a missing output price', { version: 1, models: { m: { input_per_mtok: 1 } } }, 'models."m".output_per_mtok'],
    ['a negative price', { version: 1, models: { m: { input_per_mtok: -1, output_per_mtok: 1 } } }, 'models."m".input_per_mtok'],
    ['a string price', { version: 1, models: { m: { input_per_mtok: '1', output_per_mtok: 1 } } }, 'models."m".input_per_mtok'],
    ['an infinite price', { version: 1, models: { m: { input_per_mtok: 1, output_per_mtok: Infinity } } }, 'models."m".output_per_mtok'],
    ['7 decimal places', { version: 1, models: { m: { input_per_mtok: 1, output_per_mtok: 0.1234567 } } }, 'models."m".output_per_mtok'],
    ['a tiny exponent', { version: 1, models: { m: { input_per_mtok: 1e-7, output_per_mtok: 1 } } }, 'models."m".input_per_mtok'],
    ['a misspelt key', { version: 1, models: { m: { input_per_mtok: 1, output_per_mtok: 1, cached_input_per_mtoks: 0.5 } } }, 'models."m".cached_input_per_mtoks'],
    ['names equal but for case', { version: 1, models: { 'GPT-X': { input_per_mtok: 1, output_per_mtok: 1 }, 'gpt-x': { input_per_mtok: 1, output_per_mtok: 1 } } }, 'models."gpt-x"'],
    ['an empty provider', { version: 1, models: { m: { provider: '', input_per_mtok: 1, output_per_mtok: 1 } } }, 'models."m".provider'],
  ])('rejects %s with config_invalid naming the key', (_, value, key) => {
    const error = configError(() => PriceTable.fromObject(value, 'prices.json'));
    expect(error.code).toBe('config_invalid');
    expect(error.message).toContain('prices.json');
    expect(error.message).toContain(`${key} `);
  });

  describe('from a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'signalbox-prices-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('loads an operator file', () => {
      const path = join(dir, 'ok.json');
      writeFileSync(path, JSON.stringify({ version: 1, models: { 'my-model': { provider: 'self', input_per_mtok: 1, output_per_mtok: 2 } } }));
      const t = PriceTable.fromFile(path);
      expect(t.lookup('my-model-v2')?.key).toBe('my-model');
      expect(t.costMicroUsd('my-model', { input_tokens: 3, output_tokens: 4 })).toBe(11);
    });

    it('names the file and the key when the data is bad', () => {
      const path = join(dir, 'bad.json');
      writeFileSync(path, JSON.stringify({ version: 1, models: { 'gpt-4o': { input_per_mtok: 2.5, output_per_mtok: -10 } } }));
      const error = configError(() => PriceTable.fromFile(path));
      expect(error).toMatchObject({ code: 'config_invalid' });
      expect(error.message).toContain(path);
      expect(error.message).toContain('models."gpt-4o".output_per_mtok');
    });

    it('rejects unreadable and unparseable files', () => {
      const broken = join(dir, 'broken.json');
      writeFileSync(broken, '{"version": 1,');
      expect(configError(() => PriceTable.fromFile(broken))).toMatchObject({ code: 'config_invalid', message: expect.stringContaining(broken) });
      const missing = join(dir, 'missing.json');
      expect(configError(() => PriceTable.fromFile(missing))).toMatchObject({ code: 'config_invalid', message: expect.stringContaining(missing) });
    });
  });
});

describe('token counting', () => {
  it('uses the encoding of the model, o200k_base for unknown and Anthropic models', () => {
    expect(encodingForModel('gpt-4o')).toBe('o200k_base');
    expect(encodingForModel('gpt-4o-mini-2024-07-18')).toBe('o200k_base');
    expect(encodingForModel('gpt-4.1-nano')).toBe('o200k_base');
    expect(encodingForModel('gpt-5-mini')).toBe('o200k_base');
    expect(encodingForModel('o3-mini')).toBe('o200k_base');
    expect(encodingForModel('o4-mini')).toBe('o200k_base');
    expect(encodingForModel('gpt-4')).toBe('cl100k_base');
    expect(encodingForModel('gpt-4-turbo-2024-04-09')).toBe('cl100k_base');
    expect(encodingForModel('gpt-3.5-turbo')).toBe('cl100k_base');
    expect(encodingForModel('text-embedding-3-small')).toBe('cl100k_base');
    expect(encodingForModel('openai/gpt-4')).toBe('cl100k_base');
    expect(encodingForModel('ft:gpt-3.5-turbo-0125:acme::abc123')).toBe('cl100k_base');
    expect(encodingForModel('claude-sonnet-4-5')).toBe('o200k_base');
    expect(encodingForModel(null)).toBe('o200k_base');
  });

  it('counts strings as gpt-tokenizer does (hand-checked: "hello world" is [15339, 1917] in cl100k_base)', () => {
    expect(cl100kEncode('hello world')).toEqual([15339, 1917]);
    expect(countTextTokens('hello world', 'cl100k_base')).toBe(2);
    for (const text of ['hello world', 'Grüße aus Köln! 🚀 これはテストです。', 'function f(x) { return x * 2; }', ' '.repeat(50)]) {
      expect(countTextTokens(text, 'o200k_base')).toBe(o200k(text));
      expect(countTextTokens(text, 'cl100k_base')).toBe(cl100k(text));
    }
    expect(countTextTokens('', 'o200k_base')).toBe(0);
  });

  it('treats special tokens in user text as text', () => {
    const text = 'ignore <|endoftext|> and <|im_start|>system';
    expect(countTextTokens(text, 'o200k_base')).toBe(o200kCount(text, { disallowedSpecial: new Set() }));
    expect(countTextTokens(text, 'o200k_base')).toBeGreaterThan(4);
  });

  it('hand-counted chat: 3 per message + role + content, + 3 to prime the reply', () => {
    const facts = llmFacts('/v1/chat/completions', { model: 'gpt-4', messages: [{ role: 'user', content: 'hello world' }] }, options);
    // 3 + "user" (1) + "hello world" (2) + 3
    expect(facts?.input_tokens).toBe(9);
    expect(facts?.tokenizer).toBe('cl100k_base');
  });

  it('equals gpt-tokenizer encodeChat for plain chats', () => {
    const messages = [
      { role: 'system', content: 'You are a careful assistant. Answer briefly.' },
      { role: 'user', content: 'What is the capital of France? Explain your reasoning in two sentences.' },
      { role: 'assistant', content: 'Paris. It has been the seat of government since the 10th century.' },
      { role: 'user', content: 'And of Germany?' },
    ];
    const o = llmFacts('/v1/chat/completions', { model: 'gpt-4o', messages }, options);
    expect(o?.input_tokens).toBe(o200kChat(messages, 'gpt-4o').length);
    const c = llmFacts('/v1/chat/completions', { model: 'gpt-4-0613', messages }, options);
    expect(c?.input_tokens).toBe(cl100kChat(messages, 'gpt-4').length);
  });
});

describe('token counting stays linear in time', () => {
  it.each([
    ['one letter', 'a', 75_000],
    ['spaces', ' ', 4_688],
    ['newlines', '\n', 37_500],
    ['an emoji', '🙂', 300_000],
  ])('counts 600,000 characters of %s in milliseconds, not minutes', (_name, unit, expected) => {
    clearTokenCountCache();
    const started = performance.now();
    expect(countTextTokens(unit.repeat(600_000 / unit.length), 'o200k_base')).toBe(expected);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('counts long prose in pieces exactly as whole, or a few tokens over, never under', () => {
    const prose = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    for (const [encoding, count] of [['o200k_base', o200kCount], ['cl100k_base', cl100kCount]] as const) {
      clearTokenCountCache();
      const exact = count(prose, { disallowedSpecial: new Set() });
      const pieces = countTextTokens(prose, encoding);
      expect(pieces).toBeGreaterThanOrEqual(exact);
      expect(pieces - exact).toBeLessThanOrEqual(Math.ceil(exact * 0.001));
    }
  });
});

describe('llmFacts: OpenAI chat', () => {
  const base = { model: 'gpt-4o-2024-08-06', messages: [{ role: 'user', content: 'hi' }] };
  const baseTokens = 3 + o200k('user') + o200k('hi') + 3;

  it('recognises the API by path suffix, including Azure deployments', () => {
    for (const path of [
      '/v1/chat/completions',
      '/openai/v1/chat/completions',
      '/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21',
      '/v1/chat/completions/',
      'v1/chat/completions',
    ]) {
      expect(llmFacts(path, base, options)?.api, path).toBe('openai.chat');
    }
    expect(llmApiForPath('/v1/threads/t_1/messages')).toBeUndefined();
    expect(llmFacts('/v1/models', base, options)).toBeUndefined();
    expect(llmFacts('/v1/chat/completions/chatcmpl-1', base, options)).toBeUndefined();
    expect(llmFacts('/v1/chat/completions', { model: 'gpt-4o', prompt: 'hi' }, options)).toBeUndefined();
  });

  it('reports model, stream, tokens, output ceiling and cost', () => {
    const facts = llmFacts('/v1/chat/completions', { ...base, stream: true, max_tokens: 100 }, options);
    expect(facts).toEqual({
      api: 'openai.chat',
      provider: 'openai',
      model: 'gpt-4o-2024-08-06',
      stream: true,
      input_tokens: baseTokens,
      max_output_tokens: 100,
      max_output_tokens_source: 'request',
      priced: true,
      price_model: 'gpt-4o',
      estimated_cost_usd: (baseTokens * 2.5 + 1000) / 1e6,
      estimated_cost_micro_usd: baseTokens * 2.5 + 1000,
      tokenizer: 'o200k_base',
    });
  });

  it('takes max_completion_tokens over max_tokens, skips wrong types, else the default', () => {
    const facts = (extra: object) => llmFacts('/v1/chat/completions', { ...base, ...extra }, options);
    expect(facts({ max_completion_tokens: 50, max_tokens: 100 })?.max_output_tokens).toBe(50);
    expect(facts({ max_completion_tokens: '50', max_tokens: 100 })?.max_output_tokens).toBe(100);
    expect(facts({ max_tokens: -1 })).toMatchObject({ max_output_tokens: 4096, max_output_tokens_source: 'default' });
    expect(facts({})).toMatchObject({ max_output_tokens: 4096, max_output_tokens_source: 'default' });
    expect(facts({ max_tokens: 0 })).toMatchObject({ max_output_tokens: 0, max_output_tokens_source: 'request' });
  });

  it('multiplies the output estimate by n', () => {
    const one = llmFacts('/v1/chat/completions', { ...base, max_tokens: 1000 }, options);
    const three = llmFacts('/v1/chat/completions', { ...base, max_tokens: 1000, n: 3 }, options);
    expect(three!.estimated_cost_micro_usd! - one!.estimated_cost_micro_usd!).toBe(2 * 1000 * 10);
    expect(three?.max_output_tokens).toBe(1000);
  });

  it('leaves unpriced or model-less requests without a cost', () => {
    expect(llmFacts('/v1/chat/completions', { ...base, model: 'my-finetune' }, options)).toMatchObject({
      priced: false, price_model: null, estimated_cost_usd: null, estimated_cost_micro_usd: null, model: 'my-finetune',
    });
    expect(llmFacts('/openai/deployments/d/chat/completions', { messages: base.messages }, options)).toMatchObject({
      model: null, priced: false, estimated_cost_micro_usd: null, tokenizer: 'o200k_base',
    });
  });

  it('saturates an absurd output ceiling at Number.MAX_SAFE_INTEGER micro-USD instead of dropping the cost', () => {
    const facts = llmFacts('/v1/chat/completions', { ...base, max_tokens: 1e300 }, options);
    expect(facts?.max_output_tokens).toBe(Number.MAX_SAFE_INTEGER);
    expect(facts?.estimated_cost_micro_usd).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('counts names, every part, tool calls, tool messages, tools and the response schema', () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const schema = { name: 'answer', schema: { type: 'object', properties: { text: { type: 'string' } } } };
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', name: 'alice', content: [{ type: 'text', text: 'Weather in Paris?' }, { type: 'image_url', image_url: { url: 'data:...' } }, { type: 'input_audio', input_audio: { data: '...' } }, { type: 'file', file: { file_id: 'f' } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'c1', content: '{"temp": 21}' },
      ],
      tools,
      response_format: { type: 'json_schema', json_schema: schema },
    };
    const expected =
      3 + o200k('system') + o200k('Be terse.') +
      3 + o200k('user') + 1 + o200k('alice') + o200k('Weather in Paris?') + IMAGE_PART_TOKENS + AUDIO_PART_TOKENS + FILE_PART_TOKENS +
      3 + o200k('assistant') + o200k('get_weather') + o200k('{"city":"Paris"}') +
      3 + o200k('tool') + o200k('{"temp": 21}') +
      3 + o200k(JSON.stringify(tools)) + o200k(JSON.stringify(schema));
    expect(llmFacts('/v1/chat/completions', body, options)?.input_tokens).toBe(expected);
  });
});

describe('llmFacts: OpenAI responses', () => {
  it('counts instructions and a string input', () => {
    const facts = llmFacts('/v1/responses', { model: 'gpt-4.1', instructions: 'Be kind.', input: 'Tell me a joke', max_output_tokens: 200, stream: true }, options);
    expect(facts).toMatchObject({
      api: 'openai.responses', provider: 'openai', stream: true, max_output_tokens: 200, max_output_tokens_source: 'request', price_model: 'gpt-4.1',
      input_tokens: 3 + o200k('developer') + o200k('Be kind.') + 3 + o200k('user') + o200k('Tell me a joke') + 3,
    });
    expect(facts?.estimated_cost_micro_usd).toBe(Math.ceil(facts!.input_tokens * 2 + 200 * 8));
  });

  it('counts message items, function calls, their outputs, reasoning summaries, tools and text.format', () => {
    const tools = [{ type: 'function', name: 'search', parameters: { type: 'object', properties: { q: { type: 'string' } } } }];
    const format = { type: 'json_schema', name: 'r', schema: { type: 'object' } };
    const body = {
      model: 'o4-mini',
      input: [
        { role: 'user', content: 'Find cats' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Searching.' }] },
        { type: 'reasoning', summary: [{ type: 'summary_text', text: 'need search' }] },
        { type: 'function_call', call_id: 'c', name: 'search', arguments: '{"q":"cats"}' },
        { type: 'function_call_output', call_id: 'c', output: 'three cats' },
        { role: 'user', content: [{ type: 'input_text', text: 'thanks' }, { type: 'input_image', image_url: 'https://x/y.png' }, { type: 'input_file', file_id: 'f' }] },
      ],
      tools,
      text: { format },
    };
    const expected =
      3 + o200k('user') + o200k('Find cats') +
      3 + o200k('assistant') + o200k('Searching.') +
      o200k('need search') +
      o200k('search') + o200k('{"q":"cats"}') +
      o200k('three cats') +
      3 + o200k('user') + o200k('thanks') + IMAGE_PART_TOKENS + FILE_PART_TOKENS +
      3 + o200k(JSON.stringify(tools)) + o200k(JSON.stringify(format));
    expect(llmFacts('/v1/responses', body, options)).toMatchObject({ input_tokens: expected, max_output_tokens_source: 'default', price_model: 'o4-mini' });
  });

  it('is not a call without input or model', () => {
    expect(llmFacts('/v1/responses', { background: true }, options)).toBeUndefined();
    expect(llmFacts('/v1/responses', { model: 'gpt-5', previous_response_id: 'r' }, options)?.input_tokens).toBe(0);
  });
});

describe('llmFacts: Anthropic messages', () => {
  it('counts system, text, tool_use input, tool_result content and tools (+ the tool system prompt)', () => {
    const tools = [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
    const body = {
      model: 'claude-sonnet-4-20250514',
      max_tokens: 1024,
      system: [{ type: 'text', text: 'You are Claude.' }],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'Use the tool.', signature: 's' }, { type: 'tool_use', id: 't1', name: 'get_weather', input: { city: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: '21C' }, { type: 'image', source: { type: 'base64', data: '...' } }] }, { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'A memo.' } }, { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: '...' } }] },
      ],
      tools,
      stream: true,
    };
    const expected =
      o200k('You are Claude.') +
      3 + o200k('user') + o200k('Weather in Paris?') +
      3 + o200k('assistant') + o200k('Use the tool.') + o200k('get_weather') + o200k('{"city":"Paris"}') +
      3 + o200k('user') + o200k('21C') + IMAGE_PART_TOKENS + o200k('A memo.') + FILE_PART_TOKENS +
      3 + o200k(JSON.stringify(tools)) + ANTHROPIC_TOOLS_SYSTEM_PROMPT_TOKENS;
    const facts = llmFacts('/v1/messages', body, options);
    expect(facts).toMatchObject({
      api: 'anthropic.messages', provider: 'anthropic', stream: true, input_tokens: expected, max_output_tokens: 1024,
      max_output_tokens_source: 'request', price_model: 'claude-sonnet-4', tokenizer: 'o200k_base',
    });
    expect(facts?.estimated_cost_micro_usd).toBe(expected * 3 + 1024 * 15);
  });

  it('accepts a string system prompt and gateway prefixes; defaults max_tokens', () => {
    const facts = llmFacts('/anthropic/v1/messages', { model: 'claude-3-5-haiku-latest', system: 'Be brief.', messages: [{ role: 'user', content: 'hi' }] }, options);
    expect(facts).toMatchObject({
      input_tokens: o200k('Be brief.') + 3 + o200k('user') + o200k('hi') + 3,
      max_output_tokens: 4096, max_output_tokens_source: 'default', price_model: 'claude-3-5-haiku',
    });
  });
});

describe('llmFacts: OpenAI embeddings', () => {
  it('counts a string, strings, and pre-tokenised input; no output', () => {
    const one = llmFacts('/v1/embeddings', { model: 'text-embedding-3-small', input: 'The food was delicious' }, options);
    expect(one).toMatchObject({
      api: 'openai.embeddings', input_tokens: cl100k('The food was delicious'), max_output_tokens: 0,
      max_output_tokens_source: 'request', tokenizer: 'cl100k_base', price_model: 'text-embedding-3-small', stream: false,
    });
    expect(one?.estimated_cost_micro_usd).toBe(Math.ceil(one!.input_tokens * 0.02));
    const many = llmFacts('/v1/embeddings', { model: 'text-embedding-3-large', input: ['a b c', 'd e'] }, options);
    expect(many?.input_tokens).toBe(cl100k('a b c') + cl100k('d e'));
    expect(llmFacts('/v1/embeddings', { model: 'text-embedding-3-large', input: [1, 2, 3] }, options)?.input_tokens).toBe(3);
    expect(llmFacts('/v1/embeddings', { model: 'text-embedding-3-large', input: [[1, 2], [3]] }, options)?.input_tokens).toBe(3);
  });
});

describe('latestToolCalls', () => {
  it('reads MCP tools/call, single and batched, on any path', () => {
    expect(latestToolCalls('/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'fetch', arguments: { url: 'https://x' } } })).toEqual([
      { name: 'fetch', arguments: { url: 'https://x' }, source: 'mcp' },
    ]);
    expect(latestToolCalls('/mcp', [
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'a' } },
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'b', arguments: { n: 1 } } },
    ])).toEqual([
      { name: 'a', arguments: {}, source: 'mcp' },
      { name: 'b', arguments: { n: 1 }, source: 'mcp' },
    ]);
    expect(latestToolCalls('/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { arguments: {} } })).toEqual([]);
    expect(latestToolCalls('/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/list' })).toEqual([]);
  });

  it('reads the tool calls of the last assistant message of a chat, parsing arguments', () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: 'go' },
        { role: 'assistant', tool_calls: [{ id: '1', type: 'function', function: { name: 'old', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: '1', content: 'ok' },
        { role: 'assistant', content: null, tool_calls: [
          { id: '2', type: 'function', function: { name: 'read_file', arguments: '{"path":"/etc/hosts"}' } },
          { id: '3', type: 'function', function: { name: 'run', arguments: '{not json' } },
          { id: '4', type: 'custom', custom: { name: 'patch', input: '*** Begin Patch' } },
          { id: '5', type: 'function', function: { arguments: '{}' } },
        ] },
        { role: 'tool', tool_call_id: '2', content: '127.0.0.1 localhost' },
      ],
    };
    expect(latestToolCalls('/v1/chat/completions', body)).toEqual([
      { name: 'read_file', arguments: { path: '/etc/hosts' }, source: 'openai.chat' },
      { name: 'run', arguments: '{not json', source: 'openai.chat' },
      { name: 'patch', arguments: '*** Begin Patch', source: 'openai.chat' },
    ]);
    // The last assistant message made no call: nothing, even though an earlier one did.
    const answered = { messages: [...body.messages, { role: 'assistant', content: 'done' }] };
    expect(latestToolCalls('/v1/chat/completions', answered)).toEqual([]);
  });

  it('reads the trailing function calls of a Responses input', () => {
    const body = {
      model: 'gpt-5',
      input: [
        { type: 'function_call', call_id: 'a', name: 'earlier', arguments: '{}' },
        { role: 'user', content: 'next' },
        { type: 'reasoning', summary: [] },
        { type: 'function_call', call_id: 'b', name: 'search', arguments: '{"q":"x"}' },
        { type: 'function_call', call_id: 'c', name: 'open', arguments: 'raw' },
        { type: 'function_call_output', call_id: 'b', output: 'r1' },
        { type: 'function_call_output', call_id: 'c', output: 'r2' },
      ],
    };
    expect(latestToolCalls('/v1/responses', body)).toEqual([
      { name: 'search', arguments: { q: 'x' }, source: 'openai.responses' },
      { name: 'open', arguments: 'raw', source: 'openai.responses' },
    ]);
    expect(latestToolCalls('/v1/responses', { model: 'gpt-5', input: 'hello' })).toEqual([]);
  });

  it('reads the tool_use blocks of the last assistant message for Anthropic', () => {
    const body = {
      model: 'claude-sonnet-4-5',
      messages: [
        { role: 'user', content: 'list files' },
        { role: 'assistant', content: [{ type: 'text', text: 'Listing.' }, { type: 'tool_use', id: 't', name: 'ls', input: { dir: '/' } }, { type: 'tool_use', id: 'u', name: 'pwd', input: {} }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: 'bin etc' }] },
      ],
    };
    expect(latestToolCalls('/v1/messages', body)).toEqual([
      { name: 'ls', arguments: { dir: '/' }, source: 'anthropic.messages' },
      { name: 'pwd', arguments: {}, source: 'anthropic.messages' },
    ]);
  });

  it('finds nothing on other paths and bodies', () => {
    expect(latestToolCalls('/v1/embeddings', { input: 'x' })).toEqual([]);
    expect(latestToolCalls('/v1/files', { messages: [{ role: 'assistant', tool_calls: [{ function: { name: 'x' } }] }] })).toEqual([]);
    expect(latestToolCalls('/v1/chat/completions', null)).toEqual([]);
  });
});

describe('odd and malformed shapes', () => {
  const paths = ['/v1/chat/completions', '/v1/responses', '/v1/embeddings', '/v1/messages', '/mcp', ''];
  const odd: unknown[] = [
    null, undefined, 0, 'text', true, [], [null], {},
    { messages: 'no' }, { messages: {} }, { input: {} }, { input: 42 }, { model: 7, messages: [] },
    { model: 'gpt-4o', messages: [null, 1, 'str', [], { role: 5, content: { text: 'x' }, name: {} }] },
    { model: 'gpt-4o', messages: [{ role: 'user', content: [null, 1, 'bare string', { type: 7 }, { type: 'text', text: 5 }, { type: 'text' }, { type: 'image_url' }, { nested: [[[]]] }] }] },
    { model: 'gpt-4o', messages: [{ role: 'assistant', tool_calls: 'x', function_call: 'y' }, { role: 'assistant', tool_calls: [null, 1, { function: 'f' }, { function: { name: 1, arguments: { a: 1 } } }] }] },
    { model: 'gpt-4o', messages: [], tools: 'x', functions: {}, response_format: { type: 'json_schema' }, n: 'many', max_tokens: 'lots', stream: 'yes' },
    { model: 'gpt-4o', input: [null, 1, { type: 'function_call' }, { type: 'function_call_output', output: { o: 1 } }, { type: 'message', content: 5 }, { type: 'reasoning', summary: 'x' }, { role: 'user' }], text: 'plain', tools: [] },
    { model: 'claude-3-haiku', system: 5, messages: [{ role: 'user', content: [{ type: 'document' }, { type: 'document', source: null }, { type: 'tool_result', content: { x: 1 } }, { type: 'tool_use', input: undefined }] }], tools: {} },
    { model: 'text-embedding-3-small', input: [null, {}, 'x', [1, 'a'], -1] },
    { method: 'tools/call', params: 'x' },
    { method: 'tools/call', params: { name: 'n', arguments: null } },
    { messages: [{ role: 'user', content: [{ type: 'tool_result', content: [{ type: 'tool_result', content: [{ type: 'tool_result', content: [{ type: 'tool_result', content: [{ type: 'tool_result', content: [{ type: 'tool_result', content: [{ type: 'tool_result', content: [{ type: 'text', text: 'deep' }] }] }] }] }] }] }] }] }] },
  ];

  it('never throws on the listed oddities', () => {
    for (const path of paths) {
      for (const body of odd) {
        expect(() => llmFacts(path, body, options), `${path} ${JSON.stringify(body)}`).not.toThrow();
        expect(() => latestToolCalls(path, body), `${path} ${JSON.stringify(body)}`).not.toThrow();
      }
    }
  });

  it('never throws on random JSON, and counts are non-negative integers', () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const keys = ['model', 'messages', 'input', 'content', 'role', 'type', 'text', 'tool_calls', 'function', 'name', 'arguments', 'tools', 'system', 'max_tokens', 'params', 'method', 'output', 'source', 'data', 'n'];
    const strings = ['user', 'assistant', 'text', 'tool_use', 'function_call', 'message', 'tools/call', 'gpt-4o', 'claude-3-haiku', '{"a":1}', 'document', 'content', ''];
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 5 || r < 0.2) return strings[Math.floor(random() * strings.length)];
      if (r < 0.3) return Math.floor(random() * 2000) - 10;
      if (r < 0.35) return null;
      if (r < 0.4) return random() < 0.5;
      if (r < 0.65) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 5); i > 0; i -= 1) object[keys[Math.floor(random() * keys.length)] as string] = value(depth + 1);
      return object;
    };
    for (let i = 0; i < 2000; i += 1) {
      const body = value(0);
      const path = paths[i % paths.length] as string;
      const facts = llmFacts(path, body, options);
      if (facts) {
        expect(Number.isSafeInteger(facts.input_tokens) && facts.input_tokens >= 0).toBe(true);
        if (facts.estimated_cost_micro_usd !== null) expect(Number.isSafeInteger(facts.estimated_cost_micro_usd)).toBe(true);
      }
      expect(Array.isArray(latestToolCalls(path, body))).toBe(true);
    }
  });
});
