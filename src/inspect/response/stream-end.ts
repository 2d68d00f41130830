/**
 * The last event a blocked stream sends, in the error shape each provider's own streams use, so
 * clients and SDKs raise it as an error rather than show a reply cut short.
 */
import type { ResponseApi } from './buffered.js';

/** What a client reads when a stream is cut; never a cause or a found value. */
const MESSAGE = 'the response was blocked by policy';

/**
 * The bytes that end a blocked stream: for OpenAI chat a `data: {"error":{…}}` chunk and
 * `data: [DONE]`; for the Responses API an `error` event; for Anthropic an `error` event of type
 * `permission_error`; for MCP a JSON-RPC error answering `requestId` (null when unknown).
 * `reason` is a machine-readable code the client may match on.
 */
export function blockedStreamEnd(api: ResponseApi, reason: string, requestId: string | number | null = null): Buffer {
  let text: string;
  switch (api) {
    case 'openai.chat':
      text = `data: ${JSON.stringify({ error: { message: MESSAGE, type: 'policy_violation', param: null, code: reason } })}\n\ndata: [DONE]\n\n`;
      break;
    case 'openai.responses':
      text = `event: error\ndata: ${JSON.stringify({ type: 'error', code: reason, message: MESSAGE, param: null })}\n\n`;
      break;
    case 'anthropic.messages':
      text = `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'permission_error', message: `${MESSAGE} (${reason})` } })}\n\n`;
      break;
    case 'mcp':
      text = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: requestId, error: { code: -32000, message: MESSAGE, data: { reason } } })}\n\n`;
      break;
  }
  return Buffer.from(text, 'utf8');
}
