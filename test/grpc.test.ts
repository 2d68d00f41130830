import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServices } from '../src/transport/protos.js';
import { buildTestBundle } from './helpers/bundles.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, headerValue, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const PERMISSION_DENIED = 7;

describe('Envoy ext_authz Check over gRPC with the default policy', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  const log = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('RS256', 'k1');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(log.logger, { jwksUrl: jwks.url });
  });
  afterAll(async () => {
    await sb.close();
    await jwks.close();
  });

  const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'my secret prompt' }] });

  it('allows a granted route and model, injects identity headers and strips the credential', async () => {
    const token = await mint(key);
    const response = await sb.check(checkRequest({ token, body: chat('gpt-4o-mini'), headers: { 'x-signalbox-team': 'spoofed' } }));
    expect(response.status.code ?? 0).toBe(0);
    const ok = response.okResponse!;
    expect(headerValue(ok.headers, 'x-signalbox-user')).toBe('alice');
    expect(headerValue(ok.headers, 'x-signalbox-team')).toBe('search');
    expect(headerValue(ok.headers, 'x-signalbox-tenant')).toBe('acme');
    expect(ok.headers?.find((h) => h.header.key === 'x-signalbox-user')?.appendAction).toBe(2);
    expect(ok.headersToRemove).toContain('authorization');
    const decisionId = response.dynamicMetadata?.fields?.decision_id?.stringValue;
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(headerValue(ok.responseHeadersToAdd, 'x-signalbox-decision-id')).toBe(decisionId);
  });

  it('denies a model outside the caller role with 403 and a JSON body naming the reason', async () => {
    const response = await sb.check(checkRequest({ token: await mint(key), body: chat('gpt-4o') }));
    expect(response.status.code).toBe(PERMISSION_DENIED);
    expect(response.deniedResponse?.status?.code).toBe(403);
    expect(JSON.parse(response.deniedResponse!.body!).error.reasons).toEqual(['model.not_allowed']);
    const decisionId = response.dynamicMetadata?.fields?.decision_id?.stringValue;
    expect(headerValue(response.deniedResponse?.headers, 'x-signalbox-decision-id')).toBe(decisionId);
  });

  const identityCases: [string, () => Promise<Record<string, string>>, string][] = [
    ['missing token', async () => ({}), 'identity.token_missing'],
    ['garbage token', async () => ({ authorization: 'Bearer not-a-jwt' }), 'identity.token_malformed'],
    ['wrong scheme', async () => ({ authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }), 'identity.token_malformed'],
    ['expired token', async () => ({ authorization: `Bearer ${await mint(key, { now: Math.floor(Date.now() / 1000) - 3600, expiresIn: 60 })}` }), 'identity.token_expired'],
    ['wrong audience', async () => ({ authorization: `Bearer ${await mint(key, { audience: 'someone-else' })}` }), 'identity.token_audience_mismatch'],
    ['wrong issuer', async () => ({ authorization: `Bearer ${await mint(key, { issuer: 'https://evil.example' })}` }), 'identity.token_issuer_mismatch'],
    ['not yet valid', async () => ({ authorization: `Bearer ${await mint(key, { notBefore: Math.floor(Date.now() / 1000) + 3600 })}` }), 'identity.token_not_yet_valid'],
    [
      'signed by an unknown key',
      async () => ({ authorization: `Bearer ${await mint(await signingKey('RS256', 'k1'))}` }),
      'identity.token_signature_invalid',
    ],
    [
      'alg none',
      async () => {
        const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
        const payload = Buffer.from(JSON.stringify({ sub: 'alice', iss: 'https://idp.test.signalbox', aud: 'signalbox', exp: 9999999999 })).toString('base64url');
        return { authorization: `Bearer ${header}.${payload}.` };
      },
      'identity.token_algorithm_not_allowed',
    ],
  ];

  it.each(identityCases)('denies with 401 on %s', async (_name, headers, reason) => {
    const response = await sb.check(checkRequest({ headers: await headers(), body: chat('gpt-4o-mini') }));
    expect(response.status.code).toBe(PERMISSION_DENIED);
    expect(response.deniedResponse?.status?.code).toBe(401);
    expect(JSON.parse(response.deniedResponse!.body!).error.reasons).toEqual([reason]);
    expect(headerValue(response.deniedResponse?.headers, 'www-authenticate')).toMatch(/^Bearer /);
  });

  it('denies a malformed JSON body with 400 and body_malformed, without evaluating the policy', async () => {
    const response = await sb.check(checkRequest({ token: await mint(key), body: '{"model": "gpt-4o-mini",' }));
    expect(response.deniedResponse?.status?.code).toBe(400);
    expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('body_malformed');
  });

  it('denies a path with a broken percent-escape with 400 request_malformed', async () => {
    const response = await sb.check(checkRequest({ token: await mint(key), path: '/v1/%zz', body: chat('gpt-4o-mini') }));
    expect(response.deniedResponse?.status?.code).toBe(400);
    expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('request_malformed');
  });

  it('audits every decision with a masked input: no token, no prompt text', async () => {
    const token = await mint(key);
    await sb.check(checkRequest({ token, body: chat('gpt-4o-mini') }));
    await sb.running.audit.flush();
    const audit = await readFile(sb.auditPath, 'utf8');
    const records = audit.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.length).toBeGreaterThanOrEqual(12);
    expect(audit).not.toContain(token);
    expect(audit).not.toContain(token.split('.')[2]);
    expect(audit).not.toContain('my secret prompt');
    const last = records[records.length - 1]!;
    expect(last).toMatchObject({ path: 'signalbox/authz/decision', door: 'envoy.ext_authz.grpc', bundles: { signalbox: { revision: sb.running.engine.revision } } });
    expect(Object.keys(last)).toEqual(expect.arrayContaining(['decision_id', 'input', 'result', 'timestamp', 'metrics', 'seq', 'prev_hash', 'hash']));
    expect(log.text()).not.toContain(token.split('.')[2]);
  });

  it('serves grpc.health.v1 and /ready', async () => {
    const { clients } = loadServices();
    const health = new clients.Health(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
      Check: (req: object, cb: (e: grpc.ServiceError | null, r: { status: number | string }) => void) => void;
      close: () => void;
    };
    const status = await new Promise<unknown>((resolve, reject) => health.Check({ service: 'envoy.service.auth.v3.Authorization' }, (e, r) => (e ? reject(e) : resolve(r.status))));
    expect(status === 1 || status === 'SERVING').toBe(true);
    const unknown = await new Promise<grpc.ServiceError>((resolve) => health.Check({ service: 'nope' }, (e) => resolve(e!)));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    health.close();
    const ready = await fetch(`http://127.0.0.1:${sb.running.httpPort}/ready`);
    expect(ready.status).toBe(200);
  });

  it('rejects a message over the size limit with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const huge = 'x'.repeat(sb.config.server.max_request_bytes + 10);
    await expect(sb.check(checkRequest({ body: huge }))).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    const response = await sb.check(checkRequest({ token: await mint(key), body: chat('gpt-4o-mini') }));
    expect(response.okResponse).toBeDefined();
  });
});

