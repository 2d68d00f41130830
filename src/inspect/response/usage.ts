/**
 * The usage block a provider reports for a response, kept in the shape the usage report accepts
 * (enforce/report.ts `usageSchema`): OpenAI chat `prompt_tokens` / `completion_tokens` /
 * `prompt_tokens_details.cached_tokens`, Responses and Anthropic `input_tokens` / `output_tokens`
 * (Responses `input_tokens_details.cached_tokens`), Anthropic `cache_read_input_tokens` /
 * `cache_creation_input_tokens`. Only those members are kept, and only when they are whole,
 * non-negative, safe numbers: a provider's odd member must not make the settlement's report
 * malformed, and the extra members (`total_tokens`, reasoning details) are not settled on.
 */
import { isJsonObject } from '../../core/json-object.js';

/** A provider's usage block, reduced to the members a usage report settles on. */
export interface ProviderUsage {
  input_tokens?: number;
  output_tokens?: number;
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
  input_tokens_details?: { cached_tokens?: number };
  cache_read_input_tokens?: number;
  cache_creation_input_tokens?: number;
}

const COUNTS = ['input_tokens', 'output_tokens', 'prompt_tokens', 'completion_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens'] as const;
const DETAILS = ['prompt_tokens_details', 'input_tokens_details'] as const;

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The usage members of `value` that a report settles on, or undefined when it holds none (not an
 * object, `null` as OpenAI's non-final stream chunks send, or no token count at all).
 */
export function providerUsage(value: unknown): ProviderUsage | undefined {
  if (!isJsonObject(value)) return undefined;
  const usage: ProviderUsage = {};
  let counted = false;
  for (const key of COUNTS) {
    const n = value[key];
    if (isCount(n)) {
      usage[key] = n;
      counted = true;
    }
  }
  for (const key of DETAILS) {
    const details = value[key];
    if (isJsonObject(details) && isCount(details.cached_tokens)) usage[key] = { cached_tokens: details.cached_tokens };
  }
  return counted ? usage : undefined;
}

/**
 * Two usage reports of one response merged, the later one winning member by member: Anthropic's
 * stream reports input and cache tokens in `message_start` and the cumulative `output_tokens`
 * (sometimes input again) in `message_delta`.
 */
export function mergeUsage(earlier: ProviderUsage | undefined, later: ProviderUsage | undefined): ProviderUsage | undefined {
  if (earlier === undefined) return later;
  if (later === undefined) return earlier;
  return { ...earlier, ...later };
}
