/**
 * The in-memory store shared by several worker processes (`server.workers` > 1 with
 * `store.type: memory`). The primary process owns the one {@link MemoryStore}; each worker holds
 * an {@link IpcStoreClient}, which implements the same {@link EnforcementStore} interface by
 * sending every operation to the primary. The primary applies operations one at a time on its
 * event loop (a memory-store operation never awaits inside), so a cap and a rate limit hold
 * exactly across workers, as Redis's one thread makes them hold across replicas.
 *
 * Shared memory was the alternative: Node cannot share memory between processes (a
 * SharedArrayBuffer crosses worker threads only), and the store's maps, heaps and holds are
 * not flat. One owner costs one IPC round trip per operation instead; operations started in the
 * same event-loop turn travel as one message each way, so under load the cost is paid per batch.
 *
 * The wire is this module's own messages, whatever carries them (the cluster IPC channel, wired
 * in src/app/cluster.ts). A settlement crosses twice, as with the Redis store: the worker reads
 * the hold's facts, prices the report itself (pricing is the caller's code, and may refuse), then
 * the primary settles at that amount; a report settled in between is answered already_settled.
 */
import type { ErrorCode } from '../core/codes.js';
import { SignalboxError } from '../core/errors.js';
import type { HoldView, MemoryStore } from './memory-store.js';
import type {
  BudgetBalance,
  BudgetKey,
  EnforcementStore,
  ProviderBreakerSettings,
  ProviderHealth,
  ProviderHealthChange,
  ProviderOutcome,
  Reservation,
  ReserveResult,
  SettleResult,
  Settlement,
} from './store.js';

/** One store operation as it crosses to the primary. */
export type StoreOperation =
  | { readonly op: 'reserve'; readonly reservation: Reservation }
  | { readonly op: 'peekHold'; readonly holdId: string; readonly nowMs: number }
  | { readonly op: 'settle'; readonly holdId: string; readonly nowMs: number; readonly amount: number; readonly tokens: number | null; readonly retentionMs: number }
  | { readonly op: 'balances'; readonly partition: string; readonly keys: readonly BudgetKey[]; readonly nowMs: number }
  | { readonly op: 'listBudgets'; readonly nowMs: number }
  | { readonly op: 'recordProviderOutcome'; readonly provider: string; readonly outcome: ProviderOutcome; readonly nowMs: number; readonly settings: ProviderBreakerSettings }
  | { readonly op: 'providerHealth'; readonly nowMs: number };

/** The operations a worker started in one event-loop turn, in order. */
export interface StoreRequests {
  readonly type: 'signalbox:store';
  readonly requests: readonly { readonly id: number; readonly operation: StoreOperation }[];
}

/** One answer: the operation's result, or the stable code and message of what it threw. */
export type StoreReply = { readonly id: number; readonly value: unknown } | { readonly id: number; readonly code: ErrorCode; readonly message: string };

/** The primary's answers to one {@link StoreRequests}, in the same order. */
export interface StoreReplies {
  readonly type: 'signalbox:store-replies';
  readonly replies: readonly StoreReply[];
}

/** True for a message this module sends to the primary. */
export function isStoreRequests(message: unknown): message is StoreRequests {
  return (message as { type?: unknown } | null)?.type === 'signalbox:store';
}

/** True for a message this module sends back to a worker. */
export function isStoreReplies(message: unknown): message is StoreReplies {
  return (message as { type?: unknown } | null)?.type === 'signalbox:store-replies';
}

/**
 * The primary's side: applies a worker's operations to the one store, in order, and answers
 * each. A store that is not there (the workers were told to use Redis) answers every operation
 * with budget_store_unavailable.
 */
export async function answerStoreRequests(store: MemoryStore | undefined, message: StoreRequests): Promise<StoreReplies> {
  const replies: StoreReply[] = [];
  for (const { id, operation } of message.requests) {
    try {
      if (!store) throw new SignalboxError('budget_store_unavailable', 'the primary holds no in-memory store');
      replies.push({ id, value: await apply(store, operation) });
    } catch (error) {
      const code: ErrorCode = error instanceof SignalboxError ? error.code : 'internal_error';
      replies.push({ id, code, message: error instanceof SignalboxError ? error.message : 'store operation failed' });
    }
  }
  return { type: 'signalbox:store-replies', replies };
}