describe('fail closed on policy failures', () => {
  it('denies when evaluation fails (conflicting outputs)', async () => {
    const bundle = await buildTestBundle(
      ['package t', '', '# METADATA', '# entrypoint: true', 'decision := x if {', '  some x in input.parsed_body.values', '}', ''].join('\n'),
    );
    const log = capturedLogger();
    const sb = await startTestSignalbox(log.logger, { bundle, decision: 't/decision' });
    try {
      const response = await sb.check(checkRequest({ body: '{"values": [true, false]}' }));
      expect(response.status.code).toBe(PERMISSION_DENIED);
      expect(response.deniedResponse?.status?.code).toBe(403);
      const body = JSON.parse(response.deniedResponse!.body!);
      expect(body.error.code).toBe('policy_eval_failed');
      expect(body.error.message).not.toMatch(/conflict|wasm|rego/i);
      expect(log.lines().some((l) => l.code === 'policy_eval_failed')).toBe(true);
    } finally {
      await sb.close();
    }
  });

  it.each([
    ['a string', '"yes"'],
    ['an object without allowed', '{"headers": {"a": "b"}}'],
    ['allowed of the wrong type', '{"allowed": "true"}'],
    ['an unknown key', '{"allowed": true, "budget": []}'],
    ['an http_status Envoy does not know', '{"allowed": false, "http_status": 418}'],
    ['a header value that is a number', '{"allowed": true, "headers": {"x-a": 1}}'],
  ])('denies when the result is %s', async (_name, value) => {
    const bundle = await buildTestBundle(['package t', '', '# METADATA', '# entrypoint: true', `decision := ${value}`, ''].join('\n'));
    const sb = await startTestSignalbox(capturedLogger().logger, { bundle, decision: 't/decision' });
    try {
      const response = await sb.check(checkRequest({}));
      expect(response.status.code).toBe(PERMISSION_DENIED);
      expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('policy_result_invalid');
    } finally {
      await sb.close();
    }
  });

  it('denies when the decision is undefined', async () => {
    const bundle = await buildTestBundle(['package t', '', '# METADATA', '# entrypoint: true', 'decision := true if input.never', ''].join('\n'));
    const sb = await startTestSignalbox(capturedLogger().logger, { bundle, decision: 't/decision' });
    try {
      const response = await sb.check(checkRequest({}));
      expect(JSON.parse(response.deniedResponse!.body!).error.code).toBe('policy_result_invalid');
    } finally {
      await sb.close();
    }
  });

  it('keeps denying, not allowing, when the audit log cannot be written', async () => {
    const bundle = await buildTestBundle(['package t', '', '# METADATA', '# entrypoint: true', 'decision := input.parsed_body.allow', ''].join('\n'));
    const log = capturedLogger();
    const failing = { append: () => { throw new Error('disk full'); }, flush: async () => undefined, close: async () => undefined };
    const sb = await startTestSignalbox(log.logger, { bundle, decision: 't/decision', audit: failing });
    try {
      const denied = await sb.check(checkRequest({ body: '{"allow": false}' }));
      expect(denied.status.code).toBe(PERMISSION_DENIED);
      const allowed = await sb.check(checkRequest({ body: '{"allow": true}' }));
      expect(allowed.okResponse).toBeDefined();
      expect(log.lines().some((l) => l.code === 'audit_write_failed')).toBe(true);
    } finally {
      await sb.close();
    }
  });
});
