/**
 * GET /metrics: Prometheus text exposition format 0.0.4, parsed back and checked against the
 * decisions and reports the test made.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Decision } from '../src/decide/decision.js';
import { DURATION_BUCKETS, MAX_LABEL_VALUES, Metrics, METRICS_CONTENT_TYPE } from '../src/transport/metrics.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, checkRequest, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text format strictly: every sample belongs to a metric declared by HELP and TYPE first. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    // The format ignores blank lines (prom-client separates metric families with one).
    if (line.trim() === '') continue;
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (help) {
      helped.add(help[1]!);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      expect(helped.has(type[1]!), `HELP before TYPE for ${type[1]}`).toBe(true);
      types.set(type[1]!, type[2]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(sample, `not a sample line: ${line}`).not.toBeNull();
    const [, name, labelText, value] = sample!;
    const labels: Record<string, string> = {};
    if (labelText) {
      const pattern = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let match: RegExpExecArray | null;
      let consumed = 0;
      while ((match = pattern.exec(labelText)) !== null) {
        labels[match[1]!] = match[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        consumed = pattern.lastIndex;
        if (consumed === labelText.length) break;
      }
      expect(consumed, `labels of ${line}`).toBe(labelText.length);
    }
    const family = name!.replace(/_(bucket|sum|count)$/, '');
    expect(types.has(name!) || types.get(family) === 'histogram', `TYPE declared for ${name}`).toBe(true);
    samples.push({ name: name!, labels, value: value === '+Inf' ? Infinity : Number(value) });
  }
  return { samples, types };
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.reduce((sum, s) => sum + s.value, 0);
}

describe('Metrics registry', () => {
  const decision = (allowed: boolean, reasons: string[]): Decision => ({ allowed, reasons }) as unknown as Decision;

  it('caps the distinct values of a label, counting the rest as "other"', async () => {
    const metrics = new Metrics();
    for (let i = 0; i < MAX_LABEL_VALUES + 20; i++) metrics.onDecision({ door: 'd', decision: decision(false, [`policy.reason_${i}`]), enforcement: undefined, durationS: 0.001 });
    metrics.onDecision({ door: 'd', decision: decision(false, ['policy.reason_0']), enforcement: undefined, durationS: 0.001 });
    const { samples } = parseExposition(await metrics.render());
    const series = samples.filter((s) => s.name === 'signalbox_decisions_total');
    expect(series).toHaveLength(MAX_LABEL_VALUES + 1);
    expect(value(samples, 'signalbox_decisions_total', { reason: 'other' })).toBe(20);
    expect(value(samples, 'signalbox_decisions_total', { reason: 'policy.reason_0' })).toBe(2);
  });

  it('escapes label values and renders cumulative histogram buckets', async () => {
    const metrics = new Metrics();
    metrics.onDecision({ door: 'we"ird\\door\n', decision: decision(true, []), enforcement: undefined, durationS: 0.003 });
    metrics.onDecision({ door: 'we"ird\\door\n', decision: decision(true, []), enforcement: undefined, durationS: 30 });
    const text = await metrics.render();
    expect(text).toContain('door="we\\"ird\\\\door\\n"');
    const { samples, types } = parseExposition(text);
    expect(types.get('signalbox_decision_duration_seconds')).toBe('histogram');
    const buckets = samples.filter((s) => s.name === 'signalbox_decision_duration_seconds_bucket');
    expect(buckets.map((b) => b.labels.le)).toEqual([...DURATION_BUCKETS.map(String), '+Inf']);
    expect(buckets.find((b) => b.labels.le === '0.0025')?.value).toBe(0);
    expect(buckets.find((b) => b.labels.le === '0.005')?.value).toBe(1);
    expect(buckets.find((b) => b.labels.le === '5')?.value).toBe(1);
    expect(buckets.find((b) => b.labels.le === '+Inf')?.value).toBe(2);
    expect(value(samples, 'signalbox_decision_duration_seconds_count', {})).toBe(2);
    expect(value(samples, 'signalbox_decision_duration_seconds_sum', {})).toBeCloseTo(30.003, 6);
    expect(samples.find((s) => s.name === 'signalbox_decisions_total')?.labels).toEqual({ door: 'we"ird\\door\n', result: 'allowed', reason: 'none' });
  });

  it('counts store errors from reservations and refused reports', async () => {
    const metrics = new Metrics();
    metrics.onDecision({ door: 'd', decision: decision(false, ['budget_store_unavailable']), enforcement: { kind: 'store_unavailable', failOpen: false, error: new Error('down') }, durationS: 0 });
    metrics.onReport({ type: 'report', outcome: 'budget_store_unavailable' });
    const { samples } = parseExposition(await metrics.render());
    expect(value(samples, 'signalbox_store_errors_total', { operation: 'reserve' })).toBe(1);
    expect(value(samples, 'signalbox_store_errors_total', { operation: 'report' })).toBe(1);
    expect(value(samples, 'signalbox_usage_reports_total', { outcome: 'budget_store_unavailable' })).toBe(1);
  });
});

describe('Metrics registry: audit and process metrics', () => {
  it('exports the audit sink\'s write failures and dropped records, catching up at each scrape', async () => {
    const counts = { writeFailures: 0, droppedRecords: 0 };
    const metrics = new Metrics({ audit: () => counts, processMetrics: false });
    let { samples } = parseExposition(await metrics.render());
    expect(value(samples, 'signalbox_audit_write_failures_total', {})).toBe(0);
    counts.writeFailures = 3;
    counts.droppedRecords = 7;
    ({ samples } = parseExposition(await metrics.render()));
    expect(value(samples, 'signalbox_audit_write_failures_total', {})).toBe(3);
    expect(value(samples, 'signalbox_audit_records_dropped_total', {})).toBe(7);
    expect(samples.some((s) => s.name.startsWith('nodejs_'))).toBe(false);
  });

  it('exports Node\'s process metrics, event-loop lag among them', async () => {
    const { samples, types } = parseExposition(await new Metrics().render());
    expect(types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(value(samples, 'process_resident_memory_bytes', {})).toBeGreaterThan(0);
  });
});

describe('GET /metrics', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let http: string;
  const log = capturedLogger();

  beforeAll(async () => {
    key = await signingKey('ES256', 'metrics');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(log.logger, { jwksUrl: jwks.url });
    http = `http://127.0.0.1:${sb.running.httpPort}`;
  });
  afterAll(async () => {
    await sb?.close();
    await jwks?.close();
  });

  const chat = (model: string): string => JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }] });
  const report = (body: unknown): Promise<Response> => fetch(`${http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body: JSON.stringify(body) });

  async function scrape(): Promise<Sample[]> {
    const response = await fetch(`${http}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(METRICS_CONTENT_TYPE);
    return parseExposition(await response.text()).samples;
  }

  it('counts decisions by door, result and reason, with one latency observation each', async () => {
    const token = await mint(key);
    const allowed = await sb.check(checkRequest({ token, body: chat('gpt-4o-mini') }));
    await sb.check(checkRequest({ token, body: chat('gpt-4o-mini') }));
    await sb.check(checkRequest({ body: chat('gpt-4o-mini') }));
    await sb.check(checkRequest({ token, body: chat('gpt-4o') }));
    await fetch(`${http}/v1/data/signalbox/authz/allow`, { method: 'POST', body: JSON.stringify({ input: { method: 'GET', path: '/v1/models' } }) });

    const samples = await scrape();
    const grpc = { door: 'envoy.ext_authz.grpc' };
    expect(value(samples, 'signalbox_decisions_total', { ...grpc, result: 'allowed' })).toBe(2);
    expect(value(samples, 'signalbox_decisions_total', { ...grpc, result: 'denied', reason: 'identity.token_missing' })).toBe(1);
    expect(value(samples, 'signalbox_decisions_total', { ...grpc, result: 'denied', reason: 'model.not_allowed' })).toBe(1);
    expect(value(samples, 'signalbox_decisions_total', { door: 'opa.rest', result: 'denied', reason: 'identity.token_missing' })).toBe(1);
    expect(value(samples, 'signalbox_decision_duration_seconds_count', grpc)).toBe(4);
    expect(value(samples, 'signalbox_decision_duration_seconds_bucket', { ...grpc, le: '+Inf' })).toBe(4);
    expect(value(samples, 'signalbox_decision_duration_seconds_sum', grpc)).toBeGreaterThan(0);
    expect(value(samples, 'signalbox_decision_duration_seconds_count', { door: 'opa.rest' })).toBe(1);

    // Usage reports by outcome.
    const decisionId = allowed.dynamicMetadata!.fields!.decision_id!.stringValue!;
    expect((await report({ decision_id: decisionId, usage: { prompt_tokens: 10, completion_tokens: 5 } })).status).toBe(200);
    expect((await report({ decision_id: decisionId, usage: { prompt_tokens: 10, completion_tokens: 5 } })).status).toBe(200);
    expect((await report({ decision_id: 'nope', usage: { prompt_tokens: 1 } })).status).toBe(404);
    expect((await report({ usage: 1 })).status).toBe(400);
    const after = await scrape();
    expect(value(after, 'signalbox_usage_reports_total', { outcome: 'settled' })).toBe(1);
    expect(value(after, 'signalbox_usage_reports_total', { outcome: 'already_settled' })).toBe(1);
    expect(value(after, 'signalbox_usage_reports_total', { outcome: 'hold_not_found' })).toBe(1);
    expect(value(after, 'signalbox_usage_reports_total', { outcome: 'report_malformed' })).toBe(1);
  });

  it('counts loop denials by reason', async () => {
    const token = await mint(key, { subject: 'agent-m', claims: { roles: ['agent'] } });
    const call = () =>
      sb.check(
        checkRequest({
          path: '/mcp',
          token,
          headers: { 'mcp-session-id': 'metrics-session' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'web_search', arguments: { q: 'same' } } }),
        }),
      );
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await call()).status.code ?? 0);
    expect(codes).toEqual([0, 0, 0, 7, 7]);
    const samples = await scrape();
    expect(value(samples, 'signalbox_budget_denials_total', { reason: 'loop.repeated_call' })).toBe(2);
    expect(value(samples, 'signalbox_decisions_total', { result: 'denied', reason: 'loop.repeated_call' })).toBe(2);
  });

  it('counts provider breaker transitions', async () => {
    for (let i = 0; i < 3; i++) {
      const response = await report({ decision_id: `breaker-${i}`, provider: 'metrics-provider', upstream_status: 503, outcome: 'failed' });
      expect(response.status).toBe(200);
    }
    const samples = await scrape();
    expect(value(samples, 'signalbox_provider_breaker_transitions_total', { provider: 'metrics-provider', from: 'closed', to: 'open' })).toBe(1);
    expect(value(samples, 'signalbox_usage_reports_total', { outcome: 'health_only' })).toBe(3);
  });
});
