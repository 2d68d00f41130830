/**
 * The HTTP listener (8181 by default, as OPA's): liveness and readiness for orchestrators, the
 * native API's usage reports, spend and provider health, and the HTTP doors gateways call
 * (each door is one entry of {@link HTTP_ROUTES}, implemented in its own adapter module).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { CADDY_AUTH_PATH, ENVOY_HTTP_PREFIX, NGINX_AUTH_PATH, handleAuthz } from './doors/http-authz.js';
import { LITELLM_GUARDRAIL_PATH, LITELLM_USAGE_PATH, handleLiteLlmGuardrail, handleLiteLlmUsage } from './doors/litellm.js';
import { OPA_DATA_PREFIX, handleOpaData } from './doors/opa-rest.js';
import type { ErrorCode } from '../core/codes.js';
import { SignalboxError, answerFor, describeCause } from '../core/errors.js';
import { readLimitedBody } from './doors/read-body.js';
import type { Logger } from '../core/log.js';
import type { DecisionPipeline } from '../decide/decide.js';
import type { ReportService } from '../enforce/report.js';
import type { HealthState } from './grpc.js';
import { METRICS_CONTENT_TYPE, type Metrics } from './metrics.js';
import type { AdminGuard } from './admin-auth.js';
import { principalOfSocket } from './peer.js';
import type { TlsFiles } from './tls.js';
import type { AuditChainStatus } from '../audit/status.js';
import type { BundleEvent } from '../bundles/history.js';
import { CONSOLE_PREFIX, redirectToConsole, serveConsoleAsset } from './console-assets.js';

/** What the console's own admin endpoints report, beyond spend and providers (wired in src/app/app.ts). */
export interface ConsoleSources {
  /** The active policy revision, where bundles come from, and the recent loads (newest first). */
  readonly policy: () => { readonly revision: string; readonly origin: string; readonly loads: readonly BundleEvent[] };
  /** Whether the audit trail verifies (bounded: src/audit/status.ts). */
  readonly audit: () => Promise<AuditChainStatus>;
}
import type { LedgerView } from '../ledger/ledger.js';
import { LEDGER_HANDLERS } from './ledger-routes.js';

/** What the HTTP endpoints and doors serve with, shared by every route handler. */
export interface HttpServerOptions {
  readonly health: HealthState;
  readonly revision: () => string;
  readonly reports: ReportService;
  readonly pipeline: DecisionPipeline;
  readonly logger: Logger;
  /** Served at GET /metrics; absent, /metrics answers 404. */
  readonly metrics?: Metrics;
  /** Who may call the routes marked `admin` (`server.admin`). */
  readonly admin: AdminGuard;
  /** Serves GET /v1/policy/status and /v1/audit/status; absent, they answer 404. */
  readonly console?: ConsoleSources;
  /** The spend ledger behind /v1/ledger/* (ledger.enabled); absent, those routes answer 503. */
  readonly ledger?: LedgerView;
}

/** One HTTP endpoint: how a path is matched, which methods it takes, and its handler. */
export interface HttpRoute {
  /** An exact path, or a prefix ending in "/" that matches everything below it. */
  readonly path: string;
  /** Methods answered; anything else is 405. Undefined: every method (a door mirroring the original request). */
  readonly methods?: readonly string[];
  /** An administrative route: the caller must pass {@link AdminGuard.authorize} first. */
  readonly admin?: true;
  readonly handle: (req: IncomingMessage, res: ServerResponse, url: URL, options: HttpServerOptions) => Promise<void>;
}

const MAX_REPORT_BYTES = 64 * 1024;

function errorBody(code: ErrorCode, message: string): unknown {
  return { error: { code, message } };
}

/** Answers a failed native call: our own errors by their catalogue entry, anything else as a generic 500. */
function fail(res: ServerResponse, error: unknown, logger: Logger): void {
  const answer = answerFor(error);
  if (answer.code === 'internal_error') logger.error({ code: 'internal_error', cause: describeCause(error) }, 'native HTTP call failed');
  json(res, answer.http, errorBody(answer.code, answer.text));
}

