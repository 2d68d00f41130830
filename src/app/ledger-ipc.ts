/**
 * The embedded spend ledger with several workers. PGlite's database belongs to one process, so
 * the primary opens it and loads every worker's audit chain into it; each worker serves the
 * ledger's API by asking the primary over the cluster's IPC channel, as it reaches the in-memory
 * budget store. (With PostgreSQL every worker opens the shared database itself.)
 */
import { resolve } from 'node:path';
import { SignalboxError } from '../core/errors.js';
import { CODE_CATALOGUE, type ErrorCode } from '../core/codes.js';
import type { SignalboxConfig } from '../config/schema.js';
import type { Logger } from '../core/log.js';
import type { LedgerView, SpendLedger } from '../ledger/ledger.js';

/** The ledger methods a worker may call on the primary's ledger. */
export type LedgerMethod = keyof LedgerView;

const METHODS: ReadonlySet<string> = new Set<LedgerMethod>(['loadNow', 'report', 'denials', 'decision', 'entry', 'reconcile', 'status']);

/** A worker's call. */
export interface LedgerCall {
  readonly type: 'signalbox:ledger';
  readonly request: number;
  readonly method: LedgerMethod;
  readonly args: readonly unknown[];
}

/** The primary's answer: the result, or the error's stable code and message. */
export interface LedgerReply {
  readonly type: 'signalbox:ledger-reply';
  readonly request: number;
  readonly result?: unknown;
  readonly error?: { readonly code: string; readonly message: string };
}

/** True for a worker's ledger call. */
export function isLedgerCall(message: unknown): message is LedgerCall {
  return (message as { type?: unknown } | null)?.type === 'signalbox:ledger';
}

/** True for the primary's answer to one. */
export function isLedgerReply(message: unknown): message is LedgerReply {
  return (message as { type?: unknown } | null)?.type === 'signalbox:ledger-reply';
}

/** How long a worker waits for the primary's answer. */
const CALL_TIMEOUT_MS = 30_000;

/** A worker's view of the primary's ledger. */
export class IpcLedgerClient implements LedgerView {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();

  constructor(private readonly send: (message: LedgerCall) => void) {}

  /** Hands the primary's answer to the call that waits for it. */
  receive(reply: LedgerReply): void {
    const waiting = this.waiting.get(reply.request);
    if (!waiting) return;
    this.waiting.delete(reply.request);
    clearTimeout(waiting.timer);
    if (reply.error) {
      const code: ErrorCode = Object.hasOwn(CODE_CATALOGUE, reply.error.code) ? (reply.error.code as ErrorCode) : 'internal_error';
      waiting.reject(new SignalboxError(code, reply.error.message));
    } else {
      waiting.resolve(reply.result);
    }
  }

  /** The channel to the primary closed: every waiting call fails. */
  disconnected(): void {
    for (const [request, waiting] of this.waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(new SignalboxError('ledger_unavailable', 'the primary process, which holds the embedded ledger, is gone'));
      this.waiting.delete(request);
    }
  }

  private call<T>(method: LedgerMethod, ...args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const request = this.next++;
      const timer = setTimeout(() => {
        this.waiting.delete(request);
        reject(new SignalboxError('ledger_unavailable', 'the primary process did not answer the ledger call in time'));
      }, CALL_TIMEOUT_MS);
      timer.unref();
      this.waiting.set(request, { resolve: resolve as (value: unknown) => void, reject, timer });
      try {
        this.send({ type: 'signalbox:ledger', request, method, args });
      } catch (error) {
        this.receive({ type: 'signalbox:ledger-reply', request, error: { code: 'ledger_unavailable', message: `cannot reach the primary process: ${String(error)}` } });
      }
    });
  }

  loadNow: LedgerView['loadNow'] = () => this.call('loadNow');
  report: LedgerView['report'] = (query) => this.call('report', query);
  denials: LedgerView['denials'] = (limit) => this.call('denials', limit);
  decision: LedgerView['decision'] = (decisionId) => this.call('decision', decisionId);
  entry: LedgerView['entry'] = (decisionId) => this.call('entry', decisionId);
  reconcile: LedgerView['reconcile'] = (counters) => this.call('reconcile', counters);
  status: LedgerView['status'] = () => this.call('status');

  /** Nothing to close in a worker: the primary owns the database. */
  async close(): Promise<void> {
    this.disconnected();
  }
}

/** Dates travel as text over the channel; a report's period comes back as Dates. */
function revived(method: LedgerMethod, args: readonly unknown[]): unknown[] {
  if (method !== 'report') return [...args];
  const query = { ...(args[0] as Record<string, unknown>) };
  for (const key of ['since', 'until']) if (typeof query[key] === 'string') query[key] = new Date(query[key] as string);
  return [query];
}

/** Answers one worker's call with the primary's ledger (or `ledger_unavailable` without one). */
export async function answerLedgerCall(ledger: SpendLedger | undefined, call: LedgerCall): Promise<LedgerReply> {
  try {
    if (!ledger) throw new SignalboxError('ledger_unavailable', 'the spend ledger is not enabled (ledger.enabled)');
    if (!METHODS.has(call.method)) throw new SignalboxError('internal_error', `no ledger method ${String(call.method)}`);
    const method = ledger[call.method] as (...args: unknown[]) => Promise<unknown>;
    return { type: 'signalbox:ledger-reply', request: call.request, result: await method.apply(ledger, revived(call.method, call.args)) };
  } catch (error) {
    const code = error instanceof SignalboxError ? error.code : 'internal_error';
    const message = error instanceof SignalboxError ? error.message : 'the ledger call failed';
    return { type: 'signalbox:ledger-reply', request: call.request, error: { code, message } };
  }
}

/**
 * Opens the ledger of `config`, loading the audit files when `load`. Imported on demand, so a
 * primary without an embedded ledger never loads the database code.
 */
export async function openSpendLedger(config: SignalboxConfig, logger: Logger, env: NodeJS.ProcessEnv, load: boolean): Promise<SpendLedger> {
  const { SpendLedger } = await import('../ledger/ledger.js');
  return SpendLedger.open(config.ledger, {
    auditPath: resolve(config.audit.path),
    holdTtlMs: config.budgets.hold_ttl_ms,
    expiredHolds: config.budgets.expired_holds,
    logger,
    env,
    load,
  });
}
