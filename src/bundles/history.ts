/**
 * The recent bundle loads and downloads this process observed, for the console's "policy" panel
 * (`GET /v1/policy/status`). The policy source already reports every load to metrics
 * ({@link BundleObservation}); this keeps the last few with their time, so an operator sees what
 * was activated, what was rejected and why, without reading logs.
 */
import type { BundleObservation } from './source.js';

/** One observed bundle event, with when it happened (ISO 8601). */
export type BundleEvent = BundleObservation & { readonly at: string };

/** How many events are kept by default: enough for a day of hot reloads, small enough to send whole. */
export const BUNDLE_HISTORY_SIZE = 50;

/** A bounded, newest-last record of bundle observations; feed it from the policy source's `observe`. */
export class BundleHistory {
  readonly #events: BundleEvent[] = [];
  readonly #size: number;
  readonly #now: () => Date;

  constructor(options: { size?: number; now?: () => Date } = {}) {
    this.#size = Math.max(1, options.size ?? BUNDLE_HISTORY_SIZE);
    this.#now = options.now ?? (() => new Date());
  }

  /** Records one observation; the oldest is dropped past the size. */
  readonly observe = (observation: BundleObservation): void => {
    this.#events.push({ ...observation, at: this.#now().toISOString() });
    if (this.#events.length > this.#size) this.#events.splice(0, this.#events.length - this.#size);
  };

  /** The kept events, newest first (a copy). */
  recent(): BundleEvent[] {
    return [...this.#events].reverse();
  }
}
