/**
 * The nginx auth_request and Caddy forward_auth doors, proven against the real gateways: nginx
 * (Debian's package) and Caddy (the pinned build) run the example configs
 * (examples/nginx/nginx.conf, examples/caddy/Caddyfile, only addresses substituted) in front of a
 * fake OpenAI upstream, asking a real Signalbox. What the upstream received is what a provider
 * would see; what the client received is what the gateway answered.
 */
import { readFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CredentialSource } from '../src/vault/credentials.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { freePort, gatewayTestBundle, startCaddy, startNginx, type RunningGateway } from './helpers/gateways.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { openTestVault, testSecrets } from './helpers/vault.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const { masterKey: MASTER_KEY, openaiKey: OPENAI_KEY } = testSecrets();
const RATE_LIMIT = 3;

interface ErrorBody {
  error: { code: string; reasons?: string[]; message: string; decision_id?: string; retry_after_ms?: number | null };
}

let key: SigningKey;
let jwks: JwksServer;
let credentials: CredentialSource;
let sb: TestSignalbox;
let upstream: FakeLlm;
const logs = capturedLogger();
const gateways: Partial<Record<'nginx' | 'caddy', RunningGateway>> = {};

beforeAll(async () => {
  key = await signingKey('ES256', 'gateways');
  jwks = await JwksServer.start([key.publicJwk]);
  credentials = await openTestVault(MASTER_KEY, { openai: OPENAI_KEY }, logs.logger);
  sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, credentials, bundle: await gatewayTestBundle(RATE_LIMIT) });
  upstream = await FakeLlm.start();
  const targets = { signalboxPort: sb.running.httpPort, upstreamPort: upstream.port };
  // Started side by side; when one fails the other is still recorded, so afterAll stops it.
  const started = await Promise.allSettled([startNginx(targets).then((g) => (gateways.nginx = g)), startCaddy(targets).then((g) => (gateways.caddy = g))]);
  for (const result of started) if (result.status === 'rejected') throw result.reason;
});

afterAll(async () => {
  await Promise.all([gateways.nginx?.stop(), gateways.caddy?.stop()]);
  await upstream?.close();
  await sb?.close();
  await credentials?.close();
  await jwks?.close();
});

function headersOf(response: Response): Record<string, string> {
  return Object.fromEntries(response.headers.entries());
}

