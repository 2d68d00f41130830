/**
 * TLS and mTLS on both listeners with certificates made in the test (openssl), the client
 * identity reaching the policy, certificate reload, and the admin endpoints' authentication.
 */
import { rename, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdminGuard, tokenMatches } from '../src/transport/admin-auth.js';
import { loadServices } from '../src/transport/protos.js';
import { createHash } from 'node:crypto';
import { TestCa, type Issued } from './helpers/certs.js';
import { awaitRecord } from './helpers/answers.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_TOKEN, checkRequest, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const SPIFFE_CLIENT = 'spiffe://test.local/ns/apps/sa/agent';
const SPIFFE_ADMIN = 'spiffe://test.local/ns/ops/sa/admin-tool';

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  /** The SHA-256 fingerprint of the certificate the server presented. */
  served: string;
}

/** One HTTPS request on a fresh connection (no agent: a reload shows on the next call). */
function https(port: number, path: string, options: { ca: Buffer; client?: Issued; method?: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers ?? {},
        ca: options.ca,
        ...(options.client ? { cert: options.client.cert, key: options.client.key } : {}),
        servername: 'localhost',
        agent: false,
        timeout: 5_000,
      },
      (res) => {
        const served = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> = {};
          try {
            body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            body = { text };
          }
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers, served });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(options.body);
  });
}

type Unary = (req: object, metadata: grpc.Metadata, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Record<string, unknown>) => void) => void;

/** A DecisionService (or Authorization) client over TLS, optionally with a client certificate. */
function grpcClient(service: 'DecisionService' | 'Authorization', port: number, ca: Buffer, client?: Issued): { call: (method: string, req: object, metadata?: grpc.Metadata) => Promise<Record<string, unknown>>; close: () => void } {
  const credentials = client ? grpc.credentials.createSsl(ca, client.key, client.cert) : grpc.credentials.createSsl(ca);
  const c = new (loadServices().clients[service])(`127.0.0.1:${port}`, credentials) as unknown as grpc.Client & Record<string, Unary>;
  return {
    call: (method, req, metadata = new grpc.Metadata()) =>
      new Promise((resolve, reject) => c[method]!(req, metadata, { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r)))),
    close: () => c.close(),
  };
}

const ca = TestCa.create('Signalbox Test CA');
const otherCa = TestCa.create('Some Other CA');
const server = ca.issue('signalbox.test', ['DNS:localhost', 'IP:127.0.0.1']);
const spiffeClient = ca.issue('agent-cn', [`URI:${SPIFFE_CLIENT}`, 'DNS:agent.test']);
const adminClient = ca.issue('admin-tool', [`URI:${SPIFFE_ADMIN}`]);
const cnClient = ca.issue('nginx-gateway', ['DNS:nginx.test']);
const expiredClient = ca.issue('expired', [`URI:${SPIFFE_CLIENT}`], { expired: true });
const foreignClient = otherCa.issue('foreign', [`URI:${SPIFFE_CLIENT}`]);

function tlsYaml(options: { clientCa?: boolean; principals?: string[]; cert?: Issued } = {}): string {
  const cert = options.cert ?? server;
  return [
    'server:',
    '  tls:',
    `    cert_file: ${cert.certFile}`,
    `    key_file: ${cert.keyFile}`,
    ...(options.clientCa ? [`    client_ca_file: ${ca.ca.certFile}`] : []),
    '    poll_interval_ms: 200',
    ...(options.principals ? ['  admin:', `    principals: [${options.principals.map((p) => JSON.stringify(p)).join(', ')}]`] : []),
    '',
  ].join('\n');
}

