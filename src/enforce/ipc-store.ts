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
 * Reads do not cross on every decision. Each worker keeps the balances and breakers it has read,
 * and the primary tells every worker which balances (and whether the breakers) an operation
 * changed, before it answers that operation, in the channel's order: a copy is dropped the moment
 * it is stale. A balance also changes with no operation when a hold expires or its window ends;
 * the primary says when that can first happen (`MemoryStore.balanceStableUntil`) and the copy is
 * not used past it. Breakers are kept raw, and their state at the caller's time is computed the
 * way the store computes it (`providerView`). So the spend and provider health a policy sees are
 * as fresh as a round trip would make them, without the round trip; reservations and
 * settlements still cross, and are still applied one at a time by the primary.
 *
 * The wire is this module's own messages, whatever carries them (the cluster IPC channel, wired
 * in src/app/cluster.ts). A settlement crosses twice, as with the Redis store: the worker reads
 * the hold's facts, prices the report itself (pricing is the caller's code, and may refuse), then
 * the primary settles at that amount; a report settled in between is answered already_settled.
 */
import type { ErrorCode } from '../core/codes.js';
import { SignalboxError } from '../core/errors.js';
import { budgetIdentity } from './keys.js';
import type { HoldView, MemoryStore } from './memory-store.js';
import { providerView } from './store.js';
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
  StoredBreaker,
} from './store.js';

/** One store operation as it crosses to the primary. */
export type StoreOperation =
  | { readonly op: 'reserve'; readonly reservation: Reservation }
  | { readonly op: 'peekHold'; readonly holdId: string; readonly nowMs: number }
  | { readonly op: 'settle'; readonly holdId: string; readonly nowMs: number; readonly amount: number; readonly tokens: number | null; readonly retentionMs: number }
  | { readonly op: 'balances'; readonly partition: string; readonly keys: readonly BudgetKey[]; readonly nowMs: number }
  | { readonly op: 'listBudgets'; readonly nowMs: number }
  | { readonly op: 'recordProviderOutcome'; readonly provider: string; readonly outcome: ProviderOutcome; readonly nowMs: number; readonly settings: ProviderBreakerSettings }
  | { readonly op: 'breakers' }
  | { readonly op: 'cancel'; readonly holdId: string; readonly nowMs: number };

/** A `balances` answer: the balances, and until when each stays so without an operation. */
export interface CachedBalances {
  readonly balances: readonly BudgetBalance[];
  readonly stableUntilMs: readonly number[];
}

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

/**
 * What a batch of operations changed, sent to every worker before the batch is answered: the
 * balances (identities, as `budgetIdentity`) and whether any provider's breaker.
 */
export interface StoreChanged {
  readonly type: 'signalbox:store-changed';
  readonly budgets: readonly string[];
  readonly providers: boolean;
}

