/**
 * Envoy's ext_authz filter in HTTP mode against a real Signalbox. Envoy itself cannot be
 * installed here, so this file plays its part, as Envoy's raw HTTP client
 * (source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc) does, driven by
 * examples/envoy/envoy-http.yaml: the check request carries the original method, `path_prefix` +
 * path, Host, Authorization, the `allowed_headers`, a content-length for the buffered body (never
 * the original one) and `x-envoy-auth-partial-body`; a 200 sets the `allowed_upstream_headers` on
 * the upstream request and removes those named by `x-envoy-auth-headers-to-remove`; a 5xx is a
 * failed check answered with `status_on_error`; any other status goes to the client with the
 * response's headers (Host excepted) and body. Upstream is a fake OpenAI API.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { projectRoot } from '../src/core/paths.js';
import type { CredentialSource } from '../src/vault/credentials.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { gatewayTestBundle } from './helpers/gateways.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { openTestVault, testSecrets } from './helpers/vault.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const { masterKey: MASTER_KEY, openaiKey: OPENAI_KEY } = testSecrets();
const RATE_LIMIT = 3;

interface StringMatcher {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  ignore_case?: boolean;
}

interface HttpServiceConfig {
  server_uri: { uri: string; cluster: string; timeout: string };
  path_prefix?: string;
  authorization_request?: { allowed_headers?: { patterns: StringMatcher[] } };
  authorization_response?: {
    allowed_upstream_headers?: { patterns: StringMatcher[] };
    allowed_client_headers?: { patterns: StringMatcher[] };
    allowed_client_headers_on_success?: { patterns: StringMatcher[] };
    dynamic_metadata_from_headers?: { patterns: StringMatcher[] };
  };
}

interface ExtAuthzConfig {
  http_service: HttpServiceConfig;
  failure_mode_allow: boolean;
  status_on_error?: { code: string };
  with_request_body?: { max_request_bytes: number; allow_partial_message?: boolean };
}

const STATUS_CODES: Record<string, number> = { Forbidden: 403, ServiceUnavailable: 503, InternalServerError: 500, Unauthorized: 401 };

function matches(patterns: readonly StringMatcher[] | undefined, name: string): boolean {
  return (patterns ?? []).some((p) => {
    const subject = p.ignore_case ? name.toLowerCase() : name;
    const fold = (v: string): string => (p.ignore_case ? v.toLowerCase() : v);
    if (p.exact !== undefined) return subject === fold(p.exact);
    if (p.prefix !== undefined) return subject.startsWith(fold(p.prefix));
    if (p.suffix !== undefined) return subject.endsWith(fold(p.suffix));
    if (p.contains !== undefined) return subject.includes(fold(p.contains));
    return false;
  });
}

/** examples/envoy/envoy-http.yaml with the Signalbox cluster pointed at the test's Signalbox. */
async function envoyConfig(signalboxPort: number): Promise<{ filter: ExtAuthzConfig; signalbox: string }> {
  const file = join(projectRoot(), 'examples', 'envoy', 'envoy-http.yaml');
  let text = await readFile(file, 'utf8');
  const endpoint = 'socket_address: { address: signalbox, port_value: 8181 }';
  if (!text.includes(endpoint)) throw new Error(`${file} no longer contains "${endpoint}"; update test/envoy-http.test.ts`);
  text = text.replace(endpoint, `socket_address: { address: 127.0.0.1, port_value: ${signalboxPort} }`);
  const config = parse(text) as {
    static_resources: {
      listeners: { filter_chains: { filters: { typed_config: { http_filters: { name: string; typed_config: ExtAuthzConfig }[] } }[] }[] }[];
      clusters: { name: string; load_assignment: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } } }[] }[] } }[];
    };
  };
  const filters = config.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.http_filters;
  const filter = filters.find((f) => f.name === 'envoy.filters.http.ext_authz')!.typed_config;
  const cluster = config.static_resources.clusters.find((c) => c.name === filter.http_service.server_uri.cluster)!;
  const address = cluster.load_assignment.endpoints[0]!.lb_endpoints[0]!.endpoint.address.socket_address;
  return { filter, signalbox: `http://${address.address}:${address.port_value}` };
}

interface ClientRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface EnvoyOutcome {
  /** What the check request looked like (for assertions about Envoy's side). */
  check: { path: string; headers: Record<string, string> };
  /** The authorization server's raw status. */
  authzStatus: number;
  /** What the client got. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Dynamic metadata from `dynamic_metadata_from_headers`. */
  metadata: Record<string, string>;
}

