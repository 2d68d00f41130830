/**
 * All cores: `signalbox serve` with `server.workers` > 1 runs one primary process and that many
 * workers (node:cluster), which share the gRPC and HTTP ports (the primary accepts connections
 * and hands them to the workers in turn).
 *
 * The primary serves no request. It validates the config and loads the policy once (a bad one
 * fails the start once, never a crash loop), then:
 * - owns what must be one: the in-memory enforcement store (workers reach it through
 *   src/enforce/ipc-store.ts; with Redis each worker connects itself, as a replica does);
 * - watches the bundle file or polls the bundle server, and hands every activated bundle to
 *   every worker, so one process verifies and downloads and all switch together;
 * - answers GET /metrics for any worker with every worker's metrics summed;
 * - restarts a worker that dies (with backoff; a crash loop stops the service, non-zero);
 * - on SIGTERM or SIGINT has every worker drain its calls, and exits once all have.
 *
 * Each worker is a whole Signalbox (app.ts) with its own audit chain (src/audit/worker-chains.ts).
 * A worker whose primary dies exits at once (node:cluster does so when the IPC channel closes).
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { SignalboxConfig } from '../config/schema.js';
import { backoffDelayMs } from '../core/backoff.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { IpcStoreClient, answerStoreRequests, isStoreChanged, isStoreReplies, isStoreRequests, type StoreChanged, type StoreReplies, type StoreRequests } from '../enforce/ipc-store.js';
import { MemoryStore } from '../enforce/memory-store.js';
import type { SpendLedger } from '../ledger/ledger.js';
import { IpcLedgerClient, answerLedgerCall, isLedgerCall, isLedgerReply, openSpendLedger, type LedgerCall, type LedgerReply } from './ledger-ipc.js';
import { PolicySource, type ActiveBundle } from '../bundles/source.js';
import { Metrics, aggregateSnapshots, type MetricsSnapshot } from '../transport/metrics.js';
import { resolveBundlePath } from '../core/paths.js';
import type { RunningSignalbox } from './app.js';
import { workerProcessSettings } from './worker-memory.js';
import { autoWorkerCount, cgroupCpuLimit, type CpuLimit } from './cpu-limit.js';

/** How many processes `serve` runs, and for `auto` the CPU limit that capped them, if any. */
export interface WorkerPlan {
  readonly workers: number;
  readonly cpuLimit?: CpuLimit;
}

/**
 * How many processes `serve` runs for this config: `server.workers`; auto is the CPUs this
 * process may run on (its affinity), capped by its cgroup's CPU limit rounded up (cpu-limit.ts).
 */
export function workerPlan(config: SignalboxConfig, cpuLimit: () => CpuLimit | undefined = cgroupCpuLimit): WorkerPlan {
  if (config.server.workers !== 'auto') return { workers: config.server.workers };
  const available = availableParallelism();
  const limit = cpuLimit();
  const workers = autoWorkerCount(available, limit);
  return limit && workers < available ? { workers, cpuLimit: limit } : { workers };
}

/** More unexpected worker exits than this within {@link CRASH_WINDOW_MS} is a crash loop: the primary gives up. */
export const MAX_CRASHES = 5;
/** The window crash-loop detection counts exits in. */
export const CRASH_WINDOW_MS = 60_000;
/** The longest wait before a crashed worker is started again. */
const MAX_RESTART_DELAY_MS = 10_000;
/** How long a GET /metrics waits for every worker's numbers. */
const METRICS_TIMEOUT_MS = 5_000;

/** Primary → worker. */
type ToWorker =
  | { readonly type: 'signalbox:start'; readonly id: number; readonly workers: number; readonly config: SignalboxConfig; readonly bundle: ActiveBundle }
  | { readonly type: 'signalbox:bundle'; readonly bundle: ActiveBundle }
  | { readonly type: 'signalbox:metrics-collect'; readonly request: number }
  | { readonly type: 'signalbox:metrics-reply'; readonly request: number; readonly text?: string; readonly error?: string }
  | StoreReplies
  | StoreChanged
  | LedgerReply;

/** Worker → primary. */
type ToPrimary =
  | { readonly type: 'signalbox:hello' }
  | { readonly type: 'signalbox:ready'; readonly grpcPort: number; readonly httpPort: number }
  | { readonly type: 'signalbox:metrics'; readonly request: number }
  | { readonly type: 'signalbox:metrics-snapshot'; readonly request: number; readonly snapshot: MetricsSnapshot }
  | StoreRequests
  | LedgerCall;

