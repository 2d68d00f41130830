/**
 * The ext_proc benchmark (npm run bench:ext-proc) is run by hand; these checks keep it working:
 * its Envoy-side driver against a real Signalbox (the phases the door asks for are played, a
 * deny is counted as one), and the whole benchmark for about a second per mode with tiny rounds,
 * whose printout must have every mode, the ratios to `check`, and allowed decisions in each.
 * Not a timed test: no figure is compared with a threshold.
 */
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/core/paths.js';
import { silentLogger } from '../src/core/log.js';
import { loadServices } from '../src/transport/protos.js';
import { chatBody } from '../bench/bundles.js';
import { processExchange, type Exchange, type ProcessorClient, type StreamTally } from '../bench/ext-proc-envoy.js';
import { JwksServer, mint, signingKey } from './helpers/keys.js';
import { startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-test',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Three bullet points.' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 200, completion_tokens: 4, total_tokens: 204 },
});

function chat(headers: Record<string, string>): Exchange {
  return {
    method: 'POST',
    path: '/v1/chat/completions',
    headers: { ...headers, 'content-type': 'application/json' },
    body: chatBody(),
    responseStatus: 200,
    responseHeaders: { 'content-type': 'application/json' },
    responseBody: COMPLETION,
  };
}

describe('bench/ext-proc-envoy.ts against a real Signalbox (shipped bundle)', () => {
  let sb: TestSignalbox;
  let jwks: JwksServer;
  let client: ProcessorClient;
  let token: string;

  beforeAll(async () => {
    const key = await signingKey('ES256', 'bench-ext-proc');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(silentLogger(), { jwksUrl: jwks.url });
    client = new (loadServices().clients.ExternalProcessor)(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as ProcessorClient;
    token = await mint(key, { subject: 'bench-driver' });
  });

  afterAll(async () => {
    client?.close();
    await sb?.close();
    await jwks?.close();
  });

  it.each(['reset', 'half-close'] as const)('plays a chat request through the four phases the door asks for, and it is allowed (%s)', async (close) => {
    const tally: StreamTally = { messages: 0 };
    const { answered, closed } = processExchange(client, chat({ authorization: `Bearer ${token}` }), tally, close);
    expect(await answered).toEqual({ allowed: true });
    await closed;
    // request headers, request body (BUFFERED), response headers, response body (BUFFERED).
    expect(tally.messages).toBe(4);
  });

  it('counts a request without a token as denied: the ImmediateResponse to its body ends the stream', async () => {
    const tally: StreamTally = { messages: 0 };
    const { answered, closed } = processExchange(client, chat({}), tally);
    expect(await answered).toEqual({ allowed: false });
    await closed;
    expect(tally.messages).toBe(2);
  });
});

describe('npm run bench:ext-proc, one short round', () => {
  it('prints a round and a median row for check and both ext_proc modes, with the ratios to check', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/ext-proc.ts'], {
      cwd: projectRoot(),
      env: { ...process.env, BENCH_SECONDS: '1', BENCH_WARMUP_SECONDS: '0.3', BENCH_ROUNDS: '1', BENCH_USERS: '3', BENCH_CONCURRENCY: '4' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    // The benchmark exits non-zero when any request was denied or none completed.
    expect(code, `${stdout}\n${stderr}`).toBe(0);

    expect(stdout).toMatch(/^Check beside ext_proc over gRPC, concurrency 4, 1s per round/);
    expect(stdout).toMatch(/round 1 check +\d+\/s {2}p50 [\d.]+ ms {2}p99 [\d.]+ ms {2}cpu \d+ µs\/request\n/);
    // What the door asked Envoy for: one message for the GET, four for the chat with its answer.
    expect(stdout).toMatch(/round 1 ext_proc-headers .* µs\/request {2}1\.00 messages\/request\n/);
    expect(stdout).toMatch(/round 1 ext_proc-bodies .* µs\/request {2}4\.00 messages\/request\n/);

    expect(stdout).toContain('| server | requests/s | p50 ms | p99 ms | server CPU µs/request |');
    for (const mode of ['check', 'ext_proc-headers', 'ext_proc-bodies']) {
      const row = new RegExp(`^\\| ${mode} \\| (\\d+) \\| [\\d.]+ \\| [\\d.]+ \\| \\d+ \\|$`, 'm').exec(stdout);
      expect(row, `${mode} row in\n${stdout}`).not.toBeNull();
      expect(Number(row![1])).toBeGreaterThan(0);
    }
    for (const mode of ['ext_proc-headers', 'ext_proc-bodies']) {
      expect(stdout).toMatch(new RegExp(`^\\| ${mode} / check \\| [\\d.]+x \\| [\\d.]+x \\| [\\d.]+x \\| [\\d.]+x \\|$`, 'm'));
    }
  }, 120_000);
});