/** True for a change notice from the primary. */
export function isStoreChanged(message: unknown): message is StoreChanged {
  return (message as { type?: unknown } | null)?.type === 'signalbox:store-changed';
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
 * each; `changed` (when anything changed) must reach every worker before `replies` reaches the
 * sender. A store that is not there (the workers were told to use Redis) answers every operation
 * with budget_store_unavailable.
 */
export async function answerStoreRequests(store: MemoryStore | undefined, message: StoreRequests): Promise<{ replies: StoreReplies; changed?: StoreChanged }> {
  const replies: StoreReply[] = [];
  const budgets = new Set<string>();
  let providers = false;
  for (const { id, operation } of message.requests) {
    try {
      if (!store) throw new SignalboxError('budget_store_unavailable', 'the primary holds no in-memory store');
      // Named before applying: a settlement is what changes them, whatever it answers.
      if (operation.op === 'reserve') for (const key of operation.reservation.budgets) budgets.add(budgetIdentity(key));
      if (operation.op === 'settle' || operation.op === 'cancel') for (const key of store.holdBudgets(operation.holdId)) budgets.add(key);
      if (operation.op === 'recordProviderOutcome') providers = true;
      replies.push({ id, value: await apply(store, operation) });
    } catch (error) {
      const code: ErrorCode = error instanceof SignalboxError ? error.code : 'internal_error';
      replies.push({ id, code, message: error instanceof SignalboxError ? error.message : 'store operation failed' });
    }
  }
  const changed = budgets.size > 0 || providers ? { type: 'signalbox:store-changed' as const, budgets: [...budgets], providers } : undefined;
  return { replies: { type: 'signalbox:store-replies', replies }, ...(changed ? { changed } : {}) };
}

async function apply(store: MemoryStore, operation: StoreOperation): Promise<unknown> {
  switch (operation.op) {
    case 'reserve':
      return store.reserve(operation.reservation);
    case 'peekHold':
      return store.peekHold(operation.holdId, operation.nowMs);
    case 'settle':
      return store.settle({ holdId: operation.holdId, nowMs: operation.nowMs, tokens: operation.tokens, retentionMs: operation.retentionMs, price: () => operation.amount });
    case 'balances': {
      const balances = await store.balances(operation.partition, operation.keys, operation.nowMs);
      return { balances, stableUntilMs: operation.keys.map((key) => store.balanceStableUntil(key, operation.nowMs)) } satisfies CachedBalances;
    }
    case 'listBudgets':
      return store.listBudgets(operation.nowMs);
    case 'recordProviderOutcome':
      return store.recordProviderOutcome(operation.provider, operation.outcome, operation.nowMs, operation.settings);
    case 'breakers':
      return store.storedBreakers();
    case 'cancel':
      return store.cancel(operation.holdId, operation.nowMs);
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
  readonly deadline: number;
}

/** Copies of balances a worker keeps at most; past it the copies start over (they are only a cache). */
const MAX_CACHED_BALANCES = 100_000;

/** A worker's store: every operation answered by the primary's one in-memory store. */
export class IpcStoreClient implements EnforcementStore {
  readonly kind = 'memory' as const;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private batch: { id: number; operation: StoreOperation }[] = [];
  private flushScheduled = false;
  private gone = false;
  /** Balances read, by budget identity, each with until when it holds without an operation. */
  private readonly balanceCopies = new Map<string, { readonly balance: BudgetBalance; readonly stableUntilMs: number }>();
  /** The stored breakers as last read; undefined until read, or once the primary says one changed. */
  private breakerCopies: readonly [string, StoredBreaker][] | undefined;
  /** One timer for every operation's deadline, rather than one per operation. */
  private readonly deadlines: NodeJS.Timeout;

  /**
   * @param send hands a message to the primary; it throws when the channel is closed.
   * @param timeoutMs how long an operation waits for the primary (tests shorten it).
   */
  constructor(
    private readonly send: (message: StoreRequests) => void,
    private readonly timeoutMs = IPC_STORE_TIMEOUT_MS,
  ) {
    this.deadlines = setInterval(() => this.expire(Date.now()), Math.min(1_000, timeoutMs));
    this.deadlines.unref();
  }

  /**
   * Reserves in the primary's store. A reservation this worker gave up waiting for (a hung
   * primary) may still run there when the primary catches up; it is refused here (503), so the
   * primary is asked to cancel it, after the reservation on the same ordered channel: a refused
   * request holds no budget, rate slot or loop entry.
   */
  async reserve(reservation: Reservation): Promise<ReserveResult> {
    try {
      return (await this.call({ op: 'reserve', reservation })) as ReserveResult;
    } catch (error) {
      if (!this.gone && error instanceof SignalboxError && error.code === 'budget_store_unavailable') {
        this.call({ op: 'cancel', holdId: reservation.holdId, nowMs: Date.now() }).catch(() => undefined);
      }
      throw error;
    }
  }

  async settle(s: Settlement): Promise<SettleResult> {
    const hold = (await this.call({ op: 'peekHold', holdId: s.holdId, nowMs: s.nowMs })) as HoldView;
    if (hold.state === 'not_found') return { outcome: 'not_found' };
    if (hold.state === 'settled') return { outcome: 'already_settled', amount: hold.amount };
    const amount = s.price(hold.meta);
    return this.call({ op: 'settle', holdId: s.holdId, nowMs: s.nowMs, amount, tokens: s.tokens, retentionMs: s.retentionMs }) as Promise<SettleResult>;
  }

  async balances(partition: string, keys: readonly BudgetKey[], nowMs: number): Promise<BudgetBalance[]> {
    const copies: BudgetBalance[] = [];
    for (const key of keys) {
      const copy = this.balanceCopies.get(budgetIdentity(key));
      if (copy === undefined || copy.stableUntilMs <= nowMs) break;
      copies.push(copy.balance);
    }
    if (copies.length === keys.length) return copies;
    const answer = (await this.call({ op: 'balances', partition, keys, nowMs })) as CachedBalances;
    if (this.balanceCopies.size + keys.length > MAX_CACHED_BALANCES) this.balanceCopies.clear();
    keys.forEach((key, i) => {
      const balance = answer.balances[i];
      if (balance !== undefined) this.balanceCopies.set(budgetIdentity(key), { balance, stableUntilMs: answer.stableUntilMs[i] ?? nowMs });
    });
    return [...answer.balances];
  }

  listBudgets(nowMs: number): Promise<BudgetBalance[]> {
    return this.call({ op: 'listBudgets', nowMs }) as Promise<BudgetBalance[]>;
  }

  recordProviderOutcome(provider: string, outcome: ProviderOutcome, nowMs: number, settings: ProviderBreakerSettings): Promise<ProviderHealthChange> {
    return this.call({ op: 'recordProviderOutcome', provider, outcome, nowMs, settings }) as Promise<ProviderHealthChange>;
  }

  async providerHealth(nowMs: number): Promise<ProviderHealth[]> {
    const copies = (this.breakerCopies ??= (await this.call({ op: 'breakers' })) as [string, StoredBreaker][]);
    // In the store's order (by name), each at this caller's time, as MemoryStore.providerHealth.
    return [...copies].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([provider, stored]) => providerView(provider, stored, nowMs));
  }

  /** Drops the copies an operation made stale (the wiring calls this for every {@link StoreChanged}). */
  changed(message: StoreChanged): void {
    for (const key of message.budgets) this.balanceCopies.delete(key);
    if (message.providers) this.breakerCopies = undefined;
  }

  /** Takes the primary's answers (the wiring calls this for every {@link StoreReplies}). */
  receive(message: StoreReplies): void {
    for (const reply of message.replies) {
      const waiting = this.pending.get(reply.id);
      if (!waiting) continue; // timed out meanwhile
      this.pending.delete(reply.id);
      if ('code' in reply) waiting.reject(new SignalboxError(reply.code, reply.message));
      else waiting.resolve(reply.value);
    }
  }

  /** The primary is gone: everything waiting, and everything after, fails budget_store_unavailable. */
  disconnected(): void {
    this.gone = true;
    this.batch = [];
    this.balanceCopies.clear();
    this.breakerCopies = undefined;
    clearInterval(this.deadlines);
    for (const [id, waiting] of this.pending) {
      this.pending.delete(id);
      waiting.reject(unavailable('the primary process is gone'));
    }
  }

  /**
   * The in-memory store is in the primary, always reachable while the primary is: reachable
   * until the channel to it closed (no round trip, so a readiness probe adds nothing to the IPC).
   */
  async ping(): Promise<void> {
    if (this.gone) throw unavailable('the primary process is gone');
  }

  async close(): Promise<void> {
    clearInterval(this.deadlines);
    // The store itself belongs to the primary, which closes it after every worker has stopped.
  }

  private call(operation: StoreOperation): Promise<unknown> {
    if (this.gone) return Promise.reject(unavailable('the primary process is gone'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + this.timeoutMs });
      this.batch.push({ id, operation });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After this turn's I/O callbacks: the decisions they started share one message.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Fails every operation the primary has not answered by its deadline. */
  private expire(nowMs: number): void {
    for (const [id, waiting] of this.pending) {
      if (waiting.deadline > nowMs) continue;
      this.pending.delete(id);
      waiting.reject(unavailable(`the primary did not answer within ${this.timeoutMs} ms`));
    }
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
