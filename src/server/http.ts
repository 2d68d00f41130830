/**
 * The HTTP listener (8181 by default, as OPA's): liveness and readiness for orchestrators.
 * Later doors (ext_authz HTTP mode, auth_request, OPA's REST API) attach here.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { HealthState } from './grpc.js';

export interface HttpServerOptions {
  readonly health: HealthState;
  readonly revision: () => string;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function createHttpServer(options: HttpServerOptions): Server {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
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
