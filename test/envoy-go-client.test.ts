/**
 * Envoy's API, proven with Envoy's own generated types: test/envoy-client (go-control-plane,
 * pinned in its go.mod) calls Signalbox's Authorization/Check with the Go client Envoy's API is
 * published as, and checks every response against Envoy's protoc-gen-validate rules. The examples
 * under examples/envoy/ are validated and run by the real Envoy binary instead
 * (test/envoy-examples.test.ts, test/envoy-grpc.test.ts, test/envoy-http.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEnvoyClient as buildClient, runEnvoyClient as runClient } from './helpers/envoy-client.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

/** A CheckRequest in protojson, as Envoy's ext_authz filter sends it for an HTTP request. */
function envoyCheckRequest(options: { token?: string; body?: string; headers?: Record<string, string>; path?: string }): object {
  const headers: Record<string, string> = { ':authority': 'llm.internal', ':method': 'POST', ':path': options.path ?? '/v1/chat/completions', ...(options.headers ?? {}) };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(options.body));
  }
  return {
    attributes: {
      source: { address: { socketAddress: { address: '10.0.0.7', portValue: 51234 } } },
      destination: { address: { socketAddress: { address: '10.0.0.2', portValue: 8000 } } },
      request: {
        time: new Date().toISOString(),
        http: {
          id: '8123461283412',
          method: 'POST',
          path: options.path ?? '/v1/chat/completions',
          host: 'llm.internal',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers,
          ...(options.body !== undefined ? { body: options.body, size: String(Buffer.byteLength(options.body)) } : {}),
        },
      },
      metadataContext: {},
      routeMetadataContext: {},
    },
  };
}

interface HeaderValueOption {
  header: { key: string; value: string };
  appendAction?: string;
}

interface GoCheckResult {
  name: string;
  grpc_code: number;
  grpc_message?: string;
  validation_error?: string;
  response?: {
    status?: { code?: number; message?: string };
    okResponse?: { headers?: HeaderValueOption[]; headersToRemove?: string[]; responseHeadersToAdd?: HeaderValueOption[] };
    deniedResponse?: { status?: { code?: string }; headers?: HeaderValueOption[]; body?: string };
    dynamicMetadata?: Record<string, unknown>;
  };
}

function header(options: HeaderValueOption[] | undefined, key: string): string | undefined {
  return options?.find((o) => o.header.key === key)?.header.value;
}

const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });

describe('Envoy ext_authz Check, called with go-control-plane', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  const log = capturedLogger();
  let results: Map<string, GoCheckResult>;

  beforeAll(async () => {
    await buildClient();
    key = await signingKey('RS256', 'k1');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(log.logger, { jwksUrl: jwks.url });
    const token = await mint(key);
    const cases = [
      { name: 'allow', request: envoyCheckRequest({ token, body: chat('gpt-4o-mini'), headers: { 'x-signalbox-upstream': 'evil.example:443' } }) },
      { name: 'no_token', request: envoyCheckRequest({ body: chat('gpt-4o-mini') }) },
      { name: 'model_not_granted', request: envoyCheckRequest({ token, body: chat('gpt-4o') }) },
    ];
    const out = await runClient(['check', '-addr', `127.0.0.1:${sb.running.grpcPort}`], JSON.stringify({ cases }));
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const parsed = JSON.parse(out.stdout) as { results: GoCheckResult[] };
    results = new Map(parsed.results.map((r) => [r.name, r]));
  }, 600_000);
  afterAll(async () => {
    await sb?.close();
    await jwks?.close();
  });

  it('every response is a valid CheckResponse by Envoy\'s own validation rules', () => {
    expect(results.size).toBe(3);
    for (const result of results.values()) {
      expect(result.grpc_code, result.name).toBe(0);
      expect(result.validation_error, result.name).toBeUndefined();
    }
  });

  it('allows with the identity and routing headers, the headers to remove, and the decision id', () => {
    const response = results.get('allow')!.response!;
    expect(response.status?.code ?? 0).toBe(0);
    const ok = response.okResponse!;
    expect(header(ok.headers, 'x-signalbox-user')).toBe('alice');
    expect(header(ok.headers, 'x-signalbox-team')).toBe('search');
    expect(header(ok.headers, 'x-signalbox-provider')).toBe('openai');
    expect(header(ok.headers, 'x-signalbox-upstream')).toBe('api.openai.com:443');
    // Envoy's enum name, as Envoy reads it: the value replaces any copy the client sent.
    expect(ok.headers?.find((h) => h.header.key === 'x-signalbox-user')?.appendAction).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
    expect(ok.headersToRemove).toContain('authorization');
    const decisionId = response.dynamicMetadata?.decision_id;
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(header(ok.responseHeadersToAdd, 'x-signalbox-decision-id')).toBe(decisionId);
  });

  it('denies a request without a token with 401, a JSON body and the decision id', () => {
    const response = results.get('no_token')!.response!;
    expect(response.status?.code).toBe(7); // PERMISSION_DENIED
    expect(response.deniedResponse?.status?.code).toBe('Unauthorized');
    const body = JSON.parse(response.deniedResponse!.body!) as { error: { reasons: string[] } };
    expect(body.error.reasons).toEqual(['identity.token_missing']);
    const decisionId = response.dynamicMetadata?.decision_id;
    expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(header(response.deniedResponse?.headers, 'x-signalbox-decision-id')).toBe(decisionId);
  });

  it('denies a model the role does not grant with 403', () => {
    const response = results.get('model_not_granted')!.response!;
    expect(response.status?.code).toBe(7);
    expect(response.deniedResponse?.status?.code).toBe('Forbidden');
    expect(header(response.deniedResponse?.headers, 'content-type')).toBe('application/json');
    const body = JSON.parse(response.deniedResponse!.body!) as { error: { reasons: string[] } };
    expect(body.error.reasons).toEqual(['model.not_allowed']);
    expect(response.dynamicMetadata?.decision_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses a case that is not a CheckRequest (unknown fields are not dropped)', async () => {
    const cases = [{ name: 'typo', request: { attributes: { request: { htpp: {} } } } }];
    const out = await runClient(['check', '-addr', `127.0.0.1:${sb.running.grpcPort}`], JSON.stringify({ cases }));
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('unknown field "htpp"');
  });
});
