/**
 * The Redis enforcement store (ioredis), standalone or Redis Cluster.
 *
 * One reservation is one EVALSHA over keys that share a hash tag, so it lands in one Cluster
 * slot and runs atomically whatever the number of Signalbox replicas. Commands are never queued
 * while Redis is unreachable (they fail at once, and the caller denies with
 * budget_store_unavailable; a Cluster node that is still connecting holds a command for at most
 * the command timeout); the client keeps reconnecting in the background, so service resumes
 * without a restart when Redis returns.
 *
 * A reservation whose reply does not arrive is refused (503) and then cancelled by hold id once
 * Redis answers (redis-cancellations.ts), so it takes nothing; every connection's persistence is
 * checked (redis-persistence.ts) before a cap is trusted to it.
 */
import { once } from 'node:events';
import { Cluster, Redis } from 'ioredis';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { RedisKeys } from './keys.js';
import { CancellationQueue, cancelHold, type CancelOutcome, type PendingCancel } from './redis-cancellations.js';
import { connectRedis, serverClockSkewMs, type Client } from './redis-client.js';
import { clientCause, maskSecrets, secretsOf } from './redis-errors.js';
import { PersistenceGate } from './redis-persistence.js';
import { BALANCES_SCRIPT, CANCEL_SCRIPT, PROVIDER_SCRIPT, RESERVE_SCRIPT, SETTLE_SCRIPT } from './redis-scripts.js';
import { counted, luaList, storedBreaker, type RawBalance, type RawBreaker } from './redis-wire.js';
import {
  MAX_PROVIDERS,
  checkBreakerSettings,
  checkProviderName,
  providerView,
  type BudgetBalance,
  type BudgetKey,
  type EnforcementStore,
  type ExpiredHoldPolicy,
  type ProviderBreakerSettings,
  type ProviderHealth,
  type ProviderHealthChange,
  type ProviderOutcome,
  type ProviderState,
  type Reservation,
  type ReserveResult,
  type SettleResult,
  type Settlement,
} from './store.js';

/** Connection and key settings from the `store` and `budgets` sections. */
export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] for a standalone server. */
  readonly url?: string;
  /** Seed nodes (host:port) of a Redis Cluster. */
  readonly cluster?: readonly string[];
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly expiredHolds: ExpiredHoldPolicy;
  /** True when reservations are spread over partitions, so settlements must look one up. */
  readonly partitioned: boolean;
  /** Password for Cluster nodes (standalone takes it from the URL). */
  readonly password?: string;
  /**
   * What to do when a server's persistence could lose holds in a crash (redis-persistence.ts):
   * `refuse` (the default) fails start-up, and refuses reservations while a reconnected server
   * is unsafe; `warn` only logs `store_persistence_unsafe`.
   */
  readonly unsafePersistence?: 'refuse' | 'warn';
}

/**
 * The scripts, as ioredis commands: each call is EVALSHA, with EVAL when a server does not have
 * the script yet (a restarted Redis, a new Cluster node), done by ioredis.
 */