/** One request through the emulated Envoy: check with Signalbox, then the upstream or the denial. */
async function throughEnvoy(filter: ExtAuthzConfig, signalbox: string, upstream: FakeLlm, request: ClientRequest): Promise<EnvoyOutcome> {
  const service = filter.http_service;
  const client: Record<string, string> = { host: 'llm.example.com', ...Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k.toLowerCase(), v])) };
  // with_request_body: buffer up to max_request_bytes, and say whether the body was cut.
  let body = Buffer.from(request.body ?? '', 'utf8');
  if (filter.with_request_body && request.body !== undefined) {
    const max = filter.with_request_body.max_request_bytes;
    const partial = body.length > max;
    if (partial) body = body.subarray(0, max);
    client['x-envoy-auth-partial-body'] = partial ? 'true' : 'false';
  }
  const checkHeaders: Record<string, string> = { 'content-length': String(body.length) };
  for (const [name, value] of Object.entries(client)) {
    if (name === 'content-length') continue;
    if (['authorization', 'host'].includes(name) || matches(service.authorization_request?.allowed_headers?.patterns, name)) checkHeaders[name] = value;
  }
  const checkPath = `${service.path_prefix ?? ''}${request.path}`;
  const response = await fetch(`${signalbox}${checkPath}`, {
    method: request.method,
    headers: checkHeaders,
    ...(body.length > 0 ? { body } : {}),
  });
  const authzBody = await response.text();
  const authzHeaders = Object.fromEntries(response.headers.entries());
  const check = { path: checkPath, headers: checkHeaders };
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(authzHeaders)) {
    if (matches(service.authorization_response?.dynamic_metadata_from_headers?.patterns, name)) metadata[name] = value;
  }
  if (response.status >= 500) {
    expect(filter.failure_mode_allow).toBe(false);
    const status = STATUS_CODES[filter.status_on_error?.code ?? 'Forbidden'] ?? 403;
    return { check, authzStatus: response.status, status, headers: {}, body: '', metadata };
  }
  if (response.status !== 200) {
    const allowedClient = service.authorization_response?.allowed_client_headers?.patterns;
    const headers = Object.fromEntries(Object.entries(authzHeaders).filter(([name]) => (allowedClient?.length ? matches(allowedClient, name) : name !== 'host')));
    return { check, authzStatus: response.status, status: response.status, headers, body: authzBody, metadata };
  }
  const upstreamHeaders: Record<string, string> = { ...client };
  const toRemove = (authzHeaders['x-envoy-auth-headers-to-remove'] ?? '').split(',').map((h) => h.trim()).filter(Boolean);
  for (const [name, value] of Object.entries(authzHeaders)) {
    if (name !== 'x-envoy-auth-headers-to-remove' && matches(service.authorization_response?.allowed_upstream_headers?.patterns, name)) upstreamHeaders[name] = value;
  }
  for (const name of toRemove) delete upstreamHeaders[name];
  delete upstreamHeaders.host;
  delete upstreamHeaders['content-length'];
  const forwarded = await fetch(`${upstream.url}${request.path}`, {
    method: request.method,
    headers: upstreamHeaders,
    ...(request.body !== undefined ? { body: request.body } : {}),
  });
  const headers = Object.fromEntries(forwarded.headers.entries());
  for (const [name, value] of Object.entries(authzHeaders)) {
    if (matches(service.authorization_response?.allowed_client_headers_on_success?.patterns, name)) headers[name] = value;
  }
  return { check, authzStatus: 200, status: forwarded.status, headers, body: await forwarded.text(), metadata };
}

