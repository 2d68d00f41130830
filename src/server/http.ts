/**
 * The HTTP listener (8181 by default, as OPA's): liveness and readiness for orchestrators, and
 * the native API's usage reports and spend queries. Later doors (ext_authz HTTP mode,
 * auth_request, OPA's REST API) attach here.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { SignalboxError, describeCause, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { ReportService } from '../pipeline/report.js';
import type { HealthState } from './grpc.js';

export interface HttpServerOptions {
  readonly health: HealthState;
  readonly revision: () => string;
  readonly reports: ReportService;
  readonly logger: Logger;
}

const MAX_REPORT_BYTES = 64 * 1024;

/** HTTP status per error code the native endpoints can answer with. */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  request_malformed: 400,
  report_malformed: 400,
  hold_not_found: 404,
  budget_store_unavailable: 503,
};

function errorBody(code: ErrorCode, message: string): unknown {
  return { error: { code, message } };
}

/** Answers a failed native call: our own errors by code, anything else as a generic 500. */
function fail(res: ServerResponse, error: unknown, logger: Logger): void {
  if (error instanceof SignalboxError && HTTP_STATUS[error.code]) {
    json(res, HTTP_STATUS[error.code] as number, errorBody(error.code, error.code === 'budget_store_unavailable' ? 'the budget store did not answer; retry' : error.message));
    return;
  }
  logger.error({ code: 'internal_error', cause: describeCause(error) }, 'native HTTP call failed');
  json(res, 500, errorBody('internal_error', 'internal error'));
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new SignalboxError('report_malformed', `body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function handleReport(req: IncomingMessage, res: ServerResponse, options: HttpServerOptions): Promise<void> {
  const raw = await readBody(req, MAX_REPORT_BYTES);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new SignalboxError('report_malformed', 'the body is not JSON');
  }
  json(res, 200, await options.reports.report('signalbox.v1.http', body));
}

async function handleSpend(url: URL, res: ServerResponse, options: HttpServerOptions): Promise<void> {
  const scope = url.searchParams.get('scope') ?? undefined;
  const window = url.searchParams.get('window') ?? undefined;
  json(res, 200, { budgets: await options.reports.spend(scope, window) });
}

async function handleProviders(res: ServerResponse, options: HttpServerOptions): Promise<void> {
  json(res, 200, { providers: await options.reports.providers() });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function createHttpServer(options: HttpServerOptions): Server {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://signalbox');
    const path = url.pathname;
    if (path === '/v1/report' || path === '/v1/spend' || path === '/v1/providers') {
      const expected = path === '/v1/report' ? 'POST' : 'GET';
      if (req.method !== expected) {
        res.setHeader('allow', expected);
        json(res, 405, errorBody('request_malformed', `use ${expected}`));
        return;
      }
      const handled =
        path === '/v1/report' ? handleReport(req, res, options) : path === '/v1/spend' ? handleSpend(url, res, options) : handleProviders(res, options);
      handled.catch((error: unknown) => fail(res, error, options.logger));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: { code: 'request_malformed', message: 'method not allowed' } });
      return;
    }
    if (path === '/health') {
      json(res, 200, { status: 'ok' });
      return;
    }
    if (path === '/ready') {
      const serving = options.health.current === 'SERVING';
      json(res, serving ? 200 : 503, { status: serving ? 'ready' : 'not_ready', revision: options.revision() });
      return;
    }
    json(res, 404, { error: { code: 'request_malformed', message: 'not found' } });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return server;
}

export function listenHttp(server: Server, address: string): Promise<number> {
  const index = address.lastIndexOf(':');
  const host = address.slice(0, index).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(index + 1));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const bound = server.address();
      resolve(typeof bound === 'object' && bound ? bound.port : port);
    });
  });
}
