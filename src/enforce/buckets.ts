/**
 * Rate-limit buckets as both stores keep them: one minute of capacity, in use `level` units at
 * time `atMs`, draining at `perMinute` units a minute. This is the GCRA (its theoretical arrival
 * time is atMs + level × 60000 / perMinute), kept as a level rather than as that time so the
 * numbers stay as small as the limit: an epoch time in ms as a double resolves about 0.25 µs,
 * coarser than one token of a 1e12 tokens-a-minute limit, while a level up to 1e12 is exact to
 * about 1e-4 of a unit. The Redis scripts (redis-scripts.ts, `bucket`) do the same in Lua.
 */
import { RATE_WINDOW_MS } from './keys.js';

/** A bucket's state. */
export interface Bucket {
  readonly level: number;
  readonly atMs: number;
}

/**
 * The bucket drained to `nowMs` (an absent one is empty). A clock behind the bucket's (another
 * replica's) refills nothing: the bucket keeps its time.
 */
export function drain(bucket: Bucket | undefined, nowMs: number, perMinute: number): Bucket {
  if (!bucket) return { level: 0, atMs: nowMs };
  if (nowMs <= bucket.atMs) return bucket;
  return { level: Math.max(0, bucket.level - ((nowMs - bucket.atMs) * perMinute) / RATE_WINDOW_MS), atMs: nowMs };
}

/** When the drained bucket must take `weight` more units: null when it fits, else how long until it would (ms, rounded up). */
export function waitFor(drained: Bucket, weight: number, perMinute: number, nowMs: number): number | null {
  const next = drained.level + weight;
  if (next <= perMinute) return null;
  return Math.ceil(((next - perMinute) * RATE_WINDOW_MS) / perMinute + (drained.atMs - nowMs));
}

/** When a bucket can be forgotten: once it has drained, plus a minute. */
export function bucketExpiry(bucket: Bucket, perMinute: number): number {
  return bucket.atMs + (bucket.level * RATE_WINDOW_MS) / perMinute + RATE_WINDOW_MS;
}
