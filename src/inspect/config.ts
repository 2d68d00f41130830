/** The `llm`, `content` and `destinations` sections: how requests are priced, scanned and their tool destinations resolved. */
import { z } from 'zod';

/** The `llm` section. */
export const llmSchema = z
  .object({
    /** A JSON price table replacing the built-in one (same format as src/inspect/prices.json). */
    prices_file: z.string().min(1).optional(),
    /** Output tokens assumed when a request names no max_tokens. */
    default_max_output_tokens: z.number().int().min(1).max(1_000_000).default(4096),
  })
  .strict();

/** The `content` section. */
export const contentSchema = z
  .object({
    /** Scan request bodies for PII and secrets (`input.content`). Off: `input.content.scanned` is false. */
    enabled: z.boolean().default(true),
    /** A string longer than this (UTF-8 bytes) is scanned up to here and the content is marked truncated. */
    max_string_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
    /** JSON paths stop growing past this nesting depth (scanning goes on to the bottom). */
    max_depth: z.number().int().min(4).max(1024).default(64),
  })
  .strict();

/** The `destinations` section. */
export const destinationsSchema = z
  .object({
    /** Look up host names found in tool arguments (`input.destinations`); off, a name that is not special is `unresolvable` (private). */
    resolve: z.boolean().default(true),
    /** Per-lookup timeout; a slower answer is `unresolvable` (private: fail closed). */
    timeout_ms: z.number().int().min(10).max(30_000).default(1_000),
    /** Distinct host names looked up per request; further names are `limit_exceeded` (private). */
    max_per_request: z.number().int().min(1).max(1_000).default(32),
  })
  .strict();

/** The parsed `llm` section, with defaults applied. */
export type LlmConfig = z.output<typeof llmSchema>;
/** The parsed `content` section, with defaults applied. */
export type ContentConfig = z.output<typeof contentSchema>;
/** The parsed `destinations` section, with defaults applied. */
export type DestinationsConfig = z.output<typeof destinationsSchema>;
