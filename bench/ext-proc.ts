/**
 * npm run bench:ext-proc: Envoy's ext_proc door beside its Check door, as ratios in one run.
 * The same Signalbox (bench/check.ts's `signalbox` mode: the default policy with its limits data
 * emptied, verified ES256 JWT, content scanning and audit on, in-memory store) is driven at a
 * fixed concurrency in three modes, one server process per mode and round:
 *   check             Check over gRPC with the chat body, as `npm run bench`'s signalbox mode;
 *   ext_proc-headers  a GET /v1/models through ext_proc: the request headers (end of stream),
 *                     and whatever else the door asks for: nothing more, one message each way,
 *                     as there is no budget hold to settle without limits (with the shipped
 *                     budgets a GET is held at $0 and the door also reads its JSON answer);
 *   ext_proc-bodies   the chat POST through ext_proc: request headers, the body the door asks
 *                     for (BUFFERED), the JSON answer's headers and its body (BUFFERED, a chat
 *                     completion with a usage block), each answered: four messages each way;
 * with Envoy's side played by bench/ext-proc-envoy.ts. A request's latency runs from opening its
 * stream to the last answer Envoy needs; server CPU is the server process's own. Streams are
 * half-closed after their last answer, as Envoy 1.40 does with
 * envoy.reloadable_features.ext_proc_graceful_grpc_close (examples/envoy/envoy-ext-proc.yaml sets
 * it); BENCH_EXT_PROC_CLOSE=reset plays Envoy without it, which Node's HTTP/2 limit on incoming
 * resets (1000, then 33/s per connection) answers with GOAWAY under sustained load.
 *
 * Rounds alternate the modes so drift on a noisy machine hits all of them; the median round is
 * reported. Settings: BENCH_SECONDS (default 8), BENCH_WARMUP_SECONDS (default 2),
 * BENCH_CONCURRENCY (default 32), BENCH_ROUNDS (default 3), BENCH_USERS (distinct tokens,
 * default 100), BENCH_MODES (comma-separated subset), BENCH_EXT_PROC_CLOSE (half-close or reset),
 * BENCH_PROFILE (as npm run bench).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../src/transport/protos.js';
import { AUDIENCE, ISSUER, mint, signingKey } from '../test/helpers/keys.js';
import { checkRequest } from '../test/helpers/signalbox.js';
import { chatBody, unlimitedBundle } from './bundles.js';
import { driveChecks, type CheckClient } from './drive.js';
import { driveExchanges, type Exchange, type ProcessorClient, type StreamClose, type StreamTally } from './ext-proc-envoy.js';
import { measure, medianTable, roundLine, type Load, type Result } from './measure.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const USERS = Number(process.env.BENCH_USERS ?? 100);
const ALL_MODES = ['check', 'ext_proc-headers', 'ext_proc-bodies'];
const CLOSE: StreamClose = process.env.BENCH_EXT_PROC_CLOSE === 'reset' ? 'reset' : 'half-close';
const MODES = (process.env.BENCH_MODES ?? ALL_MODES.join(',')).split(',').filter((m) => ALL_MODES.includes(m));

/** The upstream's answer to the chat request: a chat completion with its usage block. */
function chatCompletion(model: string): string {
  return JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1_780_000_000,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: '- Revenue grew 12% on the quarter.\n- Costs held flat.\n- Guidance for the next quarter is unchanged.' },
        finish_reason: 'stop',
      },
    ],
    usage: { prompt_tokens: 212, completion_tokens: 27, total_tokens: 239 },
  });
}

const MODELS_LIST = JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', owned_by: 'openai' }] });
const JSON_ANSWER = { 'content-type': 'application/json', date: 'Fri, 04 Dec 2026 18:00:00 GMT' };

