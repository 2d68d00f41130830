/**
 * Facts about an LLM request body for policies and budgets: which API it calls, the model, an
 * input token count from a real tokenizer, the output ceiling and the cost estimate budgets
 * reserve; and the tool calls an agent just made, for loop detection. Never decides, never
 * throws on odd shapes: a field of the wrong type is skipped.
 */
import { createRequire } from 'node:module';
import type { PriceTable } from './prices.js';

export type LlmApi = 'openai.chat' | 'openai.responses' | 'openai.embeddings' | 'anthropic.messages';

export interface LlmFacts {
  readonly api: LlmApi;
  /** The API dialect: a gateway such as LiteLLM may serve `openai.chat` from any vendor. */
  readonly provider: 'openai' | 'anthropic';
  readonly model: string | null;
  readonly stream: boolean;
  readonly input_tokens: number;
  /** Per choice: chat's `n` multiplies it in the cost estimate, not here. */
  readonly max_output_tokens: number;
  readonly max_output_tokens_source: 'request' | 'default';
  readonly priced: boolean;
  /** The price-table key matched. */
  readonly price_model: string | null;
  /** estimated_cost_micro_usd / 1e6. */
  readonly estimated_cost_usd: number | null;
  /** Integer micro-USD for input_tokens + max output at list price: what budgets reserve. */
  readonly estimated_cost_micro_usd: number | null;
  readonly tokenizer: string;
}

export interface LlmOptions {
  readonly prices: PriceTable;
  /** The output ceiling assumed when the request sets none. */
  readonly defaultMaxOutputTokens: number;
}

export interface ToolCallFact {
  readonly name: string;
  readonly arguments: unknown;
  readonly source: 'mcp' | LlmApi;
}

// ---------------------------------------------------------------------------------------------
// Tokenizers

export type EncodingName = 'o200k_base' | 'cl100k_base';

interface Encoder {
  countTokens(text: string, options?: { disallowedSpecial?: Set<string> }): number;
}

const requireCjs = createRequire(import.meta.url);
const encoders = new Map<EncodingName, Encoder>();

/**
 * Loaded on first use (each encoding is megabytes of merge ranks, ~200 ms to load) through
 * `require`, because `llmFacts` is synchronous; cached for the life of the process.
 */
function encoder(name: EncodingName): Encoder {
  let loaded = encoders.get(name);
  if (!loaded) {
    loaded =
      name === 'cl100k_base'
        ? (requireCjs('gpt-tokenizer/encoding/cl100k_base') as Encoder)
        : (requireCjs('gpt-tokenizer/encoding/o200k_base') as Encoder);
    encoders.set(name, loaded);
  }
  return loaded;
}

/** Loads the encodings now, so the first request does not pay for it. */
export function warmUpTokenizers(): void {
  encoder('o200k_base');
  encoder('cl100k_base');
}

/**
 * The encoding for a model: `cl100k_base` for gpt-4 / gpt-3.5 / text-embedding-3 and -ada-002,
 * `o200k_base` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, the o-series and everything else.
 *
 * For Anthropic (and any unknown) model `o200k_base` is an approximation: Claude's tokenizer is
 * not public, so counts differ from what Anthropic bills. Anthropic documents that Claude 4.7 and
 * later models use a tokenizer producing ~30% more tokens for the same text than earlier ones,
 * so expect an undercount there. Anthropic's count_tokens endpoint gives exact figures.
 * A gateway prefix (`openai/gpt-4`) and a fine-tune prefix (`ft:gpt-4o-mini:org::id`) are ignored.
 */
export function encodingForModel(model: string | null): EncodingName {
  if (model === null) return 'o200k_base';
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase().replace(/^ft:/, '');
  if (/^(gpt-4o|chatgpt-4o|gpt-4\.[1-9]|gpt-[5-9]|gpt-oss|o\d|codex-)/.test(name)) return 'o200k_base';
  if (/^(gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002)/.test(name)) return 'cl100k_base';
  return 'o200k_base';
}