function apply(store: MemoryStore, operation: StoreOperation): Promise<unknown> | unknown {
  switch (operation.op) {
    case 'reserve':
      return store.reserve(operation.reservation);
    case 'peekHold':
      return store.peekHold(operation.holdId, operation.nowMs);
    case 'settle':
      return store.settle({ holdId: operation.holdId, nowMs: operation.nowMs, tokens: operation.tokens, retentionMs: operation.retentionMs, price: () => operation.amount });
    case 'balances':
      return store.balances(operation.partition, operation.keys, operation.nowMs);
    case 'listBudgets':
      return store.listBudgets(operation.nowMs);
    case 'recordProviderOutcome':
      return store.recordProviderOutcome(operation.provider, operation.outcome, operation.nowMs, operation.settings);
    case 'providerHealth':
      return store.providerHealth(operation.nowMs);
  }
}

/**
 * How long a worker waits for the primary before an operation fails budget_store_unavailable.
 * The primary is a local process doing nothing else, so only a hung primary meets it; a dead
 * one is noticed at once ({@link IpcStoreClient.disconnected}).
 */
export const IPC_STORE_TIMEOUT_MS = 5_000;

interface Pending {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A worker's store: every operation answered by the primary's one in-memory store. */
export class IpcStoreClient implements EnforcementStore {
  readonly kind = 'memory' as const;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private batch: { id: number; operation: StoreOperation }[] = [];
  private flushScheduled = false;
  private gone = false;

  /** @param send hands a message to the primary; it throws when the channel is closed. */
  constructor(private readonly send: (message: StoreRequests) => void) {}

  reserve(reservation: Reservation): Promise<ReserveResult> {
    return this.call({ op: 'reserve', reservation }) as Promise<ReserveResult>;
  }

  async settle(s: Settlement): Promise<SettleResult> {
    const hold = (await this.call({ op: 'peekHold', holdId: s.holdId, nowMs: s.nowMs })) as HoldView;
    if (hold.state === 'not_found') return { outcome: 'not_found' };
    if (hold.state === 'settled') return { outcome: 'already_settled', amount: hold.amount };
    const amount = s.price(hold.meta);
    return this.call({ op: 'settle', holdId: s.holdId, nowMs: s.nowMs, amount, tokens: s.tokens, retentionMs: s.retentionMs }) as Promise<SettleResult>;
  }

  balances(partition: string, keys: readonly BudgetKey[], nowMs: number): Promise<BudgetBalance[]> {
    return this.call({ op: 'balances', partition, keys, nowMs }) as Promise<BudgetBalance[]>;
  }

  listBudgets(nowMs: number): Promise<BudgetBalance[]> {
    return this.call({ op: 'listBudgets', nowMs }) as Promise<BudgetBalance[]>;
  }

  recordProviderOutcome(provider: string, outcome: ProviderOutcome, nowMs: number, settings: ProviderBreakerSettings): Promise<ProviderHealthChange> {
    return this.call({ op: 'recordProviderOutcome', provider, outcome, nowMs, settings }) as Promise<ProviderHealthChange>;
  }

  providerHealth(nowMs: number): Promise<ProviderHealth[]> {
    return this.call({ op: 'providerHealth', nowMs }) as Promise<ProviderHealth[]>;
  }

  /** Takes the primary's answers (the wiring calls this for every {@link StoreReplies}). */
  receive(message: StoreReplies): void {
    for (const reply of message.replies) {
      const waiting = this.pending.get(reply.id);
      if (!waiting) continue; // timed out meanwhile
      this.pending.delete(reply.id);
      clearTimeout(waiting.timer);
      if ('code' in reply) waiting.reject(new SignalboxError(reply.code, reply.message));
      else waiting.resolve(reply.value);
    }
  }

  /** The primary is gone: everything waiting, and everything after, fails budget_store_unavailable. */
  disconnected(): void {
    this.gone = true;
    this.batch = [];
    for (const [id, waiting] of this.pending) {
      this.pending.delete(id);
      clearTimeout(waiting.timer);
      waiting.reject(unavailable('the primary process is gone'));
    }
  }

  async close(): Promise<void> {
    // The store itself belongs to the primary, which closes it after every worker has stopped.
  }

  private call(operation: StoreOperation): Promise<unknown> {
    if (this.gone) return Promise.reject(unavailable('the primary process is gone'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(unavailable(`the primary did not answer within ${IPC_STORE_TIMEOUT_MS} ms`));
      }, IPC_STORE_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.batch.push({ id, operation });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After this turn's I/O callbacks: the decisions they started share one message.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const requests = this.batch;
    this.batch = [];
    if (requests.length === 0) return;
    try {
      this.send({ type: 'signalbox:store', requests });
    } catch {
      // The channel is closed: the primary is gone.
      this.disconnected();
    }
  }
}

function unavailable(why: string): SignalboxError {
  return new SignalboxError('budget_store_unavailable', `the in-memory store (primary process) cannot be reached: ${why}`);
}
