/**
 * OpenTelemetry through a real OpenTelemetry Collector (built from its Go modules by
 * scripts/install-otelcol.sh): Signalbox exports a span per decision, with its stages as child
 * spans in the gateway's trace (`traceparent`), and the audit record as an OTLP log; the
 * collector receives them over OTLP/HTTP and forwards them with its OTLP/HTTP exporter (JSON) to
 * a receiver here, so what arrives is what a collector accepted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/core/paths.js';
import { freePort } from './helpers/gateways.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const COLLECTOR = join(projectRoot(), '.tools', 'bin', 'otelcol-signalbox-test');

interface Received {
  spans: Record<string, unknown>[];
  logs: Record<string, unknown>[];
}

describe('OpenTelemetry export through a real collector', () => {
  let receiver: Server;
  let collector: ChildProcess;
  let collectorLog = '';
  let sb: TestSignalbox;
  const received: Received = { spans: [], logs: [] };

  beforeAll(async () => {
    if (!existsSync(COLLECTOR)) throw new Error(`${COLLECTOR} is missing; run "bash scripts/install-otelcol.sh"`);
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans?: { scopeSpans: { spans: Record<string, unknown>[] }[] }[];
          resourceLogs?: { scopeLogs: { logRecords: Record<string, unknown>[] }[] }[];
        };
        for (const r of body.resourceSpans ?? []) for (const s of r.scopeSpans) received.spans.push(...s.spans);
        for (const r of body.resourceLogs ?? []) for (const s of r.scopeLogs) received.logs.push(...s.logRecords);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const receiverPort = (receiver.address() as AddressInfo).port;
    const otlpPort = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-otelcol-'));
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      [
        'receivers:',
        '  otlp:',
        '    protocols:',
        '      http:',
        `        endpoint: 127.0.0.1:${otlpPort}`,
        'exporters:',
        '  otlphttp:',
        `    endpoint: http://127.0.0.1:${receiverPort}`,
        '    encoding: json',
        '    compression: none',
        'service:',
        '  telemetry:',
        '    metrics:',
        '      level: none',
        '  pipelines:',
        '    traces: { receivers: [otlp], exporters: [otlphttp] }',
        '    logs: { receivers: [otlp], exporters: [otlphttp] }',
        '',
      ].join('\n'),
    );
    collector = spawn(COLLECTOR, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    collector.stdout?.on('data', (c: Buffer) => (collectorLog += c.toString()));
    collector.stderr?.on('data', (c: Buffer) => (collectorLog += c.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const up = await fetch(`http://127.0.0.1:${otlpPort}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then((r) => r.ok, () => false);
      if (up) break;
      if (Date.now() > deadline || collector.exitCode !== null) throw new Error(`the collector did not start:\n${collectorLog}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const yaml = `audit:\n  otlp:\n    endpoint: http://127.0.0.1:${otlpPort}\n    service_name: signalbox-test\n    min_delay_ms: 10\n    max_delay_ms: 50\n`;
    sb = await startTestSignalbox(capturedLogger().logger, { yaml });
  }, 60_000);

  afterAll(async () => {
    await sb?.close();
    collector?.kill('SIGTERM');
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
  });

  it('exports the decision as a span in the gateway trace, its stages as children, and its record as a log', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const gatewaySpan = '00f067aa0ba902b7';
    const response = await sb.check(checkRequest({ headers: { traceparent: `00-${traceId}-${gatewaySpan}-01`, authorization: 'Bearer not-a-token' } }));
    const decisionId = response.dynamicMetadata!.fields!.decision_id!.stringValue!;
    const deadline = Date.now() + 20_000;
    const mine = () => received.spans.filter((s) => s.traceId === traceId);
    while ((mine().length < 6 || !received.logs.some((l) => l.traceId === traceId)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const spans = mine();
    const root = spans.find((s) => s.name === 'signalbox.decision');
    expect(root, collectorLog).toMatchObject({ parentSpanId: gatewaySpan, kind: 2 });
    const attributes = Object.fromEntries((root!.attributes as { key: string; value: Record<string, unknown> }[]).map((a) => [a.key, Object.values(a.value)[0]]));
    expect(attributes).toMatchObject({ 'signalbox.decision_id': decisionId, 'signalbox.door': 'envoy.ext_authz.grpc', 'signalbox.allowed': false, 'http.response.status_code': '401' });
    const children = spans.filter((s) => s.parentSpanId === root!.spanId).map((s) => s.name).sort();
    expect(children).toEqual(['signalbox.enforce', 'signalbox.identity', 'signalbox.inspect', 'signalbox.policy', 'signalbox.record']);
    for (const span of spans) expect(BigInt(span.endTimeUnixNano as string) >= BigInt(span.startTimeUnixNano as string)).toBe(true);
    const log = received.logs.find((l) => l.traceId === traceId)!;
    expect(log).toMatchObject({ spanId: root!.spanId, severityText: 'INFO' });
    const record = JSON.parse((log.body as { stringValue: string }).stringValue) as Record<string, unknown>;
    expect(record).toMatchObject({ decision_id: decisionId, trace_id: traceId, span_id: root!.spanId });
    expect(JSON.stringify(log)).not.toContain('not-a-token');
  });

  it('starts a trace of its own when the gateway sends none, or a malformed one', async () => {
    const before = received.spans.length;
    await sb.check(checkRequest({ headers: { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' } }));
    const deadline = Date.now() + 20_000;
    while (!received.spans.slice(before).some((s) => s.name === 'signalbox.decision') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const root = received.spans.slice(before).find((s) => s.name === 'signalbox.decision')!;
    expect(root.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(root.traceId).not.toBe('0'.repeat(32));
    expect(root.parentSpanId ?? '').toBe('');
  });
});
