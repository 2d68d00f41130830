/**
 * Shipping audit records with OPA's Decision Log Service API, against an HTTP receiver that
 * checks the protocol as OPA documents it: POST to the configured path, Content-Type
 * application/json, Content-Encoding gzip, a gzip-compressed JSON array of events.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { DecisionLogShipper, type DecisionLogShipperOptions } from '../src/audit/ship-opa.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, startTestSignalbox } from './helpers/signalbox.js';

interface Receiver {
  readonly url: string;
  readonly events: Record<string, unknown>[];
  readonly problems: string[];
  /** Answer 503 to this many uploads first. */
  failNext: number;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function startReceiver(): Promise<Receiver> {
  const events: Record<string, unknown>[] = [];
  const problems: string[] = [];
  const receiver = { events, problems, failNext: 0 } as unknown as Receiver & { failNext: number };
  const server: Server = createServer((req, res) => {
    void body(req).then((raw) => {
      if (req.method !== 'POST') problems.push(`method ${req.method}`);
      if (req.url !== '/logs') problems.push(`path ${req.url}`);
      if (req.headers['content-type'] !== 'application/json') problems.push(`content-type ${req.headers['content-type']}`);
      if (req.headers['content-encoding'] !== 'gzip') problems.push(`content-encoding ${req.headers['content-encoding']}`);
      if (req.headers.authorization !== 'Bearer dl-token') problems.push('authorization');
      if (receiver.failNext > 0) {
        receiver.failNext--;
        res.writeHead(503).end();
        return;
      }
      const parsed = JSON.parse(gunzipSync(raw).toString('utf8')) as unknown;
      if (!Array.isArray(parsed)) problems.push('not an array');
      else events.push(...(parsed as Record<string, unknown>[]));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/logs`;
  return Object.assign(receiver, { url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
}

const receivers: Receiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

function shipper(url: string, overrides: Partial<DecisionLogShipperOptions> = {}): DecisionLogShipper {
  return new DecisionLogShipper({ url, headers: { authorization: 'Bearer dl-token' }, minDelayMs: 10, maxDelayMs: 30, uploadLimitBytes: 2048, bufferLimit: 1000, requestTimeoutMs: 2000, logger: capturedLogger().logger, ...overrides });
}

const waitFor = async (done: () => boolean): Promise<void> => {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('the decision-log shipper', () => {
  it('ships every record once, in uploads within the size limit, retrying failed uploads', async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    receiver.failNext = 2;
    const ship = shipper(receiver.url);
    for (let i = 0; i < 100; i++) ship.offer(`${JSON.stringify({ decision_id: `d${i}`, note: 'x'.repeat(50) })}\n`);
    await waitFor(() => receiver.events.length >= 100);
    await ship.stop();
    expect(receiver.problems).toEqual([]);
    expect(receiver.events.map((e) => e.decision_id)).toEqual(Array.from({ length: 100 }, (_, i) => `d${i}`));
    expect(ship.counts).toMatchObject({ shipped: 100, dropped: 0, failedUploads: 2 });
  });

  it('never blocks: with the receiver down, the buffer keeps the newest records and counts the rest', async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    receiver.failNext = 1_000_000;
    const ship = shipper(receiver.url, { bufferLimit: 10 });
    for (let i = 0; i < 50; i++) ship.offer(JSON.stringify({ decision_id: `d${i}` }));
    expect(ship.counts.dropped).toBe(40);
    receiver.failNext = 0;
    await waitFor(() => receiver.events.length >= 10);
    await ship.stop();
    expect(receiver.events.map((e) => e.decision_id)).toEqual(Array.from({ length: 10 }, (_, i) => `d${i + 40}`));
  });
});

describe('audit.decision_logs', () => {
  it('ships what the audit file records, masked, as each decision is made', async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const yaml = `audit:\n  decision_logs:\n    url: ${receiver.url}\n    headers: { authorization: Bearer dl-token }\n    min_delay_ms: 10\n    max_delay_ms: 50\n`;
    const sb = await startTestSignalbox(capturedLogger().logger, { yaml });
    try {
      const response = await sb.check(checkRequest({ headers: { authorization: 'Bearer not-a-real-token' } }));
      const id = response.dynamicMetadata!.fields!.decision_id!.stringValue!;
      await waitFor(() => receiver.events.some((e) => e.decision_id === id));
      const event = receiver.events.find((e) => e.decision_id === id)!;
      expect(event).toMatchObject({ path: 'signalbox/authz/decision', decision: { allowed: false }, bundles: { signalbox: { revision: expect.any(String) } } });
      expect(JSON.stringify(event)).not.toContain('not-a-real-token');
      expect(receiver.problems).toEqual([]);
    } finally {
      await sb.close();
    }
  });
});
