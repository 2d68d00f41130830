import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertCataloguedBody } from './helpers/catalogue.js';
import { CODE_CATALOGUE, ENFORCEMENT_CODE, ERROR_CODES, clientAnswer, type CodeEntry } from '../src/core/codes.js';

/** README's "Error codes" table as { code: [http, grpc, meaning, message] }; "—" where a code has no client answer. */
async function readmeTable(): Promise<Record<string, string[]>> {
  const readme = await readFile(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const section = readme.split('\n## Error codes')[1]!.split('\n## ')[0]!;
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$/gm)];
  return Object.fromEntries(rows.map((m) => [m[1]!, [m[2]!, m[3]!, m[4]!, m[5]!]]));
}

describe('the code catalogue', () => {
  it('README lists exactly the catalogue: statuses, meanings and the messages clients see', async () => {
    const expected = Object.fromEntries(
      Object.entries(CODE_CATALOGUE as Record<string, CodeEntry>).map(([code, entry]) => [
        code,
        entry.client ? [String(entry.client.http), `\`${entry.client.grpc}\``, entry.meaning, entry.client.ownMessage ? `${entry.client.message} (or the specific reason)` : entry.client.message] : ['—', '—', entry.meaning, '—'],
      ]),
    );
    expect(await readmeTable()).toEqual(expected);
  });

  it('answers an operator-only code as internal_error, never as itself', () => {
    expect(clientAnswer('bundle_invalid')).toMatchObject({ code: 'internal_error', http: 500, grpc: 'INTERNAL' });
    expect(clientAnswer('hold_not_found')).toMatchObject({ code: 'hold_not_found', http: 404, grpc: 'NOT_FOUND', ownMessage: true });
  });

  it('the response check used by the test helpers refuses an uncatalogued code, and leaves policy codes alone', () => {
    expect(() => assertCataloguedBody(JSON.stringify({ error: { code: 'budget_exceeded' } }), 'x')).not.toThrow();
    expect(() => assertCataloguedBody(JSON.stringify({ error: { code: 'model.not_allowed' } }), 'x')).not.toThrow();
    expect(() => assertCataloguedBody('not json', 'x')).not.toThrow();
    expect(() => assertCataloguedBody(JSON.stringify({ error: { code: 'budget_exeeded' } }), 'x')).toThrow(/catalogue .* lacks/);
  });

  it('names every enforcement denial with a code clients can receive, answered with 429', () => {
    for (const code of Object.values(ENFORCEMENT_CODE)) {
      expect(ERROR_CODES).toContain(code);
      expect(clientAnswer(code)).toMatchObject({ code, http: 429 });
    }
  });
});