describe('Envoy ext_authz in HTTP mode (examples/envoy/envoy-http.yaml)', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let credentials: CredentialSource;
  let sb: TestSignalbox;
  let upstream: FakeLlm;
  let filter: ExtAuthzConfig;
  let signalbox: string;
  const logs = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'envoy-http');
    jwks = await JwksServer.start([key.publicJwk]);
    credentials = await openTestVault(MASTER_KEY, { openai: OPENAI_KEY }, logs.logger);
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, credentials, bundle: await gatewayTestBundle(RATE_LIMIT) });
    upstream = await FakeLlm.start();
    ({ filter, signalbox } = await envoyConfig(sb.running.httpPort));
  });

  afterAll(async () => {
    await upstream?.close();
    await sb?.close();
    await credentials?.close();
    await jwks?.close();
  });

  const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });
  const token = (subject: string, roles = ['llm-user']): Promise<string> => mint(key, { subject, claims: { roles } });
  const send = (request: ClientRequest): Promise<EnvoyOutcome> => throughEnvoy(filter, signalbox, upstream, request);

  function expectDenied(outcome: EnvoyOutcome, status: number, code: string): { error: { code: string; reasons?: string[]; decision_id?: string } } {
    expect(outcome.status, outcome.body).toBe(status);
    expect(outcome.headers['content-type']).toBe('application/json');
    expect(outcome.headers['x-signalbox-decision-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(outcome.metadata['x-signalbox-decision-id']).toBe(outcome.headers['x-signalbox-decision-id']);
    const body = JSON.parse(outcome.body) as { error: { code: string; reasons?: string[]; decision_id?: string } };
    expect(body.error.code).toBe(code);
    return body;
  }

  it('allows a granted model: the body is inspected and routed, the vault key replaces the caller’s credentials', async () => {
    const callerToken = await token('alice');
    const before = upstream.seen.length;
    const outcome = await send({
      method: 'POST',
      path: '/v1/chat/completions?trace=1',
      headers: { authorization: `Bearer ${callerToken}`, 'content-type': 'application/json', 'x-api-key': 'caller-key', 'x-signalbox-user': 'mallory', 'x-signalbox-actor': 'forged' },
      body: chat('gpt-4o-mini'),
    });
    expect(outcome.check.path).toBe('/authz/envoy/v1/chat/completions?trace=1');
    expect(outcome.authzStatus, outcome.body).toBe(200);
    expect(outcome.status).toBe(200);
    expect(upstream.seen.length).toBe(before + 1);
    const seen = upstream.last()!;
    expect(seen.url).toBe('/v1/chat/completions?trace=1');
    expect(seen.body).toBe(chat('gpt-4o-mini'));
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(seen.headers['x-api-key']).toBeUndefined();
    expect(seen.headers['x-signalbox-user']).toBe('alice');
    expect(seen.headers['x-signalbox-team']).toBe('search');
    expect(seen.headers['x-signalbox-actor']).toBeUndefined();
    expect(seen.headers['x-signalbox-provider']).toBe('openai');
    expect(seen.headers['x-signalbox-model']).toBeUndefined();
    expect(seen.headers['x-signalbox-upstream']).toBe('api.openai.com:443');
    expect(JSON.stringify(seen.headers)).not.toContain(callerToken);
    const decisionId = outcome.headers['x-signalbox-decision-id'];
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers['x-signalbox-decision-id']).toBe(decisionId);
    expect(outcome.metadata['x-signalbox-decision-id']).toBe(decisionId);
    expect(JSON.stringify(outcome.headers)).not.toContain(OPENAI_KEY);
    expect(logs.text()).not.toContain(OPENAI_KEY);
  });

  it('removes the caller’s token on an allowed call that routes nowhere', async () => {
    const outcome = await send({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${await token('bob')}` } });
    expect(outcome.status, outcome.body).toBe(200);
    const seen = upstream.last()!;
    expect(seen.url).toBe('/v1/models');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-signalbox-user']).toBe('bob');
    const audit = (await readFile(sb.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { decision_id: string; door: string; input: { door: unknown } });
    const record = audit.find((r) => r.decision_id === outcome.headers['x-signalbox-decision-id']);
    expect(record?.door).toBe('envoy.ext_authz.http');
    expect(record?.input.door).toEqual({ name: 'envoy.ext_authz.http', can_rewrite_body: false, body_forwarded: true });
  });

  it('denies a call without a token with 401, the JSON body and WWW-Authenticate', async () => {
    const before = upstream.seen.length;
    const outcome = await send({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chat('gpt-4o-mini') });
    expectDenied(outcome, 401, 'identity.token_missing');
    expect(outcome.headers['www-authenticate']).toBe('Bearer realm="signalbox", error="invalid_token"');
    expect(upstream.seen.length).toBe(before);
  });

  it('denies a model the caller’s roles do not grant with 403', async () => {
    const outcome = await send({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${await token('carol')}`, 'content-type': 'application/json' }, body: chat('o3') });
    const body = expectDenied(outcome, 403, 'model.not_allowed');
    expect(body.error.reasons).toEqual(['model.not_allowed']);
  });

  it('passes a rate-limit 429 with retry-after', async () => {
    const callerToken = await token('dave');
    for (let i = 0; i < RATE_LIMIT; i++) {
      const outcome = await send({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${callerToken}` } });
      expect(outcome.status).toBe(200);
    }
    const outcome = await send({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${callerToken}` } });
    const body = expectDenied(outcome, 429, 'rate_limit_exceeded');
    expect(Number(outcome.headers['retry-after'])).toBeGreaterThan(0);
    expect(body.error.decision_id).toBe(outcome.headers['x-signalbox-decision-id']);
  });

  it('refuses a body Envoy cut at max_request_bytes with 413 content.truncated', async () => {
    const big = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(filter.with_request_body!.max_request_bytes) }] });
    const outcome = await send({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${await token('erin')}`, 'content-type': 'application/json' }, body: big });
    expect(outcome.check.headers['x-envoy-auth-partial-body']).toBe('true');
    expectDenied(outcome, 413, 'content.truncated');
  });

  it('a 5xx from Signalbox is a failed check: Envoy answers status_on_error, and nothing reaches the upstream', async () => {
    const before = upstream.seen.length;
    // No body: no model, so the test policy routes embeddings to a credential the vault lacks.
    const outcome = await send({ method: 'POST', path: '/v1/embeddings', headers: { authorization: `Bearer ${await token('frank')}` } });
    expect(outcome.authzStatus).toBe(503);
    expect(outcome.status).toBe(503);
    expect(outcome.body).toBe('');
    expect(upstream.seen.length).toBe(before);
  });

  it('answers a check whose path cannot be read with 400 request_malformed', async () => {
    const response = await fetch(`${signalbox}/authz/envoy/v1/models%zz`, { headers: { authorization: `Bearer ${await token('gina')}` } });
    expect(response.status).toBe(400);
    const body = JSON.parse(await response.text()) as { error: { code: string; message: string; decision_id: string } };
    expect(body.error).toMatchObject({ code: 'request_malformed', message: 'the request could not be read' });
    expect(response.headers.get('x-signalbox-decision-id')).toBe(body.error.decision_id);
  });
});
