/**
 * The peer benchmark's two policies, each prepared for both engines with the same grants, plus
 * the requests that load them and the cases that prove both engines decide alike:
 *
 *   jwt-rbac     a verified ES256 JWT + role grants on route, model and tools. Signalbox runs its
 *                default policy (bundles/signalbox.tar.gz, limits emptied as bench/check.ts does:
 *                no budgets, no rate limits) with the public key as a JWKS file; opa-envoy-plugin
 *                runs bench/peer/jwt-rbac.rego with the same JWKS and grants as data.
 *   header-rbac  the role in a request header, no token: bench/peer/header-rbac.rego on both,
 *                built for Signalbox by the project's own build (src/bundles/build.ts, `opa build`).
 *
 * Requests are protojson-shaped objects (camelCase names, no Timestamp), which ghz and grpc-js
 * both read.
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildBundle } from '../../src/bundles/build.js';
import { projectRoot } from '../../src/core/paths.js';
import { AUDIENCE, ISSUER, mint, signingKey } from '../../test/helpers/keys.js';
import { checkRequest } from '../../test/helpers/signalbox.js';
import { chatBody, unlimitedBundle } from '../bundles.js';
import type { OpaSetup, SignalboxSetup } from './engines.js';

/** One request whose decision both engines must agree on. */
export interface AgreementCase {
  readonly name: string;
  readonly request: object;
  /** What the policy intends; both engines must give it. */
  readonly allowed: boolean;
}

/** One policy, ready for both engines. */
export interface Scenario {
  readonly name: 'jwt-rbac' | 'header-rbac';
  readonly title: string;
  readonly signalbox: SignalboxSetup;
  readonly opa: OpaSetup;
  /** The load: distinct requests, each allowed by the policy, sent round-robin. */
  readonly load: readonly object[];
  /** A JSON file holding `load`, for ghz. */
  readonly loadFile: string;
  readonly cases: readonly AgreementCase[];
}

/** A CheckRequest in protojson's shape: checkRequest() without the Timestamp, which protojson writes as a string and grpc-js as an object. */
function protojsonRequest(options: Parameters<typeof checkRequest>[0]): object {
  const request = checkRequest(options) as { attributes: { request: Record<string, unknown> } };
  delete request.attributes.request.time;
  return request;
}

async function grantsData(): Promise<{ permissions: unknown }> {
  const data = JSON.parse(await readFile(join(projectRoot(), 'policies', 'signalbox', 'data.json'), 'utf8')) as { signalbox: { permissions: unknown } };
  return { permissions: data.signalbox.permissions };
}

/** Tokens for the load and the cases of jwt-rbac, minted with one ES256 key. */
export interface JwtMaterial {
  readonly jwks: string;
  readonly loadTokens: readonly string[];
}

