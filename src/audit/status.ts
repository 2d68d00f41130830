/**
 * Whether this server's audit trail still verifies, for the console's "audit chain" panel
 * (`GET /v1/audit/status`). It runs the same verification as `signalbox audit verify`
 * (verify-log.ts) over the audit directory, in the background and bounded:
 *
 * - at most one verification runs at a time, and a finished one is reused for `minIntervalMs`,
 *   so a console left open (or many of them) costs one pass per interval, not one per request;
 * - a caller waits at most `waitMs`; past that it gets the previous result marked `checking`,
 *   and the pass finishes on its own (the reads are streamed, so it yields to decisions between
 *   chunks rather than holding the event loop).
 *
 * The answer names files by their base name and says where the first break is, never a record's
 * content.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { verifyAuditLog, type LogVerifyReport } from './verify-log.js';

/** What the console shows about the audit chain. */
export interface AuditChainStatus {
  /** `intact`: every chain verifies; `broken`: one does not (or a worker's file is missing); `unavailable`: nothing to verify yet or the files cannot be read; `checking`: the first pass has not finished. */
  readonly state: 'intact' | 'broken' | 'unavailable' | 'checking';
  /** When the reported pass finished (ISO 8601); null before the first. */
  readonly checked_at: string | null;
  readonly duration_ms: number | null;
  /** Records verified, over every chain and file. */
  readonly records: number;
  readonly chains: readonly { readonly name: string; readonly ok: boolean; readonly records: number; readonly files: number }[];
  /** The first break: the file (base name), line and problem. */
  readonly first_break?: { readonly file: string; readonly line: number; readonly seq: number | null; readonly problem: string };
  /** Worker files a `workers` record names that are missing. */
  readonly missing: readonly string[];
  /** True when a pass is running now (the answer is the previous one). */
  readonly stale: boolean;
  /** Why the state is `unavailable`. */
  readonly detail?: string;
}

/** How a {@link AuditChainMonitor} verifies. */
export interface AuditChainMonitorOptions {
  /** The audit file or directory to verify (the directory of `audit.path`, with its rotated and worker files). */
  readonly target: string;
  readonly logger: Logger;
  /** A finished pass is reused this long. Default 30 s. */
  readonly minIntervalMs?: number;
  /** How long a caller waits for a pass before getting the previous answer. Default 2 s. */
  readonly waitMs?: number;
  /** How long to wait before verifying again a file whose last line is partial (a write in progress). Default 200 ms. */
  readonly tornRetryMs?: number;
}

/** Verifies the audit trail on demand, at most once per interval, one pass at a time. */
export class AuditChainMonitor {
  readonly #options: Required<Omit<AuditChainMonitorOptions, 'logger' | 'target'>> & Pick<AuditChainMonitorOptions, 'logger' | 'target'>;
  #last: AuditChainStatus | undefined;
  #lastAt = 0;
  #running: Promise<AuditChainStatus> | undefined;

  constructor(options: AuditChainMonitorOptions) {
    this.#options = { minIntervalMs: 30_000, waitMs: 2_000, tornRetryMs: 200, ...options };
  }

  /** The latest status: a fresh pass when the last one is older than the interval, bounded by `waitMs`. */
  async status(now: number = Date.now()): Promise<AuditChainStatus> {
    if (this.#last && !this.#running && now - this.#lastAt < this.#options.minIntervalMs) return this.#last;
    const pass = (this.#running ??= this.#verify().finally(() => {
      this.#running = undefined;
    }));
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<undefined>((done) => {
      timer = setTimeout(() => done(undefined), this.#options.waitMs);
      timer.unref();
    });
    const result = await Promise.race([pass, waited]);
    clearTimeout(timer);
    if (result) return result;
    return { ...(this.#last ?? emptyStatus('checking')), stale: true };
  }

  async #verify(): Promise<AuditChainStatus> {
    const started = Date.now();
    let status: AuditChainStatus;
    try {
      await stat(this.#options.target);
      let report = await verifyAuditLog(this.#options.target);
      // A partial last line of the live file is usually a write in progress: look again once.
      if (report.firstBreak?.problem === 'torn_tail') {
        await new Promise((done) => setTimeout(done, this.#options.tornRetryMs));
        report = await verifyAuditLog(this.#options.target);
      }
      status = fromReport(report, started);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.#options.logger.warn({ path: this.#options.target, problem: describeCause(error) }, 'audit chain status: cannot verify');
      status = { ...emptyStatus('unavailable'), checked_at: new Date().toISOString(), duration_ms: Date.now() - started, detail: code === 'ENOENT' ? 'no audit file yet' : 'the audit files cannot be read' };
    }
    this.#last = status;
    this.#lastAt = Date.now();
    return status;
  }
}

function emptyStatus(state: AuditChainStatus['state']): AuditChainStatus {
  return { state, checked_at: null, duration_ms: null, records: 0, chains: [], missing: [], stale: false };
}

function fromReport(report: LogVerifyReport, started: number): AuditChainStatus {
  const brk = report.firstBreak;
  return {
    state: report.ok ? 'intact' : 'broken',
    checked_at: new Date().toISOString(),
    duration_ms: Date.now() - started,
    records: report.records,
    chains: report.chains.map((chain) => ({ name: chain.name, ok: chain.ok, records: chain.records, files: chain.files.length })),
    ...(brk ? { first_break: { file: basename(brk.file), line: brk.line, seq: brk.seq, problem: brk.problem } } : {}),
    missing: report.missing,
    stale: false,
  };
}
