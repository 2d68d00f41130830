/**
 * The lean unary path (src/transport/grpc-unary.ts) that reads and answers Check and Decide on
 * grpc-js's listener: it answers as grpc-js does (headers, one framed message, trailers), refuses
 * what grpc-js refuses with the same status codes, answers a request it cannot decode with a
 * deny rather than an error (an error could become an allow under Envoy's failure_mode_allow),
 * leaves compressed calls to grpc-js, and keeps serving after each.
 */
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadServices } from '../src/transport/protos.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const services = loadServices();
const CHECK = '/envoy.service.auth.v3.Authorization/Check';

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function frame(message: Buffer, compressed = false): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** One gRPC call over a bare HTTP/2 client: what a gateway's client sends, byte for byte. */
function rawCall(port: number, path: string, body: Buffer, extraHeaders: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extraHeaders });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => {
      session.close();
      resolve({ headers, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(body);
  });
}

/** The gRPC status of an answer: in the trailers, or in the headers of a trailers-only answer. */
function status(answer: RawAnswer): string | undefined {
  return (answer.trailers['grpc-status'] ?? answer.headers['grpc-status']) as string | undefined;
}

describe('the lean unary gRPC path', () => {
  let sb: TestSignalbox;
  beforeAll(async () => {
    sb = await startTestSignalbox(capturedLogger().logger, { yaml: 'server:\n  max_request_bytes: 65536\n' });
  });
  afterAll(async () => {
    await sb.close();
  });

  it('answers Check with the headers, framing and trailers grpc-js uses', async () => {
    const request = services.authorization.Check!.requestSerialize(checkRequest({}));
    const answer = await rawCall(sb.running.grpcPort, CHECK, frame(request));
    expect(answer.headers[':status']).toBe(200);
    expect(answer.headers['content-type']).toBe('application/grpc+proto');
    expect(answer.headers['grpc-encoding']).toBe('identity');
    expect(status(answer)).toBe('0');
    expect(answer.body[0]).toBe(0);
    expect(answer.body.readUInt32BE(1)).toBe(answer.body.length - 5);
    const decoded = services.authorization.Check!.responseDeserialize(answer.body.subarray(5)) as { status?: { code?: number } };
    // No token: the default policy denies, inside an OK call.
    expect(decoded.status?.code).toBe(7);
  });

  it('answers an undecodable Check with a deny, not a gRPC error', async () => {
    const answer = await rawCall(sb.running.grpcPort, CHECK, frame(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01])));
    expect(status(answer)).toBe('0');
    const decoded = services.authorization.Check!.responseDeserialize(answer.body.subarray(5)) as { status?: { code?: number }; deniedResponse?: { status?: { code?: number } } };
    expect(decoded.status?.code).toBe(7);
    expect(decoded.deniedResponse?.status?.code).toBe(400);
  });

  it('refuses no message, a truncated one, two, and a compressed flag without an encoding, with INTERNAL', async () => {
    const request = services.authorization.Check!.requestSerialize(checkRequest({}));
    const whole = frame(request);
    for (const body of [Buffer.alloc(0), whole.subarray(0, whole.length - 1), Buffer.concat([whole, whole]), frame(request, true)]) {
      const answer = await rawCall(sb.running.grpcPort, CHECK, body);
      expect(status(answer)).toBe(String(grpc.status.INTERNAL));
      expect(answer.body.length).toBe(0);
    }
  });

  it('refuses a message over server.max_request_bytes with RESOURCE_EXHAUSTED', async () => {
    const request = services.authorization.Check!.requestSerialize(checkRequest({ body: 'x'.repeat(70_000) }));
    const answer = await rawCall(sb.running.grpcPort, CHECK, frame(request));
    expect(status(answer)).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
  });

  it('leaves a gzip-compressed Check to grpc-js, which answers it', async () => {
    const client = new services.clients.Authorization(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure(), {
      'grpc.default_compression_algorithm': 2,
      'grpc.default_compression_level': 2,
    });
    try {
      const response = await new Promise<{ status?: { code?: number } }>((resolve, reject) =>
        (client as unknown as { Check: (r: object, cb: (e: Error | null, v: { status?: { code?: number } }) => void) => void }).Check(checkRequest({ body: 'y'.repeat(2000) }), (e, v) => (e ? reject(e) : resolve(v))),
      );
      expect(response.status?.code).toBe(7);
    } finally {
      client.close();
    }
  });

  it('drops the answers of callers that reset their call while it was decided, and keeps serving', async () => {
    const request = frame(services.authorization.Check!.requestSerialize(checkRequest({})));
    const session = http2.connect(`http://127.0.0.1:${sb.running.grpcPort}`);
    try {
      await Promise.all(
        Array.from({ length: 20 }, () => {
          const stream = session.request({ ':method': 'POST', ':path': CHECK, 'content-type': 'application/grpc', te: 'trailers' });
          stream.on('error', () => undefined);
          stream.end(request, () => stream.close(http2.constants.NGHTTP2_CANCEL));
          return new Promise((resolve) => stream.on('close', resolve));
        }),
      );
    } finally {
      session.close();
    }
    expect((await sb.check(checkRequest({}))).status.code).toBe(7);
  });

  it('still answers Check after all of that', async () => {
    const response = await sb.check(checkRequest({}));
    expect(response.status.code).toBe(7);
  });
});
