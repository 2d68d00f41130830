/**
 * Facts about an LLM request body for policies and budgets: which API it calls, the model, an
 * input token count from a real tokenizer, the output ceiling and the cost estimate budgets
 * reserve. Never decides, never throws on odd shapes: a field of the wrong type is skipped.
 *
 * The parts live in `llm/`: which API a path and body call (`api.ts`), the tokenizers
 * (`tokenizer.ts`), the counting rules shared by every API (`counter.ts`) and those of each API
 * (`input-tokens.ts`), the output ceiling and cost (`cost.ts`), and the tool calls an agent just
 * made, for loop detection (`tool-calls.ts`).
 */
import { hasShape, llmApiForPath, type LlmApi } from './llm/api.js';
import { estimateCostMicroUsd, requestedMaxOutput, tokenLimit } from './llm/cost.js';
import { Counter } from './llm/counter.js';
import { anthropicInputTokens, chatInputTokens, embeddingsInputTokens, responsesInputTokens } from './llm/input-tokens.js';
import { encodingForModel } from './llm/tokenizer.js';
import type { PriceTable } from './prices.js';

/** What `input.llm` holds for an LLM API call (see {@link llmFacts}). */
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

/** What {@link llmFacts} needs besides the request: the price table and the default output ceiling. */
export interface LlmOptions {
  readonly prices: PriceTable;
  /** The output ceiling assumed when the request sets none. */
  readonly defaultMaxOutputTokens: number;
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
 * ({@link IMAGE_PART_TOKENS} … in `llm/counter.ts`). Not counted, because the body does not
 * hold them: context from a Responses `previous_response_id`/`conversation` or a stored `prompt`.
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
  const micro = match && model !== null ? estimateCostMicroUsd(options.prices, model, inputTokens, maxOutput * choices) : null;

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
