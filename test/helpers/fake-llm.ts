import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the fake upstream saw of one request. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  /** Header names lower-cased, as Node delivers them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

export interface FakeLlmOptions {
  /** The usage block every chat completion answers with. */
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number };
  /** The answer text of every chat completion. */
  readonly reply?: string;
  /** A streamed answer's text deltas, one event each (default: the whole reply in one). */
  readonly replyPieces?: readonly string[];
  /** Milliseconds between streamed events (default 0). */
  readonly eventDelayMs?: number;
  /**
   * `always` (default): every stream ends with a usage chunk; `when_asked`: only when the request
   * sets `stream_options.include_usage`, as OpenAI does.
   */
  readonly streamUsage?: 'always' | 'when_asked';
  /** The tools an MCP `tools/list` on `/mcp` answers with (default: web_search, fetch_url, delete_repo). */
  readonly mcpTools?: readonly string[];
  /** The text an MCP `tools/call` result carries. */
  readonly toolResult?: string;
  /**
   * Replies chosen per request: when the request's last user message equals a key, that script's
   * text and pieces answer instead of `reply` / `replyPieces` (chat completions and Anthropic
   * messages, JSON or streamed). Keyed by a name rather than echoing the message, because a
   * value the test wants in the answer (a card, an email) would be stopped or masked on the way in.
   */
  readonly scripts?: Readonly<Record<string, ScriptedReply>>;
}

/** One scripted answer (see {@link FakeLlmOptions.scripts}). */
export interface ScriptedReply {
  /** The whole answer text (default: the pieces joined). */
  readonly reply?: string;
  /** The streamed text deltas, one event each (default: the reply in one). */
  readonly pieces?: readonly string[];
}

/** The text of the last user message of a chat or Anthropic request (string or text blocks). */
function lastUserText(request: unknown): string | undefined {
  const messages = (request as { messages?: unknown } | undefined)?.messages;
  if (!Array.isArray(messages)) return undefined;
  const last = messages.filter((m): m is { role: string; content: unknown } => typeof m === 'object' && m !== null && (m as { role?: unknown }).role === 'user').at(-1);
  if (last === undefined) return undefined;
  if (typeof last.content === 'string') return last.content;
  if (!Array.isArray(last.content)) return undefined;
  return last.content.map((block: unknown) => (typeof block === 'object' && block !== null && typeof (block as { text?: unknown }).text === 'string' ? (block as { text: string }).text : '')).join('');
}

/** The reply text and stream pieces for one request: its script when one matches, else the defaults. */
function replyFor(request: unknown, options: FakeLlmOptions, reply: string): { text: string; pieces: readonly string[] } {
  const key = lastUserText(request);
  const script = key !== undefined ? options.scripts?.[key] : undefined;
  if (script === undefined) return { text: reply, pieces: options.replyPieces ?? [reply] };
  const text = script.reply ?? (script.pieces ?? []).join('');
  return { text, pieces: script.pieces ?? [text] };
}

/**
 * A small OpenAI-compatible upstream on loopback: chat completions (JSON, or SSE when
 * `stream: true`) with a known usage block, `/v1/models`, and anything else echoed as JSON. It
 * records every request, so tests can assert which headers and body reached the upstream.
 */
