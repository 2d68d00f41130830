/**
 * Readiness: whether this process can decide requests the way its config says, not only whether it
 * is alive. It is not ready while the JWKS has never been fetched (every token would be denied)
 * or the budget store cannot be reached (every request that reserves would be denied).
 *
 * Polled, not computed per probe: every `server.ready_check_ms` the checks run once, all at once,
 * each bounded by its own timeout (a Redis PING by `store.command_timeout_ms`, a JWKS fetch by
 * `identity.jwks_timeout_ms`) and by {@link CHECK_TIMEOUT_MS} on top; the next round starts only
 * after the last one ended. So a probe (`/ready`, gRPC health) costs no I/O however often
 * orchestrators and Envoy ask, and the dependencies see one PING per interval per process. The
 * result goes to {@link HealthState}, which tells gRPC Watch streams of a change; each change is
 * logged with its reasons. With several workers, each runs its own checks and answers for itself.
 */
import type { ErrorCode } from '../core/codes.js';
import { describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { HealthState } from '../transport/grpc.js';

/** One dependency readiness needs: the code `/ready` names while it is missing. */
export interface ReadinessCheck {
  readonly code: ErrorCode;
  /** Resolves true when the dependency is there; false or a rejection when it is not. */
  readonly ok: () => Promise<boolean>;
}

/** A check that has not answered in this long counts as failed, whatever its own timeout. */
export const CHECK_TIMEOUT_MS = 10_000;

/** Runs the readiness checks on a timer and keeps {@link HealthState} and the log in step with them. */
export class ReadinessMonitor {
  readonly #checks: readonly ReadinessCheck[];
  readonly #health: HealthState;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** The reasons last logged; undefined before the first round. */
  #last: string | undefined;
  #stopped = false;

  constructor(options: { checks: readonly ReadinessCheck[]; health: HealthState; logger: Logger; intervalMs: number }) {
    this.#checks = options.checks;
    this.#health = options.health;
    this.#logger = options.logger;
    this.#intervalMs = options.intervalMs;
  }

  /** Runs every check once and publishes the result; concurrent callers share one round. */
  check(): Promise<void> {
    this.#running ??= this.#round().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Runs a first round now (resolving when it is done), then one every interval until {@link stop}. */
  async start(): Promise<void> {
    await this.check();
    this.#schedule();
  }

  /** Stops the timer; resolves once a round under way has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.check().then(() => this.#schedule());
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async #round(): Promise<void> {
    const results = await Promise.all(this.#checks.map((check) => this.#run(check)));
    if (this.#stopped) return;
    const failed = this.#checks.flatMap((check, i) => (results[i]?.ok ? [] : [{ code: check.code, cause: results[i]?.cause }]));
    const codes = [...new Set(failed.map((f) => f.code))];
    this.#health.setProblems(codes);
    const key = codes.join(',');
    if (key === this.#last) return;
    const first = this.#last === undefined;
    this.#last = key;
    if (codes.length > 0) {
      // The causes are our own dependencies' errors (a refused connection, a timeout), never a caller's data.
      const causes = Object.fromEntries(failed.flatMap((f) => (f.cause ? [[f.code, f.cause]] : [])));
      this.#logger.warn({ reasons: codes, causes }, `not ready: ${codes.join(', ')}`);
    } else if (!first) {
      this.#logger.info('ready again: every dependency answers');
    }
  }

  async #run(check: ReadinessCheck): Promise<{ ok: boolean; cause?: string }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<{ ok: boolean; cause: string }>((done) => {
      timer = setTimeout(() => done({ ok: false, cause: `no answer in ${CHECK_TIMEOUT_MS} ms` }), CHECK_TIMEOUT_MS);
      timer.unref();
    });
    try {
      return await Promise.race([check.ok().then((ok) => ({ ok }), (error: unknown) => ({ ok: false, cause: describeCause(error) })), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
