/**
 * The per-model price table behind cost estimates, kept as data (`prices.json` beside this file,
 * or an operator's own file in the same format).
 *
 * Prices are USD per million tokens. They are parsed as exact decimals (at most 6 decimal places)
 * into scaled BigInts, so a cost is computed without floating-point error and then rounded up to
 * whole micro-USD: budgets reserve integers, and rounding up never lets a request cost less than
 * its tokens.
 */
import { readFileSync } from 'node:fs';
import { SignalboxError } from '../core/errors.js';
import shippedPrices from './prices.json' with { type: 'json' };
import { isJsonObject } from '../core/json-object.js';

/** USD per million tokens. */
export interface ModelPrice {
  readonly input_per_mtok: number;
  /** The price of cache hits; absent when the model has no cached-input discount. */
  readonly cached_input_per_mtok?: number;
  readonly output_per_mtok: number;
}

/**
 * Token counts to price. `cached_input_tokens` is a subset of `input_tokens` (OpenAI's
 * semantics: `prompt_tokens_details.cached_tokens` is included in `prompt_tokens`). Anthropic
 * reports cache reads and writes beside `input_tokens`, so convert first:
 * `input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens`,
 * `cached_input_tokens = cache_read_input_tokens` (cache writes are then billed at the base input
 * price, below Anthropic's 1.25×/2× write premium).
 */
export interface TokenUsage {
  readonly input_tokens: number;
  readonly cached_input_tokens?: number;
  readonly output_tokens: number;
}

/** Decimal places a price may have: prices are scaled by 10^6 into integers. */
const PRICE_DECIMALS = 6;
const PRICE_SCALE = 10n ** BigInt(PRICE_DECIMALS);
/** tokens × (USD per Mtok × 10^6) = micro-USD × 10^6, so one more division by 10^6. */
const MICRO_DIVISOR = PRICE_SCALE;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const MODEL_KEYS = new Set(['provider', 'input_per_mtok', 'cached_input_per_mtok', 'output_per_mtok']);
const TOP_KEYS = new Set(['version', 'as_of', 'sources', 'models']);

interface Entry {
  readonly key: string;
  readonly price: ModelPrice;
  readonly input: bigint;
  readonly cached: bigint;
  readonly output: bigint;
}

/** Why a value is not an acceptable price, or undefined when it is. */
function priceProblem(value: unknown): string | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a finite number';
  if (value < 0) return 'must not be negative';
  return scalePrice(value) === undefined ? `must have at most ${PRICE_DECIMALS} decimal places` : undefined;
}

/**
 * A price as an exact integer count of 10^-6 USD per Mtok. JSON numbers arrive as doubles;
 * `String(n)` is the shortest decimal that round-trips, which is the literal the file held for any
 * price with few digits, so it is parsed as a decimal rather than multiplied as a float.
 */
function scalePrice(value: number): bigint | undefined {
  const match = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(value));
  if (!match) return undefined;
  const fraction = match[2] ?? '';
  const digits = BigInt((match[1] as string) + fraction);
  const shift = Number(match[3] ?? '0') - fraction.length + PRICE_DECIMALS;
  if (shift >= 0) return digits * 10n ** BigInt(shift);
  const divisor = 10n ** BigInt(-shift);
  return digits % divisor === 0n ? digits / divisor : undefined;
}

function invalid(source: string, key: string, problem: string): SignalboxError {
  return new SignalboxError('config_invalid', `price table ${source}: ${key} ${problem}`, {
    details: { source, key },
  });
}

function isTokenCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

let shipped: PriceTable | undefined;

/** An immutable, validated price table. */
export class PriceTable {
  readonly #entries: ReadonlyMap<string, Entry>;

  private constructor(entries: Map<string, Entry>) {
    this.#entries = entries;
  }

  /** The table shipped with Signalbox (`src/inspect/prices.json`). */
  static default(): PriceTable {
    shipped ??= PriceTable.fromObject(shippedPrices, 'src/inspect/prices.json');
    return shipped;
  }