/** Special tokens in user text are text to the provider, never control tokens (and never an error). */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * Counts are memoised across requests: agents resend the whole conversation on every turn, so
 * most of a request's text was counted on the previous one. Bounded by total characters and
 * entries, least recently used evicted first. The cache holds prompt text in process memory only.
 */
const CACHE_MAX_CHARS = 8_000_000;
const CACHE_MAX_ENTRIES = 20_000;

class CountCache {
  readonly #counts = new Map<string, number>();
  #chars = 0;

  get(text: string): number | undefined {
    const count = this.#counts.get(text);
    if (count !== undefined) {
      this.#counts.delete(text);
      this.#counts.set(text, count);
    }
    return count;
  }

  set(text: string, count: number): void {
    if (text.length > CACHE_MAX_CHARS / 4) return;
    this.#counts.set(text, count);
    this.#chars += text.length;
    while (this.#chars > CACHE_MAX_CHARS || this.#counts.size > CACHE_MAX_ENTRIES) {
      const oldest = this.#counts.keys().next().value as string;
      this.#counts.delete(oldest);
      this.#chars -= oldest.length;
    }
  }

  clear(): void {
    this.#counts.clear();
    this.#chars = 0;
  }
}

const caches = new Map<EncodingName, CountCache>();

/** Empties the cross-request token count cache (tests and benchmarks). */
export function clearTokenCountCache(): void {
  for (const cache of caches.values()) cache.clear();
}

/** Tokens in one string with the given encoding, memoised. */
export function countTextTokens(text: string, encoding: EncodingName): number {
  if (text === '') return 0;
  let cache = caches.get(encoding);
  if (!cache) {
    cache = new CountCache();
    caches.set(encoding, cache);
  }
  const cached = cache.get(text);
  if (cached !== undefined) return cached;
  const count = encoder(encoding).countTokens(text, PLAIN_TEXT);
  cache.set(text, count);
  return count;
}

// ---------------------------------------------------------------------------------------------
// Counting rules

/**
 * OpenAI's published chat overhead (openai-cookbook "How to count tokens with tiktoken"): every
 * message is wrapped in 3 tokens (`<|start|>`, `<|message|>`/separator, `<|end|>`) plus its role,
 * a `name` costs 1 more, and every reply is primed with 3 (`<|start|>assistant<|message|>`). The
 * same framing is applied to Responses items and Anthropic messages, whose formats are not
 * published; it errs on the side of counting a few tokens too many.
 */
const MESSAGE_OVERHEAD = 3;
const NAME_OVERHEAD = 1;
const REPLY_PRIMING = 3;

/**
 * Fixed, conservative estimates for parts whose size cannot be read from the body. An image:
 * 1600 covers OpenAI's high-detail tile formula at its largest for gpt-4o / gpt-4.1 / gpt-5
 * (85 + 170 × 8 tiles = 1445) and Claude's resize cap (~1.15 MP ≈ 1600 tokens). It undercounts
 * models that bill image patches with a multiplier (gpt-4.1-mini/-nano, o4-mini) and gpt-4o-mini,
 * which bills images at ~33× the tokens (the same USD as gpt-4o).
 */
export const IMAGE_PART_TOKENS = 1600;
/** An audio part: ~3 minutes at OpenAI's ~10 audio tokens per second. Audio tokens are billed at
 * audio rates, several times the text price this table holds, so the USD estimate is low. */
export const AUDIO_PART_TOKENS = 2000;
/** A file or document part (PDF, …) given by reference or as base64: a few pages of text + page images. */
export const FILE_PART_TOKENS = 5000;
/**
 * Anthropic adds a tool-use system prompt whenever `tools` is set: 346 tokens for Claude 4.x /
 * 3.7 Sonnet with tool_choice auto or none (Anthropic's "Tool use" pricing table), the largest
 * figure for current models.
 */
export const ANTHROPIC_TOOLS_SYSTEM_PROMPT_TOKENS = 346;

