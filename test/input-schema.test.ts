/**
 * The policy input schema (src/policy/schema/input.schema.json) against the real pipeline: every
 * input the pipeline builds, over a varied set of requests through the real adapters, must
 * conform, and every top-level key the schema documents must be produced by at least one of
 * them. The schema forbids undocumented keys on Signalbox's own objects, so a key added to
 * buildInput without documenting it fails here.
 */
import type { IncomingMessage } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromCheckRequest } from '../src/transport/doors/envoy-grpc.js';
import { authzRequest } from '../src/transport/doors/http-authz.js';
import { decisionRequestFromHttp } from '../src/transport/doors/http-request.js';
import { fromDecideRequest } from '../src/transport/doors/signalbox-grpc.js';
import { toStruct } from '../src/transport/doors/struct.js';
import { noopAuditSink } from '../src/audit/log.js';
import { parseConfig } from '../src/config/load.js';
import type { Enforcer } from '../src/enforce/enforcer.js';
import { MemoryStore } from '../src/enforce/memory-store.js';
import type { ProviderState } from '../src/enforce/store.js';
import { ERROR_CODES } from '../src/core/codes.js';
import type { NumericForm } from '../src/inspect/destinations/hosts.js';
import type { DestinationReason } from '../src/inspect/destinations/ip-rules.js';
import type { LlmApi } from '../src/inspect/llm/api.js';
import type { EncodingName } from '../src/inspect/llm/tokenizer.js';
import { silentLogger } from '../src/core/log.js';
import type { DecisionPipeline, DecisionTrace } from '../src/decide/decide.js';
import type { DecisionRequest } from '../src/decide/decision.js';
import { INPUT_SCHEMA, validateInput } from '../src/policy/input-schema.js';
import inputSchema from '../src/policy/schema/input.schema.json' with { type: 'json' };
import { createPipeline } from '../src/app/app.js';
import { responseInput } from '../src/decide/response.js';
import { contentFacts } from '../src/inspect/content/facts.js';
import { loadServices } from '../src/transport/protos.js';
import { AUDIENCE, ISSUER, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { openTestVault, testSecrets } from './helpers/vault.js';

type Json = Record<string, unknown>;

const NOW_MS = Date.parse('2026-11-22T10:00:00.000Z');
const NOW_S = NOW_MS / 1000;

/** Names resolve from this table only: the test never touches real DNS. */
const DNS: Record<string, string[]> = {
  'api.example.com': ['93.184.216.34'],
  'intranet.example.com': ['10.0.0.8'],
};

async function resolveFromTable(host: string): Promise<string[]> {
  const answer = DNS[host];
  if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return answer;
}

/** The input as the policy receives it: JSON-serialised (an `undefined` member is absent). */
function asPolicySees(input: unknown): Json {
  return JSON.parse(JSON.stringify(input)) as Json;
}

/** Encodes to protobuf and decodes with the functions grpc-js' server uses for Check. */
function decodeLikeGrpcJs(checkRequest: object): Parameters<typeof fromCheckRequest>[0] {
  const check = loadServices().authorization.Check;
  if (!check) throw new Error('the Authorization service has no Check method');
  return check.requestDeserialize(check.requestSerialize(checkRequest)) as Parameters<typeof fromCheckRequest>[0];
}

/** A native API (signalbox.v1 Decide) request: the door that can rewrite bodies. */
function native(path: string, body: unknown, headers: Record<string, string> = {}): DecisionRequest {
  const text = JSON.stringify(body);
  return fromDecideRequest({
    request: {
      method: 'POST',
      path,
      host: 'llm.internal',
      scheme: 'https',
      protocol: 'HTTP/1.1',
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers },
      body: Buffer.from(text),
    },
    sourceAddress: '10.1.2.3:40000',
  });
}

/** An Envoy HTTP-mode request (a door that cannot rewrite bodies), mapped as that door maps it. */
function envoyHttp(path: string, headers: Record<string, string>, body: Buffer): DecisionRequest {
  return decisionRequestFromHttp('envoy.ext_authz.http', { method: 'POST', path, host: 'llm.internal', scheme: 'http', headers, body }, false);
}

