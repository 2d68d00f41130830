/**
 * The tool calls an agent just made, read from the request body, for loop detection.
 */
import { hasShape, llmApiForPath, type Json, type LlmApi } from './api.js';
import { isJsonObject } from '../../core/json-object.js';

/** One tool call: its name, its arguments (parsed when they were a JSON string) and the API it came in. */
export interface ToolCallFact {
  readonly name: string;
  readonly arguments: unknown;
  readonly source: 'mcp' | LlmApi;
}

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
    if (!isJsonObject(request) || request.method !== 'tools/call') continue;
    isMcp = true;
    const params = request.params;
    if (isJsonObject(params) && typeof params.name === 'string') {
      calls.push({ name: params.name, arguments: params.arguments ?? {}, source: 'mcp' });
    }
  }
  return isMcp ? calls : undefined;
}

function lastAssistant(messages: unknown): Json | undefined {
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    const message: unknown = messages[i];
    if (isJsonObject(message) && message.role === 'assistant') return message;
  }
  return undefined;
}

function chatToolCalls(body: Json): ToolCallFact[] {
  const message = lastAssistant(body.messages);
  if (!message) return [];
  const calls: ToolCallFact[] = [];
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      if (!isJsonObject(call)) continue;
      if (isJsonObject(call.function) && typeof call.function.name === 'string') {
        calls.push({ name: call.function.name, arguments: parseArguments(call.function.arguments), source: 'openai.chat' });
      } else if (isJsonObject(call.custom) && typeof call.custom.name === 'string') {
        calls.push({ name: call.custom.name, arguments: call.custom.input ?? null, source: 'openai.chat' });
      }
    }
  }
  const legacy = message.function_call;
  if (isJsonObject(legacy) && typeof legacy.name === 'string') {
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
    if (!isJsonObject(item) || typeof item.type !== 'string' || !TRAILING_TOOL_ITEMS.has(item.type)) break;
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
    if (isJsonObject(block) && block.type === 'tool_use' && typeof block.name === 'string') {
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
