import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { startTestSignalbox, type TestSignalbox, decideClient } from './helpers/signalbox.js';

interface DecideResponse {
  decisionId: string;
  allowed: boolean;
  httpStatus: number;
  headers: { key: string; value: string }[];
  requestHeadersToRemove: string[];
  reasons: string[];
  policyRevision: string;
  body: string;
}

describe('signalbox.v1.DecisionService/Decide', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let decide: (req: object) => Promise<DecideResponse>;
  let close: () => void;

  beforeAll(async () => {
    key = await signingKey('EdDSA', 'native');
    jwks = await JwksServer.start([key.publicJwk]);
    sb = await startTestSignalbox(capturedLogger().logger, { jwksUrl: jwks.url });
    ({ decide, close: close } = decideClient<DecideResponse>(sb.running.grpcPort));
  });
  afterAll(async () => {
    close();
    await sb.close();
    await jwks.close();
  });

  it('decides with the same pipeline and policy as Check', async () => {
    const token = await mint(key, { claims: { act: { sub: 'agent-42' } } });
    const response = await decide({
      request: {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: Buffer.from(JSON.stringify({ model: 'gpt-4.1-mini' })),
      },
      sourceAddress: '10.1.2.3:5555',
      sourcePrincipal: 'spiffe://acme/agent',
    });
    expect(response.allowed).toBe(true);
    expect(response.httpStatus).toBe(200);
    expect(response.policyRevision).toBe(sb.running.engine.revision);
    expect(response.headers).toEqual(expect.arrayContaining([{ key: 'x-signalbox-user', value: 'alice' }, { key: 'x-signalbox-actor', value: 'agent-42' }]));
    expect(response.requestHeadersToRemove).toContain('authorization');
    expect(response.decisionId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('denies without a token, with the status and body for the client', async () => {
    const response = await decide({ request: { method: 'GET', path: '/v1/models' } });
    expect(response.allowed).toBe(false);
    expect(response.httpStatus).toBe(401);
    expect(response.reasons).toEqual(['identity.token_missing']);
    expect(JSON.parse(response.body).error.code).toBe('identity.token_missing');
  });

  it('denies an empty request instead of failing', async () => {
    const response = await decide({});
    expect(response.allowed).toBe(false);
  });
});

describe('signalbox eval', () => {
  it('prints one decision for an input document', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-eval-'));
    const file = join(dir, 'input.json');
    await writeFile(
      file,
      JSON.stringify({
        attributes: { request: { http: { method: 'POST', path: '/v1/chat/completions' } } },
        parsed_path: ['v1', 'chat', 'completions'],
        parsed_body: { model: 'gpt-4o' },
        identity: { verified: true, subject: 'bob', roles: ['llm-user'] },
      }),
    );
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'eval', '--input', file], {
      cwd: join(import.meta.dirname, '..'),
    });
    const printed = JSON.parse(stdout) as { allowed: boolean; http_status: number; reasons: string[]; revision: string };
    expect(printed).toMatchObject({ allowed: false, http_status: 403, reasons: ['model.not_allowed'] });
    expect(printed.revision).toMatch(/^[0-9a-f]{20}$/);
  });
});
