/**
 * The LiteLLM door against the real LiteLLM proxy (the pinned version scripts/install-litellm.sh
 * puts in .tools/litellm), configured from examples/litellm/config.yaml: LiteLLM on loopback in
 * front of a fake OpenAI upstream, Signalbox as its generic_guardrail_api guardrail and as the
 * endpoint of its generic_api usage callback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallLedger } from '../src/transport/doors/litellm.js';
import { microToUsd } from '../src/core/money.js';
import { PriceTable } from '../src/inspect/prices.js';
import { projectRoot } from '../src/core/paths.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, ADMIN_TOKEN, checkRequest, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';
import { freePort } from './helpers/gateways.js';

const LITELLM = join(projectRoot(), '.tools', 'litellm', 'bin', 'litellm');
const EXAMPLE = join(projectRoot(), 'examples', 'litellm', 'config.yaml');
const USAGE = { prompt_tokens: 1234, completion_tokens: 567 };
const MASTER_KEY = `sk-${randomBytes(32).toString('hex')}`;


/** The LiteLLM proxy as a child process group, with the tail of its output for failure messages. */
class LiteLlmProxy {
  private output = '';
  private exited: Promise<void>;
  private exitCode: number | null | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    private readonly key: string,
  ) {
    const keep = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString('utf8')).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code) => {
        this.exitCode = code;
        resolve();
      }),
    );
  }

  get log(): string {
    return this.output;
  }

  static async start(configPath: string, env: Record<string, string>): Promise<LiteLlmProxy> {
    if (!existsSync(LITELLM)) throw new Error(`LiteLLM not found at ${LITELLM}: run "npm test" (it installs LiteLLM) or "bash scripts/install-litellm.sh"`);
    const port = await freePort();
    const child = spawn(LITELLM, ['--config', configPath, '--port', String(port), '--host', '127.0.0.1'], {
      // Its own process group, so teardown ends uvicorn and any worker it forked.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const proxy = new LiteLlmProxy(child, `http://127.0.0.1:${port}`, env.LITELLM_MASTER_KEY ?? '');
    await proxy.waitReady(150_000);
    return proxy;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exitCode !== undefined) throw new Error(`LiteLLM exited with ${this.exitCode} before it was ready:\n${this.output}`);
      try {
        const res = await fetch(`${this.url}/v1/models`, { headers: { 'x-litellm-api-key': this.key }, signal: AbortSignal.timeout(2_000) });
        if (res.ok) {
          const models = (await res.json()) as { data?: Array<{ id: string }> };
          if (models.data?.some((m) => m.id === 'gpt-4o-mini')) return;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`LiteLLM was not ready after ${timeoutMs} ms:\n${this.output}`);
  }

  async stop(): Promise<void> {
    if (this.exitCode !== undefined || this.child.pid === undefined) return;
    const group = -this.child.pid;
    try {
      process.kill(group, 'SIGTERM');
    } catch {
      return;
    }
    const killed = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!killed) {
      try {
        process.kill(group, 'SIGKILL');
      } catch {
        // already gone
      }
      await this.exited;
    }
  }
}

interface ChatAnswer {
  status: number;
  body: Record<string, unknown>;
}

