import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { countTokens as cl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTokens as o200k } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { BpeCounter, BpeRanks } from '../src/inspect/llm/bpe.js';
import { clearTokenCountCache, countTextTokens, type EncodingName } from '../src/inspect/llm/tokenizer.js';

const require = createRequire(import.meta.url);
const PLAIN = { disallowedSpecial: new Set<string>() };
const REFERENCE: Record<EncodingName, (text: string) => number> = {
  o200k_base: (text) => o200k(text, PLAIN),
  cl100k_base: (text) => cl100k(text, PLAIN),
};

/** Deterministic pseudo-random text mixing ASCII, accented Latin, CJK, emoji, Arabic and whitespace runs. */
function mixedText(seed: number, count: number): string[] {
  let state = seed;
  const next = (): number => (state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff);
  const ranges: Array<[number, number]> = [
    [0x20, 0x7f], [0x20, 0x7f], [0x20, 0x7f], [0xc0, 0x17f], [0x4e00, 0x9fff], [0x1f300, 0x1faff],
    [0x600, 0x6ff], [0x400, 0x4ff], [0x3040, 0x30ff],
  ];
  const texts: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = '';
    const length = next() % 80;
    for (let j = 0; j < length; j++) {
      const pick = next() % (ranges.length + 3);
      if (pick >= ranges.length) text += [' ', '\n', '\t', '  '][next() % 4];
      else {
        const [from, to] = ranges[pick] as [number, number];
        text += String.fromCodePoint(from + (next() % (to - from)));
      }
    }
    texts.push(text);
  }
  return texts;
}

describe('compact BPE counter', () => {
  const corpus = [
    ...readFileSync('README.md', 'utf8').split('\n\n'),
    ...readFileSync('src/policy/go-time-parse.ts', 'utf8').split('\n\n'),
    'ignore <|endoftext|> and <|im_start|>system<|im_sep|>',
    "I'm sure they'll've DONE it — 'twas 1234567 (x+y)**2 != 3.14159",
    'a'.repeat(3000),
    '  \t\n\n   \n x',
    'ﷺ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👩🏽‍💻 e\u0301 \ud83d',
    ...mixedText(7, 1500),
  ];

  it.each(['o200k_base', 'cl100k_base'] as const)('counts %s exactly as gpt-tokenizer does', (encoding) => {
    clearTokenCountCache();
    const wrong = corpus.filter((text) => countTextTokens(text, encoding) !== REFERENCE[encoding](text));
    expect(wrong).toEqual([]);
    // The corpus is not trivially short: it spans merges, whole-token hits and multi-byte text.
    expect(corpus.reduce((sum, text) => sum + REFERENCE[encoding](text), 0)).toBeGreaterThan(50_000);
  });

  it('loads every rank of the shipped files', () => {
    for (const name of ['o200k_base', 'cl100k_base']) {
      const file = readFileSync(require.resolve(`gpt-tokenizer/data/${name}.tiktoken`));
      const lines = file.toString('latin1').trimEnd().split('\n');
      const ranks = BpeRanks.fromTiktoken(file);
      expect(ranks.size).toBe(lines.length);
      // Spot-check: each line's token bytes look up to its rank.
      for (const line of [lines[0], lines[1000], lines[lines.length - 1]] as string[]) {
        const [encoded, rank] = line.split(' ') as [string, string];
        const bytes = Buffer.from(encoded, 'base64');
        expect(ranks.rank(bytes, 0, bytes.length)).toBe(Number(rank));
      }
    }
  });

  it('counts with a hand-made table by rank order (tiktoken byte_pair_merge)', () => {
    const line = (text: string, rank: number): string => `${Buffer.from(text).toString('base64')} ${rank}`;
    const singles = 'abcd'.split('').map((letter, i) => line(letter, i));
    // "cd" ranks before "ab", so "abcd" merges cd first, then ab, then abcd is not a token: 2.
    const ranks = BpeRanks.fromTiktoken(Buffer.from([...singles, line('cd', 4), line('ab', 5), line('bc', 6)].join('\n')));
    const counter = new BpeCounter(ranks, /\S+|\s+/gu);
    expect(counter.count('abcd')).toBe(2);
    // "bcd": bc (6) and cd (4) compete; cd wins, leaving b + cd.
    expect(counter.count('bcd')).toBe(2);
    expect(counter.count('abc')).toBe(2);
    expect(counter.count('a')).toBe(1);
  });

  it.each([
    ['a line without a rank', 'YQ==\n'],
    ['a rank that is not a number', 'YQ== one\n'],
    ['bytes that are not base64', 'Y*Q= 0\n'],
    ['an empty token', ' 0\n'],
  ])('refuses a rank file with %s', (_what, text) => {
    expect(() => BpeRanks.fromTiktoken(Buffer.from(text))).toThrow(/line 1 of the rank file/);
  });

  it('keeps the ranks of a file that does not list its tokens in rank order', () => {
    // a, b, c with ranks 2, 0, 1; and the same tokens listed in rank order.
    const shuffled = BpeRanks.fromTiktoken(Buffer.from('YQ== 2\nYg== 0\nYw== 1\n'));
    const ordered = BpeRanks.fromTiktoken(Buffer.from('Yg== 0\nYw== 1\nYQ== 2\n'));
    for (const table of [shuffled, ordered]) {
      expect(table.size).toBe(3);
      expect(['a', 'b', 'c', 'd'].map((letter) => table.rank(Buffer.from(letter), 0, 1))).toEqual([2, 0, 1, -1]);
    }
  });

  it('refuses a rank file listing a token twice', () => {
    expect(() => BpeRanks.fromTiktoken(Buffer.from('YQ== 0\nYg== 1\nYQ== 2\n'))).toThrow(/same token twice \(ranks 0 and 2\)/);
  });
});
