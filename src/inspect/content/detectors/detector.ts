/**
 * What a detector is (a priority, a cheap gate, a finder) and the regex-based detector most
 * families are built from.
 */
import type { FindingType } from './finding-types.js';

/** Reports one match: its type and UTF-16 offsets. */
export type Emit = (type: FindingType, start: number, end: number) => void;

/**
 * What is known of the text before any detector runs: whether it has a digit, whether it holds
 * any detector's gate literal at all (one combined search, so the many strings that hold none,
 * JSON member names and plain prose, skip every literal gate at once), and the caller's context
 * (a member name).
 */
export interface Facts {
  readonly hasDigit: boolean;
  readonly hasLiteral: boolean;
  readonly context: string;
}

/** One detector: `detect` runs `find` on the texts that pass `gate`. */
export interface Detector {
  /** Lower wins when two matches overlap: a specific secret beats the digits inside it. */
  readonly priority: number;
  /** A cheap necessary condition (a substring test), so most strings skip most regexes. */
  readonly gate: (text: string, facts: Facts) => boolean;
  /** Substrings one of which every match contains; `Facts.hasLiteral` is true when the text holds any detector's. */
  readonly literals?: readonly string[];
  readonly find: (text: string, facts: Facts, emit: Emit) => void;
}

/** A detector from one or more global regexes, with an optional check on each hit. */
export function regexDetector(
  type: FindingType,
  priority: number,
  literals: readonly string[],
  patterns: readonly RegExp[],
  validate?: (value: string, text: string, start: number, end: number, facts: Facts) => boolean,
): Detector {
  return {
    priority,
    literals,
    gate: (text, facts) => facts.hasLiteral && literals.some((literal) => text.includes(literal)),
    find(text, facts, emit) {
      for (const pattern of patterns) {
        pattern.lastIndex = 0;
        for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
          const end = m.index + m[0].length;
          if (validate === undefined || validate(m[0], text, m.index, end, facts)) emit(type, m.index, end);
        }
      }
    },
  };
}