const CHAT_WITH_TOOLS = {
  model: 'gpt-4o-mini',
  max_tokens: 200,
  tools: [
    { type: 'function', function: { name: 'web_search', parameters: { type: 'object', properties: { url: { type: 'string' } } } } },
    { type: 'function', function: { name: 'calculator', parameters: { type: 'object' } } },
  ],
  messages: [
    { role: 'user', content: 'Find the price of a widget.' },
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'web_search', arguments: '{"url":"https://api.example.com/search?q=widget"}' } }],
    },
    { role: 'tool', tool_call_id: 'call_1', content: '{"price": 12}' },
  ],
};

describe('the policy input schema', () => {
  let key: SigningKey;
  let impostor: SigningKey;
  let pipeline: DecisionPipeline;
  let enforcer: Enforcer;
  const traces: { name: string; trace: DecisionTrace }[] = [];

  const token = (claims: Json = {}, options: { expiresIn?: number; now?: number; subject?: string; signer?: SigningKey } = {}): Promise<string> =>
    mint(options.signer ?? key, {
      now: options.now ?? NOW_S,
      ...(options.expiresIn !== undefined ? { expiresIn: options.expiresIn } : {}),
      ...(options.subject ? { subject: options.subject } : {}),
      claims,
    });

  async function run(name: string, request: DecisionRequest): Promise<DecisionTrace> {
    const trace = await pipeline.explain(request);
    traces.push({ name, trace });
    return trace;
  }

  beforeAll(async () => {
    key = await signingKey('ES256', 'k1');
    // Same kid, another key: the signature does not verify.
    impostor = await signingKey('ES256', 'k1');
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-input-schema-'));
    const jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
    const yaml = [`identity:`, `  jwks_file: ${JSON.stringify(jwksFile)}`, `  issuer: ${JSON.stringify(ISSUER)}`, `  audience: ${JSON.stringify(AUDIENCE)}`, ''].join('\n');
    const config = parseConfig(yaml, {}, 'test');
    const logger = silentLogger();
    const { masterKey, openaiKey } = testSecrets();
    const credentials = await openTestVault(masterKey, { openai: openaiKey, anthropic: `sk-ant-${'x'.repeat(40)}` }, logger);
    ({ pipeline, enforcer } = await createPipeline(config, logger, noopAuditSink, {
      store: new MemoryStore(config.budgets.expired_holds),
      resolve: resolveFromTable,
      credentials,
      clock: () => BigInt(NOW_MS) * 1_000_000n,
    }));

    const alice = await token({ azp: 'chat-ui' });
    const agent = await token({ roles: ['agent'], act: { sub: 'agent-7' }, azp: 'agent-runner' }, { subject: 'bob' });

    // 1. OpenAI chat with tools and a tool result, verified, in a session, on the native API:
    // allowed, routed to openai with the vault's credential, budgets reserved.
    const first = await run('openai chat with tool calls and a tool result (native API)', native('/v1/chat/completions', CHAT_WITH_TOOLS, {
      authorization: `Bearer ${alice}`,
      'x-signalbox-session': 'sess-1',
    }));
    expect(first.decision.allowed, JSON.stringify(first.decision.reasons)).toBe(true);
    expect(first.decision.route?.credential).toBe('openai');

    // A gateway reports a failed call: provider health is present from now on.
    await enforcer.recordProviderOutcome('openai', 'failure', NOW_MS);

    // 2. Spend with budgets (reserved by 1) and provider health, Anthropic messages.
    await run('anthropic messages, spend with budgets and provider health', native('/v1/messages', {
      model: 'claude-3-5-haiku-20241022',
      max_tokens: 100,
      system: 'Be brief.',
      tools: [{ name: 'calculator', input_schema: { type: 'object' } }],
      messages: [
        { role: 'user', content: 'What is 2+2?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'tu_1', name: 'calculator', input: { expression: '2+2' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tu_1', content: '4' }] },
      ],
    }, { authorization: `Bearer ${alice}`, 'x-signalbox-session': 'sess-1' }));

    // 3. Responses API with trailing function calls; an agent acting for bob.
    await run('openai responses with function calls (actor subject and client id)', native('/v1/responses', {
      model: 'gpt-4.1-mini',
      stream: true,
      input: [
        { role: 'user', content: 'Read the file.' },
        { type: 'function_call', call_id: 'c1', name: 'read_file', arguments: '{"path":"file:///etc/passwd"}' },
      ],
    }, { authorization: `Bearer ${agent}` }));

    // 4. MCP tools/call with URLs in its arguments.
    await run('mcp tools/call with destinations', native('/mcp', {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: {
        name: 'fetch_url',
        arguments: {
          url: 'http://169.254.169.254/latest/meta-data/',
          mirror: 'https://api.example.com/page',
          base_url: 'intranet.example.com:8080',
          notes: 'also try http://0x7f000001/admin and http://unknown.example.org/',
        },
      },
    }, { authorization: `Bearer ${agent}`, 'mcp-session-id': 'mcp-9' }));

    // 5. A body with PII and secrets, through a door that cannot rewrite it.
    const pii = JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Mail jane.doe@example.com, SSN 536-22-4821, key AKIAIOSFODNN7EXAMPLE.' }],
    });
    await run('content findings (Envoy HTTP mode)', envoyHttp('/v1/chat/completions', {
      authorization: `Bearer ${alice}`,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(pii)),
    }, Buffer.from(pii)));

    // 6. A truncated body: content-length larger than what arrived.
    const partial = Buffer.from('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hel');
    await run('truncated body', envoyHttp('/v1/chat/completions', {
      authorization: `Bearer ${alice}`,
      'content-type': 'application/json',
      'content-length': String(partial.length + 500),
    }, partial));

    // 7. nginx auth_request: the body is never forwarded.
    await run('nginx door, no body', await authzRequest('nginx', {
      headers: {
        'x-original-method': 'POST',
        'x-original-uri': '/v1/chat/completions?api-version=2024-10-21&tag=a&tag=b+c',
        'x-original-host': 'llm.internal',
        'x-real-ip': '192.0.2.10',
        'content-length': '512',
        'content-type': 'application/json',
        authorization: `Bearer ${alice}`,
      },
    } as unknown as IncomingMessage));

    // 8. Envoy gRPC through the adapter mapping, with an mTLS principal and metadata.
    const chat = JSON.stringify({ model: 'gpt-4.1-nano', messages: [{ role: 'user', content: 'hi' }], n: 2 });
    await run('envoy grpc check request', fromCheckRequest(decodeLikeGrpcJs({
      attributes: {
        source: { address: { socketAddress: { address: '10.0.0.7', portValue: 51000 } }, principal: 'spiffe://cluster.local/ns/apps/sa/chat' },
        destination: { address: { socketAddress: { address: '10.0.0.1', portValue: 8080 } } },
        request: {
          time: { seconds: NOW_S, nanos: 5 },
          http: {
            id: '42',
            method: 'POST',
            path: '/openai/deployments/x/v1/chat/completions?trace=1',
            host: 'llm.internal',
            scheme: 'https',
            protocol: 'HTTP/2',
            size: Buffer.byteLength(chat),
            headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(chat)) },
            body: chat,
          },
        },
        contextExtensions: { virtual_host: 'llm' },
        metadataContext: { filterMetadata: { 'envoy.filters.http.jwt_authn': toStruct({ team: 'search', n: 1 }) } },
      },
    })));

    // 9. Unverified callers: no token, expired, bad signature.
    const plain = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
    await run('no token', native('/v1/chat/completions', plain));
    await run('expired token', native('/v1/chat/completions', plain, { authorization: `Bearer ${await token({}, { now: NOW_S - 3600, expiresIn: 60 })}` }));
    await run('bad signature', native('/v1/chat/completions', plain, { authorization: `Bearer ${await token({}, { signer: impostor })}` }));

    // 10. Other shapes: an unpriced model on embeddings, a form body, a GET with a query.
    await run('embeddings, unpriced model', native('/v1/embeddings', { model: 'no-such-embedder', input: ['a', 'b'] }, { authorization: `Bearer ${alice}` }));
    await run('form body', decisionRequestFromHttp('envoy.ext_authz.http', {
      method: 'POST',
      path: '/upload',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${alice}` },
      body: Buffer.from('a=1&a=2&b=x+y'),
    }, false));
    await run('get with a query', decisionRequestFromHttp('envoy.ext_authz.http', {
      method: 'GET',
      path: '/v1/models?limit=5',
      headers: { authorization: `Bearer ${alice}` },
      contextExtensions: { route: 'models' },
      sourcePrincipal: 'spiffe://cluster.local/ns/apps/sa/cli',
    }, false));
  });

  it('the pipeline evaluated the policy for every request (no input was cut short)', () => {
    expect(traces.length).toBeGreaterThanOrEqual(14);
    for (const { name, trace } of traces) {
      expect(trace.decision.error === 'request_malformed' || trace.decision.error === 'body_malformed', name).toBe(false);
      expect(trace.result, name).not.toBeNull();
    }
  });

  /** The response rule's inputs (Envoy ext_proc): each request's input plus the answer as read. */
  function responseInputs(): { name: string; input: Record<string, unknown> }[] {
    const answer = { id: 'chatcmpl-1', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'Mail jane.doe@example.com' } }], usage: { prompt_tokens: 3, completion_tokens: 4 } };
    const content = contentFacts(answer, Buffer.from(JSON.stringify(answer)), false, { enabled: true, maxStringBytes: 1 << 20, maxDepth: 64 });
    return traces.map(({ name, trace }) => ({
      name: `${name} (its answer)`,
      input: responseInput(
        { decisionId: trace.decision.decisionId, door: 'envoy.ext_proc', input: trace.input, held: false },
        { status: 200, api: 'openai.chat', stream: false, content: { scanned: content.scanned, truncated: content.truncated, findings: content.findings } },
      ),
    }));
  }

  it('every input the pipeline built conforms to the schema', () => {
    const problems = [...traces.map(({ name, trace }) => ({ name, input: trace.input })), ...responseInputs()].flatMap(({ name, input }) =>
      validateInput(asPolicySees(input)).map((p) => `${name}: ${p}`),
    );
    expect(problems).toEqual([]);
  });

  it('every top-level key the schema documents is produced by some request', () => {
    const produced = new Set([...traces.map(({ trace }) => trace.input), ...responseInputs().map((r) => r.input)].flatMap((input) => Object.keys(asPolicySees(input))));
    const documented = Object.keys(inputSchema.properties);
    expect(documented.filter((k) => !produced.has(k))).toEqual([]);
  });

  it('the requests cover what the schema describes', () => {
    const inputs = traces.map(({ trace }) => asPolicySees(trace.input));
    const all = JSON.stringify(inputs);
    const byName = (name: string): Json => asPolicySees(traces.find((t) => t.name === name)?.trace.input);
    // Unverified callers, each with its code.
    expect(['no token', 'expired token', 'bad signature'].map((n) => (byName(n).identity as { error: { code: string } }).error.code)).toEqual([
      'token_missing',
      'token_expired',
      'token_signature_invalid',
    ]);
    // Spend with a budget reserved against, provider health after the failure report.
    const second = byName('anthropic messages, spend with budgets and provider health');
    expect((second.spend as Record<string, Record<string, { limit_usd: number }>>)['user:alice']?.day?.limit_usd).toBeGreaterThan(0);
    expect((second.providers as Record<string, { failures: number }>).openai?.failures).toBe(1);
    expect(second.credentials).toEqual(['anthropic', 'openai']);
    // Destinations of several kinds, content findings, a truncated body, a door without a body.
    for (const fragment of ['"reason":"metadata"', '"reason":"private"', '"reason":"unresolvable"', '"reason":"local_file"', '"numeric_form":"hex"', '"type":"email"', '"type":"us_ssn"', '"truncated_body":true', '"body_forwarded":false', '"source":"mcp"', '"source":"openai.responses"', '"source":"anthropic.messages"', '"source":"openai.chat"', '"priced":false', '"principal":"spiffe://cluster.local/ns/apps/sa/chat"', '"subject":"agent-7"']) {
      expect(all.includes(fragment), `no input has ${fragment}`).toBe(true);
    }
  });

  describe('rejects what is not documented', () => {
    let valid: Json;

    beforeAll(() => {
      valid = asPolicySees(traces[0]?.trace.input);
      expect(validateInput(valid)).toEqual([]);
    });

    it('an undocumented top-level key', () => {
      expect(validateInput({ ...valid, brand_new_fact: 1 })).toEqual(['(input) must NOT have additional properties (brand_new_fact)']);
    });

    it('an undocumented key in one of Signalbox\'s own objects', () => {
      expect(validateInput({ ...valid, door: { ...(valid.door as Json), tls: true } })).toEqual(['/door must NOT have additional properties (tls)']);
      expect(validateInput({ ...valid, llm: { ...(valid.llm as Json), cached_tokens: 0 } })).toEqual(['/llm must NOT have additional properties (cached_tokens)']);
    });

    it('a value of the wrong type or outside a closed set', () => {
      expect(validateInput({ ...valid, truncated_body: 'no' })).toEqual(['/truncated_body must be boolean']);
      expect(validateInput({ ...valid, llm: { ...(valid.llm as Json), api: 'openai.audio' } })).toEqual(['/llm/api must be equal to one of the allowed values']);
      const content = valid.content as Json;
      expect(validateInput({ ...valid, content: { ...content, findings: [{ type: 'ssn', path: '$', count: 1 }] } })).toEqual([
        '/content/findings/0/type must be equal to one of the allowed values',
      ]);
    });

    it('a missing required key, and an identity both verified and in error', () => {
      const { door: _door, ...withoutDoor } = valid;
      expect(validateInput(withoutDoor)).toEqual(["(input) must have required property 'door'"]);
      const identity = { ...(valid.identity as Json), error: { code: 'token_expired', message: 'token has expired' } };
      expect(validateInput({ ...valid, identity })).not.toEqual([]);
    });
  });

  describe('its closed sets match the code', () => {
    const definitions = (INPUT_SCHEMA as typeof inputSchema).definitions;
    const sorted = (values: readonly unknown[]): string[] => values.map(String).sort();

    // Records keyed by the code's unions: adding a member to a union without adding it here is
    // a type error, and these are compared with the schema's enums.
    const LLM_APIS: Record<LlmApi, true> = { 'openai.chat': true, 'openai.responses': true, 'openai.embeddings': true, 'anthropic.messages': true };
    const ENCODINGS: Record<EncodingName, true> = { o200k_base: true, cl100k_base: true };
    const STATES: Record<ProviderState, true> = { closed: true, open: true, half_open: true };
    const REASONS: Record<DestinationReason, true> = {
      metadata: true,
      loopback: true,
      unspecified: true,
      link_local: true,
      private: true,
      cgnat: true,
      internal_name: true,
      nat64: true,
      teredo: true,
      ipv4_compatible: true,
      multicast: true,
      broadcast: true,
      reserved: true,
      benchmarking: true,
      documentation: true,
      local_file: true,
      invalid_address: true,
      unresolvable: true,
      limit_exceeded: true,
    };
    const FORMS: Record<NumericForm, true> = {
      dotted: true,
      decimal: true,
      octal: true,
      hex: true,
      short: true,
      mixed: true,
      ipv6: true,
      ipv4_mapped: true,
      ipv4_compatible: true,
      ipv4_translated: true,
      nat64: true,
      '6to4': true,
      teredo: true,
    };

    it('LLM APIs, tokenizers, breaker states, destination reasons and numeric forms', () => {
      expect(sorted(definitions.llmApi.enum)).toEqual(sorted(Object.keys(LLM_APIS)));
      expect(sorted(inputSchema.properties.llm.properties.tokenizer.enum)).toEqual(sorted(Object.keys(ENCODINGS)));
      expect(sorted(definitions.providerHealth.properties.state.enum)).toEqual(sorted(Object.keys(STATES)));
      expect(sorted(definitions.destinationReason.enum)).toEqual(sorted(Object.keys(REASONS)));
      expect(sorted(definitions.numericForm.enum)).toEqual(sorted(Object.keys(FORMS)));
    });

    it('identity error codes: every token_* code, jwks_unavailable and identity_not_configured, all in the catalogue', () => {
      const expected = ERROR_CODES.filter((c) => c.startsWith('token_') || c === 'jwks_unavailable' || c === 'identity_not_configured');
      expect(sorted(definitions.identityErrorCode.enum)).toEqual(sorted(expected));
    });
  });

  afterAll(() => {
    traces.length = 0;
  });
});