describe('TLS on both listeners (server certificate only)', () => {
  let sb: TestSignalbox;
  beforeAll(async () => {
    sb = await startTestSignalbox(capturedLogger().logger, { yaml: tlsYaml() });
  });
  afterAll(async () => sb?.close());

  it('serves HTTPS and refuses plaintext HTTP', async () => {
    const health = await https(sb.running.httpPort, '/health', { ca: ca.ca.cert });
    expect(health.status).toBe(200);
    expect(health.served).toBe(createCertificateFingerprint(server.cert));
    await expect(fetch(`http://127.0.0.1:${sb.running.httpPort}/health`)).rejects.toThrow();
  });

  it('serves gRPC over TLS and refuses a plaintext channel', async () => {
    const client = grpcClient('DecisionService', sb.running.grpcPort, ca.ca.cert);
    try {
      const answer = await client.call('Decide', { request: { method: 'GET', path: '/v1/models', headers: {} } });
      expect(answer.decisionId).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      client.close();
    }
    const plain = new (loadServices().clients.DecisionService)(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Unary>;
    await expect(
      new Promise((resolve, reject) => plain.Decide!({ request: { method: 'GET', path: '/' } }, new grpc.Metadata(), { deadline: Date.now() + 2_000 }, (e, r) => (e ? reject(e) : resolve(r)))),
    ).rejects.toMatchObject({ code: expect.any(Number) });
    plain.close();
  });

  it('asks no client certificate, so a connection certificate is no identity', async () => {
    const client = grpcClient('DecisionService', sb.running.grpcPort, ca.ca.cert, spiffeClient);
    try {
      const answer = await client.call('Decide', { request: { method: 'GET', path: '/v1/models', headers: {} } });
      const record = await awaitRecord(sb, `decision ${answer.decisionId}`, (r) => r.decision_id === answer.decisionId);
      expect((record.input as Record<string, unknown>).source_principal).toBeUndefined();
    } finally {
      client.close();
    }
  });
});

/** Node's fingerprint256 format of a PEM certificate. */
function createCertificateFingerprint(pem: Buffer): string {
  const der = Buffer.from(pem.toString('utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
}

describe('mTLS required: identities reach the policy and the admin allow-list', () => {
  let sb: TestSignalbox;
  const logs = capturedLogger();
  beforeAll(async () => {
    sb = await startTestSignalbox(logs.logger, { yaml: tlsYaml({ clientCa: true, principals: [SPIFFE_ADMIN] }) });
  });
  afterAll(async () => sb?.close());

  it('refuses clients without a certificate, with an expired one or one from another CA, on both listeners', async () => {
    for (const client of [undefined, expiredClient, foreignClient]) {
      await expect(https(sb.running.httpPort, '/health', { ca: ca.ca.cert, ...(client ? { client } : {}) })).rejects.toThrow();
      const g = grpcClient('DecisionService', sb.running.grpcPort, ca.ca.cert, client);
      await expect(g.call('Decide', { request: { method: 'GET', path: '/' } })).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      g.close();
    }
    expect((await https(sb.running.httpPort, '/health', { ca: ca.ca.cert, client: spiffeClient })).status).toBe(200);
  });

  it('gives Decide the SPIFFE identity as source_principal, actor.principal and door.peer_principal, over a declared one', async () => {
    const g = grpcClient('DecisionService', sb.running.grpcPort, ca.ca.cert, spiffeClient);
    try {
      const answer = await g.call('Decide', { request: { method: 'GET', path: '/v1/models', headers: {} }, sourcePrincipal: 'spiffe://claimed/not-verified' });
      const input = (await awaitRecord(sb, `decision ${answer.decisionId}`, (r) => r.decision_id === answer.decisionId)).input as Record<string, Record<string, unknown>>;
      expect(input.source_principal).toBe(SPIFFE_CLIENT);
      expect(input.actor!.principal).toBe(SPIFFE_CLIENT);
      expect(input.door!.peer_principal).toBe(SPIFFE_CLIENT);
      expect((input.attributes!.source as Record<string, unknown>).principal).toBe(SPIFFE_CLIENT);
    } finally {
      g.close();
    }
  });

  it("keeps Envoy's source.principal for Check and gives the connection's identity as door.peer_principal", async () => {
    const g = grpcClient('Authorization', sb.running.grpcPort, ca.ca.cert, spiffeClient);
    try {
      const request = checkRequest({ method: 'GET', path: '/v1/models' }) as { attributes: { source: Record<string, unknown> } };
      request.attributes.source.principal = 'spiffe://mesh/end-client';
      const answer = await g.call('Check', request);
      const id = (answer.dynamicMetadata as { fields: { decision_id: { stringValue: string } } }).fields.decision_id.stringValue;
      const input = (await awaitRecord(sb, `decision ${id}`, (r) => r.decision_id === id)).input as Record<string, Record<string, unknown>>;
      expect(input.source_principal).toBe('spiffe://mesh/end-client');
      expect(input.door!.peer_principal).toBe(SPIFFE_CLIENT);
    } finally {
      g.close();
    }
  });

  it('gives an HTTP door the subject CN of a certificate without a SPIFFE URI', async () => {
    const answer = await https(sb.running.httpPort, '/authz/nginx', {
      ca: ca.ca.cert,
      client: cnClient,
      headers: { 'x-original-method': 'GET', 'x-original-uri': '/tls-cn-marker' },
    });
    expect([200, 401, 403]).toContain(answer.status);
    const record = await awaitRecord(sb, 'the nginx door decision of /tls-cn-marker', (r) => r.door === 'nginx.auth_request' && JSON.stringify(r.input).includes('/tls-cn-marker'));
    const input = record.input as Record<string, Record<string, unknown>>;
    expect(input.source_principal).toBe('nginx-gateway');
    expect(input.door!.peer_principal).toBe('nginx-gateway');
  });

  it('lets the allow-listed identity call admin endpoints, 403s another, and still takes a token from it', async () => {
    const spendPath = '/v1/spend?scope=user:nobody&window=day';
    expect((await https(sb.running.httpPort, spendPath, { ca: ca.ca.cert, client: adminClient })).status).toBe(200);
    const forbidden = await https(sb.running.httpPort, spendPath, { ca: ca.ca.cert, client: spiffeClient });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toMatchObject({ error: { code: 'admin_forbidden' } });
    expect(String((forbidden.body.error as Record<string, unknown>).message)).toContain(SPIFFE_CLIENT);
    const withToken = await https(sb.running.httpPort, spendPath, { ca: ca.ca.cert, client: spiffeClient, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(withToken.status).toBe(200);

    const admin = grpcClient('DecisionService', sb.running.grpcPort, ca.ca.cert, adminClient);
    const other = grpcClient('DecisionService', sb.running.grpcPort, ca.ca.cert, spiffeClient);
    try {
      expect(await admin.call('GetSpend', { scope: 'user:nobody', window: 'day' })).toMatchObject({ budgets: [] });
      await expect(other.call('GetSpend', { scope: 'user:nobody', window: 'day' })).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining('admin_forbidden') });
    } finally {
      admin.close();
      other.close();
    }
    const refused = logs.lines().filter((l) => l.msg === 'administrative call refused');
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(logs.text()).not.toContain(ADMIN_TOKEN);
  });
});

describe('certificate reload', () => {
  let sb: TestSignalbox | undefined;
  const logs = capturedLogger();
  afterEach(async () => sb?.close());

  it('serves a replaced certificate to new connections on both listeners, and keeps it when the next one is bad', async () => {
    const dir = ca.dir;
    const live: Issued = { certFile: join(dir, 'live.crt'), keyFile: join(dir, 'live.key'), cert: server.cert, key: server.key };
    await writeFile(live.certFile, server.cert);
    await writeFile(live.keyFile, server.key);
    sb = await startTestSignalbox(logs.logger, { yaml: tlsYaml({ cert: live }) });
    const port = sb.running.httpPort;
    expect((await https(port, '/health', { ca: ca.ca.cert })).served).toBe(createCertificateFingerprint(server.cert));

    // Replace both files at once, as a Kubernetes secret or cert-manager does (atomic renames).
    // Signed by the other CA: a client trusting only that CA proves which certificate is served.
    const next = otherCa.issue('signalbox.next', ['DNS:localhost', 'IP:127.0.0.1']);
    await writeFile(`${live.keyFile}.tmp`, next.key);
    await writeFile(`${live.certFile}.tmp`, next.cert);
    await rename(`${live.keyFile}.tmp`, live.keyFile);
    await rename(`${live.certFile}.tmp`, live.certFile);
    const nextPrint = createCertificateFingerprint(next.cert);
    await expect.poll(async () => (await https(port, '/health', { ca: otherCa.ca.cert }).catch(() => undefined))?.served, { timeout: 10_000, interval: 100 }).toBe(nextPrint);
    // gRPC presents it too.
    const g = grpcClient('DecisionService', sb.running.grpcPort, otherCa.ca.cert);
    await expect(g.call('Decide', { request: { method: 'GET', path: '/' } })).resolves.toHaveProperty('decisionId');
    g.close();

    // A bad replacement: a certificate whose key is not the one in key_file.
    await writeFile(`${live.certFile}.tmp`, spiffeClient.cert);
    await rename(`${live.certFile}.tmp`, live.certFile);
    await expect.poll(() => logs.lines().some((l) => l.code === 'tls_invalid'), { timeout: 10_000, interval: 100 }).toBe(true);
    expect((await https(port, '/health', { ca: otherCa.ca.cert })).served).toBe(nextPrint);
    const g2 = grpcClient('DecisionService', sb.running.grpcPort, otherCa.ca.cert);
    await expect(g2.call('Decide', { request: { method: 'GET', path: '/' } })).resolves.toHaveProperty('decisionId');
    g2.close();
    const line = logs.lines().find((l) => l.code === 'tls_invalid')!;
    expect(String(line.problem)).toContain('is not the key of the certificate');
    expect(logs.text()).not.toContain(server.key.toString('utf8').split('\n')[1]!);
  });

  it('refuses to start with an expired certificate, naming the key', async () => {
    await expect(startTestSignalbox(capturedLogger().logger, { yaml: tlsYaml({ cert: expiredClient }) })).rejects.toMatchObject({ code: 'tls_invalid', message: expect.stringContaining('server.tls.cert_file') });
    sb = undefined;
  });
});

describe('admin endpoints: deny by default, bearer tokens', () => {
  let sb: TestSignalbox | undefined;
  afterEach(async () => sb?.close());

  it('answers 401 with how to configure a credential when none is configured, while decisions keep working', async () => {
    sb = await startTestSignalbox(capturedLogger().logger, { env: {} });
    const http = `http://127.0.0.1:${sb.running.httpPort}`;
    for (const [path, init] of [
      ['/v1/report', { method: 'POST', body: '{"decision_id":"x"}' }],
      ['/v1/spend', {}],
      ['/v1/litellm/usage', { method: 'POST', body: '[]' }],
      ['/v1/ledger/report?by=team', {}],
      ['/v1/ledger/denials', {}],
      ['/v1/ledger/decisions/x', {}],
      ['/v1/ledger/status', {}],
      ['/v1/ledger/reconcile', {}],
    ] as const) {
      const res = await fetch(`${http}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('admin_unauthenticated');
      expect(body.error.message).toContain('no admin credential is configured');
      expect(body.error.message).toContain('SIGNALBOX_ADMIN_TOKEN');
    }
    const g = new (loadServices().clients.DecisionService)(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Unary>;
    const call = (method: string, req: object): Promise<unknown> => new Promise((resolve, reject) => g[method]!(req, new grpc.Metadata(), {}, (e, r) => (e ? reject(e) : resolve(r))));
    await expect(call('GetSpend', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('admin_unauthenticated') });
    await expect(call('Report', { decisionId: 'x' })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    await expect(call('Decide', { request: { method: 'GET', path: '/v1/models' } })).resolves.toHaveProperty('decisionId');
    g.close();
    expect(await sb.check(checkRequest({ method: 'GET', path: '/v1/models' }))).toHaveProperty('status');
    expect((await fetch(`${http}/health`)).status).toBe(200);
  });

  it('accepts any of several tokens (rotation), from the environment and a token file that reloads', async () => {
    const dir = ca.dir;
    const file = join(dir, 'admin-tokens');
    await writeFile(file, 'file-token-one\n');
    sb = await startTestSignalbox(capturedLogger().logger, {
      env: { SIGNALBOX_ADMIN_TOKEN: 'env-old, env-new' },
      yaml: `server:\n  admin:\n    token_file: ${file}\n`,
    });
    const spend = async (token: string): Promise<number> => (await fetch(`http://127.0.0.1:${sb!.running.httpPort}/v1/spend`, { headers: { authorization: `Bearer ${token}` } })).status;
    expect(await spend('env-old')).toBe(200);
    expect(await spend('env-new')).toBe(200);
    expect(await spend('file-token-one')).toBe(200);
    expect(await spend('env-ol')).toBe(401);
    expect(await spend('env-new-and-more')).toBe(401);
    await writeFile(`${file}.tmp`, 'file-token-two\n');
    await rename(`${file}.tmp`, file);
    await expect.poll(() => spend('file-token-two'), { timeout: 10_000, interval: 100 }).toBe(200);
    expect(await spend('file-token-one')).toBe(401);
  });

  it('compares tokens as fixed-length digests, so any length is compared in constant time', () => {
    const digest = (t: string): Buffer => createHash('sha256').update(t).digest();
    expect(tokenMatches('a', [digest('a'), digest('b')])).toBe(true);
    expect(tokenMatches('a'.repeat(10_000), [digest('a')])).toBe(false);
    expect(tokenMatches('', [])).toBe(false);
    const guard = AdminGuard.of([], [], capturedLogger().logger);
    expect(guard.configured).toBe(false);
    expect(() => guard.authorize({ authorization: 'Bearer x' }, '/v1/spend')).toThrow(/no admin credential is configured/);
  });
});
