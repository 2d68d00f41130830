/**
 * The tokenizers behind `input_tokens`: the gpt-tokenizer encodings, which one a model uses, and
 * a cross-request cache of counts.
 */
import { createRequire } from 'node:module';
import { TextCache } from '../../core/text-cache.js';

/** The encodings counted with: `o200k_base` (gpt-4o and later, the default) and `cl100k_base`. */
export type EncodingName = 'o200k_base' | 'cl100k_base';

interface Encoder {
  countTokens(text: string, options?: { disallowedSpecial?: Set<string> }): number;
}

const requireCjs = createRequire(import.meta.url);
const encoders = new Map<EncodingName, Encoder>();

/**
 * Loaded on first use (each encoding is megabytes of merge ranks, ~200 ms to load) through
 * `require`, because `llmFacts` is synchronous; cached for the life of the process.
 */
function encoder(name: EncodingName): Encoder {
  let loaded = encoders.get(name);
  if (!loaded) {
    loaded =
      name === 'cl100k_base'
        ? (requireCjs('gpt-tokenizer/encoding/cl100k_base') as Encoder)
        : (requireCjs('gpt-tokenizer/encoding/o200k_base') as Encoder);
    encoders.set(name, loaded);
  }
  return loaded;
}

/** Loads the encodings now, so the first request does not pay for it. */
export function warmUpTokenizers(): void {
  encoder('o200k_base');
  encoder('cl100k_base');
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

/** Special tokens in user text are text to the provider, never control tokens (and never an error). */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

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
  const tokenizer = encoder(encoding);
  if (text.length <= PIECE_FROM_CHARS) return tokenizer.countTokens(text, PLAIN_TEXT);
  let count = 0;
  for (let start = 0; start < text.length; ) {
    const end = pieceEnd(text, start);
    count += tokenizer.countTokens(text.slice(start, end), PLAIN_TEXT);
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
