/**
 * Reservations refused to their caller but possibly made in Redis, waiting to be given back.
 *
 * A reservation whose reply does not arrive in time (command timeout, dropped connection) is
 * answered 503, yet the script may have run, or may still run: a command stalled on a slow
 * connection reaches Redis late. Each such hold id is queued here and cancelled by
 * CANCEL_SCRIPT as soon as Redis answers again: it undoes what the reservation took, or leaves
 * a tombstone that makes the late reservation a no-op. Cancelling is idempotent, so a cancel
 * that itself times out is simply sent again, on a timer and whenever the client reconnects.
 *
 * The queue lives in this process: if the process dies first, a hold taken by a refused request
 * stays until it expires (`budgets.hold_ttl_ms`), as before.
 */
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { luaList } from './redis-wire.js';

/** A hold to give back, with what its reservation used. */
export interface PendingCancel {
  readonly holdId: string;
  readonly partition: string;
  /** The reservation's clock: the cancel judges hold expiry and bucket refills at the same instant. */
  readonly nowMs: number;
  readonly holdTtlMs: number;
  readonly retentionMs: number;
}

/** What sending one cancel did: the hold was given back, only a tombstone was left, or there was nothing to do. */
export type CancelOutcome = 'cancelled' | 'tombstoned' | 'settled' | 'already_cancelled';

/** Retry interval while Redis does not answer. */
const RETRY_MS = 250;

/**
 * The pending cancels of one store, retried until Redis answers. A cancel that cannot be sent
 * for hold_ttl + retention is dropped: by then the hold has expired and its record is gone.
 */
export class CancellationQueue {
  private readonly pending = new Map<string, { readonly cancel: PendingCancel; readonly giveUpAt: number }>();
  private readonly inFlight = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly send: (cancel: PendingCancel) => Promise<CancelOutcome>,
    private readonly logger: Logger,
  ) {}

  /** How many refused reservations are still to be given back. */
  get size(): number {
    return this.pending.size;
  }

  /** Queues a hold id and tries at once (on the same connection, so after the reservation itself). */
  add(cancel: PendingCancel): void {
    if (this.closed) return;
    this.pending.set(cancel.holdId, { cancel, giveUpAt: Date.now() + cancel.holdTtlMs + cancel.retentionMs });
    this.attempt(cancel.holdId);
  }

  /** Tries every pending cancel now (the client has just reconnected). */
  flush(): void {
    for (const holdId of this.pending.keys()) this.attempt(holdId);
  }

  /** Resolves true once nothing is pending, false after `timeoutMs` (tests, shutdown). */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.pending.size === 0) return true;
    return new Promise((resolve) => {
      const timeout = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timeout);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }

  /** Stops retrying; says how many refused reservations stay held until they expire. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.pending.size > 0) {
      this.logger.warn({ code: 'budget_store_unavailable', pending: this.pending.size }, 'closing with reservations refused after a store error not yet given back; they expire with their hold');
    }
  }

  private attempt(holdId: string): void {
    const entry = this.pending.get(holdId);
    if (!entry || this.inFlight.has(holdId) || this.closed) return;
    this.inFlight.add(holdId);
    this.send(entry.cancel).then(
      (outcome) => {
        this.inFlight.delete(holdId);
        this.pending.delete(holdId);
        if (outcome === 'cancelled') this.logger.info({ hold_id: holdId }, 'gave back a reservation whose caller was refused after a store error');
        else this.logger.debug({ hold_id: holdId, outcome }, 'cancelled a reservation whose caller was refused after a store error');
        if (this.pending.size === 0) this.wake();
      },
      (error: unknown) => {
        this.inFlight.delete(holdId);
        if (Date.now() > entry.giveUpAt) {
          this.pending.delete(holdId);
          this.logger.warn({ hold_id: holdId, code: 'budget_store_unavailable', cause: describeCause(error) }, 'gave up giving back a refused reservation; its hold has expired');
          if (this.pending.size === 0) this.wake();
          return;
        }
        this.schedule();
      },
    );
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, RETRY_MS);
    this.timer.unref();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** What cancelling needs from the store: the hold record's key lists, and CANCEL_SCRIPT. */
export interface CancelPort {
  /** HMGET of the record's budgets, rates and loop fields. */
  readRecord(holdKey: string): Promise<Array<string | null>>;
  runCancel(keys: readonly string[], payload: unknown): Promise<string>;
}

/**
 * Gives back one refused reservation (CANCEL_SCRIPT): reads which keys its record names, so the
 * script declares every key it touches (Cluster requires it), then runs it; again when a late
 * reservation wrote the record in between (`stale`).
 */
export async function cancelHold(port: CancelPort, holdKey: string, c: PendingCancel, charge: boolean): Promise<CancelOutcome> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const [budgetsJson, ratesJson, loopJson] = await port.readRecord(holdKey);
    const keys = [holdKey];
    for (const [bk, zk] of luaList<[string, string]>(budgetsJson)) keys.push(bk, zk);
    for (const [rk] of luaList<[string]>(ratesJson)) keys.push(rk);
    const loop = luaList<string>(loopJson);
    if (loop[0] !== undefined) keys.push(loop[0]);
    const raw = await port.runCancel(keys, {
      id: c.holdId,
      now: c.nowMs,
      charge,
      tombstone_ttl: c.holdTtlMs + c.retentionMs,
      retention: c.retentionMs,
      keys: keys.length,
    });
    const outcome = (JSON.parse(raw) as { outcome: string }).outcome;
    if (outcome === 'stale') continue;
    if (outcome === 'cancelled' || outcome === 'tombstoned' || outcome === 'settled') return outcome;
    return 'already_cancelled';
  }
  throw new Error('the hold record kept changing while it was being cancelled');
}