export class FakeLlm {
  readonly seen: SeenRequest[] = [];
  /** When set, every request is answered with this status (a provider outage). */
  failWith: number | undefined;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly usage: { readonly prompt_tokens: number; readonly completion_tokens: number },
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: FakeLlmOptions = {}): Promise<FakeLlm> {
    const usage = options.usage ?? { prompt_tokens: 42, completion_tokens: 17 };
    const reply = options.reply ?? 'Hello from the fake upstream.';
    let fake: FakeLlm | undefined;
    const server = createServer((req, res) => {
      void readAll(req).then((body) => {
        const seen: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, body };
        fake?.seen.push(seen);
        if (fake?.failWith !== undefined) {
          res.writeHead(fake.failWith, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: 'upstream unavailable', type: 'server_error' } }));
          return;
        }
        const path = (req.url ?? '').split('?', 1)[0] ?? '';
        if (path.endsWith('/messages')) {
          void anthropicAnswer(res, safeJson(body) as AnthropicRequest | undefined, options, usage, reply);
          return;
        }
        if (path.endsWith('/mcp')) {
          mcpAnswer(res, safeJson(body), options);
          return;
        }
        if (path.endsWith('/chat/completions')) {
          const request = safeJson(body) as { model?: string; stream?: boolean; stream_options?: { include_usage?: boolean } } | undefined;
          const model = request?.model ?? 'unknown';
          const answer = replyFor(request, options, reply);
          const completion = {
            id: 'chatcmpl-fake',
            object: 'chat.completion',
            created: Math.floor(Date.now() / 1000),
            model,
            choices: [{ index: 0, message: { role: 'assistant', content: answer.text }, finish_reason: 'stop' }],
            usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
          };
          if (request?.stream) {
            const chunk = { id: completion.id, object: 'chat.completion.chunk', created: completion.created, model };
            const usageMode = options.streamUsage ?? 'always';
            const withUsage = usageMode === 'always' || request.stream_options?.include_usage === true;
            const events = [
              ...answer.pieces.map((piece, i) => ({ ...chunk, choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: piece } : { content: piece }, finish_reason: null }] })),
              { ...chunk, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], ...(usageMode === 'always' ? { usage: completion.usage } : {}) },
              ...(withUsage && usageMode === 'when_asked' ? [{ ...chunk, choices: [], usage: completion.usage }] : []),
            ];
            void streamEvents(res, events.map((event) => `data: ${JSON.stringify(event)}\n\n`).concat('data: [DONE]\n\n'), options.eventDelayMs ?? 0);
            return;
          }
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(completion));
          return;
        }
        if (path.endsWith('/models')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', owned_by: 'fake' }] }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ echo: { method: seen.method, url: seen.url } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake = new FakeLlm(server, (server.address() as AddressInfo).port, usage);
    return fake;
  }

  /** The most recent request the upstream received. */
  last(): SeenRequest | undefined {
    return this.seen.at(-1);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Writes SSE events with a pause between them; stops quietly when the client goes away. */
async function streamEvents(res: ServerResponse, events: readonly string[], delayMs: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const event of events) {
    if (res.destroyed) return;
    res.write(event);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
  res.end();
}

interface AnthropicRequest {
  model?: string;
  stream?: boolean;
}

/** Anthropic's messages API: a JSON message, or its event stream (message_start … message_stop). */
function anthropicAnswer(res: ServerResponse, request: AnthropicRequest | undefined, options: FakeLlmOptions, usage: { prompt_tokens: number; completion_tokens: number }, defaultReply: string): Promise<void> {
  const model = request?.model ?? 'unknown';
  const answer = replyFor(request, options, defaultReply);
  const id = 'msg_fake';
  if (!request?.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id, type: 'message', role: 'assistant', model, content: [{ type: 'text', text: answer.text }], stop_reason: 'end_turn', usage: { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens } }));
    return Promise.resolve();
  }
  const event = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  return streamEvents(
    res,
    [
      event('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, usage: { input_tokens: usage.prompt_tokens, output_tokens: 1 } } }),
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      event('ping', {}),
      ...answer.pieces.map((piece) => event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: piece } })),
      event('content_block_stop', { index: 0 }),
      event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.completion_tokens } }),
      event('message_stop', {}),
    ],
    options.eventDelayMs ?? 0,
  );
}

/** MCP over HTTP (JSON-RPC 2.0): tools/list and tools/call answered as JSON. */
function mcpAnswer(res: ServerResponse, request: unknown, options: FakeLlmOptions): void {
  const message = (request ?? {}) as { id?: unknown; method?: unknown; params?: { name?: unknown } };
  const id = message.id ?? null;
  let answer: object;
  if (message.method === 'tools/list') {
    const tools = (options.mcpTools ?? ['web_search', 'fetch_url', 'delete_repo']).map((name) => ({ name, description: `The ${name} tool.`, inputSchema: { type: 'object' } }));
    answer = { jsonrpc: '2.0', id, result: { tools } };
  } else if (message.method === 'tools/call') {
    answer = { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: options.toolResult ?? `ran ${String(message.params?.name)}` }], isError: false } };
  } else {
    answer = { jsonrpc: '2.0', id, error: { code: -32601, message: 'method not found' } };
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(answer));
}

function readAll(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
