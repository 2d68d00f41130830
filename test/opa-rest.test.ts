/**
 * OPA's REST Data API door: Kong's OPA plugin (request and result shapes as Kong documents them,
 * https://developer.konghq.com/plugins/opa/), generic OPA-shaped callers, and malformed calls.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { KONG_OPA_PATH, OPA_ALLOW_PATH, OPA_DECISION_PATH } from '../src/transport/doors/opa-rest.js';
import { projectRoot } from '../src/core/paths.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const DECISION_ID = /^[0-9a-f-]{36}$/;
const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });

/** Kong's OPA plugin input, as its documentation lays it out, with include_body_in_opa_input. */
function kongInput(options: { token?: string; body?: string; path?: string; querystring?: Record<string, unknown>; extra?: Record<string, unknown> }): object {
  const headers: Record<string, string | string[]> = { host: 'llm.example.org', accept: '*/*', 'user-agent': 'curl/8.5.0' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(options.body));
  }
  return {
    input: {
      request: {
        http: {
          host: 'llm.example.org',
          port: '8000',
          tls: {},
          method: 'POST',
          scheme: 'http',
          path: options.path ?? '/v1/chat/completions',
          querystring: options.querystring ?? {},
          headers,
          ...(options.body !== undefined ? { body: options.body, body_size: Buffer.byteLength(options.body) } : {}),
        },
      },
      client_ip: '10.1.2.3',
      ...(options.extra ?? {}),
    },
  };
}

interface AuditRecord {
  decision_id: string;
  door: string;
  input: { attributes?: { request?: { http?: { path?: string; host?: string } }; contextExtensions?: Record<string, string>; source?: unknown }; parsed_query?: unknown };
  decision: { allowed: boolean; http_status: number; reasons: string[] };
}

