/**
 * The tokenizers behind `input_tokens`: the encodings (gpt-tokenizer's rank files, counted by
 * bpe.ts), which one a model uses, and a cross-request cache of counts. Special-token text in user
 * input is ordinary text to the provider, so it is counted as text, never as a control token.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BpeCounter, BpeRanks } from './bpe.js';
import { TextCache } from '../../core/text-cache.js';

/** The encodings counted with: `o200k_base` (gpt-4o and later, the default) and `cl100k_base`. */
export type EncodingName = 'o200k_base' | 'cl100k_base';

interface EncodingFiles {
  /** The tiktoken rank file gpt-tokenizer ships. */
  ranks: string;
  /** The name of gpt-tokenizer's pre-tokenizer regex for the encoding. */
  split: 'O200K_TOKEN_SPLIT_REGEX' | 'CL100K_TOKEN_SPLIT_REGEX';
}

const FILES: Record<EncodingName, EncodingFiles> = {
  o200k_base: { ranks: 'gpt-tokenizer/data/o200k_base.tiktoken', split: 'O200K_TOKEN_SPLIT_REGEX' },
  cl100k_base: { ranks: 'gpt-tokenizer/data/cl100k_base.tiktoken', split: 'CL100K_TOKEN_SPLIT_REGEX' },
};

const requireCjs = createRequire(import.meta.url);
const counters = new Map<EncodingName, BpeCounter>();

/**
 * Loaded on first use (about 100 ms each) and kept for the life of the process; synchronous,
 * because `llmFacts` is.
 */
function counter(name: EncodingName): BpeCounter {
  let loaded = counters.get(name);
  if (!loaded) {
    const files = FILES[name];
    const patterns = requireCjs('gpt-tokenizer/encodingParams/constants') as Record<EncodingFiles['split'], RegExp>;
    const ranks = BpeRanks.fromTiktoken(readFileSync(requireCjs.resolve(files.ranks)));
    loaded = new BpeCounter(ranks, patterns[files.split]);
    counters.set(name, loaded);
  }
  return loaded;
}

/**
 * Loads the default encoding (`o200k_base`: every current model, and unknown ones) now, so the
 * first request does not pay for it. `cl100k_base` serves only older models (gpt-4, gpt-3.5,
 * text-embedding-3); it loads on its first use instead (about 100 ms, once per process), because
 * loading it in every worker cost about 6 MiB of resident memory that most deployments never use.
 */
export function warmUpTokenizers(): void {
  counter(encodingForModel(null));
}

/** The encodings this process has loaded so far (each stays loaded). */
export function loadedEncodings(): EncodingName[] {
  return [...counters.keys()];
}

/**
 * The encoding for a model: `cl100k_base` for gpt-4 / gpt-3.5 / text-embedding-3 and -ada-002,
 * `o200k_base` for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, the o-series and everything else.
 *
 * For Anthropic (and any unknown) model `o200k_base` is an approximation: Claude's tokenizer is
 * not public, so counts differ from what Anthropic bills. Anthropic documents that Claude 4.7 and
 * later models use a tokenizer producing ~30% more tokens for the same text than earlier ones,
 * so expect an undercount there. Anthropic's count_tokens endpoint gives exact figures.
 * A gateway prefix (`openai/gpt-4`) and a fine-tune prefix (`ft:gpt-4o-mini:org::id`) are ignored.
 */
export function encodingForModel(model: string | null): EncodingName {
  if (model === null) return 'o200k_base';
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase().replace(/^ft:/, '');
  if (/^(gpt-4o|chatgpt-4o|gpt-4\.[1-9]|gpt-[5-9]|gpt-oss|o\d|codex-)/.test(name)) return 'o200k_base';
  if (/^(gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002)/.test(name)) return 'cl100k_base';
  return 'o200k_base';
}

/**
 * Counts are memoised across requests (core/text-cache.ts): agents resend the whole conversation
 * on every turn, so most of a request's text was counted on the previous one.
 */
const CACHE_MAX_CHARS = 8_000_000;
const CACHE_MAX_ENTRIES = 20_000;

const caches = new Map<EncodingName, TextCache<number>>();

/** Empties the cross-request token count cache (tests and benchmarks). */
export function clearTokenCountCache(): void {
  for (const cache of caches.values()) cache.clear();
}

/**
 * BPE merges within one pre-token take time quadratic in its length: 600,000 repeated letters or
 * spaces (one pre-token) took four minutes to count, on the event loop, so one request could stop
 * every decision. Text longer than this is counted in pieces of at most {@link PIECE_CHARS}.
 */
export const PIECE_FROM_CHARS = 4096;
/**
 * The most characters counted in one piece once a text is longer than {@link PIECE_FROM_CHARS};
 * small enough that the worst case stays fast.
 */
export const PIECE_CHARS = 512;

/**
 * Where to cut `text` after `start`: before a space that begins a word (" word", after a
 * non-space), the last one within {@link PIECE_CHARS}. The pre-tokenizer splits there anyway, so
 * prose counts as it does whole. A run with no such place (the slow case: one letter, space or
 * symbol repeated) is cut at the limit, which can only add a token at the cut, never lose one.
 */
function pieceEnd(text: string, start: number): number {
  const limit = start + PIECE_CHARS;
  if (limit >= text.length) return text.length;
  for (let i = limit; i > start + PIECE_CHARS / 2; i--) {
    if (text.charCodeAt(i) === 0x20 && !/\s/.test(text[i - 1] as string) && /[\p{L}\p{N}]/u.test(text[i + 1] ?? '')) return i;
  }
  // Never cut a surrogate pair in two.
  const code = text.charCodeAt(limit - 1);
  return code >= 0xd800 && code <= 0xdbff ? limit + 1 : limit;
}

function countUncached(text: string, encoding: EncodingName): number {
  const tokenizer = counter(encoding);
  if (text.length <= PIECE_FROM_CHARS) return tokenizer.count(text);
  let count = 0;
  for (let start = 0; start < text.length; ) {
    const end = pieceEnd(text, start);
    count += tokenizer.count(text.slice(start, end));
    start = end;
  }
  return count;
}

/** Tokens in one string with the given encoding, memoised. */
export function countTextTokens(text: string, encoding: EncodingName): number {
  if (text === '') return 0;
  let cache = caches.get(encoding);
  if (!cache) {
    cache = new TextCache<number>(CACHE_MAX_CHARS, CACHE_MAX_ENTRIES);
    caches.set(encoding, cache);
  }
  const cached = cache.get(text);
  if (cached !== undefined) return cached;
  const count = countUncached(text, encoding);
  cache.set(text, count);
  return count;
}