/** A GET /metrics being answered: whose numbers are still awaited. */
interface Gathering {
  readonly snapshots: MetricsSnapshot[];
  readonly waiting: Set<number>;
  readonly answer: (text: string | undefined, error?: string) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The primary: starts `workers` workers and supervises them until SIGTERM or SIGINT (resolves 0
 * once every worker has drained and exited) or a failure (resolves 1: a worker could not start,
 * or workers keep crashing). Throws, before any worker starts, when the policy cannot be loaded.
 */
export async function runPrimary(config: SignalboxConfig, logger: Logger, workers: number): Promise<number> {
  // Structured clone on the IPC channel: bundle bytes travel as bytes, not as JSON arrays.
  const workerProcess = workerProcessSettings(config.server.worker_memory, process.execArgv, process.env);
  cluster.setupPrimary({ serialization: 'advanced', execArgv: workerProcess.execArgv });
  const live = new Map<number, Worker>();
  const ready = new Set<number>();
  const send = (worker: Worker, message: ToWorker): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const metrics = new Metrics({ processMetrics: false });
  const store = config.store.type === 'memory' ? new MemoryStore(config.budgets.expired_holds) : undefined;
  let policy: PolicySource;
  try {
    policy = await PolicySource.open({
      config: config.policy,
      bundlePath: resolveBundlePath(config.policy.bundle),
      logger,
      observe: metrics.onBundle,
      onActivate: (bundle) => {
        for (const worker of live.values()) send(worker, { type: 'signalbox:bundle', bundle });
      },
    });
  } catch (error) {
    await store?.close();
    throw error;
  }
  // The embedded ledger's database belongs to one process: this one, loading every worker's chain.
  let ledger: SpendLedger | undefined;
  try {
    if (config.ledger.enabled && config.ledger.database === 'embedded') ledger = await openSpendLedger(config, logger, process.env, true);
  } catch (error) {
    await policy.close();
    await store?.close();
    throw error;
  }

  let phase: 'starting' | 'serving' | 'stopping' = 'starting';
  let exitCode = 0;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  const crashes: number[] = [];
  const gatherings = new Map<number, Gathering>();
  let nextGathering = 1;
  let forceTimer: NodeJS.Timeout | undefined;

  const done = async (): Promise<void> => {
    if (forceTimer) clearTimeout(forceTimer);
    await policy.close();
    await store?.close();
    // The workers' audit files are flushed: load what they gained, then close the database.
    await ledger?.loadNow().catch(() => undefined);
    await ledger?.close();
    logger.info({ exit_code: exitCode }, 'signalbox stopped');
    finish(exitCode);
  };

  const stop = (): void => {
    if (phase === 'stopping') return;
    phase = 'stopping';
    for (const worker of live.values()) worker.process.kill('SIGTERM');
    // A worker that does not finish draining in its grace (plus start-up of its shutdown) is cut.
    forceTimer = setTimeout(() => {
      for (const [id, worker] of live) {
        logger.error({ worker: id, pid: worker.process.pid }, 'worker did not stop in time; killing it');
        worker.process.kill('SIGKILL');
      }
    }, config.server.shutdown_grace_ms + 5_000);
    if (live.size === 0) void done();
  };

  const gatherMetrics = (asking: Worker, request: number): void => {
    const id = nextGathering++;
    const answer = (text: string | undefined, error?: string): void => {
      const gathering = gatherings.get(id);
      if (!gathering) return;
      gatherings.delete(id);
      clearTimeout(gathering.timer);
      send(asking, { type: 'signalbox:metrics-reply', request, ...(text !== undefined ? { text } : { error: error ?? 'no metrics' }) });
    };
    const targets = [...live.entries()].filter(([wid, worker]) => ready.has(wid) && worker.isConnected());
    const gathering: Gathering = {
      snapshots: [],
      waiting: new Set(targets.map(([wid]) => wid)),
      answer,
      timer: setTimeout(() => answer(undefined, `workers ${[...(gatherings.get(id)?.waiting ?? [])].join(', ')} did not report their metrics in time`), METRICS_TIMEOUT_MS),
    };
    gatherings.set(id, gathering);
    metrics.snapshot().then(
      (own) => {
        gathering.snapshots.push(own);
        for (const [, worker] of targets) send(worker, { type: 'signalbox:metrics-collect', request: id });
        settleGathering(id);
      },
      (error: unknown) => answer(undefined, describeCause(error)),
    );
  };

  const settleGathering = (id: number): void => {
    const gathering = gatherings.get(id);
    if (!gathering || gathering.waiting.size > 0 || gathering.snapshots.length === 0) return;
    aggregateSnapshots(gathering.snapshots).then(
      (text) => gathering.answer(text),
      (error: unknown) => gathering.answer(undefined, describeCause(error)),
    );
  };

  const onMessage = (id: number, worker: Worker, message: ToPrimary): void => {
    if (isLedgerCall(message)) {
      void answerLedgerCall(ledger, message).then((reply) => send(worker, reply));
      return;
    }
    if (isStoreRequests(message)) {
      answerStoreRequests(store, message).then(({ replies, changed }) => {
        // Every worker drops its stale copies before the sender hears the answer (channel order).
        if (changed) for (const other of live.values()) send(other, changed);
        send(worker, replies);
      });
      return;
    }
    switch (message.type) {
      case 'signalbox:hello':
        send(worker, { type: 'signalbox:start', id, workers, config, bundle: policy.bundle });
        return;
      case 'signalbox:ready':
        ready.add(id);
        if (phase === 'starting' && ready.size === workers) {
          phase = 'serving';
          policy.start();
          logger.info(
            { workers, grpc_port: message.grpcPort, http_port: message.httpPort, revision: policy.revision, decision: config.policy.decision, bundle: policy.origin, store: config.store.type },
            'signalbox serving',
          );
        } else if (phase === 'serving') {
          logger.info({ worker: id, pid: worker.process.pid }, 'worker restarted');
        }
        return;
      case 'signalbox:metrics':
        gatherMetrics(worker, message.request);
        return;
      case 'signalbox:metrics-snapshot': {
        const gathering = gatherings.get(message.request);
        if (!gathering || !gathering.waiting.delete(id)) return;
        gathering.snapshots.push(message.snapshot);
        settleGathering(message.request);
        return;
      }
    }
  };

  const onExit = (id: number, worker: Worker, code: number | null, signal: string | null): void => {
    if (live.get(id) === worker) live.delete(id);
    ready.delete(id);
    for (const [gid, gathering] of gatherings) if (gathering.waiting.delete(id)) settleGathering(gid);
    if (phase === 'stopping') {
      if (live.size === 0) void done();
      return;
    }
    if (phase === 'starting') {
      logger.error({ worker: id, exit_code: code, signal }, 'a worker failed to start; stopping');
      exitCode = 1;
      stop();
      return;
    }
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && (crashes[0] as number) <= now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > MAX_CRASHES) {
      logger.error({ worker: id, exit_code: code, signal, crashes: crashes.length, window_ms: CRASH_WINDOW_MS }, 'workers keep crashing; giving up');
      exitCode = 1;
      stop();
      return;
    }
    const delay = backoffDelayMs(crashes.length - 1, MAX_RESTART_DELAY_MS);
    logger.error({ worker: id, pid: worker.process.pid, exit_code: code, signal, restart_in_ms: delay }, 'worker exited unexpectedly; restarting it');
    metrics.workerRestarted();
    setTimeout(() => {
      if (phase === 'serving') fork(id);
    }, delay);
  };

