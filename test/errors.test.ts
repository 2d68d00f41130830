import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../src/core/errors.js';

describe('error catalogue', () => {
  it('README lists exactly the catalogue, with the same meanings', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const section = readme.split('## Error codes')[1]!.split('\n## ')[0]!;
    const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (.+) \|$/gm)].map((m) => [m[1], m[2]]);
    expect(Object.fromEntries(rows)).toEqual(ERROR_CATALOGUE);
  });
});
