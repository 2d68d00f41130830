/**
 * Which tokenizer encodings a process holds: start-up loads the default one only; `cl100k_base`
 * (older models) loads when a request first needs it, and counts as it does when preloaded
 * (llm.test.ts and bpe.test.ts compare its counts with gpt-tokenizer's). In a file of its own, so
 * no other test has loaded an encoding first.
 */
import { countTokens as cl100kCount } from 'gpt-tokenizer/encoding/cl100k_base';
import { describe, expect, it } from 'vitest';
import { countTextTokens, encodingForModel, loadedEncodings, warmUpTokenizers } from '../src/inspect/llm/tokenizer.js';

describe('tokenizer encodings', () => {
  it('warm-up loads the default encoding only; cl100k_base loads on its first count', () => {
    expect(loadedEncodings()).toEqual([]);
    warmUpTokenizers();
    expect(loadedEncodings()).toEqual(['o200k_base']);
    const text = 'Summarise the quarterly report in three bullet points, please.';
    expect(countTextTokens(text, encodingForModel('gpt-4'))).toBe(cl100kCount(text));
    expect(loadedEncodings().sort()).toEqual(['cl100k_base', 'o200k_base']);
  });
});
