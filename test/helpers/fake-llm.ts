import { createServer, type IncomingMessage, type Server } from 'node:http';
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
        if (path.endsWith('/chat/completions')) {
          const request = safeJson(body) as { model?: string; stream?: boolean } | undefined;
          const model = request?.model ?? 'unknown';
          const completion = {
            id: 'chatcmpl-fake',
            object: 'chat.completion',
            created: Math.floor(Date.now() / 1000),
            model,
            choices: [{ index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' }],
            usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
          };
          if (request?.stream) {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            const chunk = { id: completion.id, object: 'chat.completion.chunk', created: completion.created, model };
            res.write(`data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: { role: 'assistant', content: reply }, finish_reason: null }] })}\n\n`);
            res.write(`data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: completion.usage })}\n\n`);
            res.end('data: [DONE]\n\n');
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
