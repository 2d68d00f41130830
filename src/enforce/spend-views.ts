/**
 * What `input.spend` shows a caller: each budget's balance in USD. Every verified request reads
 * its caller's spend, and between one reservation and the next it does not change, so the view
 * is kept per caller and handed out again, the same frozen object, while the balances it shows
 * are unchanged and their periods current: it is neither rebuilt nor written as JSON again
 * (core/json-text.ts). A changed balance, a new period or a different set of budgets builds a
 * new view.
 */
import { frozenForJson } from '../core/json-text.js';
import { microToUsd } from '../core/money.js';
import type { BudgetBalance, BudgetKey } from './store.js';
import { windowSlot } from './windows.js';

/** A budget's state as callers and policies see it, in USD. */
export interface BudgetView {
  readonly scope: string;
  readonly window: string;
  readonly period: string;
  readonly limit_usd: number;
  readonly spent_usd: number;
  readonly held_usd: number;
  readonly remaining_usd: number;
  readonly holds: number;
}

/** `input.spend`: budget views by scope, then by window. */
export type SpendView = Readonly<Record<string, Readonly<Record<string, BudgetView>>>>;

/**
 * A stored balance (integer micro-USD) as callers and `input.spend` see it: USD, with what is left
 * after spend and holds, never below 0.
 */
export function budgetView(b: BudgetBalance): BudgetView {
  return {
    scope: b.scope,
    window: b.window,
    period: b.slot,
    limit_usd: microToUsd(b.limit),
    spent_usd: microToUsd(b.spent),
    held_usd: microToUsd(b.held),
    remaining_usd: microToUsd(Math.max(0, b.limit - b.spent - b.held)),
    holds: b.holds,
  };
}

/** A caller's view as last built: the keys it was read for, the balances it shows, and the view. */
interface KeptView {
  readonly keys: readonly BudgetKey[];
  readonly balances: readonly BudgetBalance[];
  readonly view: SpendView;
}

/** Callers whose views are kept at most; past it the kept views start over (they are only a cache). */
const MAX_KEPT_VIEWS = 10_000;

function sameBalance(a: BudgetBalance, b: BudgetBalance): boolean {
  return a.scope === b.scope && a.window === b.window && a.slot === b.slot && a.limit === b.limit && a.spent === b.spent && a.held === b.held && a.holds === b.holds;
}

/** Spend views kept per caller (one per {@link Enforcer}). */
export class SpendViews {
  readonly #kept = new Map<string, KeptView>();

  constructor(private readonly maxCallers = MAX_KEPT_VIEWS) {}

  /** The budget keys `caller`'s view was last read for, while every period in them is current at `nowMs`. */
  keysFor(caller: string, nowMs: number): readonly BudgetKey[] | undefined {
    const kept = this.#kept.get(caller);
    if (kept === undefined) return undefined;
    for (const key of kept.keys) if (windowSlot(key.window, nowMs).id !== key.slot) return undefined;
    return kept.keys;
  }

  /** The view of `balances` (read for `keys`): the one kept for `caller` when it shows the same, else a new one, kept. */
  view(caller: string, keys: readonly BudgetKey[], balances: readonly BudgetBalance[]): SpendView {
    const kept = this.#kept.get(caller);
    if (kept !== undefined && kept.keys === keys && kept.balances.length === balances.length && kept.balances.every((b, i) => sameBalance(b, balances[i]!))) {
      return kept.view;
    }
    const view: Record<string, Record<string, BudgetView>> = {};
    for (const balance of balances) (view[balance.scope] ??= {})[balance.window] = budgetView(balance);
    if (this.#kept.size >= this.maxCallers && kept === undefined) this.#kept.clear();
    this.#kept.set(caller, { keys, balances: [...balances], view: frozenForJson(view) });
    return view;
  }
}
