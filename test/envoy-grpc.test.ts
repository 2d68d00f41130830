/**
 * Envoy's ext_authz filter over gRPC, end to end: the real Envoy (scripts/install-envoy.sh) runs
 * examples/envoy/envoy.yaml and examples/envoy/envoy-routing.yaml with their addresses moved to
 * loopback (test/helpers/envoy.ts), asking a real Signalbox's Authorization/Check, in front of
 * fake OpenAI-compatible upstreams. The examples' gRPC health checks stay: Envoy only becomes
 * ready once Signalbox's grpc.health.v1 reports the Authorization service serving.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CredentialSource } from '../src/vault/credentials.js';
import { accessLogLine, startEnvoyExample, type RunningEnvoy } from './helpers/envoy.js';
import { FakeLlm } from './helpers/fake-llm.js';
import { freePort, gatewayTestBundle } from './helpers/gateways.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { openTestVault, testSecrets } from './helpers/vault.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const { masterKey: MASTER_KEY, openaiKey: OPENAI_KEY } = testSecrets();
const ANTHROPIC_KEY = `sk-ant-${OPENAI_KEY.slice(8)}`;

interface Outcome {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface DenyBody {
  error: { code: string; reasons?: string[]; decision_id?: string };
}

async function send(url: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Outcome> {
  const response = await fetch(`${url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  return { status: response.status, headers: Object.fromEntries(response.headers.entries()), body: await response.text() };
}

const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });
const json = { 'content-type': 'application/json' };

let key: SigningKey;
let jwks: JwksServer;
let credentials: CredentialSource;
let sb: TestSignalbox;
const logs = capturedLogger();
const token = (subject: string, roles = ['llm-user']): Promise<string> => mint(key, { subject, claims: { roles } });

beforeAll(async () => {
  key = await signingKey('ES256', 'envoy-grpc');
  jwks = await JwksServer.start([key.publicJwk]);
  credentials = await openTestVault(MASTER_KEY, { openai: OPENAI_KEY, anthropic: ANTHROPIC_KEY }, logs.logger);
  sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, credentials, bundle: await gatewayTestBundle(1000) });
}, 120_000);

afterAll(async () => {
  await sb?.close();
  await credentials?.close();
  await jwks?.close();
});

describe('Envoy ext_authz over gRPC (examples/envoy/envoy.yaml, the real Envoy)', () => {
  let upstream: FakeLlm;
  let envoy: RunningEnvoy;
  let accessLog: string;

  beforeAll(async () => {
    upstream = await FakeLlm.start();
    accessLog = join(await mkdtemp(join(tmpdir(), 'signalbox-envoy-grpc-')), 'access.log');
    envoy = await startEnvoyExample('examples/envoy/envoy.yaml', { clusters: { signalbox: sb.running.grpcPort, llm_upstream: upstream.port }, accessLog });
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await upstream?.close();
  });

  /** The ext_authz dynamic metadata Envoy recorded for the request that got `decisionId`. */
  async function metadataOf(decisionId: string): Promise<Record<string, unknown> | null> {
    return (await accessLogLine(accessLog, (l) => l.ext_authz?.decision_id === decisionId)).ext_authz;
  }

  function denial(outcome: Outcome, status: number, code: string): DenyBody {
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(status);
    expect(outcome.headers['content-type']).toBe('application/json');
    expect(outcome.headers['x-signalbox-decision-id']).toMatch(/^[0-9a-f-]{36}$/);
    const body = JSON.parse(outcome.body) as DenyBody;
    expect(body.error.code).toBe(code);
    return body;
  }

  it('denies a request without a token with 401 and Signalbox’s JSON body; nothing reaches the upstream', async () => {
    const before = upstream.seen.length;
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: json, body: chat('gpt-4o-mini') });
    const body = denial(outcome, 401, 'identity.token_missing');
    expect(body.error.reasons).toEqual(['identity.token_missing']);
    expect(outcome.headers['www-authenticate']).toBe('Bearer realm="signalbox", error="invalid_token"');
    expect(upstream.seen.length).toBe(before);
    const metadata = await metadataOf(outcome.headers['x-signalbox-decision-id']!);
    expect(metadata?.policy_revision).toEqual(expect.any(String));
    await sb.running.audit.flush();
    const audit = (await readFile(sb.auditPath, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { decision_id: string; door: string });
    expect(audit.find((r) => r.decision_id === outcome.headers['x-signalbox-decision-id'])?.door).toBe('envoy.ext_authz.grpc');
  });

  it('allows with a token: the upstream sees the verified identity headers, no authorization and no forged x-signalbox-*', async () => {
    const callerToken = await token('alice');
    const outcome = await send(envoy.url, '/v1/models', { headers: { authorization: `Bearer ${callerToken}`, 'x-signalbox-user': 'mallory', 'x-signalbox-actor': 'forged' } });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(JSON.parse(outcome.body)).toMatchObject({ object: 'list' });
    const seen = upstream.last()!;
    expect(seen.url).toBe('/v1/models');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-signalbox-user']).toBe('alice');
    expect(seen.headers['x-signalbox-team']).toBe('search');
    expect(seen.headers['x-signalbox-actor']).toBeUndefined();
    expect(JSON.stringify(seen.headers)).not.toContain(callerToken);
    const decisionId = outcome.headers['x-signalbox-decision-id'];
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers['x-signalbox-decision-id']).toBe(decisionId);
    expect((await metadataOf(decisionId!))?.decision_id).toBe(decisionId);
  });

  it('forwards the inspected body untouched and puts the vault key in place of the caller’s token', async () => {
    const callerToken = await token('bob');
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: { ...json, authorization: `Bearer ${callerToken}` }, body: chat('gpt-4o-mini') });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(JSON.parse(outcome.body)).toMatchObject({ object: 'chat.completion', usage: { prompt_tokens: 42 } });
    const seen = upstream.last()!;
    expect(seen.body).toBe(chat('gpt-4o-mini'));
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(seen.headers['x-signalbox-user']).toBe('bob');
    expect(JSON.stringify(outcome.headers)).not.toContain(OPENAI_KEY);
    expect(logs.text()).not.toContain(OPENAI_KEY);
  });

  it('denies on the body: a model the caller’s roles do not grant is 403 model.not_allowed', async () => {
    const before = upstream.seen.length;
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: { ...json, authorization: `Bearer ${await token('carol')}` }, body: chat('o3') });
    expect(denial(outcome, 403, 'model.not_allowed').error.reasons).toEqual(['model.not_allowed']);
    expect(upstream.seen.length).toBe(before);
  });

  it('passes Signalbox’s own 503 and JSON body over gRPC (HTTP mode cannot)', async () => {
    const before = upstream.seen.length;
    // No body: no model, so the test policy routes embeddings to a credential the vault lacks.
    const outcome = await send(envoy.url, '/v1/embeddings', { method: 'POST', headers: { authorization: `Bearer ${await token('dave')}` } });
    denial(outcome, 503, 'credential_unavailable');
    expect(upstream.seen.length).toBe(before);
  });
});

