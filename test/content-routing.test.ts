/**
 * Content safety, SSRF, redaction, routing headers and credential injection, end to end through
 * the default policy: Envoy Check (a door that cannot rewrite bodies) and the native Decide (one
 * that can). The vault is a real encrypted file; the provider key must reach the upstream
 * headers and nowhere else (logs, audit, deny bodies).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CredentialSource } from '../src/vault/credentials.js';
import { buildTestBundle } from './helpers/bundles.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { openTestVault, testSecrets } from './helpers/vault.js';
import { checkRequest, headerValue, startTestSignalbox, type CheckResponse, type TestSignalbox, decideClient } from './helpers/signalbox.js';

const OK = 0;
const PERMISSION_DENIED = 7;
const { masterKey: MASTER_KEY, openaiKey: OPENAI_KEY } = testSecrets();

interface DecideResponse {
  allowed: boolean;
  httpStatus: number;
  headers: { key: string; value: string }[];
  requestHeadersToRemove: string[];
  reasons: string[];
  body: string;
  upstreamBody?: Buffer;
  route?: { provider: string; model: string; upstream: string; credential: string; fallbacks: { provider: string }[] };
}

function deniedStatus(response: CheckResponse): number | undefined {
  return response.deniedResponse?.status?.code;
}

function deniedReasons(response: CheckResponse): string[] {
  return (JSON.parse(response.deniedResponse?.body ?? '{}') as { error?: { reasons?: string[] } }).error?.reasons ?? [];
}

/** Public and internal names resolve from this table only: tests never touch real DNS. */
const DNS: Record<string, string[]> = {
  'api.example.com': ['93.184.216.34'],
  'intranet.example.com': ['10.0.0.8'],
  'rebind.example.com': ['93.184.216.34', '127.0.0.1'],
};

async function resolveFromTable(host: string): Promise<string[]> {
  const answer = DNS[host];
  if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return answer;
}