/** Nesting we follow in content blocks (tool_result → document → content …). */
const MAX_DEPTH = 6;

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Counter {
  total = 0;
  constructor(readonly encoding: EncodingName) {}

  text(value: unknown): void {
    if (typeof value === 'string') this.total += countTextTokens(value, this.encoding);
  }

  /** A JSON value as the provider sees it serialised (tool schemas, tool_use input). */
  json(value: unknown): void {
    if (value === undefined) return;
    if (typeof value === 'string') {
      this.text(value);
      return;
    }
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      return;
    }
    this.text(text);
  }

  message(role: unknown, name?: unknown): void {
    this.total += MESSAGE_OVERHEAD;
    this.text(role);
    if (typeof name === 'string') {
      this.total += NAME_OVERHEAD;
      this.text(name);
    }
  }

  /** A content part or block of any of the three APIs. */
  part(part: unknown, depth: number): void {
    if (typeof part === 'string') {
      this.text(part);
      return;
    }
    if (!isRecord(part) || depth > MAX_DEPTH) return;
    switch (part.type) {
      case 'text':
      case 'input_text':
      case 'output_text':
        this.text(part.text);
        return;
      case 'refusal':
        this.text(part.refusal);
        return;
      case 'thinking':
        this.text(part.thinking);
        return;
      case 'image':
      case 'image_url':
      case 'input_image':
        this.total += IMAGE_PART_TOKENS;
        return;
      case 'input_audio':
      case 'audio':
        this.total += AUDIO_PART_TOKENS;
        return;
      case 'file':
      case 'input_file':
        this.total += FILE_PART_TOKENS;
        return;
      case 'document':
        this.document(part, depth);
        return;
      case 'tool_use':
      case 'server_tool_use':
        this.text(part.name);
        this.json(part.input);
        return;
      case 'tool_result':
      case 'search_result':
        this.text(part.title);
        this.content(part.content, depth + 1);
        return;
      case 'redacted_thinking':
        return;
      default:
        // Unknown part types: count whatever text they carry rather than nothing.
        this.text(part.text);
    }
  }

  /** Anthropic documents: plain text and content sources are counted, files are estimated. */
  document(part: Json, depth: number): void {
    const source = part.source;
    this.text(part.title);
    this.text(part.context);
    if (isRecord(source) && source.type === 'text') this.text(source.data);
    else if (isRecord(source) && source.type === 'content') this.content(source.content, depth + 1);
    else this.total += FILE_PART_TOKENS;
  }

  content(content: unknown, depth: number): void {
    if (typeof content === 'string') this.text(content);
    else if (Array.isArray(content)) for (const part of content) this.part(part, depth);
  }
}

function chatInputTokens(body: Json, counter: Counter): void {
  const messages = body.messages as unknown[];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    counter.message(message.role, message.name);
    counter.content(message.content, 0);
    counter.text(message.refusal);
    if (Array.isArray(message.tool_calls)) {
      for (const call of message.tool_calls) {
        if (!isRecord(call)) continue;
        const fn = isRecord(call.function) ? call.function : isRecord(call.custom) ? call.custom : undefined;
        if (!fn) continue;
        counter.text(fn.name);
        counter.json(fn.arguments ?? fn.input);
      }
    }
    if (isRecord(message.function_call)) {
      counter.text(message.function_call.name);
      counter.json(message.function_call.arguments);
    }
  }
  counter.total += REPLY_PRIMING;
  if (Array.isArray(body.tools) && body.tools.length > 0) counter.json(body.tools);
  if (Array.isArray(body.functions) && body.functions.length > 0) counter.json(body.functions);
  const format = body.response_format;
  if (isRecord(format) && format.type === 'json_schema') counter.json(format.json_schema ?? format);
}

