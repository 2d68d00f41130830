/**
 * Input tokens per API: which fields of an OpenAI chat, OpenAI Responses, Anthropic Messages or
 * embeddings body are billed as input, fed to a {@link Counter}.
 */
import { type Json } from './api.js';
import { REPLY_PRIMING, type Counter } from './counter.js';
import { isJsonObject } from '../../core/json-object.js';

/**
 * Anthropic adds a tool-use system prompt whenever `tools` is set: 346 tokens for Claude 4.x /
 * 3.7 Sonnet with tool_choice auto or none (Anthropic's "Tool use" pricing table), the largest
 * figure for current models.
 */
export const ANTHROPIC_TOOLS_SYSTEM_PROMPT_TOKENS = 346;

/** OpenAI chat: every message with its framing, tool calls and their arguments, `tools`, `functions`, a `response_format` schema. */
export function chatInputTokens(body: Json, counter: Counter): void {
  const messages = body.messages as unknown[];
  for (const message of messages) {
    if (!isJsonObject(message)) continue;
    counter.message(message.role, message.name);
    counter.content(message.content, 0);
    counter.text(message.refusal);
    if (Array.isArray(message.tool_calls)) {
      for (const call of message.tool_calls) {
        if (!isJsonObject(call)) continue;
        const fn = isJsonObject(call.function) ? call.function : isJsonObject(call.custom) ? call.custom : undefined;
        if (!fn) continue;
        counter.text(fn.name);
        counter.json(fn.arguments ?? fn.input);
      }
    }
    if (isJsonObject(message.function_call)) {
      counter.text(message.function_call.name);
      counter.json(message.function_call.arguments);
    }
  }
  counter.total += REPLY_PRIMING;
  if (Array.isArray(body.tools) && body.tools.length > 0) counter.json(body.tools);
  if (Array.isArray(body.functions) && body.functions.length > 0) counter.json(body.functions);
  const format = body.response_format;
  if (isJsonObject(format) && format.type === 'json_schema') counter.json(format.json_schema ?? format);
}

/** OpenAI Responses: `instructions`, `input` (a string or items), `tools` and a `text.format` schema. */
export function responsesInputTokens(body: Json, counter: Counter): void {
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
      if (!isJsonObject(item)) continue;
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
  if (isJsonObject(text) && isJsonObject(text.format) && text.format.type === 'json_schema') counter.json(text.format);
}

/** Anthropic Messages: `system`, message blocks, and `tools` plus the tool-use system prompt. */
export function anthropicInputTokens(body: Json, counter: Counter): void {
  counter.content(body.system, 0);
  for (const message of body.messages as unknown[]) {
    if (!isJsonObject(message)) continue;
    counter.message(message.role);
    counter.content(message.content, 0);
  }
  counter.total += REPLY_PRIMING;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    counter.json(body.tools);
    counter.total += ANTHROPIC_TOOLS_SYSTEM_PROMPT_TOKENS;
  }
}

/** Embeddings: `input` as a string, strings, or pre-tokenised ids. */
export function embeddingsInputTokens(body: Json, counter: Counter): void {
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
