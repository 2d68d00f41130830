/**
 * Precision and recall of the detectors against a labelled corpus (JSON lines). The test suite
 * and `bench/detectors.ts` both call `evaluateCorpus`, so the numbers the README quotes are the
 * numbers the tests enforce.
 */
import { detect, FINDING_TYPES, isFindingType, type FindingType, type Match } from './detectors.js';

/** How many findings of one type a corpus snippet holds. */
export interface CorpusExpectation {
  readonly type: FindingType;
  readonly count: number;
}

/** One labelled snippet: `expect` lists every finding the text holds (`[]` for a negative). */
export interface CorpusEntry {
  readonly id: string;
  readonly text: string;
  readonly expect: readonly CorpusExpectation[];
  readonly note?: string;
}

/** The first malformed line of a corpus (`line` is 1-based), so the file can be fixed rather than half-scored. */
export class CorpusError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`corpus line ${line}: ${message}`);
    this.name = 'CorpusError';
  }
}

/** Parses and validates a JSON-lines corpus; throws `CorpusError` naming the first bad line. */
export function parseCorpus(jsonl: string): CorpusEntry[] {
  const entries: CorpusEntry[] = [];
  const ids = new Set<string>();
  const lines = jsonl.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    const n = i + 1;
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new CorpusError(n, 'not valid JSON');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CorpusError(n, 'not a JSON object');
    const { id, text, expect, note, ...rest } = value as Record<string, unknown>;
    if (Object.keys(rest).length > 0) throw new CorpusError(n, `unknown member ${Object.keys(rest)[0]}`);
    if (typeof id !== 'string' || id === '') throw new CorpusError(n, 'id must be a non-empty string');
    if (ids.has(id)) throw new CorpusError(n, `duplicate id ${id}`);
    ids.add(id);
    if (typeof text !== 'string') throw new CorpusError(n, 'text must be a string');
    if (note !== undefined && typeof note !== 'string') throw new CorpusError(n, 'note must be a string');
    if (!Array.isArray(expect)) throw new CorpusError(n, 'expect must be an array');
    const seen = new Set<string>();
    const expectations: CorpusExpectation[] = [];
    for (const e of expect as unknown[]) {
      const { type, count } = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
      if (!isFindingType(type)) throw new CorpusError(n, `unknown finding type ${JSON.stringify(type)}`);
      if (typeof count !== 'number' || !Number.isInteger(count) || count < 1) throw new CorpusError(n, 'count must be a positive integer');
      if (seen.has(type)) throw new CorpusError(n, `type ${type} listed twice`);
      seen.add(type);
      expectations.push({ type, count });
    }
    entries.push(note === undefined ? { id, text, expect: expectations } : { id, text, expect: expectations, note });
  }
  return entries;
}

/** True and false positives and negatives of one finding type (or all of them), with the ratios the README quotes. */
export interface DetectorScore {
  readonly type: FindingType | 'overall';
  readonly tp: number;
  readonly fp: number;
  readonly fn: number;
  /** tp / (tp + fp); 1 when nothing was reported. */
  readonly precision: number;
  /** tp / (tp + fn); 1 when nothing was expected. */
  readonly recall: number;
}

/** A corpus entry where the detectors disagreed with the label: ids and counts, never text. */
export interface Disagreement {
  readonly id: string;
  readonly type: FindingType;
  readonly expected: number;
  readonly got: number;
}

/**
 * The result of {@link evaluateCorpus}: scores per type and overall, and where the detectors and
 * the labels disagree.
 */
export interface Evaluation {
  readonly byType: readonly DetectorScore[];
  readonly overall: DetectorScore;
  readonly disagreements: readonly Disagreement[];
}

function score(type: FindingType | 'overall', tp: number, fp: number, fn: number): DetectorScore {
  return { type, tp, fp, fn, precision: tp + fp === 0 ? 1 : tp / (tp + fp), recall: tp + fn === 0 ? 1 : tp / (tp + fn) };
}

/**
 * Counts per type: a snippet expecting 2 emails where 3 are found is 2 TP and 1 FP; one where
 * 1 is found is 1 TP and 1 FN.
 */
export function evaluateCorpus(entries: readonly CorpusEntry[], run: (text: string) => readonly Match[] = (text) => detect(text)): Evaluation {
  const totals = new Map<FindingType, { tp: number; fp: number; fn: number }>(FINDING_TYPES.map((t) => [t, { tp: 0, fp: 0, fn: 0 }]));
  const disagreements: Disagreement[] = [];
  for (const entry of entries) {
    const got = new Map<FindingType, number>();
    for (const m of run(entry.text)) got.set(m.type, (got.get(m.type) ?? 0) + 1);
    const expected = new Map<FindingType, number>(entry.expect.map((e) => [e.type, e.count]));
    for (const type of FINDING_TYPES) {
      const e = expected.get(type) ?? 0;
      const g = got.get(type) ?? 0;
      const t = totals.get(type) as { tp: number; fp: number; fn: number };
      t.tp += Math.min(e, g);
      t.fp += Math.max(0, g - e);
      t.fn += Math.max(0, e - g);
      if (e !== g) disagreements.push({ id: entry.id, type, expected: e, got: g });
    }
  }
  const byType = FINDING_TYPES.map((type) => {
    const t = totals.get(type) as { tp: number; fp: number; fn: number };
    return score(type, t.tp, t.fp, t.fn);
  });
  const sum = (k: 'tp' | 'fp' | 'fn'): number => byType.reduce((acc, s) => acc + s[k], 0);
  return { byType, overall: score('overall', sum('tp'), sum('fp'), sum('fn')), disagreements };
}