function responsesInputTokens(body: Json, counter: Counter): void {
  let items = 0;
  if (typeof body.instructions === 'string') {
    counter.message('developer');
    counter.text(body.instructions);
    items += 1;
  }
  const input = body.input;
  if (typeof input === 'string') {
    counter.message('user');
    counter.text(input);
    items += 1;
  } else if (Array.isArray(input)) {
    for (const item of input) {
      if (!isRecord(item)) continue;
      items += 1;
      switch (item.type ?? (item.role === undefined ? undefined : 'message')) {
        case 'message':
          counter.message(item.role);
          counter.content(item.content, 0);
          break;
        case 'function_call':
          counter.text(item.name);
          counter.json(item.arguments);
          break;
        case 'custom_tool_call':
          counter.text(item.name);
          counter.json(item.input);
          break;
        case 'function_call_output':
        case 'custom_tool_call_output':
          counter.content(item.output, 0);
          break;
        case 'reasoning':
          if (Array.isArray(item.summary)) for (const part of item.summary) counter.part(part, 0);
          break;
        default:
          break;
      }
    }
  }
  if (items > 0) counter.total += REPLY_PRIMING;
  if (Array.isArray(body.tools) && body.tools.length > 0) counter.json(body.tools);
  const text = body.text;
  if (isRecord(text) && isRecord(text.format) && text.format.type === 'json_schema') counter.json(text.format);
}

function anthropicInputTokens(body: Json, counter: Counter): void {
  counter.content(body.system, 0);
  for (const message of body.messages as unknown[]) {
    if (!isRecord(message)) continue;
    counter.message(message.role);
    counter.content(message.content, 0);
  }
  counter.total += REPLY_PRIMING;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    counter.json(body.tools);
    counter.total += ANTHROPIC_TOOLS_SYSTEM_PROMPT_TOKENS;
  }
}

function embeddingsInputTokens(body: Json, counter: Counter): void {
  const input = body.input;
  if (typeof input === 'string') {
    counter.text(input);
    return;
  }
  if (!Array.isArray(input)) return;
  for (const item of input) {
    // Pre-tokenised input: an array of token ids, or an array of such arrays.
    if (typeof item === 'string') counter.text(item);
    else if (typeof item === 'number') counter.total += 1;
    else if (Array.isArray(item)) counter.total += item.length;
  }
}

// ---------------------------------------------------------------------------------------------
// API detection

