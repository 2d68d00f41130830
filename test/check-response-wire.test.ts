/**
 * The hand-written CheckResponse encoder (src/transport/doors/check-response-wire.ts) against
 * protobufjs, which it replaces on the Check path: byte for byte over generated responses (allowed
 * and denied, headers repeated and not, query parameters, unicode, lengths that need multi-byte
 * varints, and dynamic metadata of every Struct kind, nested), and decoded back by protobufjs.
 */
import { describe, expect, it } from 'vitest';
import { encodeCheckResponse, type CheckResponseMessage, type HeaderOptionMessage } from '../src/transport/doors/check-response-wire.js';
import { toCheckResponse } from '../src/transport/doors/envoy-grpc.js';
import { toStruct } from '../src/transport/doors/struct.js';
import { loadServices } from '../src/transport/protos.js';
import type { Decision } from '../src/decide/decision.js';

const check = loadServices().authorization.Check!;

/** A small deterministic generator, so a failure names a reproducible case. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const PIECES = ['a', 'x-user', 'Bearer abc', '', 'é', '日本', '🙂', ' ', '"quoted"', '\\', 'line\nbreak', '0'];

function text(next: () => number, maxPieces = 6): string {
  let out = '';
  const pieces = Math.floor(next() * maxPieces);
  for (let i = 0; i < pieces; i++) out += PIECES[Math.floor(next() * PIECES.length)];
  return out;
}

function json(next: () => number, depth: number): unknown {
  const kind = Math.floor(next() * (depth > 3 ? 5 : 7));
  switch (kind) {
    case 0:
      return null;
    case 1:
      return [0, 1, -1, 0.5, -2.25, 1e21, 2 ** 53, -0, 123456789][Math.floor(next() * 9)];
    case 2:
      return text(next);
    case 3:
      return next() < 0.5;
    case 4:
      return text(next, 3).length;
    case 5:
      return Array.from({ length: Math.floor(next() * 4) }, () => json(next, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: Math.floor(next() * 4) }, (_, i) => [`${text(next, 2)}k${i}`, json(next, depth + 1)]));
  }
}

function headers(next: () => number): HeaderOptionMessage[] {
  return Array.from({ length: Math.floor(next() * 5) }, () => ({
    header: { key: `x-${text(next, 2)}`, value: text(next) },
    appendAction: next() < 0.5 ? ('APPEND_IF_EXISTS_OR_ADD' as const) : ('OVERWRITE_IF_EXISTS_OR_ADD' as const),
  }));
}

function generated(seed: number): CheckResponseMessage {
  const next = random(seed);
  const metadata = toStruct(Object.fromEntries(Array.from({ length: Math.floor(next() * 5) }, (_, i) => [`m${i}${text(next, 2)}`, json(next, 0)])));
  if (next() < 0.5) {
    return {
      status: { code: 0 },
      okResponse: {
        headers: headers(next),
        headersToRemove: Array.from({ length: Math.floor(next() * 3) }, () => text(next, 3)),
        responseHeadersToAdd: headers(next),
        queryParametersToSet: Array.from({ length: Math.floor(next() * 3) }, () => ({ key: text(next, 2), value: text(next) })),
        queryParametersToRemove: Array.from({ length: Math.floor(next() * 3) }, () => text(next, 2)),
      },
      dynamicMetadata: metadata,
    };
  }
  // Bodies up to 40 KB, so lengths take one, two and three varint bytes.
  const body = 'b'.repeat([0, 5, 127, 128, 300, 16_383, 16_384, 40_000][Math.floor(next() * 8)]!) + text(next);
  return {
    status: { code: 7 },
    deniedResponse: { status: { code: [403, 401, 429, 503, 100, 599][Math.floor(next() * 6)]! }, headers: headers(next), body },
    dynamicMetadata: metadata,
  };
}

function decision(overrides: Partial<Decision>): Decision {
  return {
    decisionId: 'd-1',
    allowed: true,
    httpStatus: 200,
    reasons: [],
    headers: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    queryParametersToSet: [],
    queryParametersToRemove: [],
    body: '',
    dynamicMetadata: {},
    revision: 'r',
    ...overrides,
  } as Decision;
}

describe('CheckResponse encoder', () => {
  it('writes the bytes protobufjs writes, for 2,000 generated responses', () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const message = generated(seed);
      const ours = encodeCheckResponse(message);
      const theirs = check.responseSerialize(message);
      if (!ours.equals(theirs)) throw new Error(`seed ${seed}: ${ours.toString('hex')} != ${theirs.toString('hex')}`);
    }
  });

  it('writes what protobufjs reads back, for decisions as the pipeline makes them', () => {
    const allowed = decision({
      headers: [
        { key: 'x-signalbox-decision-id', value: 'd-1' },
        { key: 'x-tag', value: 'one' },
        { key: 'x-tag', value: 'two' },
      ],
      requestHeadersToRemove: ['authorization', 'x-api-key'],
      responseHeadersToAdd: [{ key: 'x-ratelimit-remaining', value: '41' }],
      queryParametersToSet: [{ key: 'api-version', value: '2024-06-01' }],
      queryParametersToRemove: ['key'],
      dynamicMetadata: { decision_id: 'd-1', cost_usd: 0.0123, user: { team: 'blue', roles: ['dev', 'ops'] }, cached: false, none: null },
    });
    const denied = decision({ allowed: false, httpStatus: 429, reasons: ['budget.exceeded'], headers: [{ key: 'retry-after', value: '30' }], body: '{"error":"budget"}' });
    for (const d of [allowed, denied]) {
      const message = toCheckResponse(d);
      const bytes = encodeCheckResponse(message);
      expect(bytes.equals(check.responseSerialize(message))).toBe(true);
      const read = check.responseDeserialize(bytes) as Record<string, unknown>;
      expect(read.status).toEqual({ code: d.allowed ? 0 : 7 });
    }
    const read = check.responseDeserialize(encodeCheckResponse(toCheckResponse(allowed))) as { okResponse: { headers: { header: { key: string; value: string }; appendAction: number }[]; headersToRemove: string[] }; dynamicMetadata: unknown };
    expect(read.okResponse.headers.map((h) => [h.header.key, h.header.value, h.appendAction])).toEqual([
      ['x-signalbox-decision-id', 'd-1', 2],
      ['x-tag', 'one', 2],
      ['x-tag', 'two', 0],
    ]);
    expect(read.okResponse.headersToRemove).toEqual(['authorization', 'x-api-key']);
  });

  it('writes valid UTF-8 for a string holding a lone surrogate (the replacement character)', () => {
    const bytes = encodeCheckResponse(toCheckResponse(decision({ allowed: false, httpStatus: 403, body: 'a\ud800b' })));
    expect(bytes.includes(Buffer.from('a\ufffdb'))).toBe(true);
  });
});
