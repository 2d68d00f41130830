import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parseConfig } from '../../src/config/load.js';
import type { SignalboxConfig } from '../../src/config/schema.js';
import type { Logger } from '../../src/core/log.js';
import { startSignalbox, type RunningSignalbox, type StartOptions } from '../../src/app/app.js';
import { loadServices } from '../../src/transport/protos.js';
import { assertCataloguedBody } from './catalogue.js';
import { AUDIENCE, ISSUER } from './keys.js';

/**
 * The admin token every test Signalbox (and replica) accepts for /v1/report, /v1/spend, LiteLLM's
 * usage log and the gRPC Report/GetSpend: admin endpoints are closed without one.
 */
export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

/** The Authorization header carrying {@link ADMIN_TOKEN}, to spread into a fetch's headers. */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = Object.freeze({ authorization: `Bearer ${ADMIN_TOKEN}` });

/** gRPC metadata carrying {@link ADMIN_TOKEN}, for Report and GetSpend. */
export function adminMetadata(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
  return metadata;
}

export interface TestSignalbox {
  running: RunningSignalbox;
  config: SignalboxConfig;
  auditPath: string;
  check(request: object, options?: { deadlineMs?: number }): Promise<CheckResponse>;
  close(): Promise<void>;
}

export interface CheckResponse {
  status: { code?: number };
  deniedResponse?: { status?: { code?: number }; headers?: HeaderOption[]; body?: string };
  okResponse?: { headers?: HeaderOption[]; headersToRemove?: string[]; responseHeadersToAdd?: HeaderOption[] };
  dynamicMetadata?: { fields?: Record<string, { stringValue?: string }> };
}

export interface HeaderOption {
  header: { key: string; value: string };
  appendAction?: number;
}

export function headerValue(options: HeaderOption[] | undefined, key: string): string | undefined {
  return options?.find((o) => o.header.key === key)?.header.value;
}

/**
 * Starts Signalbox on free loopback ports with a temp audit file; `yaml` adds config. Admin
 * endpoints accept {@link ADMIN_TOKEN} unless `env` replaces the environment the tokens come from.
 */
export async function startTestSignalbox(
  logger: Logger,
  settings: { jwksUrl?: string; bundle?: string; decision?: string; yaml?: string } & StartOptions = {},
): Promise<TestSignalbox> {
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-test-'));
  const auditPath = join(dir, 'audit.jsonl');
  const env: Record<string, string> = {
    SIGNALBOX_GRPC_ADDR: '127.0.0.1:0',
    SIGNALBOX_HTTP_ADDR: '127.0.0.1:0',
    SIGNALBOX_AUDIT_PATH: auditPath,
    ...(settings.jwksUrl ? { SIGNALBOX_JWKS_URL: settings.jwksUrl, SIGNALBOX_JWT_ISSUER: ISSUER, SIGNALBOX_JWT_AUDIENCE: AUDIENCE } : {}),
    ...(settings.bundle ? { SIGNALBOX_BUNDLE: settings.bundle } : {}),
    ...(settings.decision ? { SIGNALBOX_DECISION: settings.decision } : {}),
  };
  const config = parseConfig(settings.yaml ?? '', env, 'test');
  const running = await startSignalbox(config, logger, { env: { ...process.env, SIGNALBOX_ADMIN_TOKEN: ADMIN_TOKEN }, ...settings });
  const { clients } = loadServices();
  const client = new clients.Authorization(`127.0.0.1:${running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check: (req: object, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckResponse) => void) => void;
  };
  return {
    running,
    config,
    auditPath,
    check: (request, options = {}) =>
      new Promise((resolve, reject) => {
        client.Check(request, { deadline: Date.now() + (options.deadlineMs ?? 10_000) }, (error, response) =>
          error ? reject(error) : resolveCatalogued(response, resolve, reject),
        );
      }),
    close: async () => {
      client.close();
      await running.close();
    },
  };
}

/** A client of signalbox.v1.DecisionService/Decide on a running Signalbox's gRPC port. */
export function decideClient<Response>(grpcPort: number): { decide: (request: object) => Promise<Response>; close: () => void } {
  const client = new (loadServices().clients.DecisionService)(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure()) as unknown as {
    Decide: (req: object, cb: (e: grpc.ServiceError | null, r: Response) => void) => void;
    close: () => void;
  };
  return {
    decide: (request) => new Promise((resolve, reject) => client.Decide(request, (e, r) => (e ? reject(e) : resolve(r)))),
    close: () => client.close(),
  };
}

/** Resolves with a Check answer whose deny body, if any, carries only catalogued codes. */
export function resolveCatalogued(response: CheckResponse, resolve: (r: CheckResponse) => void, reject: (e: unknown) => void): void {
  try {
    assertCataloguedBody(response.deniedResponse?.body, 'Check');
    resolve(response);
  } catch (error) {
    reject(error);
  }
}

/** A CheckRequest as Envoy sends it for an HTTP request. */
export function checkRequest(options: {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  token?: string;
}): object {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] ??= String(Buffer.byteLength(options.body));
  }
  return {
    attributes: {
      source: { address: { socketAddress: { address: '127.0.0.1', portValue: 50000 } } },
      request: {
        time: { seconds: Math.floor(Date.now() / 1000) },
        http: {
          id: '1',
          method: options.method ?? 'POST',
          path: options.path ?? '/v1/chat/completions',
          host: 'llm.internal',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers,
          ...(options.body !== undefined ? { body: options.body, size: Buffer.byteLength(options.body) } : {}),
        },
      },
    },
  };
}
