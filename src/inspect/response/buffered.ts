/**
 * Facts about a whole (buffered) JSON response: the usage the provider reports, the model it says
 * it used, and for MCP whether the answer is a tool list (with its tool names) or a tool result.
 *
 * Content is not scanned here: `contentFacts` / `scanBody` (content/facts.ts, content/scan.ts)
 * already scan every string of a parsed body, so on a response they report findings at the paths
 * of the model's output (`$.choices[0].message.content`,
 * `$.choices[0].message.tool_calls[0].function.arguments<json>.to`, `$.output[0].content[0].text`,
 * `$.content[0].text`, `$.content[1].input.card`) and of MCP tool results
 * (`$.result.content[0].text`, `$.result.structuredContent.email`), and `redactBody` masks them
 * there. test/response-facts.test.ts holds both to that.
 */
import { isJsonObject } from '../../core/json-object.js';
import { providerUsage, type ProviderUsage } from './usage.js';

/** The response formats read here: the three LLM APIs, and MCP (JSON-RPC 2.0) answers. */
export type ResponseApi = 'openai.chat' | 'openai.responses' | 'anthropic.messages' | 'mcp';

/** What an MCP answer is, read from its shape (a JSON-RPC response does not repeat its method). */
export interface McpResponseFacts {
  /**
   * `tools/list`: a result with a `tools` array; `tools/call`: a result with a `content` array;
   * `error`: a JSON-RPC error; `other`: any other result or message.
   */
  readonly kind: 'tools/list' | 'tools/call' | 'error' | 'other';
  /** For `tools/list`: the `name` of every listed tool, in order. */
  readonly tools?: readonly string[];
  /** For `tools/call`: the tool reported a failure (`isError: true`). */
  readonly is_error?: boolean;
}

/** What {@link bufferedResponseFacts} reads from a response body. */
export interface BufferedResponseFacts {
  readonly api: ResponseApi;
  /** The provider's usage block, in the shape a usage report accepts; undefined when absent. */
  readonly usage: ProviderUsage | undefined;
  /** The model the provider says answered (it may differ from the one asked for). */
  readonly model: string | null;
  /** For MCP answers only; a batch is read as the list of its answers' tools, calls first-found. */
  readonly mcp?: McpResponseFacts;
}

/** What one JSON-RPC message answers, by shape. */
export function mcpMessageFacts(message: unknown): McpResponseFacts {
  if (!isJsonObject(message)) return { kind: 'other' };
  if (message.error !== undefined && message.result === undefined) return { kind: 'error' };
  const result = message.result;
  if (!isJsonObject(result)) return { kind: 'other' };
  if (Array.isArray(result.tools)) {
    const tools: string[] = [];
    for (const tool of result.tools) if (isJsonObject(tool) && typeof tool.name === 'string') tools.push(tool.name);
    return { kind: 'tools/list', tools };
  }
  if (Array.isArray(result.content)) return { kind: 'tools/call', is_error: result.isError === true };
  return { kind: 'other' };
}

function mcpFacts(body: unknown): McpResponseFacts {
  if (!Array.isArray(body)) return mcpMessageFacts(body);
  // A batch (MCP 2025-03-26): the tool lists are merged; otherwise the first answer that is a call.
  const facts = body.map(mcpMessageFacts);
  const lists = facts.filter((f) => f.kind === 'tools/list');
  if (lists.length > 0) return { kind: 'tools/list', tools: lists.flatMap((f) => f.tools ?? []) };
  return facts.find((f) => f.kind === 'tools/call') ?? facts.find((f) => f.kind === 'error') ?? { kind: 'other' };
}

/**
 * Usage, model and (MCP) kind of a parsed JSON response body. Never throws: a body of another
 * shape (an error body, a proxy's HTML turned string) has no usage and a null model.
 */
export function bufferedResponseFacts(api: ResponseApi, body: unknown): BufferedResponseFacts {
  if (api === 'mcp') return { api, usage: undefined, model: null, mcp: mcpFacts(body) };
  if (!isJsonObject(body)) return { api, usage: undefined, model: null };
  return { api, usage: providerUsage(body.usage), model: typeof body.model === 'string' && body.model !== '' ? body.model : null };
}

/** What {@link removeTools} returns: the body to forward and the names it took out, in order. */
export interface RemovedTools {
  readonly body: unknown;
  readonly removed: readonly string[];
}

function filterMessage(message: unknown, names: ReadonlySet<string>, removed: string[]): unknown {
  if (!isJsonObject(message) || !isJsonObject(message.result) || !Array.isArray(message.result.tools)) return message;
  const kept = message.result.tools.filter((tool) => {
    const drop = isJsonObject(tool) && typeof tool.name === 'string' && names.has(tool.name);
    if (drop) removed.push(tool.name as string);
    return !drop;
  });
  if (kept.length === message.result.tools.length) return message;
  // Copies keep member order, so everything but the dropped tools serialises as it did.
  return { ...message, result: { ...message.result, tools: kept } };
}

/**
 * A `tools/list` answer (one JSON-RPC message or a batch) without the named tools; every other
 * member (`nextCursor`, `_meta`, the remaining tools) is the same value in the same order. The
 * input is not changed; when nothing is removed the same body is returned.
 */
export function removeTools(body: unknown, names: ReadonlySet<string>): RemovedTools {
  const removed: string[] = [];
  if (names.size === 0) return { body, removed };
  const out = Array.isArray(body) ? body.map((m) => filterMessage(m, names, removed)) : filterMessage(body, names, removed);
  return { body: removed.length === 0 ? body : out, removed };
}