/** Prepares jwt-rbac in `dir`: the Signalbox bundle and JWKS file, OPA's policy and data, the load and the cases. */
export async function jwtScenario(dir: string, users: number): Promise<Scenario> {
  const work = join(dir, 'jwt-rbac');
  await mkdir(work, { recursive: true });
  const key = await signingKey('ES256', 'bench');
  const jwks = JSON.stringify({ keys: [key.publicJwk] });
  const jwksFile = join(work, 'jwks.json');
  await writeFile(jwksFile, jwks);

  const bundle = join(work, 'signalbox.tar.gz');
  await unlimitedBundle(bundle);

  const rego = join(work, 'policy.rego');
  await copyFile(join(import.meta.dirname, 'jwt-rbac.rego'), rego);
  const data = join(work, 'data.json');
  await writeFile(data, JSON.stringify({ signalbox: await grantsData(), bench: { jwks, issuer: ISSUER, audience: AUDIENCE } }));

  const body = chatBody();
  const load: object[] = [];
  for (let i = 0; i < users; i++) load.push(protojsonRequest({ token: await mint(key, { subject: `user-${i}`, expiresIn: 3600 }), body }));
  const loadFile = join(work, 'load.json');
  await writeFile(loadFile, JSON.stringify(load));

  const now = Math.floor(Date.now() / 1000);
  const otherKey = await signingKey('ES256', 'bench');
  const token = (roles: string[], options: Parameters<typeof mint>[1] = {}): Promise<string> =>
    mint(key, { subject: 'case-user', expiresIn: 3600, ...options, claims: { roles, ...(options.claims ?? {}) } });
  const cases: AgreementCase[] = [
    { name: 'llm-user, granted model and tool', allowed: true, request: protojsonRequest({ token: await token(['llm-user']), body }) },
    { name: 'llm-power-user, gpt-4.1', allowed: true, request: protojsonRequest({ token: await token(['llm-power-user']), body: chatBody('gpt-4.1') }) },
    {
      name: 'admin, Anthropic messages',
      allowed: true,
      request: protojsonRequest({
        token: await token(['admin']),
        path: '/v1/messages',
        body: JSON.stringify({ model: 'claude-3-5-haiku-latest', max_tokens: 256, messages: [{ role: 'user', content: 'Hello there.' }] }),
      }),
    },
    { name: 'llm-user, model not granted (gpt-4o)', allowed: false, request: protojsonRequest({ token: await token(['llm-user']), body: chatBody('gpt-4o') }) },
    { name: 'llm-user, tool not granted (fetch_url)', allowed: false, request: protojsonRequest({ token: await token(['llm-user']), body: chatBody('gpt-4o-mini', 'fetch_url') }) },
    {
      name: 'agent, route not granted (embeddings)',
      allowed: false,
      request: protojsonRequest({ token: await token(['agent']), path: '/v1/embeddings', body: JSON.stringify({ model: 'gpt-4.1-mini', input: 'hello' }) }),
    },
    { name: 'unknown role', allowed: false, request: protojsonRequest({ token: await token(['guest']), body }) },
    { name: 'no route (GET /v1/files)', allowed: false, request: protojsonRequest({ token: await token(['llm-user']), method: 'GET', path: '/v1/files' }) },
    { name: 'expired token', allowed: false, request: protojsonRequest({ token: await token(['llm-user'], { now: now - 7200, expiresIn: 3600 }), body }) },
    { name: 'signed by another key', allowed: false, request: protojsonRequest({ token: await mint(otherKey, { subject: 'case-user', expiresIn: 3600 }), body }) },
    { name: 'wrong audience', allowed: false, request: protojsonRequest({ token: await token(['llm-user'], { audience: 'someone-else' }), body }) },
    { name: 'no token', allowed: false, request: protojsonRequest({ body }) },
  ];
  return {
    name: 'jwt-rbac',
    title: 'JWT + RBAC',
    signalbox: { bundle, decision: 'signalbox/authz/decision', identity: { jwksFile, issuer: ISSUER, audience: AUDIENCE } },
    opa: { rego, data },
    load,
    loadFile,
    cases,
  };
}

/** Prepares header-rbac in `dir`: one Rego file and its grants, built into a bundle for Signalbox. */
export async function headerScenario(dir: string, users: number): Promise<Scenario> {
  const work = join(dir, 'header-rbac');
  const src = join(work, 'src');
  await mkdir(src, { recursive: true });
  const rego = join(src, 'policy.rego');
  await copyFile(join(import.meta.dirname, 'header-rbac.rego'), rego);
  const data = join(src, 'data.json');
  await writeFile(data, JSON.stringify({ signalbox: await grantsData() }));
  const bundle = join(work, 'bundle.tar.gz');
  await buildBundle(src, bundle, { entrypoints: ['envoy/authz/allow'] });

  const request = (role: string | undefined, options: Parameters<typeof checkRequest>[0] = {}): object =>
    protojsonRequest({ ...options, headers: { ...(role === undefined ? {} : { 'x-bench-role': role }), ...(options.headers ?? {}) } });
  const load: object[] = [];
  for (let i = 0; i < users; i++) load.push(request('llm-user', { headers: { 'x-bench-user': `user-${i}` } }));
  const loadFile = join(work, 'load.json');
  await writeFile(loadFile, JSON.stringify(load));
  const cases: AgreementCase[] = [
    { name: 'llm-user, chat completions', allowed: true, request: request('llm-user') },
    { name: 'agent, MCP', allowed: true, request: request('agent', { path: '/mcp' }) },
    { name: 'admin, GET /v1/models', allowed: true, request: request('admin', { method: 'GET', path: '/v1/models' }) },
    { name: 'llm-user, MCP not granted', allowed: false, request: request('llm-user', { path: '/mcp' }) },
    { name: 'agent, embeddings not granted', allowed: false, request: request('agent', { path: '/v1/embeddings' }) },
    { name: 'unknown role', allowed: false, request: request('guest') },
    { name: 'no role header', allowed: false, request: request(undefined) },
    { name: 'no route (GET /v1/files)', allowed: false, request: request('admin', { method: 'GET', path: '/v1/files' }) },
  ];
  return {
    name: 'header-rbac',
    title: 'RBAC on a header only',
    signalbox: { bundle, decision: 'envoy/authz/allow' },
    opa: { rego, data },
    load,
    loadFile,
    cases,
  };
}
