/**
 * `signalbox eval`: a full input or the short form (through the service's pipeline), the
 * decision with its limits and route, the rules that contributed (OPA's trace), secrets masked.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/core/log.js';
import { parseRfc3339Ns, Simulation } from '../src/testing/simulate.js';
import { explainDecision, textExplain, type ExplainReport } from '../src/testing/explain.js';

const root = join(import.meta.dirname, '..');
const NOW = parseRfc3339Ns('2026-11-22T10:00:00Z');
// Tool destinations are never resolved here: the network stays untouched.
const config = parseConfig('destinations: { resolve: false }\n', {}, 'test');
let dir: string;

const cli = (args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'eval', ...args], { cwd: root, env: { ...process.env, SIGNALBOX_CONFIG: '' } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signalbox-eval-'));
});

describe('eval of a full input', () => {
  const input = {
    attributes: { request: { http: { method: 'POST', path: '/v1/chat/completions', headers: { authorization: 'Bearer sk-live-very-secret-token' } } } },
    parsed_path: ['v1', 'chat', 'completions'],
    parsed_body: { model: 'gpt-4o' },
    identity: { verified: true, subject: 'bob', roles: ['llm-user'], scopes: [] },
  };

  it('prints the decision, and with --explain rules the rules that contributed', async () => {
    const report = await explainDecision({ config, logger: silentLogger(), input, nowNs: NOW, explain: 'rules' });
    expect(report).toMatchObject({ allowed: false, http_status: 403, reasons: ['model.not_allowed'], decision: 'signalbox/authz/decision' });
    const rules = report.rules!.map((r) => r.rule);
    expect(rules).toContain('data.signalbox.authz.decision');
    expect(rules).toContain('data.signalbox.authz.deny_reasons');
    expect(rules).toContain('data.signalbox.authz.deny_response');
    expect(rules).not.toContain('data.signalbox.authz.allow_response');
    expect(report.rules!.every((r) => /^[\w/]+\.rego:\d+$/.test(r.location))).toBe(true);
    expect(JSON.stringify(report)).not.toContain('sk-live-very-secret-token');
  });

  it('--explain full prints OPA\'s trace with secret header values masked', async () => {
    const report = await explainDecision({ config, logger: silentLogger(), input, nowNs: NOW, explain: 'full' });
    expect(report.trace).toMatch(/Enter data\.signalbox\.authz\.decision/);
    expect(report.trace).toMatch(/Exit data\.signalbox\.authz\.deny_response/);
    expect(textExplain(report)).not.toContain('sk-live-very-secret-token');
  });

  it('through the CLI: JSON when piped, text with --format text', async () => {
    const file = join(dir, 'input.json');
    await writeFile(file, JSON.stringify(input));
    const json = await cli(['--input', file, '--explain', 'rules', '--now', '2026-11-22T10:00:00Z']);
    expect(json.code).toBe(0);
    const printed = JSON.parse(json.stdout) as ExplainReport;
    expect(printed).toMatchObject({ allowed: false, reasons: ['model.not_allowed'], now: '2026-11-22T10:00:00.000000000Z' });
    expect(printed.rules?.length).toBeGreaterThan(3);
    const text = await cli(['--input', file, '--format', 'text']);
    expect(text.stdout).toMatch(/^decision: {2}DENY \(403\)\nreasons: {3}model\.not_allowed/);
    expect(text.stdout).not.toContain('sk-live-very-secret-token');
    const usage = await cli(['--input', file, '--explain', 'everything']);
    expect(usage.code).toBe(2);
  }, 60_000);
});

describe('eval of the short form', () => {
  it('decides through the pipeline: verified identity, route, budgets named and reserved', async () => {
    const report = await explainDecision({
      config,
      logger: silentLogger(),
      request: { user: { sub: 'alice', roles: ['llm-user'], team: 'search', tenant: 'acme' }, model: 'gpt-4o-mini', prompt: 'hello' },
      nowNs: NOW,
      explain: 'rules',
    });
    expect(report).toMatchObject({ allowed: true, http_status: 200, reasons: ['allowed'], door: 'signalbox.v1.grpc' });
    expect(report.headers['x-signalbox-user']).toBe('alice');
    expect(report.route).toMatchObject({ provider: 'openai', upstream: 'api.openai.com:443' });
    expect(report.budgets).toContainEqual({ scope: 'user:alice', window: 'day', limit_usd: 5 });
    expect(report.enforcement).toMatchObject({ outcome: 'reserved' });
    expect(report.cost_usd).toBeGreaterThan(0);
    expect(report.input.identity).toMatchObject({ verified: true, subject: 'alice', claims: { exp: Number(NOW / 1_000_000_000n) + 300 } });
    expect(report.rules!.map((r) => r.rule)).toContain('data.signalbox.authz.allow_response');
    // The minted token is in the request, never in the report (a compact JWS starts "eyJ").
    const headers = (report.input.attributes as { request: { http: { headers: Record<string, string> } } }).request.http.headers;
    expect(headers.authorization).toBe('[masked]');
    expect(JSON.stringify(report)).not.toContain('eyJ');
    expect(textExplain(report)).not.toContain('eyJ');
  });

  it('builds the same input the service builds for the same HTTP request', async () => {
    const sim = await Simulation.create(config, silentLogger(), { nowNs: NOW, dns: {} });
    try {
      const viaEnvoy = await sim.decide({ door: 'envoy', user: { sub: 'alice', roles: ['llm-user'] }, model: 'gpt-4o-mini' });
      expect(viaEnvoy.input.door).toEqual({ name: 'envoy.ext_authz.grpc', can_rewrite_body: false, body_forwarded: true });
      expect((viaEnvoy.input.attributes as { request: { time: unknown } }).request.time).toEqual({ seconds: Number(NOW / 1_000_000_000n), nanos: 0 });
      const viaNginx = await sim.decide({ door: 'nginx', user: { sub: 'alice', roles: ['llm-user'] }, model: 'gpt-4o-mini' });
      expect(viaNginx.input.door).toEqual({ name: 'nginx.auth_request', can_rewrite_body: false, body_forwarded: false });
      expect(viaNginx.input.content).toMatchObject({ scanned: false });
      const noToken = await sim.decide({ model: 'gpt-4o-mini' });
      expect(noToken.input.identity).toMatchObject({ verified: false, error: { code: 'token_missing' } });
    } finally {
      await sim.close();
    }
  });

  it('through the CLI from a YAML request file; a bad file is test_suite_invalid', async () => {
    const file = join(dir, 'request.yaml');
    await writeFile(file, 'user: { sub: bob, roles: [llm-user] }\nmodel: gpt-4o\n');
    const run = await cli(['--request', file, '--now', '2026-11-22T10:00:00Z', '--format', 'json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ allowed: false, reasons: ['model.not_allowed'] });
    expect(run.stdout).not.toContain('eyJ');
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'usr: bob\n');
    const failed = await cli(['--request', bad]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('test_suite_invalid: --request');
    expect(failed.stderr).toContain('unknown key(s) usr');
  }, 60_000);
});