  /** An operator's price file, same format as the shipped one. Throws `config_invalid`. */
  static fromFile(path: string): PriceTable {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new SignalboxError('config_invalid', `price table ${path} cannot be read`, {
        cause: error,
        details: { source: path },
      });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new SignalboxError('config_invalid', `price table ${path} is not valid JSON`, {
        cause: error,
        details: { source: path },
      });
    }
    return PriceTable.fromObject(value, path);
  }

  /**
   * Validates `{ version: 1, as_of?, sources?, models: { name: { provider?, input_per_mtok,
   * cached_input_per_mtok?, output_per_mtok } } }`. Unknown keys are errors (a misspelt
   * `cached_input_per_mtok` would otherwise silently bill cache hits at the full price). Model
   * names are matched case-insensitively, so two names differing only in case are an error.
   * `source` names the data in error messages (a file path).
   */
  static fromObject(value: unknown, source: string): PriceTable {
    if (!isJsonObject(value)) throw invalid(source, '(root)', 'must be a JSON object');
    for (const key of Object.keys(value)) {
      if (!TOP_KEYS.has(key)) throw invalid(source, key, 'is not a known key');
    }
    if (value.version !== 1) throw invalid(source, 'version', 'must be 1');
    if (value.as_of !== undefined && typeof value.as_of !== 'string') throw invalid(source, 'as_of', 'must be a string');
    if (value.sources !== undefined && (!Array.isArray(value.sources) || !value.sources.every((s) => typeof s === 'string'))) {
      throw invalid(source, 'sources', 'must be a list of strings');
    }
    const models = value.models;
    if (!isJsonObject(models)) throw invalid(source, 'models', 'must be an object of model name → price');

    const entries = new Map<string, Entry>();
    for (const [name, raw] of Object.entries(models)) {
      const where = `models.${JSON.stringify(name)}`;
      const key = name.trim().toLowerCase();
      if (key === '' || key !== name.toLowerCase()) throw invalid(source, where, 'must be a non-empty name without surrounding spaces');
      if (entries.has(key)) throw invalid(source, where, `duplicates ${JSON.stringify(entries.get(key)?.key)} (names are case-insensitive)`);
      if (!isJsonObject(raw)) throw invalid(source, where, 'must be an object');
      for (const field of Object.keys(raw)) {
        if (!MODEL_KEYS.has(field)) throw invalid(source, `${where}.${field}`, 'is not a known key');
      }
      if (raw.provider !== undefined && (typeof raw.provider !== 'string' || raw.provider === '')) {
        throw invalid(source, `${where}.provider`, 'must be a non-empty string');
      }
      for (const field of ['input_per_mtok', 'output_per_mtok'] as const) {
        if (raw[field] === undefined) throw invalid(source, `${where}.${field}`, 'is required');
      }
      for (const field of ['input_per_mtok', 'cached_input_per_mtok', 'output_per_mtok'] as const) {
        if (raw[field] === undefined) continue;
        const problem = priceProblem(raw[field]);
        if (problem) throw invalid(source, `${where}.${field}`, problem);
      }
      const input = raw.input_per_mtok as number;
      const output = raw.output_per_mtok as number;
      const cached = raw.cached_input_per_mtok as number | undefined;
      const price: ModelPrice = Object.freeze(
        cached === undefined
          ? { input_per_mtok: input, output_per_mtok: output }
          : { input_per_mtok: input, cached_input_per_mtok: cached, output_per_mtok: output },
      );
      const scaledInput = scalePrice(input) as bigint;
      entries.set(key, {
        key: name,
        price,
        input: scaledInput,
        cached: cached === undefined ? scaledInput : (scalePrice(cached) as bigint),
        output: scalePrice(output) as bigint,
      });
    }
    return new PriceTable(entries);
  }

  /** How many models the table prices. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The exact model name first, then the longest table key that is a prefix of the model
   * followed by `-` (dated snapshots such as `gpt-4o-2024-08-06` → `gpt-4o`,
   * `claude-sonnet-4-20250514` → `claude-sonnet-4`), case-insensitive. `key` is the name as the
   * table spells it.
   */
  lookup(model: string): { readonly key: string; readonly price: ModelPrice } | undefined {
    const entry = this.#find(model);
    return entry && { key: entry.key, price: entry.price };
  }

  /**
   * Cost of `usage` in whole micro-USD, computed exactly and rounded up; undefined when the model
   * is unpriced. Cached input tokens are a subset of `input_tokens` billed at the cached price
   * (the input price when the model has none). Throws RangeError for token counts that are not
   * non-negative safe integers, cached tokens above input tokens, or a total beyond
   * Number.MAX_SAFE_INTEGER micro-USD.
   */
  costMicroUsd(model: string, usage: TokenUsage): number | undefined {
    const entry = this.#find(model);
    if (!entry) return undefined;
    const cachedTokens = usage.cached_input_tokens ?? 0;
    if (!isTokenCount(usage.input_tokens) || !isTokenCount(usage.output_tokens) || !isTokenCount(cachedTokens)) {
      throw new RangeError('token counts must be non-negative safe integers');
    }
    if (cachedTokens > usage.input_tokens) throw new RangeError('cached_input_tokens exceeds input_tokens');
    const scaled =
      BigInt(usage.input_tokens - cachedTokens) * entry.input +
      BigInt(cachedTokens) * entry.cached +
      BigInt(usage.output_tokens) * entry.output;
    const micro = (scaled + MICRO_DIVISOR - 1n) / MICRO_DIVISOR;
    if (micro > MAX_SAFE) throw new RangeError('cost exceeds Number.MAX_SAFE_INTEGER micro-USD');
    return Number(micro);
  }

  #find(model: string): Entry | undefined {
    if (typeof model !== 'string') return undefined;
    const name = model.toLowerCase();
    const exact = this.#entries.get(name);
    if (exact) return exact;
    for (let dash = name.lastIndexOf('-'); dash > 0; dash = name.lastIndexOf('-', dash - 1)) {
      const entry = this.#entries.get(name.slice(0, dash));
      if (entry) return entry;
    }
    return undefined;
  }
}