describe('OPA REST Data API door', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let base: string;
  const log = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'k1');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(log.logger, { jwksUrl: jwks.url });
    base = `http://127.0.0.1:${sb.running.httpPort}`;
  });
  afterAll(async () => {
    await sb.close();
    await jwks.close();
  });

  const post = async (path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown>; contentType: string | null }> => {
    const response = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown>, contentType: response.headers.get('content-type') };
  };

  async function auditRecord(decisionId: string): Promise<AuditRecord> {
    // The audit sink writes asynchronously; poll briefly.
    for (let i = 0; i < 50; i++) {
      const text = await readFile(sb.auditPath, 'utf8').catch(() => '');
      const record = text
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as AuditRecord)
        .find((r) => r.decision_id === decisionId);
      if (record) return record;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no audit record for ${decisionId}`);
  }

  describe('Kong OPA plugin', () => {
    it('allows: result is {allow: true, headers} with the headers Kong sets upstream', async () => {
      const response = await post(KONG_OPA_PATH, kongInput({ token: await mint(key), body: chat('gpt-4o-mini') }));
      expect(response.status).toBe(200);
      expect(response.contentType).toBe('application/json');
      const decisionId = response.body.decision_id as string;
      expect(decisionId).toMatch(DECISION_ID);
      const result = response.body.result as { allow: boolean; headers: Record<string, string> };
      expect(Object.keys(result).sort()).toEqual(['allow', 'headers']);
      expect(result.allow).toBe(true);
      expect(result.headers['x-signalbox-user']).toBe('alice');
      expect(result.headers['x-signalbox-team']).toBe('search');
      expect(result.headers['x-signalbox-provider']).toBe('openai');
      expect(result.headers['x-signalbox-upstream']).toBe('api.openai.com:443');
      expect(result.headers['x-signalbox-decision-id']).toBe(decisionId);
      // Kong can only set headers: the caller's token is cleared, never forwarded.
      expect(result.headers.authorization).toBe('');
      for (const value of Object.values(result.headers)) expect(typeof value).toBe('string');
      const record = await auditRecord(decisionId);
      expect(record.door).toBe('kong.opa');
      expect(record.decision.allowed).toBe(true);
    });

    it('denies without a token: {allow: false, status: 401, headers, message}', async () => {
      const response = await post(KONG_OPA_PATH, kongInput({ body: chat('gpt-4o-mini') }));
      expect(response.status).toBe(200);
      const result = response.body.result as { allow: boolean; status: number; headers: Record<string, string>; message: { error: { reasons: string[] } } };
      expect(Object.keys(result).sort()).toEqual(['allow', 'headers', 'message', 'status']);
      expect(result.allow).toBe(false);
      expect(result.status).toBe(401);
      expect(result.headers['x-signalbox-decision-id']).toBe(response.body.decision_id);
      // Kong answers {"message": …} as JSON itself: no content-type from the policy.
      expect(result.headers['content-type']).toBeUndefined();
      expect(result.message.error.reasons).toEqual(['identity.token_missing']);
    });

    it('denies a model the role does not grant with 403 and the reason in the message', async () => {
      const response = await post(KONG_OPA_PATH, kongInput({ token: await mint(key), body: chat('gpt-4o') }));
      const result = response.body.result as { allow: boolean; status: number; message: { error: { reasons: string[] } } };
      expect(result.allow).toBe(false);
      expect(result.status).toBe(403);
      expect(result.message.error.reasons).toEqual(['model.not_allowed']);
    });

    it('rebuilds the query string and passes client ip, service and route to the policy', async () => {
      const response = await post(
        KONG_OPA_PATH,
        kongInput({
          token: await mint(key),
          body: chat('gpt-4o-mini'),
          querystring: { 'api-version': '2024-06-01', tag: ['a', 'b'], debug: true },
          extra: { service: { id: 'svc-1', name: 'llm' }, route: { id: 'rt-1', name: 'llm-route' }, consumer: { id: 'c-1', username: 'app-1' } },
        }),
      );
      const record = await auditRecord(response.body.decision_id as string);
      expect(record.input.attributes?.request?.http?.path).toBe('/v1/chat/completions?api-version=2024-06-01&tag=a&tag=b&debug');
      expect(record.input.parsed_query).toEqual({ 'api-version': ['2024-06-01'], tag: ['a', 'b'], debug: [''] });
      expect(record.input.attributes?.contextExtensions).toEqual({
        'kong.service': 'llm',
        'kong.service_id': 'svc-1',
        'kong.route': 'llm-route',
        'kong.route_id': 'rt-1',
        'kong.consumer': 'app-1',
        'kong.consumer_id': 'c-1',
      });
      expect(record.input.attributes?.source).toEqual({ address: { socketAddress: { address: '10.1.2.3' } } });
    });

    it('uses parsed_body when Kong sends only the parsed JSON body', async () => {
      const input = kongInput({ token: await mint(key), body: chat('gpt-4o-mini') }) as { input: { request: { http: Record<string, unknown> } } };
      const http = input.input.request.http;
      http.parsed_body = JSON.parse(http.body as string) as unknown;
      delete http.body;
      delete http.body_size;
      const response = await post(KONG_OPA_PATH, input);
      expect((response.body.result as { allow: boolean }).allow).toBe(true);
    });

    it('a Kong request whose body Kong did not send is denied as truncated, not passed unseen', async () => {
      const input = kongInput({ token: await mint(key), body: chat('gpt-4o-mini') }) as { input: { request: { http: Record<string, unknown> } } };
      delete input.input.request.http.body;
      const response = await post(KONG_OPA_PATH, input);
      const result = response.body.result as { allow: boolean; status: number };
      expect(result.allow).toBe(false);
      expect(result.status).toBe(413);
    });

    it('the Kong path refuses input that is not Kong\'s with 400 invalid_parameter', async () => {
      const response = await post(KONG_OPA_PATH, { input: { method: 'POST', path: '/v1/chat/completions' } });
      expect(response.status).toBe(400);
      expect(response.body.code).toBe('invalid_parameter');
      expect(response.body.message).toMatch(/input\.request\.http/);
    });

    it('examples/kong/kong.yaml points the opa plugin at the path this door serves', async () => {
      const config = parseYaml(await readFile(join(projectRoot(), 'examples', 'kong', 'kong.yaml'), 'utf8')) as {
        plugins: { name: string; config: Record<string, unknown> }[];
      };
      const opa = config.plugins.filter((p) => p.name === 'opa');
      expect(opa).toHaveLength(1);
      expect(opa[0]!.config.opa_path).toBe(KONG_OPA_PATH);
      expect(opa[0]!.config.opa_port).toBe(8181);
      expect(opa[0]!.config.opa_protocol).toBe('http');
      expect(opa[0]!.config.include_body_in_opa_input).toBe(true);
    });
  });

  describe('OPA-shaped callers', () => {
    it('decides an Envoy-like input (opa-envoy-plugin\'s) and answers in the policy-result shape', async () => {
      const body = chat('gpt-4o-mini');
      const input = {
        attributes: {
          source: { address: { socketAddress: { address: '10.0.0.7', portValue: 51234 } } },
          request: {
            http: {
              method: 'POST',
              path: '/v1/chat/completions',
              host: 'llm.internal',
              headers: { authorization: `Bearer ${await mint(key)}`, 'content-type': 'application/json', 'content-length': String(body.length) },
              body,
            },
          },
        },
      };
      const response = await post(OPA_DECISION_PATH, { input });
      expect(response.status).toBe(200);
      const result = response.body.result as Record<string, unknown>;
      expect(result.allowed).toBe(true);
      expect((result.headers as Record<string, string>)['x-signalbox-user']).toBe('alice');
      expect(result.request_headers_to_remove).toContain('authorization');
      expect((result.response_headers_to_add as Record<string, string>)['x-signalbox-decision-id']).toBe(response.body.decision_id);
      expect((result.dynamic_metadata as Record<string, string>).decision_id).toBe(response.body.decision_id);
      expect((result.route as { provider: string }).provider).toBe('openai');
      const record = await auditRecord(response.body.decision_id as string);
      expect(record.door).toBe('opa.rest');
      expect(record.input.attributes?.source).toEqual({ address: { socketAddress: { address: '10.0.0.7', portValue: 51234 } } });
    });

    it('decides a plain HTTP description; a deny carries http_status and body', async () => {
      const response = await post(OPA_DECISION_PATH, {
        input: { method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: JSON.parse(chat('gpt-4o-mini')) as unknown },
      });
      const result = response.body.result as { allowed: boolean; http_status: number; body: string; reasons: string[] };
      expect(result.allowed).toBe(false);
      expect(result.http_status).toBe(401);
      expect(result.reasons).toEqual(['identity.token_missing']);
      expect(JSON.parse(result.body)).toMatchObject({ error: { reasons: ['identity.token_missing'] } });
    });

    it('answers a bare boolean at the allow path, over POST and GET ?input=', async () => {
      const input = { method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${await mint(key)}`, 'content-type': 'application/json' }, body: chat('gpt-4o-mini') };
      const posted = await post(OPA_ALLOW_PATH, { input });
      expect(posted.body.result).toBe(true);
      const got = await fetch(`${base}${OPA_ALLOW_PATH}?input=${encodeURIComponent(JSON.stringify({ ...input, body: chat('gpt-4o') }))}`);
      expect(got.status).toBe(200);
      const gotBody = (await got.json()) as { result: unknown; decision_id: string };
      expect(gotBody.result).toBe(false);
      expect(gotBody.decision_id).toMatch(DECISION_ID);
    });

    it('a path Signalbox does not serve is an undefined document: 200 without result, with a warning', async () => {
      const response = await post('/v1/data/example/allow', { input: {} });
      expect(response.status).toBe(200);
      expect(response.body.result).toBeUndefined();
      expect((response.body.warning as { code: string }).code).toBe('api_usage_warning');
    });
  });

  describe('malformed calls', () => {
    const cases: [string, string, unknown, RegExp][] = [
      ['a body that is not JSON', OPA_DECISION_PATH, '{"input": ', /malformed input document/],
      ['a body that is not an object', OPA_DECISION_PATH, '[1,2]', /must be an object/],
      ['a body without input', OPA_DECISION_PATH, { inputs: {} }, /"input" is missing/],
      ['input that is not an object', OPA_DECISION_PATH, { input: 'GET /' }, /input must be an object/],
      ['input of no known shape', OPA_DECISION_PATH, { input: { hello: 'world' } }, /HTTP description with method and path/],
      ['headers of the wrong type', OPA_DECISION_PATH, { input: { method: 'GET', path: '/', headers: { a: 1 } } }, /input\.headers\.a must be a string/],
      ['Kong querystring of the wrong type', KONG_OPA_PATH, { input: { request: { http: { path: '/', querystring: { a: { b: 1 } } } } } }, /querystring\.a/],
      ['Kong http that is not an object', KONG_OPA_PATH, { input: { request: { http: 'GET /' } } }, /input\.request\.http must be an object/],
    ];

    it.each(cases)('%s is 400 invalid_parameter, audited', async (_name, path, body, message) => {
      const response = await post(path, body);
      expect(response.status).toBe(400);
      expect(response.body.code).toBe('invalid_parameter');
      expect(response.body.message).toMatch(message);
      const record = await auditRecord(response.body.decision_id as string);
      expect(record.decision).toEqual({ allowed: false, http_status: 400, reasons: ['request_malformed'] });
    });

    it('GET without ?input= is 400', async () => {
      const response = await fetch(`${base}${OPA_DECISION_PATH}`);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { code: string }).code).toBe('invalid_parameter');
    });

    it('other methods are 405', async () => {
      const response = await fetch(`${base}${OPA_DECISION_PATH}`, { method: 'PUT', body: '{}' });
      expect(response.status).toBe(405);
    });
  });
});
