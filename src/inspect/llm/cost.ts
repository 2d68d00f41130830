/**
 * The output ceiling a request sets and the cost estimate budgets reserve for it.
 */
import type { Json, LlmApi } from './api.js';
import type { PriceTable } from '../prices.js';

/** A token limit as the request gives it: a non-negative integer (capped at MAX_SAFE_INTEGER), else undefined. */
export function tokenLimit(value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) return undefined;
  return Math.min(value, Number.MAX_SAFE_INTEGER);
}

/** The output ceiling the body sets for its API (`max_completion_tokens`, `max_tokens`, …); 0 for embeddings, undefined when unset. */
export function requestedMaxOutput(api: LlmApi, body: Json): number | undefined {
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
 * Integer micro-USD for `inputTokens` at the full input price plus `billedOutput` at the output
 * price, rounded up. An output count beyond Number.MAX_SAFE_INTEGER is priced as that many tokens, and
 * a total the table cannot represent (it throws) is reported as Number.MAX_SAFE_INTEGER, so a
 * budget refuses it rather than skipping it. Null when the table has no price for the model.
 */
export function estimateCostMicroUsd(prices: PriceTable, model: string, inputTokens: number, billedOutput: number): number | null {
  try {
    return (
      prices.costMicroUsd(model, {
        input_tokens: inputTokens,
        output_tokens: Number.isSafeInteger(billedOutput) ? billedOutput : Number.MAX_SAFE_INTEGER,
      }) ?? null
    );
  } catch {
    return Number.MAX_SAFE_INTEGER;
  }
}