/** The exchanges of one mode, one per user's token. */
function exchanges(mode: string, tokens: readonly string[], body: string): Exchange[] {
  return tokens.map((token): Exchange =>
    mode === 'ext_proc-headers'
      ? { method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${token}` }, responseStatus: 200, responseHeaders: JSON_ANSWER, responseBody: MODELS_LIST }
      : {
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body,
          responseStatus: 200,
          responseHeaders: JSON_ANSWER,
          responseBody: chatCompletion('gpt-4o-mini'),
        },
  );
}

/** The load of one mode against a server on `port`; ext_proc modes count the messages Envoy sent. */
function connect(mode: string, checks: readonly object[], streams: readonly Exchange[], tally: StreamTally): (port: number) => Load {
  return (port) => {
    const address = `127.0.0.1:${port}`;
    if (mode === 'check') {
      const client = new (loadServices().clients.Authorization)(address, grpc.credentials.createInsecure()) as unknown as CheckClient;
      return { run: (seconds) => driveChecks([client], checks, seconds, CONCURRENCY), close: () => client.close() };
    }
    const client = new (loadServices().clients.ExternalProcessor)(address, grpc.credentials.createInsecure()) as unknown as ProcessorClient;
    return {
      run: (seconds) => {
        tally.messages = 0;
        return driveExchanges([client], streams, seconds, CONCURRENCY, tally, CLOSE);
      },
      close: () => client.close(),
    };
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-bench-ext-proc-'));
  try {
    const unlimited = join(dir, 'no-limits.tar.gz');
    await unlimitedBundle(unlimited);
    const key = await signingKey('ES256', 'bench');
    const jwksFile = join(dir, 'jwks.json');
    await writeFile(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
    const body = chatBody();
    const tokens: string[] = [];
    for (let i = 0; i < USERS; i++) tokens.push(await mint(key, { subject: `user-${i}`, expiresIn: 3600 }));
    const checks = tokens.map((token) => checkRequest({ token, body }));
    const env = { BENCH_JWKS_FILE: jwksFile, BENCH_ISSUER: ISSUER, BENCH_AUDIENCE: AUDIENCE, BENCH_AUDIT_PATH: join(dir, 'audit.jsonl'), BENCH_BUNDLE: unlimited, BENCH_STORE: 'memory' };
    process.stdout.write(
      `Check beside ext_proc over gRPC, concurrency ${CONCURRENCY}, ${SECONDS}s per round after ${WARMUP_SECONDS}s warm-up, ${ROUNDS} rounds, ${USERS} users, chat body ${body.length} bytes, answer ${chatCompletion('gpt-4o-mini').length} bytes, ext_proc streams closed by ${CLOSE}${CLOSE === 'reset' ? ' (Envoy without graceful close)' : ' (Envoy with graceful close, as the example)'}\n`,
    );
    const all: Record<string, Result[]> = Object.fromEntries(MODES.map((m) => [m, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of MODES) {
        const tally: StreamTally = { messages: 0 };
        const load = connect(mode, checks, exchanges(mode, tokens, body), tally);
        const result = await measure(mode, { server: 'signalbox', env, warmupSeconds: WARMUP_SECONDS, seconds: SECONDS }, load);
        if (result.denied > 0) throw new Error(`${mode} denied ${result.denied} benchmark requests; the benchmark must measure allows`);
        if (result.decisions === 0) throw new Error(`${mode} completed no request in ${SECONDS}s`);
        all[mode]!.push(result);
        const messages = mode === 'check' ? '' : `  ${(tally.messages / result.decisions).toFixed(2)} messages/request`;
        process.stdout.write(roundLine(round, result, 'request', messages));
      }
    }
    const ratios = [
      ['ext_proc-headers', 'check'],
      ['ext_proc-bodies', 'check'],
    ] as const;
    process.stdout.write(`\nmedian of rounds (one request = one Check call, or one ext_proc stream with all its messages):\n${medianTable(all, MODES, ratios, 'request')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

void main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${String(error)}\n`);
  process.exitCode = 1;
});
