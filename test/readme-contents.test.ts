import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { headings, section } from './helpers/readme.js';

const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');

describe("README's table of contents", () => {
  const anchors = new Set(headings(readme).map((heading) => heading.anchor));
  const contents = section(readme, 'Contents');
  const listed = [...contents.matchAll(/^\s*- \[([^\]]+)\]\(#([^)]+)\)$/gm)].map((m) => ({ text: m[1]!, anchor: m[2]! }));

  it('lists every ## section, in order', () => {
    const sections = headings(readme).filter((heading) => heading.level === 2 && heading.text !== 'Contents');
    const listedAnchors = listed.map((entry) => entry.anchor);
    expect(sections.map((heading) => heading.anchor).filter((anchor) => !listedAnchors.includes(anchor))).toEqual([]);
    expect(listedAnchors.filter((anchor) => sections.some((heading) => heading.anchor === anchor))).toEqual(sections.map((heading) => heading.anchor));
  });

  it('has only entries that are list links, each resolving to a heading', () => {
    expect(contents.trim().split('\n').filter((line) => line.trim() !== '' && !/^\s*- \[[^\]]+\]\(#[^)]+\)$/.test(line))).toEqual([]);
    expect(listed.filter((entry) => !anchors.has(entry.anchor))).toEqual([]);
  });

  it('every in-page link anywhere in the README resolves', () => {
    const links = [...readme.matchAll(/\]\(#([^)\s]+)\)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(listed.length);
    expect(links.filter((anchor) => !anchors.has(anchor))).toEqual([]);
  });
});