  const fork = (id: number): void => {
    const worker = cluster.fork({ ...workerProcess.env, SIGNALBOX_WORKER_ID: String(id) });
    live.set(id, worker);
    worker.on('message', (message: ToPrimary) => onMessage(id, worker, message));
    worker.on('exit', (code: number | null, signal: string | null) => onExit(id, worker, code, signal));
  };

  const onSignal = (signal: string): void => {
    logger.info({ signal, workers: live.size }, 'shutting down: every worker drains its in-flight calls');
    stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  logger.info({ workers, pid: process.pid }, `starting ${workers} workers`);
  for (let id = 1; id <= workers; id++) fork(id);
  try {
    return await finished;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

/** Sends to the primary; throws when the channel is closed (the primary is gone). */
function toPrimary(message: ToPrimary): void {
  if (!process.connected || !process.send) throw new Error('the IPC channel to the primary is closed');
  process.send(message);
}

/** Bytes that crossed the channel may arrive as a plain Uint8Array. */
function asBundle(bundle: ActiveBundle): ActiveBundle {
  const raw: Uint8Array = bundle.bytes;
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return { ...bundle, bytes };
}

/**
 * A worker: waits for its orders from the primary (config, first bundle), serves until SIGTERM or
 * SIGINT, drains, and exits the process (0, or 1 when it could not start; the primary reports
 * it). Never returns.
 */
export async function runWorker(): Promise<never> {
  let store: IpcStoreClient | undefined;
  let ledger: IpcLedgerClient | undefined;
  let policy: PolicySource | undefined;
  let running: RunningSignalbox | undefined;
  let latest: ActiveBundle | undefined;
  const metricsWaiting = new Map<number, { resolve: (text: string) => void; reject: (error: Error) => void }>();
  let nextRequest = 1;
  let started!: (message: Extract<ToWorker, { type: 'signalbox:start' }>) => void;
  const start = new Promise<Extract<ToWorker, { type: 'signalbox:start' }>>((resolve) => (started = resolve));

  process.on('message', (message: ToWorker) => {
    if (isStoreReplies(message)) {
      store?.receive(message);
      return;
    }
    if (isStoreChanged(message)) {
      store?.changed(message);
      return;
    }
    if (isLedgerReply(message)) {
      ledger?.receive(message);
      return;
    }
    switch (message.type) {
      case 'signalbox:start':
        started(message);
        return;
      case 'signalbox:bundle':
        latest = asBundle(message.bundle);
        void policy?.offer(latest.bytes, latest.source, latest.origin);
        return;
      case 'signalbox:metrics-collect':
        running?.metrics.snapshot().then(
          (snapshot) => toPrimary({ type: 'signalbox:metrics-snapshot', request: message.request, snapshot }),
          () => undefined,
        );
        return;
      case 'signalbox:metrics-reply': {
        const waiting = metricsWaiting.get(message.request);
        metricsWaiting.delete(message.request);
        if (message.text !== undefined) waiting?.resolve(message.text);
        else waiting?.reject(new SignalboxError('internal_error', `cannot aggregate the workers' metrics: ${message.error ?? 'no answer'}`));
        return;
      }
    }
  });
  process.on('disconnect', () => {
    store?.disconnected();
    ledger?.disconnected();
  });
  toPrimary({ type: 'signalbox:hello' });

  const { id, workers, config, bundle } = await start;
  const logger = createLogger(config.log.level).child({ worker: id });
  try {
    if (config.store.type === 'memory') store = new IpcStoreClient(toPrimary);
    if (config.ledger.enabled && config.ledger.database === 'embedded') ledger = new IpcLedgerClient(toPrimary);
    const first = asBundle(bundle);
    policy = await PolicySource.follow({ config: config.policy, bundlePath: resolveBundlePath(config.policy.bundle), logger }, first);
    // A bundle the primary activated while this one was loading.
    if (latest && latest !== first) await policy.offer(latest.bytes, latest.source, latest.origin);
    const askPrimary = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const request = nextRequest++;
        metricsWaiting.set(request, { resolve, reject });
        toPrimary({ type: 'signalbox:metrics', request });
      });
    // Loaded by workers only: the primary serves no request and never needs the pipeline.
    const { startSignalbox } = await import('./app.js');
    running = await startSignalbox(config, logger, { policy, worker: { id, workers, metrics: askPrimary, ...(ledger ? { ledger } : {}) }, ...(store ? { store } : {}) });
  } catch (error) {
    const code = error instanceof SignalboxError ? error.code : 'internal_error';
    logger.fatal({ code, cause: describeCause(error) }, 'worker cannot start');
    process.stderr.write(`signalbox: worker ${id}: ${code}: ${error instanceof Error ? error.message : describeCause(error)}\n`);
    process.exit(1);
  }
  toPrimary({ type: 'signalbox:ready', grpcPort: running.grpcPort, httpPort: running.httpPort });
  const stopping = running;
  await new Promise<void>((resolve) => {
    // The signal may come twice (from the primary, and from a terminal to the whole process
    // group): stay subscribed, so the second does not kill a worker that is still draining.
    const stop = (signal: string): void => {
      logger.info({ signal }, 'worker draining in-flight calls');
      stopping.close().then(resolve, resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  process.exit(0);
}
