import { isJsonObject } from '../../core/json-object.js';
/**
 * Which LLM API a request calls: the API a path names, and whether the body has the shape of a
 * call to it. Shared by the token count (`../llm.ts`) and tool-call extraction (`tool-calls.ts`).
 */

/** The LLM APIs Signalbox reads, as `input.llm.api` names them. */
export type LlmApi = 'openai.chat' | 'openai.responses' | 'openai.embeddings' | 'anthropic.messages';

/** A JSON object, as request bodies and their parts are read here. */
export type Json = Record<string, unknown>;

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
export function hasShape(api: LlmApi, body: unknown): body is Json {
  if (!isJsonObject(body)) return false;
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