describe.each(['nginx', 'caddy'] as const)('%s in front of Signalbox', (name) => {
  const door = name === 'nginx' ? 'nginx.auth_request' : 'caddy.forward_auth';
  const gateway = (): RunningGateway => gateways[name] as RunningGateway;
  const token = (subject: string, roles = ['llm-user']): Promise<string> => mint(key, { subject: `${name}-${subject}`, claims: { roles } });

  async function send(path: string, init: { method?: string; token?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ response: Response; text: string }> {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    if (init.body !== undefined) headers['content-type'] ??= 'application/json';
    const response = await fetch(`${gateway().url}${path}`, { method: init.method ?? 'GET', headers, ...(init.body !== undefined ? { body: init.body } : {}) });
    return { response, text: await response.text() };
  }

  async function expectDenied(result: { response: Response; text: string }, status: number, code: string): Promise<ErrorBody> {
    const { response, text } = result;
    expect(response.status, `${text}\n${await gateway().log()}`).toBe(status);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const body = JSON.parse(text) as ErrorBody;
    expect(body.error.code).toBe(code);
    expect(response.headers.get('x-signalbox-decision-id')).toMatch(/^[0-9a-f-]{36}$/);
    return body;
  }

  it('allows a granted call: the upstream gets identity headers, never the caller’s token or forged identity', async () => {
    const callerToken = await token('allowed');
    const before = upstream.seen.length;
    const { response, text } = await send('/v1/models', {
      token: callerToken,
      headers: { 'x-signalbox-user': 'mallory', 'x-signalbox-actor': 'forged-agent', 'x-signalbox-upstream': 'evil.example:443' },
    });
    expect(response.status, `${text}\n${await gateway().log()}`).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ object: 'list' });
    expect(upstream.seen.length).toBe(before + 1);
    const seen = upstream.last()!;
    expect(seen.url).toBe('/v1/models');
    expect(seen.headers['x-signalbox-user']).toBe(`${name}-allowed`);
    expect(seen.headers['x-signalbox-team']).toBe('search');
    expect(seen.headers['x-signalbox-tenant']).toBe('acme');
    expect(seen.headers['x-signalbox-roles']).toBe('llm-user');
    // Removed: the inbound credential, and every x-signalbox-* header Signalbox did not set.
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-signalbox-actor']).toBeUndefined();
    expect(seen.headers['x-signalbox-upstream']).toBeUndefined();
    expect(JSON.stringify(seen.headers)).not.toContain(callerToken);
    // The decision id reaches the client and the upstream (for usage reports), and is audited.
    const decisionId = response.headers.get('x-signalbox-decision-id');
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers['x-signalbox-decision-id']).toBe(decisionId);
    await expect.poll(async () => readFile(sb.auditPath, 'utf8')).toContain(decisionId!);
    const record = (await readFile(sb.auditPath, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { decision_id: string; door: string; input: { door: unknown; content: unknown; attributes: { request: { http: { method: string; path: string } } } } })
      .find((r) => r.decision_id === decisionId)!;
    expect(record.door).toBe(door);
    expect(record.input.door).toEqual({ name: door, can_rewrite_body: false, body_forwarded: false });
    expect(record.input.content).toEqual({ scanned: false, truncated: false, findings: [], scanned_bytes: 0 });
    expect(record.input.attributes.request.http).toMatchObject({ method: 'GET', path: '/v1/models' });
  });

  it('passes an LLM call without its body reaching Signalbox, and injects the routed vault key in place of the caller’s', async () => {
    const callerToken = await token('routed');
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
    const { response, text } = await send('/v1/chat/completions?trace=1', {
      method: 'POST',
      token: callerToken,
      headers: { 'x-api-key': 'caller-provider-key' },
      body,
    });
    // A body with a content-length is not "truncated" at a door that never forwards bodies.
    expect(response.status, `${text}\n${await gateway().log()}`).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-mini' });
    const seen = upstream.last()!;
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/v1/chat/completions?trace=1');
    expect(seen.body).toBe(body);
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(seen.headers['x-api-key']).toBeUndefined();
    expect(seen.headers['x-signalbox-provider']).toBe('openai');
    expect(seen.headers['x-signalbox-upstream']).toBe('api.openai.com:443');
    expect(seen.headers['x-signalbox-user']).toBe(`${name}-routed`);
    // The provider key reaches the upstream only: not the client, the logs or the audit trail.
    expect(JSON.stringify(headersOf(response))).not.toContain(OPENAI_KEY);
    expect(logs.text()).not.toContain(OPENAI_KEY);
    await sb.running.audit.flush();
    expect(await readFile(sb.auditPath, 'utf8')).not.toContain(OPENAI_KEY);
  });

  it('denies a call without a token with 401, Signalbox’s JSON body and its WWW-Authenticate', async () => {
    const before = upstream.seen.length;
    const result = await send('/v1/models');
    const body = await expectDenied(result, 401, 'identity.token_missing');
    expect(body.error.message).toBe('authentication required: present a valid bearer token');
    expect(result.response.headers.get('www-authenticate')).toBe('Bearer realm="signalbox", error="invalid_token"');
    expect(upstream.seen.length).toBe(before);
  });

  it('denies a route the caller’s roles do not grant with 403 and the JSON body', async () => {
    const before = upstream.seen.length;
    const result = await send('/mcp', { method: 'POST', token: await token('no-mcp'), body: '{"jsonrpc":"2.0","method":"tools/list","id":1}' });
    const body = await expectDenied(result, 403, 'route.not_allowed');
    expect(body.error.reasons).toEqual(['route.not_allowed']);
    expect(upstream.seen.length).toBe(before);
  });

  it('passes a rate-limit 429 to the client with its status, JSON body and retry-after', async () => {
    const callerToken = await token('rate-limited');
    for (let i = 0; i < RATE_LIMIT; i++) {
      const { response } = await send('/v1/models', { token: callerToken });
      expect(response.status).toBe(200);
    }
    const before = upstream.seen.length;
    const result = await send('/v1/models', { token: callerToken });
    const body = await expectDenied(result, 429, 'rate_limit_exceeded');
    expect(Number(result.response.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(body.error.decision_id).toBe(result.response.headers.get('x-signalbox-decision-id'));
    expect(upstream.seen.length).toBe(before);
  });

  it('passes a 503 (a routed credential the vault does not hold) to the client, never the upstream', async () => {
    const before = upstream.seen.length;
    const result = await send('/v1/embeddings', { method: 'POST', token: await token('no-credential'), body: '{"model":"text-embedding-3-small","input":"hi"}' });
    const body = await expectDenied(result, 503, 'credential_unavailable');
    expect(body.error.message).toBe('the request was denied because the provider credential for its route is not available');
    expect(upstream.seen.length).toBe(before);
  });
});

describe('the nginx and Caddy doors, called directly', () => {
  const url = (path: string): string => `http://127.0.0.1:${sb.running.httpPort}${path}`;

  it('answer a subrequest that does not name the original request with 400 request_malformed (nginx: as 403 plus the real status)', async () => {
    const nginx = await fetch(url('/authz/nginx'), { headers: { 'x-original-method': 'GET' } });
    expect(nginx.status).toBe(403);
    expect(nginx.headers.get('x-signalbox-deny-status')).toBe('400');
    const nginxBody = JSON.parse(nginx.headers.get('x-signalbox-deny-body')!) as ErrorBody;
    expect(nginxBody.error.code).toBe('request_malformed');
    expect(JSON.parse(await nginx.text())).toEqual(nginxBody);

    const caddy = await fetch(url('/authz/caddy'), { headers: { 'x-forwarded-uri': '/v1/models', 'x-forwarded-method': 'GET /x' } });
    expect(caddy.status).toBe(400);
    const caddyBody = JSON.parse(await caddy.text()) as ErrorBody;
    expect(caddyBody.error).toMatchObject({ code: 'request_malformed', message: 'the request could not be read' });
    expect(caddy.headers.get('x-signalbox-decision-id')).toBe(caddyBody.error.decision_id);
  });

  it('never treat a declared content-length as a truncated body (the body never comes)', async () => {
    const auth = `Bearer ${await mint(key, { subject: 'direct' })}`;
    for (const [path, control] of [
      ['/authz/nginx', { 'x-original-method': 'POST', 'x-original-uri': '/v1/chat/completions' }],
      ['/authz/caddy', { 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/v1/chat/completions' }],
    ] as const) {
      // Headers only: the content-length promises 5000 bytes that are never sent.
      const { status, headers } = await new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve, reject) => {
        const req = request(url(path), { method: 'POST', headers: { ...control, authorization: auth, 'content-type': 'application/json', 'content-length': '5000' } });
        req.on('response', (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, headers: res.headers });
          req.destroy();
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(status, path).toBe(200);
      expect(headers['x-signalbox-user'], path).toBe('direct');
    }
  });
});

describe('a gateway whose Signalbox cannot be reached', () => {
  it('denies (nginx 500, Caddy 502), and nothing reaches the upstream', async () => {
    // A port nobody listens on: the auth call fails to connect.
    const targets = { signalboxPort: await freePort(), upstreamPort: upstream.port };
    const started: RunningGateway[] = [];
    try {
      const [nginx, caddy] = await Promise.all([startNginx(targets).then((g) => (started.push(g), g)), startCaddy(targets).then((g) => (started.push(g), g))]);
      const before = upstream.seen.length;
      const callerToken = await mint(key, { subject: 'unreachable' });
      for (const [gateway, status] of [
        [nginx, 500],
        [caddy, 502],
      ] as const) {
        const response = await fetch(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${callerToken}` } });
        await response.text();
        expect(response.status, gateway.url).toBe(status);
      }
      expect(upstream.seen.length).toBe(before);
    } finally {
      await Promise.all(started.map((g) => g.stop()));
    }
  });
});