const SCRIPTS = {
  signalboxReserve: RESERVE_SCRIPT,
  signalboxSettle: SETTLE_SCRIPT,
  signalboxBalances: BALANCES_SCRIPT,
  signalboxProvider: PROVIDER_SCRIPT,
  signalboxCancel: CANCEL_SCRIPT,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptCommand = (numberOfKeys: number, ...keysAndArg: string[]) => Promise<unknown>;

/**
 * A replica whose clock differs from Redis's by more than this logs `store_clock_skew` when it
 * connects. Hold expiry, budget windows and bucket refills run on the replica's clock, so
 * replicas that disagree by seconds expire one another's holds early or late by as much.
 */
export const CLOCK_SKEW_WARNING_MS = 1_000;

/**
 * The store shared by every replica (`store.type: redis`): a reservation is one Lua script on one
 * Cluster slot, so it is atomic however many replicas reserve at once.
 */
export class RedisStore implements EnforcementStore {
  readonly kind = 'redis' as const;
  private readonly keys: RedisKeys;
  private readonly secrets: string[];
  private readonly cancellations: CancellationQueue;
  /** Whether the connected servers' persistence lets them take reservations (judged on every `ready`). */
  private readonly persistence: PersistenceGate;

  private constructor(
    private readonly client: Client,
    private readonly options: RedisStoreOptions,
    private readonly logger: Logger,
  ) {
    this.keys = new RedisKeys(options.keyPrefix);
    this.secrets = secretsOf(options);
    this.cancellations = new CancellationQueue((cancel) => this.cancel(cancel), logger);
    this.persistence = new PersistenceGate(
      () => (client instanceof Cluster ? client.nodes('master') : [client]),
      options.unsafePersistence ?? 'refuse',
      logger,
      // The connection dropped mid-check; the next 'ready' checks again.
      (error) => logger.debug({ code: 'budget_store_unavailable', cause: this.mask(clientCause(error)) }, 'persistence check interrupted'),
    );
  }

  /** Connects in the background; the store answers budget_store_unavailable until Redis is up. */
  static create(options: RedisStoreOptions, logger: Logger): RedisStore {
    const client = connectRedis(options);
    let down = false;
    client.on('error', (error: unknown) => {
      // ioredis emits an error per failed reconnect; log the transition, not every attempt.
      if (!down) logger.error({ code: 'budget_store_unavailable', cause: store.mask(clientCause(error)) }, 'budget store connection lost');
      down = true;
    });
    // A Cluster drops every connection and starts again when its ready check fails or it loses
    // its nodes; say so, or a flapping Cluster shows only as 503s.
    if (client instanceof Cluster) client.on('reconnecting', () => logger.debug({ code: 'budget_store_unavailable' }, 'budget store (Redis Cluster) reconnecting'));
    for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, { lua });
    const store = new RedisStore(client, options, logger);
    client.on('ready', () => {
      if (down) logger.info('budget store connection restored');
      down = false;
      // A restarted server may come back with other settings (or empty): judge it every time.
      store.persistence.recheck();
      store.cancellations.flush();
      store.clockSkewMs().then(
        (skewMs) => {
          if (Math.abs(skewMs) > CLOCK_SKEW_WARNING_MS) {
            logger.warn({ code: 'store_clock_skew', skew_ms: skewMs }, `this replica's clock is ${Math.abs(skewMs)} ms ${skewMs > 0 ? 'ahead of' : 'behind'} Redis's; keep replicas in sync (NTP)`);
          }
        },
        // A store that fails here fails the next reservation too, which reports it.
        () => undefined,
      );
    });
    return store;
  }

  /** How far this process's clock is ahead of Redis's, in ms (see {@link serverClockSkewMs}). */
  clockSkewMs(): Promise<number> {
    return serverClockSkewMs(this.client);
  }

  /** Resolves when the client is connected (tests and start-up checks). */
  async ready(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.client.ping();
        return;
      } catch (error) {
        if (Date.now() > deadline) throw this.fail(error);
        await new Promise((done) => setTimeout(done, 50));
      }
    }
  }

  /**
   * The start-up check: waits up to `timeoutMs` for Redis, then judges every server's
   * persistence (every master of a Cluster). Throws `store_persistence_unsafe` when a crash
   * could lose holds and `unsafePersistence` is `refuse`. When Redis cannot be reached yet it
   * logs so and returns: the check then runs when the client connects, and an unsafe server
   * has its reservations refused (503) rather than the process stopped.
   */
  async checkPersistenceAtStart(timeoutMs: number): Promise<void> {
    try {
      await this.ready(timeoutMs);
    } catch (error) {
      this.logger.warn({ code: 'budget_store_unavailable', cause: describeCause(error) }, 'budget store not reachable at start-up; its persistence is checked when it connects');
      return;
    }
    await this.persistence.settled();
  }

  /** Resolves true once every refused reservation has been given back, false after `timeoutMs`. */
  cancellationsDone(timeoutMs: number): Promise<boolean> {
    return this.cancellations.idle(timeoutMs);
  }

  /** Replaces every password the store knows by *** (error text bound for a log). */
  private mask(text: string): string {
    return maskSecrets(text, this.secrets);
  }

  /** Errors from the client (refused, timed out, cluster down) become one stable code, with the client's cause, masked. */
  private fail(error: unknown): SignalboxError {
    if (error instanceof SignalboxError) return error;
    return new SignalboxError('budget_store_unavailable', 'the budget store (Redis) did not answer', { cause: new Error(this.mask(clientCause(error))) });
  }

  /**
   * The client, when it can take a command now. A Cluster that is not ready (connecting, or
   * reconnecting after losing its nodes) is refused here rather than queued: a queued
   * reservation could run long after the caller was answered 503.
   */
  private connected(): Client {
    if (this.client instanceof Cluster && this.client.status !== 'ready') {
      throw this.fail(new Error(`the Redis Cluster client is ${this.client.status}, not ready`));
    }
    return this.client;
  }

  async reserve(r: Reservation): Promise<ReserveResult> {
    const client = this.connected();
    // Wait for the current connection's persistence check (settled at once but just after a
    // reconnection), so no reservation reaches a server before it is judged.
    await this.persistence.admit();
    const keys = [this.keys.hold(r.partition, r.holdId)];
    for (const b of r.budgets) keys.push(this.keys.budget(r.partition, b), this.keys.budgetHolds(r.partition, b));
    for (const rate of r.rates) keys.push(this.keys.rate(r.partition, rate.unit, rate.scope));
    if (r.loop) keys.push(this.keys.loop(r.partition, r.loop.session));
    const payload = {
      id: r.holdId,
      now: r.nowMs,
      amount: r.amount,
      charge: this.options.expiredHolds === 'charge',
      hold_ttl: r.holdTtlMs,
      retention: r.retentionMs,
      budgets: r.budgets.map((b) => ({ scope: b.scope, window: b.window, slot: b.slot, limit: b.limit, expire_at: Number.isFinite(b.expireAtMs) ? b.expireAtMs : r.nowMs + r.retentionMs })),
      rates: r.rates.map((rate) => ({ per_minute: rate.perMinute, weight: rate.weight, unit: rate.unit })),
      loop: r.loop ? { hash: r.loop.callHash, max_repeats: r.loop.maxRepeats, ping_pong: r.loop.pingPong, window: r.loop.window, ttl: r.loop.ttlMs } : null,
      meta: r.meta,
    };
    const pending: Promise<unknown>[] = [this.run('signalboxReserve', keys, payload)];
    // Record the partition for settlement in parallel (its own slot); harmless if the
    // reservation is then refused, since it expires with the hold.
    if (this.options.partitioned) {
      pending.push(client.set(this.keys.holdIndex(r.holdId), r.partition, 'PX', r.holdTtlMs + r.retentionMs));
    }
    const [raw] = await Promise.all(pending).catch((error: unknown) => {
      // The script may have run (or may still run, late): give back whatever it took.
      this.cancellations.add({ holdId: r.holdId, partition: r.partition, nowMs: r.nowMs, holdTtlMs: r.holdTtlMs, retentionMs: r.retentionMs });
      throw this.fail(error);
    });
    const result = JSON.parse(raw as string) as {
      outcome: ReserveResult['outcome'];
      index?: number;
      spent?: string;
      held?: string;
      holds?: number;
      retry?: number;
      reason?: 'repeated_call' | 'ping_pong';
      count?: number;
      balances?: RawBalance[] | Record<string, never>;
    };
    switch (result.outcome) {
      case 'reserved': {
        const balances = Array.isArray(result.balances) ? result.balances : [];
        return { outcome: 'reserved', budgets: r.budgets.map((b, i) => ({ scope: b.scope, window: b.window, slot: b.slot, ...counted(balances[i]) })) };
      }
      case 'budget_exceeded': {
        const b = r.budgets[(result.index ?? 1) - 1];
        if (!b) throw new SignalboxError('internal_error', 'budget script returned an unknown index');
        return { outcome: 'budget_exceeded', budget: { scope: b.scope, window: b.window, slot: b.slot, limit: b.limit, spent: Number(result.spent ?? 0), held: Number(result.held ?? 0), holds: result.holds ?? 0 } };
      }
      case 'rate_limited': {
        const rate = r.rates[(result.index ?? 1) - 1];
        if (!rate) throw new SignalboxError('internal_error', 'rate script returned an unknown index');
        return { outcome: 'rate_limited', scope: rate.scope, unit: rate.unit, perMinute: rate.perMinute, retryAfterMs: result.retry === undefined || result.retry < 0 ? null : result.retry };
      }
      case 'loop_detected':
        return { outcome: 'loop_detected', reason: result.reason ?? 'repeated_call', session: r.loop?.session ?? '', count: result.count ?? 0 };
      case 'duplicate':
        return { outcome: 'duplicate' };
      default:
        throw new SignalboxError('internal_error', 'reserve script returned an unknown outcome');
    }
  }

  async settle(s: Settlement): Promise<SettleResult> {
    try {
      const client = this.connected();
      let partition = '';
      if (this.options.partitioned) {
        const found = await client.get(this.keys.holdIndex(s.holdId));
        if (found === null) return { outcome: 'not_found' };
        partition = found;
      }
      const holdKey = this.keys.hold(partition, s.holdId);
      // The keys a hold touched are fixed when it is made; read them so the script declares
      // every key it uses (Cluster requires it), then settle atomically.
      const [budgetsJson, ratesJson, metaJson] = await client.hmget(holdKey, 'budgets', 'token_buckets', 'meta');
      if (!budgetsJson) return { outcome: 'not_found' };
      const meta = metaJson ? (JSON.parse(metaJson) as Record<string, string | number | null>) : {};
      const amount = s.price(meta);
      const keys = [holdKey];
      for (const [bk, zk] of luaList<[string, string]>(budgetsJson)) keys.push(bk, zk);
      for (const [rk] of luaList<[string]>(ratesJson)) keys.push(rk);
      const raw = await this.run('signalboxSettle', keys, {
        id: s.holdId,
        now: s.nowMs,
        amount,
        tokens: s.tokens ?? -1,
        charge: this.options.expiredHolds === 'charge',
        retention: s.retentionMs,
      });
      const result = JSON.parse(raw) as { outcome: SettleResult['outcome']; held?: string; late?: boolean; amount?: string };
      if (result.outcome === 'settled') {
        return { outcome: 'settled', amount, held: Number(result.held ?? 0), late: result.late ?? false, meta };
      }
      if (result.outcome === 'already_settled') return { outcome: 'already_settled', amount: Number(result.amount ?? 0) };
      return { outcome: 'not_found' };
    } catch (error) {
      // A pricing error (the caller's report) passes through; anything else is the store.
      throw error instanceof SignalboxError ? error : this.fail(error);
    }
  }

  async balances(partition: string, keys: readonly BudgetKey[], nowMs: number): Promise<BudgetBalance[]> {
    if (keys.length === 0) return [];
    this.connected();
    const redisKeys = keys.flatMap((k) => [this.keys.budget(partition, k), this.keys.budgetHolds(partition, k)]);
    const raw = await this.run('signalboxBalances', redisKeys, { now: nowMs, charge: this.options.expiredHolds === 'charge' }).catch((error: unknown) => {
      throw this.fail(error);
    });
    const parsed = JSON.parse(raw) as RawBalance[] | Record<string, never>;
    const list = Array.isArray(parsed) ? parsed : [];
    return keys.map((k, i) => ({ scope: k.scope, window: k.window, slot: k.slot, ...counted(list[i]) }));
  }

  async listBudgets(nowMs: number): Promise<BudgetBalance[]> {
    try {
      const client = this.connected();
      const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
      const found: BudgetBalance[] = [];
      for (const node of nodes) {
        for (const pattern of this.keys.budgetPatterns()) {
          let cursor = '0';
          do {
            const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
            cursor = next;
            for (const key of keys) {
              const [scope, window, slot] = await node.hmget(key, 'scope', 'window', 'slot');
              if (scope == null || window == null || slot == null) continue;
              const partition = this.keys.partitionOf(key);
              if (partition === undefined) continue;
              found.push(...(await this.balances(partition, [{ scope, window, slot }], nowMs)));
            }
          } while (cursor !== '0');
        }
      }
      return found;
    } catch (error) {
      throw this.fail(error);
    }
  }

  /*
   * Provider breakers live in ONE hash (field: provider, value: the breaker as JSON) under the
   * unpartitioned hash tag, rather than one hash per provider plus an index set: a record is
   * one EVALSHA on one key, and providerHealth is one HGETALL, with no index to keep in step
   * and nothing to SCAN. Providers are few (a gateway's upstreams; capped at MAX_PROVIDERS), so
   * the hash stays small. It never expires: providerHealth lists every provider ever reported.
   */

  async recordProviderOutcome(provider: string, outcome: ProviderOutcome, nowMs: number, settings: ProviderBreakerSettings): Promise<ProviderHealthChange> {
    checkProviderName(provider);
    checkBreakerSettings(settings);
    this.connected();
    const raw = await this.run('signalboxProvider', [this.keys.providers()], {
      provider,
      outcome,
      now: nowMs,
      threshold: settings.failureThreshold,
      window: settings.failureWindowMs,
      cool_down: settings.coolDownMs,
      max: MAX_PROVIDERS,
    }).catch((error: unknown) => {
      throw this.fail(error);
    });
    const result = JSON.parse(raw) as { outcome: 'recorded' | 'too_many'; previous?: ProviderState; breaker?: RawBreaker };
    if (result.outcome === 'too_many') throw new SignalboxError('report_malformed', `the store already tracks ${MAX_PROVIDERS} providers`);
    if (result.outcome !== 'recorded' || !result.breaker || !result.previous) throw new SignalboxError('internal_error', 'provider script returned an unknown outcome');
    return { ...providerView(provider, storedBreaker(result.breaker), nowMs), previous_state: result.previous };
  }

  async providerHealth(nowMs: number): Promise<ProviderHealth[]> {
    let all: Record<string, string>;
    try {
      all = await this.connected().hgetall(this.keys.providers());
    } catch (error) {
      throw this.fail(error);
    }
    return Object.keys(all)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map((provider) => providerView(provider, storedBreaker(JSON.parse(all[provider] as string) as RawBreaker), nowMs));
  }

  /**
   * One PING, for readiness: resolves when Redis answers. A client still (re)connecting is given
   * up to the command timeout to get there first, so a check right after start-up is not failed
   * only for being early. Throws budget_store_unavailable.
   */
  async ping(): Promise<void> {
    try {
      if (!(this.client instanceof Cluster) && this.client.status !== 'ready') {
        await once(this.client, 'ready', { signal: AbortSignal.timeout(this.options.commandTimeoutMs) });
      }
      await this.connected().ping();
    } catch (error) {
      throw this.fail(error);
    }
  }

  async close(): Promise<void> {
    this.cancellations.close();
    this.client.disconnect();
  }

  /** Gives back one refused reservation (see {@link cancelHold}). */
  private cancel(c: PendingCancel): Promise<CancelOutcome> {
    const client = this.connected();
    return cancelHold(
      {
        readRecord: (holdKey) => client.hmget(holdKey, 'budgets', 'rates', 'loop'),
        runCancel: (keys, payload) => this.run('signalboxCancel', keys, payload),
      },
      this.keys.hold(c.partition, c.holdId),
      c,
      this.options.expiredHolds === 'charge',
    );
  }

  private async run(name: ScriptName, keys: readonly string[], payload: unknown): Promise<string> {
    const command = (this.client as unknown as Record<ScriptName, ScriptCommand>)[name];
    return (await command.call(this.client, keys.length, ...keys, JSON.stringify(payload))) as string;
  }
}
