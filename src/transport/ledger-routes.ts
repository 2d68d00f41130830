/**
 * The spend ledger's HTTP API (README, "Spend ledger"), every route administrative (the admin
 * credential, deny by default): reports, recent denials, one decision's masked audit records,
 * the loader's status, and reconciliation against the live budget counters. Without an enabled
 * ledger each answers 503 ledger_unavailable.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignalboxError } from '../core/errors.js';
import type { LedgerView } from '../ledger/ledger.js';
import { parseReportQuery } from '../ledger/queries.js';
import type { ReportService } from '../enforce/report.js';

/** What the ledger's routes serve with (a narrow view of the HTTP server's options). */
export interface LedgerRouteOptions {
  readonly ledger?: LedgerView;
  readonly reports: Pick<ReportService, 'spend'>;
}

/** Where the ledger's routes live; `/v1/ledger/decisions/{id}` is a prefix route. */
export const LEDGER_PREFIX = '/v1/ledger/';

function ledgerOf(options: LedgerRouteOptions): LedgerView {
  if (!options.ledger) throw new SignalboxError('ledger_unavailable', 'the spend ledger is not enabled (ledger.enabled)');
  return options.ledger;
}

function json(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** `?fresh=1` loads what the audit files gained before answering (scripts and tests that just sent traffic). */
async function maybeLoad(url: URL, ledger: LedgerView): Promise<void> {
  if (url.searchParams.get('fresh') === '1') await ledger.loadNow();
}

/** One ledger route's handler. */
export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, options: LedgerRouteOptions) => Promise<void>;

const report: Handler = async (_req, res, url, options) => {
  const ledger = ledgerOf(options);
  const query = parseReportQuery({ by: url.searchParams.get('by'), since: url.searchParams.get('since'), until: url.searchParams.get('until'), bucket: url.searchParams.get('bucket') });
  await maybeLoad(url, ledger);
  json(res, { rows: await ledger.report(query) });
};

const denials: Handler = async (_req, res, url, options) => {
  const ledger = ledgerOf(options);
  const raw = url.searchParams.get('limit') ?? '50';
  const limit = Number(raw);
  if (!/^\d+$/.test(raw) || limit < 1 || limit > 1000) throw new SignalboxError('ledger_query_malformed', 'limit must be an integer from 1 to 1000');
  await maybeLoad(url, ledger);
  json(res, { denials: await ledger.denials(limit) });
};

const decision: Handler = async (_req, res, url, options) => {
  const ledger = ledgerOf(options);
  const id = decodeURIComponent(url.pathname.slice(`${LEDGER_PREFIX}decisions/`.length));
  if (id.length === 0 || id.length > 128 || id.includes('/')) throw new SignalboxError('ledger_query_malformed', 'the path must be /v1/ledger/decisions/{decision_id}');
  const records = await ledger.decision(id);
  json(res, { decision_id: id, entry: await ledger.entry(id), records });
};

const status: Handler = async (_req, res, _url, options) => json(res, await ledgerOf(options).status());

const reconcile: Handler = async (_req, res, url, options) => {
  const ledger = ledgerOf(options);
  await maybeLoad(url, ledger);
  // Counters first, then the ledger: a settlement landing in between shows as a difference, never hides one.
  const counters = await options.reports.spend(undefined, undefined);
  json(res, await ledger.reconcile(counters));
};

/** The ledger's handlers by path (http.ts marks every one admin and GET-only). */
export const LEDGER_HANDLERS: Readonly<Record<string, Handler>> = {
  [`${LEDGER_PREFIX}report`]: report,
  [`${LEDGER_PREFIX}denials`]: denials,
  [`${LEDGER_PREFIX}decisions/`]: decision,
  [`${LEDGER_PREFIX}status`]: status,
  [`${LEDGER_PREFIX}reconcile`]: reconcile,
};
