/**
 * LiteLLM's guardrail request, read: the fields the LiteLLM door relies on checked, the headers
 * LiteLLM withheld or that describe its own inbound request set apart, and the caller's token
 * taken from {@link LITELLM_TOKEN_HEADER}; then the LLM request LiteLLM is about to send, as the
 * OpenAI chat completions body the pipeline decides. The contract is in litellm.ts.
 */
import { SignalboxError } from '../../core/errors.js';
import { isJsonObject } from '../../core/json-object.js';

/** Values LiteLLM sends instead of a header's own: outside its allowlist, or a credential. */
const WITHHELD_VALUES = new Set(['[present]', '***REDACTED***']);
/**
 * The header carrying the caller's token through LiteLLM. LiteLLM never forwards
 * `Authorization` to a guardrail (it strips every header it reads its own keys from, then masks
 * credential headers), so callers send their JWT here, the guardrail's `extra_headers` lists it,
 * and the door presents it to the pipeline as `authorization`.
 */
export const LITELLM_TOKEN_HEADER = 'x-signalbox-authorization';
/**
 * Headers not passed on: those describing LiteLLM's inbound request rather than the body
 * Signalbox is shown, and LiteLLM's own API key (its `x-litellm-*` allowlist forwards it), which
 * is no business of the policy or the audit trail.
 */
const DROPPED_HEADERS = new Set(['content-length', 'content-type', 'transfer-encoding', 'content-encoding', 'connection', 'expect', 'x-litellm-api-key']);

function stringList(value: unknown, name: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((t) => typeof t === 'string')) throw new SignalboxError('request_malformed', `${name} must be a list of strings`);
  return value as string[];
}

function objectList(value: unknown, name: string): Record<string, unknown>[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every(isJsonObject)) throw new SignalboxError('request_malformed', `${name} must be a list of objects`);
  return value as Record<string, unknown>[];
}

/** The guardrail request, checked as far as the mapping relies on it. */
export interface GuardrailRequest {
  readonly inputType: 'request' | 'response';
  readonly callId: string | undefined;
  readonly texts: string[];
  readonly images: string[];
  readonly structuredMessages: Record<string, unknown>[] | undefined;
  readonly toolCalls: Record<string, unknown>[];
  readonly tools: Record<string, unknown>[];
  readonly model: string | undefined;
  readonly headers: Record<string, string>;
  /** Header names LiteLLM withheld the values of ("[present]"). */
  readonly withheld: string[];
}

/** Reads a guardrail request body; throws `request_malformed` for one the door cannot map. */
export function parseGuardrailRequest(raw: Buffer): GuardrailRequest {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw new SignalboxError('request_malformed', 'the guardrail request is not JSON', { cause: error });
  }
  if (!isJsonObject(body)) throw new SignalboxError('request_malformed', 'the guardrail request is not a JSON object');
  const inputType = body.input_type;
  if (inputType !== 'request' && inputType !== 'response') throw new SignalboxError('request_malformed', 'input_type must be "request" or "response"');
  const headers: Record<string, string> = {};
  const withheld: string[] = [];
  if (body.request_headers !== undefined && body.request_headers !== null) {
    if (!isJsonObject(body.request_headers)) throw new SignalboxError('request_malformed', 'request_headers must be an object');
    for (const [name, value] of Object.entries(body.request_headers)) {
      const lower = name.toLowerCase();
      // Only the token header speaks for the caller: whatever LiteLLM shows as authorization is
      // its own key's header (stripped or masked), never the caller's token.
      if (typeof value !== 'string' || DROPPED_HEADERS.has(lower) || lower === 'authorization') continue;
      if (WITHHELD_VALUES.has(value)) {
        withheld.push(lower);
        continue;
      }
      headers[lower] = value;
    }
  }
  const token = headers[LITELLM_TOKEN_HEADER];
  delete headers[LITELLM_TOKEN_HEADER];
  if (token !== undefined) headers.authorization = token;
  const structured = body.structured_messages;
  return {
    inputType,
    callId: typeof body.litellm_call_id === 'string' && body.litellm_call_id !== '' ? body.litellm_call_id : undefined,
    texts: stringList(body.texts, 'texts'),
    images: stringList(body.images, 'images'),
    structuredMessages: structured === undefined || structured === null ? undefined : objectList(structured, 'structured_messages'),
    toolCalls: objectList(body.tool_calls, 'tool_calls'),
    tools: objectList(body.tools, 'tools'),
    model: typeof body.model === 'string' && body.model !== '' ? body.model : undefined,
    headers,
    withheld,
  };
}

/** Every text of a chat message: string content and the text of content parts. */
function messageTexts(message: Record<string, unknown>, into: Set<string>): void {
  const content = message.content;
  if (typeof content === 'string') into.add(content);
  else if (Array.isArray(content)) {
    for (const part of content) if (isJsonObject(part) && typeof part.text === 'string') into.add(part.text);
  }
}

function toolCallKey(call: Record<string, unknown>): string {
  const fn = isJsonObject(call.function) ? call.function : {};
  return JSON.stringify([call.id ?? null, fn.name ?? null, fn.arguments ?? null]);
}

/**
 * The LLM request LiteLLM is about to send, as an OpenAI chat completions body: the structured
 * messages it sent, then anything it asked about that those messages do not contain (texts as
 * user messages, image URLs as image parts, tool calls as a last assistant turn), so every text
 * LiteLLM shows the guardrail is scanned, and tool calls are `input.tool_calls`.
 */
export function chatBody(req: GuardrailRequest): { body: Record<string, unknown>; structuredCount: number } {
  const messages: Record<string, unknown>[] = [...(req.structuredMessages ?? [])];
  const seenTexts = new Set<string>();
  const seenCalls = new Set<string>();
  const seenImages = new Set<string>();
  for (const message of messages) {
    messageTexts(message, seenTexts);
    if (Array.isArray(message.tool_calls)) for (const call of message.tool_calls) if (isJsonObject(call)) seenCalls.add(toolCallKey(call));
    if (Array.isArray(message.content)) {
      for (const part of message.content) {
        const url = isJsonObject(part) ? (isJsonObject(part.image_url) ? part.image_url.url : part.image_url) : undefined;
        if (typeof url === 'string') seenImages.add(url);
      }
    }
  }
  const extraTexts = req.texts.filter((t) => !seenTexts.has(t));
  const extraImages = req.images.filter((u) => !seenImages.has(u));
  if (extraTexts.length > 0 || extraImages.length > 0) {
    for (const text of extraTexts) messages.push({ role: 'user', content: text });
    if (extraImages.length > 0) messages.push({ role: 'user', content: extraImages.map((url) => ({ type: 'image_url', image_url: { url } })) });
  }
  const extraCalls = req.toolCalls.filter((c) => !seenCalls.has(toolCallKey(c)));
  if (extraCalls.length > 0) messages.push({ role: 'assistant', content: null, tool_calls: extraCalls });
  return {
    body: { ...(req.model !== undefined ? { model: req.model } : {}), messages, ...(req.tools.length > 0 ? { tools: req.tools } : {}) },
    structuredCount: req.structuredMessages?.length ?? 0,
  };
}