function normalisePath(path: string): string {
  let end = path.length;
  const query = path.search(/[?#]/);
  if (query >= 0) end = query;
  while (end > 1 && path.charCodeAt(end - 1) === 47 /* / */) end -= 1;
  const trimmed = path.slice(0, end).toLowerCase();
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

/**
 * The API a path names, by suffix: `/v1/chat/completions`, `/openai/v1/chat/completions` and
 * Azure's `/openai/deployments/{d}/chat/completions` are all chat. `…/messages` is Anthropic's
 * Messages API, except OpenAI Assistants' `/threads/{id}/messages`.
 */
export function llmApiForPath(path: string): LlmApi | undefined {
  if (typeof path !== 'string') return undefined;
  const p = normalisePath(path);
  if (p.endsWith('/chat/completions')) return 'openai.chat';
  if (p.endsWith('/responses')) return 'openai.responses';
  if (p.endsWith('/embeddings')) return 'openai.embeddings';
  if (p.endsWith('/messages') && !p.includes('/threads/')) return 'anthropic.messages';
  return undefined;
}

/** Does the body have the shape of a call to `api` (the field the API cannot do without)? */
function hasShape(api: LlmApi, body: unknown): body is Json {
  if (!isRecord(body)) return false;
  switch (api) {
    case 'openai.chat':
    case 'anthropic.messages':
      return Array.isArray(body.messages);
    case 'openai.responses':
      return body.input !== undefined || typeof body.model === 'string';
    case 'openai.embeddings':
      return body.input !== undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Facts

function tokenLimit(value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) return undefined;
  return Math.min(value, Number.MAX_SAFE_INTEGER);
}

function requestedMaxOutput(api: LlmApi, body: Json): number | undefined {
  switch (api) {
    case 'openai.chat':
      return tokenLimit(body.max_completion_tokens) ?? tokenLimit(body.max_tokens);
    case 'openai.responses':
      return tokenLimit(body.max_output_tokens);
    case 'anthropic.messages':
      return tokenLimit(body.max_tokens);
    case 'openai.embeddings':
      return 0;
  }
}

/**
 * Facts about an LLM call, or undefined when the path is not an LLM API or the body is not a
 * call to it.
 *
 * `input_tokens` counts what the provider bills as input, with `o200k_base` or `cl100k_base` by
 * model (see {@link encodingForModel}): chat messages of every role with OpenAI's per-message
 * overhead, text parts, tool calls and their arguments, `tools`/`functions` and a
 * `response_format` JSON schema (as JSON); Responses `instructions` and `input` items; Anthropic
 * `system`, message blocks, `tool_use` input, `tool_result` content and `tools` (plus the tool-use
 * system prompt); embeddings `input`. Images, audio and files are fixed estimates
 * ({@link IMAGE_PART_TOKENS} …). Not counted, because the body does not hold them: context from
 * a Responses `previous_response_id`/`conversation` or a stored `prompt`.
 *
 * The cost is input at the full input price (a cache hit cannot be known in advance) plus
 * `max_output_tokens` (× chat's `n`) at the output price, rounded up to whole micro-USD; a total
 * beyond Number.MAX_SAFE_INTEGER micro-USD is reported as Number.MAX_SAFE_INTEGER so a budget
 * refuses it rather than skipping it. Unpriced models have `priced: false` and null costs.
 * Long-context surcharges and audio rates are not modelled.
 */
export function llmFacts(path: string, body: unknown, options: LlmOptions): LlmFacts | undefined {
  const api = llmApiForPath(path);
  if (api === undefined || !hasShape(api, body)) return undefined;

  const model = typeof body.model === 'string' && body.model !== '' ? body.model : null;
  const encoding = encodingForModel(model);
  const counter = new Counter(encoding);
  switch (api) {
    case 'openai.chat':
      chatInputTokens(body, counter);
      break;
    case 'openai.responses':
      responsesInputTokens(body, counter);
      break;
    case 'anthropic.messages':
      anthropicInputTokens(body, counter);
      break;
    case 'openai.embeddings':
      embeddingsInputTokens(body, counter);
      break;
  }
  const inputTokens = Math.min(counter.total, Number.MAX_SAFE_INTEGER);

  const requested = requestedMaxOutput(api, body);
  const maxOutput = requested ?? tokenLimit(options.defaultMaxOutputTokens) ?? 0;
  const choices = api === 'openai.chat' && typeof body.n === 'number' && Number.isInteger(body.n) && body.n > 1 ? body.n : 1;

  const match = model === null ? undefined : options.prices.lookup(model);
  let micro: number | null = null;
  if (match && model !== null) {
    const billedOutput = maxOutput * choices;
    try {
      micro =
        options.prices.costMicroUsd(model, {
          input_tokens: inputTokens,
          output_tokens: Number.isSafeInteger(billedOutput) ? billedOutput : Number.MAX_SAFE_INTEGER,
        }) ?? null;
    } catch {
      micro = Number.MAX_SAFE_INTEGER;
    }
  }

  return {
    api,
    provider: api === 'anthropic.messages' ? 'anthropic' : 'openai',
    model,
    stream: body.stream === true,
    input_tokens: inputTokens,
    max_output_tokens: maxOutput,
    max_output_tokens_source: requested === undefined ? 'default' : 'request',
    priced: match !== undefined,
    price_model: match?.key ?? null,
    estimated_cost_usd: micro === null ? null : micro / 1e6,
    estimated_cost_micro_usd: micro,
    tokenizer: encoding,
  };
}

// ---------------------------------------------------------------------------------------------
// Tool calls

/** Tool-call arguments as JSON strings are parsed; a string that does not parse is kept as is. */
function parseArguments(value: unknown): unknown {
  if (typeof value !== 'string') return value ?? null;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function mcpToolCalls(body: unknown): ToolCallFact[] | undefined {
  const requests = Array.isArray(body) ? body : [body];
  const calls: ToolCallFact[] = [];
  let isMcp = false;
  for (const request of requests) {
    if (!isRecord(request) || request.method !== 'tools/call') continue;
    isMcp = true;
    const params = request.params;
    if (isRecord(params) && typeof params.name === 'string') {
      calls.push({ name: params.name, arguments: params.arguments ?? {}, source: 'mcp' });
    }
  }
  return isMcp ? calls : undefined;
}

function lastAssistant(messages: unknown): Json | undefined {
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const message: unknown = messages[i];
    if (isRecord(message) && message.role === 'assistant') return message;
  }
  return undefined;
}

function chatToolCalls(body: Json): ToolCallFact[] {
  const message = lastAssistant(body.messages);
  if (!message) return [];
  const calls: ToolCallFact[] = [];
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      if (!isRecord(call)) continue;
      if (isRecord(call.function) && typeof call.function.name === 'string') {
        calls.push({ name: call.function.name, arguments: parseArguments(call.function.arguments), source: 'openai.chat' });
      } else if (isRecord(call.custom) && typeof call.custom.name === 'string') {
        calls.push({ name: call.custom.name, arguments: call.custom.input ?? null, source: 'openai.chat' });
      }
    }
  }
  const legacy = message.function_call;
  if (isRecord(legacy) && typeof legacy.name === 'string') {
    calls.push({ name: legacy.name, arguments: parseArguments(legacy.arguments), source: 'openai.chat' });
  }
  return calls;
}

const TRAILING_TOOL_ITEMS = new Set(['function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output', 'reasoning']);

/**
 * The function calls at the end of a Responses `input`: walking back from the last item over
 * calls, their outputs and reasoning items, up to the first other item (a message).
 */
function responsesToolCalls(body: Json): ToolCallFact[] {
  const input = body.input;
  if (!Array.isArray(input)) return [];
  const calls: ToolCallFact[] = [];
  for (let i = input.length - 1; i >= 0; i -= 1) {
    const item: unknown = input[i];
    if (!isRecord(item) || typeof item.type !== 'string' || !TRAILING_TOOL_ITEMS.has(item.type)) break;
    if (typeof item.name !== 'string') continue;
    if (item.type === 'function_call') {
      calls.push({ name: item.name, arguments: parseArguments(item.arguments), source: 'openai.responses' });
    } else if (item.type === 'custom_tool_call') {
      calls.push({ name: item.name, arguments: item.input ?? null, source: 'openai.responses' });
    }
  }
  return calls.reverse();
}

function anthropicToolCalls(body: Json): ToolCallFact[] {
  const message = lastAssistant(body.messages);
  if (!message || !Array.isArray(message.content)) return [];
  const calls: ToolCallFact[] = [];
  for (const block of message.content) {
    if (isRecord(block) && block.type === 'tool_use' && typeof block.name === 'string') {
      calls.push({ name: block.name, arguments: block.input ?? {}, source: 'anthropic.messages' });
    }
  }
  return calls;
}

/**
 * The tool call(s) an agent just made, for loop detection, in call order; empty when none.
 *
 * - MCP (any path): JSON-RPC `tools/call` requests, single or batched: `params.name`,
 *   `params.arguments` (absent → `{}`).
 * - OpenAI chat: `tool_calls` (and legacy `function_call`) of the last assistant message;
 *   `function.arguments` is a JSON string, parsed, kept raw when it does not parse.
 * - OpenAI Responses: the trailing `function_call` / `custom_tool_call` items of `input`.
 * - Anthropic: `tool_use` blocks of the last assistant message (`input` as is).
 */
export function latestToolCalls(path: string, body: unknown): ToolCallFact[] {
  const mcp = mcpToolCalls(body);
  if (mcp) return mcp;
  const api = llmApiForPath(path);
  if (api === undefined || !hasShape(api, body)) return [];
  switch (api) {
    case 'openai.chat':
      return chatToolCalls(body);
    case 'openai.responses':
      return responsesToolCalls(body);
    case 'anthropic.messages':
      return anthropicToolCalls(body);
    case 'openai.embeddings':
      return [];
  }
}