describe('content safety, destinations, routing and credentials through the default policy', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let credentials: CredentialSource;
  let decide: (req: object) => Promise<DecideResponse>;
  let closeClient: () => void;
  const logs = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'content');
    jwks = await JwksServer.start([key.publicJwk]);
    credentials = await openTestVault(MASTER_KEY, { openai: OPENAI_KEY }, logs.logger);
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, credentials, resolve: resolveFromTable });
    ({ decide, close: closeClient } = decideClient<DecideResponse>(sb.running.grpcPort));
  });

  afterAll(async () => {
    closeClient?.();
    await sb?.close();
    await credentials?.close();
    await jwks?.close();
  });

  async function check(body: unknown, options: { roles?: string[]; path?: string; headers?: Record<string, string> } = {}): Promise<CheckResponse> {
    const token = await mint(key, { claims: { roles: options.roles ?? ['llm-power-user'] } });
    return sb.check(checkRequest({ body: JSON.stringify(body), token, path: options.path ?? '/v1/chat/completions', headers: options.headers ?? {} }));
  }

  async function decideChat(body: unknown): Promise<DecideResponse> {
    const token = await mint(key, { claims: { roles: ['llm-power-user'] } });
    return decide({
      request: {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-api-key': 'caller-key' },
        body: Buffer.from(JSON.stringify(body)),
      },
    });
  }

  async function auditRecords(): Promise<Array<Record<string, unknown>>> {
    await sb.running.audit.flush();
    const text = await readFile(sb.auditPath, 'utf8');
    return text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  const AWS_KEY = 'AKIAZ7Q3EXAMPLEQ7XWM';

  it('denies a secret hidden in an earlier turn’s tool-call arguments (history, not only the latest turn)', async () => {
    const response = await check({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'set up the bucket' },
        {
          role: 'assistant',
          tool_calls: [{ id: 'c1', type: 'function', function: { name: 'configure', arguments: JSON.stringify({ access_key: AWS_KEY }) } }],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'done' },
        { role: 'user', content: 'thanks, now summarise' },
      ],
    });
    expect(response.status.code).toBe(PERMISSION_DENIED);
    expect(deniedStatus(response)).toBe(403);
    expect(deniedReasons(response)).toEqual(['content.secret.aws_access_key']);
    const record = (await auditRecords()).at(-1) as { input: { content: { findings: Array<{ type: string; path: string }> } } };
    expect(record.input.content.findings).toEqual([
      { type: 'secret.aws_access_key', path: '$.messages[1].tool_calls[0].function.arguments<json>.access_key', count: 1 },
    ]);
    expect(await readFile(sb.auditPath, 'utf8')).not.toContain(AWS_KEY);
  });

  it('denies an SSN in a tool result and a card number in an Anthropic tool_result block', async () => {
    const ssn = await check({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'look me up' },
        { role: 'tool', tool_call_id: 'x', content: 'Customer SSN on file: 536-22-8409' },
      ],
    });
    expect(deniedReasons(ssn)).toEqual(['content.us_ssn']);
    const card = await check(
      {
        model: 'claude-3-5-haiku-20241022',
        max_tokens: 100,
        messages: [
          { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { q: 'card' } }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'Visa card 4111 1111 1111 1111 exp 12/29' }] }] },
        ],
      },
      { path: '/v1/messages' },
    );
    expect(deniedReasons(card)).toEqual(['content.payment_card']);
  });

  it('lets an email through Envoy (it cannot rewrite bodies), records the finding, never the address', async () => {
    const response = await check({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Write to dana.whitfield@example.org about the launch' }] });
    expect(response.status.code).toBe(OK);
    const record = (await auditRecords()).at(-1) as { input: { content: { findings: unknown[] } } };
    expect(record.input.content.findings).toEqual([{ type: 'email', path: '$.messages[0].content', count: 1 }]);
    expect(await readFile(sb.auditPath, 'utf8')).not.toContain('dana.whitfield');
  });

  it('redacts an email through the native API: valid JSON, tool arguments still a JSON string', async () => {
    const response = await decideChat({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'Email dana.whitfield@example.org, or call +1 415 555 0134' },
        { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: JSON.stringify({ to: 'dana.whitfield@example.org' }) } }] },
        { role: 'tool', tool_call_id: 'c1', content: 'sent' },
      ],
    });
    expect(response.allowed).toBe(true);
    const upstream = JSON.parse(response.upstreamBody!.toString('utf8')) as { messages: Array<{ content?: string; tool_calls?: Array<{ function: { arguments: string } }> }> };
    expect(upstream.messages[0]!.content).toBe('Email [REDACTED:email], or call [REDACTED:phone]');
    expect(JSON.parse(upstream.messages[1]!.tool_calls![0]!.function.arguments)).toEqual({ to: '[REDACTED:email]' });
    expect(response.upstreamBody!.toString('utf8')).not.toContain('dana.whitfield');
  });

  it('sends no upstream body when nothing needed masking', async () => {
    const response = await decideChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
    expect(response.allowed).toBe(true);
    expect(response.upstreamBody ?? Buffer.alloc(0)).toHaveLength(0);
  });

  it('answers 413 for a body the gateway cut short, and for Envoy’s partial-body marker', async () => {
    const token = await mint(key, { claims: { roles: ['llm-power-user'] } });
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const cut = await sb.check(checkRequest({ body: body.slice(0, 20), token, headers: { 'content-length': String(body.length) } }));
    expect(deniedStatus(cut)).toBe(413);
    expect(deniedReasons(cut)).toEqual(['content.truncated']);
    const partial = await sb.check(checkRequest({ body, token, headers: { 'x-envoy-auth-partial-body': 'true' } }));
    expect(deniedStatus(partial)).toBe(413);
  });

  it('denies tool calls aimed at internal addresses, in every numeric and resolved form', async () => {
    const cases: Array<[string, string | null]> = [
      ['http://169.254.169.254/latest/meta-data/', 'destination.metadata'],
      ['http://0x7f000001/admin', 'destination.loopback'],
      ['http://2130706433/', 'destination.loopback'],
      ['http://[::ffff:10.0.0.1]/', 'destination.private'],
      ['http://100.64.1.1/', 'destination.cgnat'],
      ['https://intranet.example.com/wiki', 'destination.private'],
      ['https://rebind.example.com/', 'destination.loopback'],
      ['https://does-not-resolve.example.com/', 'destination.unresolvable'],
      ['https://api.example.com/v1/search', null],
      ['http://93.184.216.34/', null],
    ];
    for (const [url, reason] of cases) {
      const response = await check(
        { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'fetch_url', arguments: { url } } },
        { roles: ['agent'], path: '/mcp' },
      );
      if (reason === null) expect(response.status.code, url).toBe(OK);
      else expect(deniedReasons(response), url).toEqual([reason]);
    }
  });

  it('routes to the model’s first provider, injects its vault key and strips the caller’s credentials', async () => {
    const response = await check({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }, { headers: { 'x-api-key': 'caller-key', 'x-signalbox-upstream': 'evil' } });
    expect(response.status.code).toBe(OK);
    const headers = response.okResponse!.headers;
    expect(headerValue(headers, 'authorization')).toBe(`Bearer ${OPENAI_KEY}`);
    expect(headerValue(headers, 'x-signalbox-provider')).toBe('openai');
    expect(headerValue(headers, 'x-signalbox-upstream')).toBe('api.openai.com:443');
    expect(headerValue(headers, 'x-signalbox-fallbacks')).toBe('azure-openai');
    const removed = response.okResponse!.headersToRemove!;
    expect(removed).toEqual(expect.arrayContaining(['x-api-key', 'api-key', 'proxy-authorization', 'x-signalbox-model']));
    // The injected header is set, never also removed (Envoy removes after it adds).
    expect(removed).not.toContain('authorization');
    expect(removed).not.toContain('x-signalbox-upstream');
  });

  it('injects no credential for a provider whose key the vault does not hold', async () => {
    const response = await check({ model: 'claude-3-5-haiku-20241022', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }, { path: '/v1/messages' });
    expect(response.status.code).toBe(OK);
    expect(headerValue(response.okResponse!.headers, 'x-signalbox-provider')).toBe('anthropic');
    expect(headerValue(response.okResponse!.headers, 'x-api-key')).toBeUndefined();
    expect(response.okResponse!.headersToRemove).toContain('authorization');
  });

  it('the native API returns the route (credential by name only) and the key header', async () => {
    const response = await decideChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
    expect(response.route).toMatchObject({ provider: 'openai', credential: 'openai', upstream: 'api.openai.com:443' });
    expect(response.route!.fallbacks.map((f) => f.provider)).toEqual(['azure-openai']);
    expect(response.headers.find((h) => h.key === 'authorization')?.value).toBe(`Bearer ${OPENAI_KEY}`);
    expect(response.requestHeadersToRemove).toContain('x-api-key');
  });

  it('never writes the provider key or the master key to a log line or the audit trail', async () => {
    const secrets = [OPENAI_KEY, MASTER_KEY.toString('base64')];
    const audit = await readFile(sb.auditPath, 'utf8');
    for (const secret of secrets) {
      expect(logs.text()).not.toContain(secret);
      expect(audit).not.toContain(secret);
    }
    expect(logs.lines().length).toBeGreaterThan(0);
  });
});

