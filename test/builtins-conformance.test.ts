/**
 * OPA's own conformance cases for the builtins Signalbox provides on the host, run through
 * Signalbox's build and engine (test/helpers/opa-conformance.ts explains how).
 *
 * Every case of the pinned OPA that calls (or mocks) a host builtin is run. A wrong answer fails
 * the suite; a case that cannot run outside OPA's own test runner is listed in EXCLUDED with the
 * reason. The per-folder table is printed, and quoted in the README ("Host builtins").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_BUILTINS } from '../src/policy/builtins.js';
import { callsAny, conformanceTable, loadAllCases, runFolder, type CaseOutcome, type Exclusions, type OpaCase } from './helpers/opa-conformance.js';

/** Cases that cannot run outside OPA's own test runner, with the reason. */
const EXCLUDED: Exclusions = {
  'time/time caching': "calls test.sleep, a builtin OPA's test runner registers for itself",
  'withkeyword/builtin: nested, multiple mocks': 'mocks http.send, which the WASM capabilities leave out (the engine makes no network calls)',
  'withkeyword/builtin-builtin: arity 0': 'mocks time.now_ns with opa.runtime, which the WASM capabilities leave out',
};

const cases: OpaCase[] = loadAllCases().filter((c) => callsAny(c, HOST_BUILTINS));
const folders = [...new Set(cases.map((c) => c.folder))].sort();

describe("OPA's conformance cases for the host builtins", () => {
  const outcomes = new Map<string, CaseOutcome[]>();

  beforeAll(async () => {
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    for (const folder of folders) outcomes.set(folder, await runFolder(cases.filter((c) => c.folder === folder), EXCLUDED, nowNs));
  }, 240_000);

  afterAll(() => {
    const all = [...outcomes.values()].flat();
    if (all.length > 0) console.log(`OPA conformance cases for host builtins:\n${conformanceTable(all)}`);
  });

  it('finds the cases of every host builtin family in the pinned OPA', () => {
    expect(folders).toEqual(expect.arrayContaining(['jwtbuiltins', 'jwtdecodeverify', 'jwtverifyrsa', 'time']));
    expect(cases.length).toBeGreaterThan(170);
  });

  it('lists only exclusions that name an existing case', () => {
    expect(Object.keys(EXCLUDED).filter((note) => !cases.some((c) => c.note === note))).toEqual([]);
  });

  for (const folder of folders) {
    it(`${folder}: no wrong answers`, () => {
      const wrong = (outcomes.get(folder) ?? []).filter((o) => o.status === 'wrong').map((o) => `${o.case.note} (${o.case.file}): ${o.detail ?? ''}`);
      expect(wrong).toEqual([]);
    });
  }

  it('judges a tampered expectation wrong (the harness can fail)', async () => {
    const find = (note: string): OpaCase => cases.find((c) => c.note === note) as OpaCase;
    const tampered: OpaCase[] = [
      { ...find('base64urlbuiltins/encode-1 without padding'), wantResult: [{ x: 'aGVsbG8=' }] },
      { ...find('jwtbuiltins/no-periods'), wantError: 'some other message' },
      { ...find('time/parse_nanos_too_large'), strictError: false },
    ];
    const judged = await runFolder(tampered, {}, BigInt(Date.now()) * 1_000_000n);
    expect(judged.map((o) => o.status)).toEqual(['wrong', 'wrong', 'wrong']);
  });

  it('runs every case it does not exclude (unsupported only for builtins the build rejects)', () => {
    const unsupported = [...outcomes.values()].flat().filter((o) => o.status === 'unsupported' && !(o.case.note in EXCLUDED));
    expect(unsupported.map((o) => `${o.case.folder}: ${o.case.note}: ${o.detail ?? ''}`)).toEqual([]);
  });
});