describe('LiteLLM generic guardrail API (real LiteLLM proxy)', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let fake: FakeLlm;
  let sb: TestSignalbox;
  let litellm: LiteLlmProxy;
  const logs = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'litellm');
    jwks = await JwksServer.start([key.publicJwk]);
    fake = await FakeLlm.start({ usage: USAGE });
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url });
    const signalboxUrl = `http://127.0.0.1:${sb.running.httpPort}`;
    // The example, with its two addresses pointed at this test's Signalbox and fake upstream.
    const example = await readFile(EXAMPLE, 'utf8');
    expect(example).toContain('http://signalbox:8181');
    expect(example).toContain('https://api.openai.com/v1');
    const config = example.replaceAll('http://signalbox:8181', signalboxUrl).replaceAll('https://api.openai.com/v1', `${fake.url}/v1`);
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-litellm-'));
    const configPath = join(dir, 'config.yaml');
    await writeFile(configPath, config);
    litellm = await LiteLlmProxy.start(configPath, {
      OPENAI_API_KEY: 'sk-fake-upstream-key',
      LITELLM_MASTER_KEY: MASTER_KEY,
      // The usage callback authenticates to Signalbox's admin endpoint with it (the example's headers).
      SIGNALBOX_ADMIN_TOKEN: ADMIN_TOKEN,
      // Send each usage log at once rather than in batches of 512 every 5 s.
      DEFAULT_BATCH_SIZE: '1',
      DEFAULT_FLUSH_INTERVAL_SECONDS: '1',
      // No network at start-up: use the bundled model cost map.
      LITELLM_LOCAL_MODEL_COST_MAP: 'True',
      LITELLM_TELEMETRY: 'False',
    });
  }, 240_000);

  afterAll(async () => {
    await litellm?.stop();
    await sb?.close();
    await fake?.close();
    await jwks?.close();
  }, 30_000);

  async function chat(subject: string, body: Record<string, unknown>): Promise<ChatAnswer> {
    const token = await mint(key, { subject });
    const res = await fetch(`${litellm.url}/v1/chat/completions`, {
      method: 'POST',
      // As an OpenAI SDK client would: LiteLLM's key as the API key, the JWT as a default header.
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'x-signalbox-authorization': `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', ...body }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { raw: text };
    }
    return { status: res.status, body: parsed };
  }

  /** Fails with LiteLLM's output attached, which is where a broken integration shows. */
  function explain(answer: ChatAnswer): string {
    return `LiteLLM answered ${answer.status} ${JSON.stringify(answer.body)}\n--- LiteLLM output (tail) ---\n${litellm.log.slice(-4000)}`;
  }

  function upstreamSaw(marker: string): boolean {
    return fake.seen.some((s) => s.body.includes(marker));
  }

  async function spend(subject: string): Promise<{ spent_usd: number; held_usd: number; holds: number }> {
    const res = await fetch(`http://127.0.0.1:${sb.running.httpPort}/v1/spend?scope=user:${subject}&window=day`, { headers: ADMIN_HEADERS });
    const body = (await res.json()) as { budgets: Array<{ spent_usd: number; held_usd: number; holds: number }> };
    return body.budgets[0] ?? { spent_usd: 0, held_usd: 0, holds: 0 };
  }

  it('blocks a prompt carrying a payment card, and the upstream never sees it', async () => {
    const answer = await chat('bob', { messages: [{ role: 'user', content: 'Charge my card 4111 1111 1111 1111 for the order, marker-card-1' }] });
    expect(answer.status, explain(answer)).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(answer.body), explain(answer)).toContain('content.payment_card');
    expect(upstreamSaw('marker-card-1')).toBe(false);
    expect(upstreamSaw('4111 1111 1111 1111')).toBe(false);
  });

  it('blocks a secret inside an earlier tool call\'s arguments (tool calls are scanned too)', async () => {
    const answer = await chat('bob', {
      messages: [
        { role: 'user', content: 'look this up, marker-tool-1' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'web_search', arguments: JSON.stringify({ query: 'AKIAIOSFODNN7EXAMPLF status' }) } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'no results' },
      ],
      tools: [{ type: 'function', function: { name: 'web_search', parameters: { type: 'object', properties: { query: { type: 'string' } } } } }],
    });
    expect(answer.status, explain(answer)).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(answer.body), explain(answer)).toContain('content.secret.aws_access_key');
    expect(upstreamSaw('marker-tool-1')).toBe(false);
  });

  it('masks an email: the upstream receives the redacted text', async () => {
    const answer = await chat('carol', { messages: [{ role: 'user', content: 'Write to jane.doe@example.com about the invoice, marker-email-1' }] });
    expect(answer.status, explain(answer)).toBe(200);
    const seen = fake.seen.find((s) => s.body.includes('marker-email-1'));
    expect(seen, 'the upstream got the request').toBeDefined();
    expect(seen?.body).not.toContain('jane.doe@example.com');
    expect(seen?.body).toContain('[REDACTED:email]');
  });

  it('masks an email inside tool-call arguments (written back through structured_messages)', async () => {
    const answer = await chat('carol', {
      messages: [
        { role: 'user', content: 'find him, marker-email-2' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_2', type: 'function', function: { name: 'web_search', arguments: JSON.stringify({ query: 'john.roe@example.org' }) } }],
        },
        { role: 'tool', tool_call_id: 'call_2', content: 'nothing found' },
      ],
      tools: [{ type: 'function', function: { name: 'web_search', parameters: { type: 'object', properties: { query: { type: 'string' } } } } }],
    });
    expect(answer.status, explain(answer)).toBe(200);
    const seen = fake.seen.find((s) => s.body.includes('marker-email-2'));
    expect(seen, 'the upstream got the request').toBeDefined();
    expect(seen?.body).not.toContain('john.roe@example.org');
    const sent = JSON.parse(seen?.body ?? '{}') as { messages: Array<{ tool_calls?: Array<{ function: { arguments: string } }> }> };
    const args = sent.messages[1]?.tool_calls?.[0]?.function.arguments ?? '';
    expect(JSON.parse(args)).toEqual({ query: '[REDACTED:email]' });
  });

  it('refuses a user whose budget is spent', async () => {
    // ci-bot has $1/day in the default policy: spend it through the native API first.
    const token = await mint(key, { subject: 'ci-bot' });
    const check = await sb.check(checkRequest({ token, body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) }));
    const decisionId = check.dynamicMetadata?.fields?.decision_id?.stringValue;
    expect(check.status.code ?? 0).toBe(0);
    const report = await fetch(`http://127.0.0.1:${sb.running.httpPort}/v1/report`, {
      method: 'POST',
      headers: ADMIN_HEADERS,
      body: JSON.stringify({ decision_id: decisionId, cost_usd: 1 }),
    });
    expect(report.status).toBe(200);
    expect((await spend('ci-bot')).spent_usd).toBe(1);

    const answer = await chat('ci-bot', { messages: [{ role: 'user', content: 'one more question, marker-budget-1' }] });
    expect(answer.status, explain(answer)).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(answer.body), explain(answer)).toContain('budget.exceeded');
    expect(upstreamSaw('marker-budget-1')).toBe(false);
  });

  it('settles the hold with the usage LiteLLM saw: spend is exactly usage × price', async () => {
    const answer = await chat('dana', { messages: [{ role: 'user', content: 'What is the capital of France? marker-spend-1' }] });
    expect(answer.status, explain(answer)).toBe(200);
    expect(answer.body.usage).toMatchObject(USAGE);
    const micro = PriceTable.default().costMicroUsd('gpt-4o-mini', { input_tokens: USAGE.prompt_tokens, cached_input_tokens: 0, output_tokens: USAGE.completion_tokens });
    expect(micro).toBeGreaterThan(0);
    const expected = microToUsd(micro as number);
    // The usage log arrives after the response; wait for the hold to be settled.
    const deadline = Date.now() + 20_000;
    let current = await spend('dana');
    while ((current.holds > 0 || current.spent_usd === 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      current = await spend('dana');
    }
    expect(current, `spend never settled\n--- LiteLLM output (tail) ---\n${litellm.log.slice(-4000)}`).toMatchObject({ spent_usd: expected, held_usd: 0, holds: 0 });
  });

  it('answers post-call checks NONE (they carry no usage) and blocks what it cannot read', async () => {
    const post = (body: string): Promise<Response> =>
      fetch(`http://127.0.0.1:${sb.running.httpPort}/beta/litellm_basic_guardrail_api`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const response = await post(JSON.stringify({ input_type: 'response', texts: ['an answer'], request_data: {}, litellm_call_id: 'c-1' }));
    expect(await response.json()).toEqual({ action: 'NONE' });
    const unreadable = (await (await post('{"input_type": "request", "texts": "not a list"}')).json()) as { action: string; blocked_reason: string };
    expect(unreadable.action).toBe('BLOCKED');
    expect(unreadable.blocked_reason).toContain('request_malformed');
    const notJson = (await (await post('nope')).json()) as { action: string };
    expect(notJson.action).toBe('BLOCKED');
  });

  it('answers a request without the caller\'s token with an identity deny', async () => {
    const res = await fetch(`${litellm.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello, marker-anon-1' }] }),
    });
    const text = await res.text();
    expect(res.status, text).toBeGreaterThanOrEqual(400);
    expect(text).toContain('identity.token_missing');
    expect(text).toContain('x-signalbox-authorization');
    expect(upstreamSaw('marker-anon-1')).toBe(false);
  });
});

describe('CallLedger', () => {
  it('forgets call ids after the TTL and keeps at most its bound, oldest out first', () => {
    const ledger = new CallLedger(2, 1_000);
    ledger.remember('a', 'd-a', 0);
    ledger.remember('b', 'd-b', 10);
    ledger.remember('c', 'd-c', 20);
    expect(ledger.size).toBe(2);
    expect(ledger.take('a', 30)).toBeUndefined();
    expect(ledger.take('b', 30)).toBe('d-b');
    expect(ledger.take('b', 30)).toBeUndefined();
    expect(ledger.take('c', 1_020)).toBeUndefined();
  });
});

describe('the guardrail answer, without a proxy', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;

  beforeAll(async () => {
    key = await signingKey('ES256', 'litellm-direct');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(capturedLogger().logger, { jwksUrl: jwks.url });
  });
  afterAll(async () => {
    await sb?.close();
    await jwks?.close();
  });

  const guardrail = async (body: object): Promise<{ action: string; texts?: string[]; blocked_reason?: string }> => {
    const res = await fetch(`http://127.0.0.1:${sb.running.httpPort}/beta/litellm_basic_guardrail_api`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return (await res.json()) as { action: string; texts?: string[]; blocked_reason?: string };
  };

  it('masks texts exactly as the pipeline masks the messages, JSON inside a text included', async () => {
    const token = await mint(key, { subject: 'carol' });
    // An email written with a JSON escape: plain-text matching misses it; the pipeline decodes the JSON.
    const escaped = '{"to": "jane\\u0040example.com", "note": "marker-escaped"}';
    const answer = await guardrail({
      input_type: 'request',
      texts: ['Write to jane.doe@example.com', escaped, 'nothing to hide'],
      model: 'gpt-4o-mini',
      request_data: {},
      request_headers: { 'x-signalbox-authorization': `Bearer ${token}` },
      litellm_call_id: 'direct-1',
    });
    expect(answer.action, answer.blocked_reason).toBe('GUARDRAIL_INTERVENED');
    expect(answer.texts?.[0]).toBe('Write to [REDACTED:email]');
    expect(answer.texts?.[1]).not.toContain('example.com');
    expect(JSON.parse(answer.texts?.[1] ?? '{}')).toMatchObject({ to: '[REDACTED:email]', note: 'marker-escaped' });
    expect(answer.texts?.[2]).toBe('nothing to hide');
  });

  it('hints how to send a token through LiteLLM when a call without one is refused 401', async () => {
    const answer = await guardrail({ input_type: 'request', texts: ['hi'], model: 'gpt-4o-mini', request_data: {}, litellm_call_id: 'direct-2' });
    expect(answer.action).toBe('BLOCKED');
    expect(answer.blocked_reason).toMatch(/^Signalbox denied the request \(401 /);
    expect(answer.blocked_reason).toContain('send the caller\'s token as x-signalbox-authorization: Bearer <jwt>');
  });
});