async function handleReport(req: IncomingMessage, res: ServerResponse, options: HttpServerOptions): Promise<void> {
  const { body: raw, overLimit } = await readLimitedBody(req, MAX_REPORT_BYTES);
  if (overLimit) throw new SignalboxError('report_malformed', `body larger than ${MAX_REPORT_BYTES} bytes`);
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

async function handleConsole(res: ServerResponse, options: HttpServerOptions, read: (sources: ConsoleSources) => unknown): Promise<void> {
  if (!options.console) json(res, 404, errorBody('request_malformed', 'not served by this process'));
  else json(res, 200, await read(options.console));
}

async function handleProviders(res: ServerResponse, options: HttpServerOptions): Promise<void> {
  json(res, 200, { providers: await options.reports.providers() });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  // Every native answer is data (spend, health, admin state): never kept by a browser or a proxy.
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * Every HTTP endpoint. Exact paths win over prefixes; among prefixes the longest wins. Doors
 * add their entry here and keep their mapping in src/transport/doors/.
 */
export const HTTP_ROUTES: readonly HttpRoute[] = [
  {
    path: '/health',
    methods: ['GET', 'HEAD'],
    handle: async (_req, res) => json(res, 200, { status: 'ok' }),
  },
  {
    path: '/ready',
    methods: ['GET', 'HEAD'],
    handle: async (_req, res, _url, options) => {
      // Answered from the state the readiness checks last set (src/app/readiness.ts): a probe costs no I/O.
      if (options.health.current === 'SERVING') json(res, 200, { status: 'ready', revision: options.revision() });
      else json(res, 503, { status: 'not_ready', reasons: options.health.reasons, revision: options.revision() });
    },
  },
  { path: '/v1/report', methods: ['POST'], admin: true, handle: (req, res, _url, options) => handleReport(req, res, options) },
  { path: '/v1/spend', methods: ['GET'], admin: true, handle: (_req, res, url, options) => handleSpend(url, res, options) },
  // The spend ledger: src/transport/ledger-routes.ts.
  ...Object.entries(LEDGER_HANDLERS).map(([path, handle]): HttpRoute => ({ path, methods: ['GET'], admin: true, handle })),
  { path: '/v1/providers', methods: ['GET'], handle: (_req, res, _url, options) => handleProviders(res, options) },
  // The management console: a public shell holding no data (src/transport/console-assets.ts), and the admin state it shows.
  { path: '/console', methods: ['GET', 'HEAD'], handle: (req, res) => redirectToConsole(req, res) },
  { path: CONSOLE_PREFIX, methods: ['GET', 'HEAD'], handle: (req, res, url) => serveConsoleAsset(req, res, url) },
  { path: '/v1/policy/status', methods: ['GET'], admin: true, handle: (_req, res, _url, options) => handleConsole(res, options, (c) => c.policy()) },
  { path: '/v1/audit/status', methods: ['GET'], admin: true, handle: (_req, res, _url, options) => handleConsole(res, options, (c) => c.audit()) },
  // OPA's REST Data API (generic OPA callers and Kong's OPA plugin): src/transport/doors/opa-rest.ts.
  { path: OPA_DATA_PREFIX, methods: ['POST', 'GET'], handle: (req, res, url, options) => handleOpaData(req, res, url, options) },
  // Prometheus text exposition format 0.0.4: src/transport/metrics.ts.
  {
    path: '/metrics',
    methods: ['GET', 'HEAD'],
    handle: async (_req, res, _url, options) => {
      if (!options.metrics) {
        json(res, 404, errorBody('request_malformed', 'metrics are not enabled'));
        return;
      }
      const text = await options.metrics.render();
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    },
  },
  // The HTTP authorization doors: every method, since each mirrors (or names) the original request.
  { path: ENVOY_HTTP_PREFIX, handle: (req, res, _url, options) => handleAuthz('envoy', req, res, options) },
  { path: NGINX_AUTH_PATH, handle: (req, res, _url, options) => handleAuthz('nginx', req, res, options) },
  { path: CADDY_AUTH_PATH, handle: (req, res, _url, options) => handleAuthz('caddy', req, res, options) },
  // LiteLLM: the Generic Guardrail API (pre-call decisions) and its generic_api usage log (settlement).
  { path: LITELLM_GUARDRAIL_PATH, methods: ['POST'], handle: (req, res, _url, options) => handleLiteLlmGuardrail(req, res, options) },
  // Settles holds, so administrative: LiteLLM's callback sends the admin token (examples/litellm/config.yaml).
  { path: LITELLM_USAGE_PATH, methods: ['POST'], admin: true, handle: (req, res, _url, options) => handleLiteLlmUsage(req, res, options) },
];

/** The route for a path: an exact match, else the longest matching prefix. */
export function matchRoute(routes: readonly HttpRoute[], path: string): HttpRoute | undefined {
  let best: HttpRoute | undefined;
  for (const route of routes) {
    if (route.path === path) return route;
    if (route.path.endsWith('/') && path.startsWith(route.path) && (!best || route.path.length > best.path.length)) best = route;
  }
  return best;
}

/**
 * Builds the HTTP server over `routes` ({@link HTTP_ROUTES} unless a caller narrows them), HTTPS
 * with the certificates `tls` keeps current when given; {@link listenHttp} starts it listening.
 */
export function createHttpServer(options: HttpServerOptions, routes: readonly HttpRoute[] = HTTP_ROUTES, tls?: TlsFiles): Server {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://signalbox');
    const route = matchRoute(routes, url.pathname);
    if (!route) {
      json(res, 404, errorBody('request_malformed', 'not found'));
      return;
    }
    if (route.methods && !route.methods.includes(req.method ?? '')) {
      res.setHeader('allow', route.methods.join(', '));
      json(res, 405, errorBody('request_malformed', `use ${route.methods.join(' or ')}`));
      return;
    }
    if (route.admin) {
      try {
        const token = req.headers['x-signalbox-admin-token'];
        options.admin.authorize({ authorization: req.headers.authorization, token: Array.isArray(token) ? token[0] : token, principal: principalOfSocket(req.socket) }, route.path);
      } catch (error) {
        if (error instanceof SignalboxError && error.code === 'admin_unauthenticated') res.setHeader('www-authenticate', 'Bearer realm="signalbox-admin"');
        // Unread, the body is dropped with the connection rather than buffered.
        res.setHeader('connection', 'close');
        fail(res, error, options.logger);
        return;
      }
    }
    route.handle(req, res, url, options).catch((error: unknown) => fail(res, error, options.logger));
  };
  let server: Server;
  if (tls) {
    const secure = createHttpsServer(tls.httpsOptions(), handler);
    tls.attach(secure);
    server = secure as unknown as Server;
  } else server = createServer(handler);
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return server;
}

/** Listens on `host:port` (IPv6 hosts in brackets); resolves the bound port, so port 0 picks a free one. */
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