describe('policy results the door or the vault cannot honour fail closed', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  const logs = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'strict');
    jwks = await JwksServer.start([key.publicJwk]);
    const bundle = await buildTestBundle(`package signalbox.authz
import rego.v1
# METADATA
# entrypoint: true
default decision := {"allowed": false}
decision := {"allowed": true, "redact": {"types": ["email"]}} if input.parsed_path[0] == "redact"
decision := {"allowed": true, "route": {"provider": "openai", "credential": "missing"}} if input.parsed_path[0] == "route"
`);
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, bundle });
  });

  afterAll(async () => {
    await sb?.close();
    await jwks?.close();
  });

  it('a redact asked of Envoy (which cannot rewrite the body) denies with redaction_unsupported', async () => {
    const token = await mint(key);
    const response = await sb.check(checkRequest({ path: '/redact', body: JSON.stringify({ text: 'mail dana@example.org' }), token }));
    expect(response.status.code).toBe(PERMISSION_DENIED);
    expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('redaction_unsupported');
  });

  it('a credential the vault does not hold (no vault open) denies with 503 credential_unavailable', async () => {
    const token = await mint(key);
    const response = await sb.check(checkRequest({ path: '/route', body: '{}', token }));
    expect(deniedStatus(response)).toBe(503);
    expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('credential_unavailable');
  });
});
