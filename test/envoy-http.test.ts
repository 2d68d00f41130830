/**
 * Envoy's ext_authz filter in HTTP mode, end to end: the real Envoy (scripts/install-envoy.sh)
 * runs examples/envoy/envoy-http.yaml with its addresses moved to loopback (test/helpers/envoy.ts)
 * in front of a fake OpenAI API, asking a real Signalbox's HTTP door. What is checked is what a
 * client and the upstream see, plus the ext_authz dynamic metadata from Envoy's access log.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CredentialSource } from '../src/vault/credentials.js';
import { accessLogLine, startEnvoyExample, type RunningEnvoy } from './helpers/envoy.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { gatewayTestBundle } from './helpers/gateways.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { openTestVault, testSecrets } from './helpers/vault.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const { masterKey: MASTER_KEY, openaiKey: OPENAI_KEY } = testSecrets();
const RATE_LIMIT = 3;
/** The example's with_request_body.max_request_bytes. */
const MAX_REQUEST_BYTES = 1_048_576;

interface ClientRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface EnvoyOutcome {
  /** What the client got from Envoy. */
  status: number;
  headers: Record<string, string>;
  body: string;
}

describe('Envoy ext_authz in HTTP mode (examples/envoy/envoy-http.yaml, the real Envoy)', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let credentials: CredentialSource;
  let sb: TestSignalbox;
  let upstream: FakeLlm;
  let envoy: RunningEnvoy;
  let accessLog: string;
  const logs = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'envoy-http');
    jwks = await JwksServer.start([key.publicJwk]);
    credentials = await openTestVault(MASTER_KEY, { openai: OPENAI_KEY }, logs.logger);
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, credentials, bundle: await gatewayTestBundle(RATE_LIMIT) });
    upstream = await FakeLlm.start();
    accessLog = join(await mkdtemp(join(tmpdir(), 'signalbox-envoy-http-')), 'access.log');
    envoy = await startEnvoyExample('examples/envoy/envoy-http.yaml', {
      clusters: { signalbox_http: sb.running.httpPort, llm_upstream: upstream.port },
      accessLog,
    });
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await upstream?.close();
    await sb?.close();
    await credentials?.close();
    await jwks?.close();
  });

  const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });
  const token = (subject: string, roles = ['llm-user']): Promise<string> => mint(key, { subject, claims: { roles } });

  async function send(request: ClientRequest): Promise<EnvoyOutcome> {
    const response = await fetch(`${envoy.url}${request.path}`, {
      method: request.method,
      headers: request.headers,
      ...(request.body !== undefined ? { body: request.body } : {}),
    });
    return { status: response.status, headers: Object.fromEntries(response.headers.entries()), body: await response.text() };
  }

  /** The ext_authz dynamic metadata Envoy recorded for the request that got `decisionId`. */
  async function metadataOf(decisionId: string): Promise<Record<string, unknown> | null> {
    const line = await accessLogLine(accessLog, (l) => l.ext_authz?.['x-signalbox-decision-id'] === decisionId);
    return line.ext_authz;
  }

  async function expectDenied(outcome: EnvoyOutcome, status: number, code: string): Promise<{ error: { code: string; reasons?: string[]; decision_id?: string } }> {
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(status);
    expect(outcome.headers['content-type']).toBe('application/json');
    const decisionId = outcome.headers['x-signalbox-decision-id'];
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await metadataOf(decisionId!))?.['x-signalbox-decision-id']).toBe(decisionId);
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
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
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
    expect((await metadataOf(decisionId!))?.['x-signalbox-decision-id']).toBe(decisionId);
    expect(JSON.stringify(outcome.headers)).not.toContain(OPENAI_KEY);
    expect(logs.text()).not.toContain(OPENAI_KEY);
    // Envoy asked the door at path_prefix + the original path and query, with the body whole.
    const record = (await auditRecords()).find((r) => r.decision_id === decisionId);
    expect(record?.input.attributes.request.http.path).toBe('/v1/chat/completions?trace=1');
    expect(record?.input.truncated_body).toBe(false);
  });

  interface AuditRecord {
    decision_id: string;
    door: string;
    input: { door: unknown; truncated_body?: boolean; attributes: { request: { http: { path: string; headers: Record<string, string> } } } };
  }

  async function auditRecords(): Promise<AuditRecord[]> {
    await sb.running.audit.flush();
    return (await readFile(sb.auditPath, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
  }

  it('removes the caller’s token on an allowed call that routes nowhere', async () => {
    const outcome = await send({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${await token('bob')}` } });
    expect(outcome.status, outcome.body).toBe(200);
    const seen = upstream.last()!;
    expect(seen.url).toBe('/v1/models');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-signalbox-user']).toBe('bob');
    const record = (await auditRecords()).find((r) => r.decision_id === outcome.headers['x-signalbox-decision-id']);
    expect(record?.door).toBe('envoy.ext_authz.http');
    expect(record?.input.door).toEqual({ name: 'envoy.ext_authz.http', can_rewrite_body: false, body_forwarded: true });
  });

  it('denies a call without a token with 401, the JSON body and WWW-Authenticate', async () => {
    const before = upstream.seen.length;
    const outcome = await send({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chat('gpt-4o-mini') });
    await expectDenied(outcome, 401, 'identity.token_missing');
    expect(outcome.headers['www-authenticate']).toBe('Bearer realm="signalbox", error="invalid_token"');
    expect(upstream.seen.length).toBe(before);
  });

  it('denies a model the caller’s roles do not grant with 403', async () => {
    const outcome = await send({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${await token('carol')}`, 'content-type': 'application/json' }, body: chat('o3') });
    const body = await expectDenied(outcome, 403, 'model.not_allowed');
    expect(body.error.reasons).toEqual(['model.not_allowed']);
  });

  it('passes a rate-limit 429 with retry-after', async () => {
    const callerToken = await token('dave');
    for (let i = 0; i < RATE_LIMIT; i++) {
      const outcome = await send({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${callerToken}` } });
      expect(outcome.status).toBe(200);
    }
    const outcome = await send({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${callerToken}` } });
    const body = await expectDenied(outcome, 429, 'rate_limit_exceeded');
    expect(Number(outcome.headers['retry-after'])).toBeGreaterThan(0);
    expect(body.error.decision_id).toBe(outcome.headers['x-signalbox-decision-id']);
  });

  it('refuses a body Envoy cut at max_request_bytes with 413 content.truncated', async () => {
    const big = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(MAX_REQUEST_BYTES) }] });
    const before = upstream.seen.length;
    const outcome = await send({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${await token('erin')}`, 'content-type': 'application/json' }, body: big });
    await expectDenied(outcome, 413, 'content.truncated');
    const record = (await auditRecords()).find((r) => r.decision_id === outcome.headers['x-signalbox-decision-id']);
    expect(record?.input.attributes.request.http.headers['x-envoy-auth-partial-body']).toBe('true');
    expect(record?.input.truncated_body).toBe(true);
    expect(upstream.seen.length).toBe(before);
  });

  it('a 5xx from Signalbox is a failed check: Envoy answers status_on_error, and nothing reaches the upstream', async () => {
    const before = upstream.seen.length;
    // No body: no model, so the test policy routes embeddings to a credential the vault lacks.
    const outcome = await send({ method: 'POST', path: '/v1/embeddings', headers: { authorization: `Bearer ${await token('frank')}` } });
    expect(outcome.status).toBe(503);
    expect(outcome.body).toBe('');
    expect(outcome.headers['x-signalbox-decision-id']).toBeUndefined();
    expect(upstream.seen.length).toBe(before);
    // Signalbox did answer 503 (credential_unavailable): Envoy dropped its body, as it does for any 5xx.
    const audit = await auditRecords();
    expect(JSON.stringify(audit.at(-1))).toContain('credential_unavailable');
  });

  it('answers a check whose path cannot be read with 400 request_malformed', async () => {
    // Straight to the door: a path Envoy itself would forward is always readable.
    const response = await fetch(`http://127.0.0.1:${sb.running.httpPort}/authz/envoy/v1/models%zz`, { headers: { authorization: `Bearer ${await token('gina')}` } });
    expect(response.status).toBe(400);
    const body = JSON.parse(await response.text()) as { error: { code: string; message: string; decision_id: string } };
    expect(body.error).toMatchObject({ code: 'request_malformed', message: 'the request could not be read' });
    expect(response.headers.get('x-signalbox-decision-id')).toBe(body.error.decision_id);
  });
});
