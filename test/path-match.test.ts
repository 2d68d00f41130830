/**
 * Go's path.Match for exclude_files (src/bundles/path-match.ts). The expected answers are Go's
 * own (path.Match, Go 1.26), "bad" where Go returns ErrBadPattern.
 */
import { describe, expect, it } from 'vitest';
import { compileExcludePattern } from '../src/bundles/path-match.js';

const GO: readonly (readonly [pattern: string, name: string, go: boolean | 'bad'])[] = [
  ['notes-2024/*.md', 'notes-2024/a.md', true],
  ['a-b', 'a-b', true],
  ['a-b', 'a', false],
  ['*.md', 'notes/a.md', false],
  ['notes/*.md', 'notes/a.md', true],
  ['[\\-a]', '-', true],
  ['[\\-a]', 'b', false],
  ['[😀-😂]', '😁', true],
  ['[😀-😂]', '😃', false],
  ['?', '😀', true],
  ['??', '😀', false],
  ['[^a]', '/', true],
  ['[^a]', 'a', false],
  ['\\*', '*', true],
  ['\\*', 'a', false],
  ['[\\]]', ']', true],
  ['x.md', 'xymd', false],
  ['(a|b)+', 'a', false],
  ['é?', 'éa', true],
  ['[a-]', 'a', 'bad'],
  ['[!--]', '#', 'bad'],
  ['[-a]', 'a', 'bad'],
  ['[]a]', 'a', 'bad'],
  ['[a', 'a', 'bad'],
  ['a\\', 'a', 'bad'],
];

describe('compileExcludePattern', () => {
  it.each(GO)('%j against %j is what Go says: %j', (pattern, name, go) => {
    if (go === 'bad') expect(() => compileExcludePattern(pattern)).toThrow(/bad pattern/);
    else expect(compileExcludePattern(pattern).test(name)).toBe(go);
  });

  it('refuses a range whose end is below its start, which Go accepts and never matches', () => {
    expect(() => compileExcludePattern('[z-a]')).toThrow(/bad pattern/);
    expect(() => compileExcludePattern('[😀-a]')).toThrow(/bad pattern/);
  });
});
