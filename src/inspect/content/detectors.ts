/**
 * Content-safety detectors: where personal data and credentials sit in a piece of text.
 *
 * `detect` returns a type and UTF-16 offsets per match and nothing else: callers never get the
 * matched value back from this module, so it cannot leak into facts, logs or audit records by
 * accident. Every rule here is chosen for precision first (a policy that denies on a finding
 * must not fire on order numbers, GUIDs, timestamps or hashes), then recall; the labelled corpus
 * in test/fixtures/content-corpus.jsonl measures both (`npx tsx bench/detectors.ts`).
 *
 * Linear time: every regex has bounded quantifiers and a left-boundary lookbehind, so a match
 * attempt can only start at the beginning of a run of its characters and costs at most a
 * constant; the procedural parts (card digit groups, IBANs, PEM blocks) advance monotonically.
 * A 1 MB adversarial string is scanned in milliseconds (test/content.test.ts checks this).
 *
 * The detectors live in `detectors/`, by family: contact data (`contact.ts`), identifiers, cards
 * and bank numbers (`identifiers.ts`), secrets and keys (`secrets.ts`); with what they share:
 * the finding types (`finding-types.ts`), the detector shape (`detector.ts`), context keywords
 * (`context.ts`) and check digits (`validators.ts`). This file runs them and resolves overlaps.
 */
import { TextCache } from '../../core/text-cache.js';
import { emailDetector, phoneContextDetector, phoneE164Detector, phoneNanpDetector } from './detectors/contact.js';
import type { Detector, Facts } from './detectors/detector.js';
import { FINDING_TYPES as FINDING_TYPE_LIST, type FindingType, type Match } from './detectors/finding-types.js';
import { cardDetector, ibanDetector, ssnDetector } from './detectors/identifiers.js';
import { privateKeyDetector, secretDetectors } from './detectors/secrets.js';

export { FINDING_TYPES, isFindingType, type FindingType, type Match } from './detectors/finding-types.js';

/** Options of {@link detect}. */
export interface DetectOptions {
  /**
   * Text that labels `text` without being part of it, typically the JSON member name that holds
   * it (`card_number`, `ssn`, `awsSecretAccessKey`). It counts as nearby context for the rules
   * that need a keyword (contiguous card numbers and ones typed in fours that no issuer prints,
   * bare 9-digit SSNs, AWS secret keys, Azure storage keys). It is never scanned for matches
   * itself.
   */
  readonly context?: string;
  /** Report only these types. Overlaps are resolved first, over all types. */
  readonly types?: ReadonlySet<FindingType>;
}

interface Candidate extends Match {
  readonly priority: number;
}

const DETECTORS: readonly Detector[] = [
  privateKeyDetector,
  ...secretDetectors,
  ibanDetector,
  cardDetector,
  emailDetector,
  ssnDetector,
  phoneE164Detector,
  phoneNanpDetector,
  phoneContextDetector,
];

/** Every detector's gate literal in one search: most strings hold none, and are then spared each literal gate. */
const ANY_LITERAL = new RegExp(
  [...new Set(DETECTORS.flatMap((d) => d.literals ?? []))].map((literal) => literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'),
);

/**
 * Overlaps go to the lower priority number, then the longer match: the digits of an IBAN are not
 * also a card or a phone number, the `x@y.z` inside a URL with a token is not also an email.
 * Each character is claimed at most once, so this is linear in the text length.
 */
function resolve(candidates: Candidate[], length: number): Match[] {
  if (candidates.length < 2) return candidates.map(({ type, start, end }) => ({ type, start, end }));
  candidates.sort((a, b) => a.priority - b.priority || b.end - b.start - (a.end - a.start) || a.start - b.start);
  const taken = new Uint8Array(length);
  const kept: Match[] = [];
  for (const c of candidates) {
    let free = true;
    for (let i = c.start; i < c.end; i++) {
      if (taken[i] === 1) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    taken.fill(1, c.start, c.end);
    kept.push({ type: c.type, start: c.start, end: c.end });
  }
  return kept.sort((a, b) => a.start - b.start);
}

/**
 * Every finding in `text`, as non-overlapping matches sorted by start offset.
 *
 * @example detect('mail me at jane@example.com') // [{ type: 'email', start: 11, end: 27 }]
 */
export function detect(text: string, options: DetectOptions = {}): Match[] {
  if (text.length === 0) return [];
  const facts: Facts = { hasDigit: /[0-9]/.test(text), hasLiteral: ANY_LITERAL.test(text), context: options.context ?? '' };
  const candidates: Candidate[] = [];
  for (const detector of DETECTORS) {
    if (!detector.gate(text, facts)) continue;
    detector.find(text, facts, (type, start, end) => {
      if (end > start) candidates.push({ type, start, end, priority: detector.priority });
    });
  }
  const matches = resolve(candidates, text.length);
  const types = options.types;
  return types === undefined ? matches : matches.filter((m) => types.has(m.type));
}

/** Findings per remembered text, by context (a text is usually seen under one member name). */
const remembered = new TextCache<ReadonlyArray<readonly [string, readonly Match[]]>>(4_000_000, 20_000);
/** How many contexts one text keeps findings for; a text seen under more is scanned again. */
const CONTEXTS_PER_TEXT = 4;

/**
 * `detect(text, { context })`, remembered across requests (core/text-cache.ts): the same chat
 * history and system prompts come back on every turn, and every body repeats its member names
 * and roles, for which the detectors' fixed cost is most of a body's scan (13 µs against 7 µs
 * for the benchmark's chat body). The findings are offsets and types only; the text itself is
 * the key, in process memory. Callers must not change the array.
 */
export function detectRemembered(text: string, context?: string): readonly Match[] {
  const key = context ?? '';
  const seen = remembered.get(text);
  const hit = seen?.find(([c]) => c === key);
  if (hit) return hit[1];
  const matches = detect(text, { ...(context === undefined ? {} : { context }) });
  remembered.set(text, [...(seen ?? []).slice(1 - CONTEXTS_PER_TEXT), [key, matches]]);
  return matches;
}

/** Forgets every remembered finding (tests and benchmarks). */
export function clearRememberedFindings(): void {
  remembered.clear();
}

/** The finding types that are credentials (API keys, tokens, private keys). */
const SECRET_TYPES: ReadonlySet<FindingType> = new Set(FINDING_TYPE_LIST.filter((type) => type.startsWith('secret.')));

/** True when `text` holds a credential the secret detectors recognise (audit masking by meaning). */
export function containsSecret(text: string): boolean {
  // Overlaps are resolved over all types before filtering, as detect's `types` does.
  return detectRemembered(text).some((match) => SECRET_TYPES.has(match.type));
}

/** What replaces a match when it is redacted: `[REDACTED:email]`. */
export function redactionMarker(type: FindingType): string {
  return `[REDACTED:${type}]`;
}

/** `text` with each match (non-overlapping, sorted, as `detect` returns them) replaced by its marker. */
export function replaceMatches(text: string, matches: readonly Match[]): string {
  let out = '';
  let copied = 0;
  for (const m of matches) {
    out += text.slice(copied, m.start) + redactionMarker(m.type);
    copied = m.end;
  }
  return out + text.slice(copied);
}
