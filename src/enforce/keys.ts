/**
 * Counter naming. In Redis every key of one reservation carries the same hash tag, so the whole
 * reservation lands in one Cluster slot and runs as one atomic script.
 */
import type { BudgetKey } from './store.js';

/** Rate limits are per minute: a bucket holds one minute of capacity. */
export const RATE_WINDOW_MS = 60_000;

/** A budget counter's identity inside one store. */
export function budgetIdentity(key: BudgetKey): string {
  return `${key.scope}\u0000${key.window}\u0000${key.slot}`;
}

/** Redis key names under one prefix and partition. */
export class RedisKeys {
  constructor(private readonly prefix: string) {}

  /** The hash tag shared by every key of a partition. */
  tag(partition: string): string {
    return `{${this.prefix}${partition === '' ? '' : `:${partition}`}}`;
  }

  budget(partition: string, key: BudgetKey): string {
    return `${this.tag(partition)}:b:${key.window}:${key.slot}:${key.scope}`;
  }

  /** Sorted set of a budget's outstanding holds, scored by expiry. */
  budgetHolds(partition: string, key: BudgetKey): string {
    return `${this.tag(partition)}:z:${key.window}:${key.slot}:${key.scope}`;
  }

  /**
   * A rate bucket ('level:at', see buckets.ts). `rb`, not the `r` of the earlier arrival-time
   * format: a replica of either version never reads the other's format (during a rolling
   * upgrade each version counts on its own buckets, for at most a minute of capacity).
   */
  rate(partition: string, unit: string, scope: string): string {
    return `${this.tag(partition)}:rb:${unit}:${scope}`;
  }

  loop(partition: string, session: string): string {
    return `${this.tag(partition)}:l:${session}`;
  }

  hold(partition: string, holdId: string): string {
    return `${this.tag(partition)}:h:${holdId}`;
  }

  /** Where a hold's partition is recorded, so a report naming only the decision id finds it. */
  holdIndex(holdId: string): string {
    return `${this.prefix}:i:{${holdId}}`;
  }

  /**
   * The hash of every provider's circuit breaker (field: provider name). Unpartitioned, in the
   * one shared slot, even when counters are partitioned by tenant: providers are global.
   */
  providers(): string {
    return `${this.tag('')}:p`;
  }

  /** Patterns matching every budget counter (unpartitioned and partitioned), for listing. */
  budgetPatterns(): string[] {
    return [`{${this.prefix}}:b:*`, `{${this.prefix}:*}:b:*`];
  }

  /** The partition a key belongs to, or undefined when it is not one of ours. */
  partitionOf(key: string): string | undefined {
    const close = key.indexOf('}');
    if (!key.startsWith('{') || close < 0) return undefined;
    const tag = key.slice(1, close);
    if (tag === this.prefix) return '';
    return tag.startsWith(`${this.prefix}:`) ? tag.slice(this.prefix.length + 1) : undefined;
  }
}