describe('Envoy routing on Signalbox’s route (examples/envoy/envoy-routing.yaml, the real Envoy)', () => {
  let openai: FakeLlm;
  let azure: FakeLlm;
  let anthropic: FakeLlm;
  let envoy: RunningEnvoy;

  beforeAll(async () => {
    [openai, azure, anthropic] = await Promise.all([FakeLlm.start(), FakeLlm.start(), FakeLlm.start()]);
    envoy = await startEnvoyExample('examples/envoy/envoy-routing.yaml', {
      clusters: { signalbox: sb.running.grpcPort, openai: openai.port, azure_openai: azure.port, anthropic: anthropic.port },
    });
  }, 120_000);

  afterAll(async () => {
    await envoy?.stop();
    await Promise.all([openai?.close(), azure?.close(), anthropic?.close()]);
  });

  const counts = (): number[] => [openai, azure, anthropic].map((u) => u.seen.length);

  it('sends a GPT model to the openai cluster with the OpenAI key, even when the caller names another upstream', async () => {
    const before = counts();
    const outcome = await send(envoy.url, '/v1/chat/completions', {
      headers: { ...json, authorization: `Bearer ${await token('erin')}`, 'x-signalbox-upstream': 'api.anthropic.com:443' },
      body: chat('gpt-4o-mini'),
    });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(counts()).toEqual([before[0]! + 1, before[1], before[2]]);
    const seen = openai.last()!;
    expect(seen.url).toBe('/v1/chat/completions');
    expect(seen.headers['x-signalbox-upstream']).toBe('api.openai.com:443');
    expect(seen.headers['x-signalbox-provider']).toBe('openai');
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
  });

  it('sends a Claude model to the anthropic cluster with the Anthropic key, and no caller token', async () => {
    const callerToken = await token('frank');
    const before = counts();
    const body = JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] });
    const outcome = await send(envoy.url, '/v1/messages', { headers: { ...json, authorization: `Bearer ${callerToken}` }, body });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(200);
    expect(counts()).toEqual([before[0], before[1], before[2]! + 1]);
    const seen = anthropic.last()!;
    expect(seen.url).toBe('/v1/messages');
    expect(seen.body).toBe(body);
    expect(seen.headers['x-signalbox-upstream']).toBe('api.anthropic.com:443');
    expect(seen.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(JSON.stringify(seen.headers)).not.toContain(callerToken);
  });

  it('answers an allowed request Signalbox routes nowhere with the example’s 503, sending it nowhere', async () => {
    const before = counts();
    const outcome = await send(envoy.url, '/v1/models', { headers: { authorization: `Bearer ${await token('gina')}` } });
    expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(503);
    expect(counts()).toEqual(before);
  });

  it('denies without a token before any route is taken', async () => {
    const before = counts();
    const outcome = await send(envoy.url, '/v1/chat/completions', { headers: json, body: chat('gpt-4o-mini') });
    expect(outcome.status).toBe(401);
    expect((JSON.parse(outcome.body) as DenyBody).error.code).toBe('identity.token_missing');
    expect(counts()).toEqual(before);
  });
});

describe('Envoy with Signalbox unreachable (examples/envoy/envoy.yaml)', () => {
  it('answers status_on_error 503 and never lets the request through', async () => {
    const upstream = await FakeLlm.start();
    // A Signalbox that is not there: the health check never passes and every check fails.
    const envoy = await startEnvoyExample('examples/envoy/envoy.yaml', { clusters: { signalbox: await freePort(), llm_upstream: upstream.port } });
    try {
      const outcome = await send(envoy.url, '/v1/models', { headers: { authorization: `Bearer ${await token('hank')}` } });
      expect(outcome.status, `${outcome.body}\n${envoy.log()}`).toBe(503);
      expect(upstream.seen.length).toBe(0);
    } finally {
      await envoy.stop();
      await upstream.close();
    }
  }, 120_000);
});
