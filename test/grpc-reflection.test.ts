import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcurl } from './helpers/grpcurl.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const SERVED = [
  'envoy.service.auth.v3.Authorization',
  'envoy.service.ext_proc.v3.ExternalProcessor',
  'grpc.health.v1.Health',
  'signalbox.v1.DecisionService',
];

describe('gRPC server reflection, called by the real grpcurl', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let on: TestSignalbox;
  let off: TestSignalbox;
  const log = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'k1');
    jwks = await JwksServer.start([key.publicJwk]);
    on = await startTestSignalbox(log.logger, { jwksUrl: jwks.url, yaml: 'server:\n  grpc_reflection: true\n' });
    off = await startTestSignalbox(log.logger, { jwksUrl: jwks.url });
  });
  afterAll(async () => {
    await on?.close();
    await off?.close();
    await jwks?.close();
  });

  const target = (sb: TestSignalbox): string => `127.0.0.1:${sb.running.grpcPort}`;

  it('lists every served service', async () => {
    const listed = await grpcurl(['-plaintext', target(on), 'list']);
    expect(listed.stderr).toBe('');
    expect(listed.stdout.trim().split('\n').sort()).toEqual(SERVED);
  });

  it('describes a service and a message from the served descriptors', async () => {
    const service = await grpcurl(['-plaintext', target(on), 'describe', 'signalbox.v1.DecisionService']);
    expect(service.code).toBe(0);
    expect(service.stdout).toContain('rpc Decide ( .signalbox.v1.DecideRequest ) returns ( .signalbox.v1.DecideResponse );');
    expect(service.stdout).toContain('rpc GetSpend');
    const message = await grpcurl(['-plaintext', target(on), 'describe', 'envoy.service.auth.v3.CheckRequest']);
    expect(message.code).toBe(0);
    expect(message.stdout).toContain('.envoy.service.auth.v3.AttributeContext attributes = 1;');
  });

  it('makes a real Decide call through reflection: allowed with a token, denied without', async () => {
    const token = await mint(key);
    const call = (headers: Record<string, string>) =>
      grpcurl(['-plaintext', '-d', JSON.stringify({ request: { method: 'GET', path: '/v1/models', headers } }), target(on), 'signalbox.v1.DecisionService/Decide']);
    const allowed = await call({ authorization: `Bearer ${token}` });
    expect(allowed.code).toBe(0);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ allowed: true });
    const denied = await call({});
    expect(denied.code).toBe(0);
    expect(JSON.parse(denied.stdout)).toMatchObject({ http_status: 401, reasons: ['identity.token_missing'] });
    expect(JSON.parse(denied.stdout).allowed).toBeUndefined(); // proto3 false: not printed
  });

  it('is off by default (server.grpc_reflection): grpcurl cannot list', async () => {
    const listed = await grpcurl(['-plaintext', target(off), 'list']);
    expect(listed.code).not.toBe(0);
    expect(listed.stderr).toMatch(/does not support the reflection API|Unimplemented/i);
  });
});
