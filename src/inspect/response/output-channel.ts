/**
 * One output of a streamed response (a choice's content, a tool call's arguments, a content
 * block) as the stream guard sees it: the text so far, of which only a bounded window is kept;
 * the values found in it, at absolute offsets, once they are about to leave; and how many tokens
 * the released text holds, counted as it goes.
 *
 * Offsets are UTF-16 code units from the start of the output. Text before `releasedTo` has been
 * forwarded; the window keeps `carryChars` of it as context for the detectors (the keyword
 * before a card number, the start of a value that is still being written).
 */
import { detect, redactionMarker, type FindingType } from '../content/detectors.js';
import { countTextTokens, type EncodingName } from '../llm/tokenizer.js';

/** A value found in an output, at absolute offsets; whether it is masked is decided when it first leaves. */
interface TrackedMatch {
  readonly type: FindingType;
  start: number;
  end: number;
  redact: boolean | undefined;
  markerPlaced: boolean;
}

/** Released text is counted in pieces of about this many characters, cut where the tokenizer cuts anyway. */
const COUNT_PIECE_CHARS = 2048;

/** See the file comment. */
export class OutputChannel {
  /** Characters written to this output so far. */
  total = 0;
  /** Text before this offset has been forwarded (or swallowed). */
  releasedTo = 0;
  /** Text before this offset belongs to events ready to be released. */
  readyTo = 0;
  /** No more text will come. */
  closed = false;
  private window = '';
  private base = 0;
  private matches: TrackedMatch[] = [];
  private counted = 0;
  private scannedTotal = -1;
  private scannedReadyTo = -1;
  private uncounted = '';

  constructor(
    readonly path: string,
    readonly group: string,
    private readonly carryChars: number,
    private readonly encoding: EncodingName,
  ) {}

  /** Appends text; returns its start offset. */
  append(text: string): number {
    const start = this.total;
    this.window += text;
    this.total += text.length;
    return start;
  }

  /**
   * Runs the detectors on the window and returns the types of values not seen before that reach
   * into the ready text (they must be decided on now). A value that grew since it was first seen
   * is tracked at its new length, so its new part is masked too.
   */
  scan(): FindingType[] {
    if (this.readyTo <= this.releasedTo && this.matches.length === 0) return [];
    // Nothing new to look at since the last scan: same text, same ready point.
    if (this.total === this.scannedTotal && this.readyTo === this.scannedReadyTo) return [];
    this.scannedTotal = this.total;
    this.scannedReadyTo = this.readyTo;
    const found: FindingType[] = [];
    for (const m of detect(this.window)) {
      const start = this.base + m.start;
      const end = this.base + m.end;
      const known = this.matches.find((t) => t.start < end && start < t.end);
      if (known) {
        // Grown at either end; what already left stays as it left.
        known.start = Math.min(known.start, Math.max(start, this.releasedTo));
        known.end = Math.max(known.end, end);
        continue;
      }
      if (end <= this.releasedTo || start >= this.readyTo) continue;
      this.matches.push({ type: m.type, start, end, redact: undefined, markerPlaced: false });
      found.push(m.type);
    }
    this.matches.sort((a, b) => a.start - b.start);
    return found;
  }

  /**
   * The text at [start, end) as it may leave: each tracked value in it masked when `redact` says
   * so for its type (decided once per value, at its first release), its marker in the first piece
   * of it that leaves, the rest of it dropped. Advances `releasedTo` and counts the original text.
   */
  release(start: number, end: number, redact: (type: FindingType) => boolean): string {
    const original = this.window.slice(start - this.base, end - this.base);
    let out = '';
    let at = start;
    for (const m of this.matches) {
      if (m.end <= start || m.start >= end) continue;
      m.redact ??= redact(m.type);
      if (!m.redact) continue;
      const from = Math.max(m.start, start);
      out += original.slice(at - start, from - start);
      if (!m.markerPlaced) out += redactionMarker(m.type);
      m.markerPlaced = true;
      at = Math.min(m.end, end);
    }
    out += original.slice(at - start);
    this.releasedTo = Math.max(this.releasedTo, end);
    this.count(original);
    this.trim();
    return out;
  }

  /** Tokens in the text released so far. */
  tokens(): number {
    return this.counted + countTextTokens(this.uncounted, this.encoding);
  }

  /** Forgets text and values the detectors no longer need. */
  private trim(): void {
    this.matches = this.matches.filter((m) => m.end > this.releasedTo - this.carryChars);
    let cut = Math.max(this.base, this.releasedTo - this.carryChars);
    // Never start the window inside a surrogate pair.
    const code = this.window.charCodeAt(cut - this.base);
    if (code >= 0xdc00 && code <= 0xdfff) cut -= 1;
    if (cut <= this.base) return;
    this.window = this.window.slice(cut - this.base);
    this.base = cut;
  }

  /**
   * Counts released text in pieces cut before a space that starts a word, where the
   * pre-tokenizer splits too, so the sum matches a count of the whole text (bar rare cuts)
   * without keeping it.
   */
  private count(text: string): void {
    this.uncounted += text;
    if (this.uncounted.length < COUNT_PIECE_CHARS * 2) return;
    let cut = -1;
    for (let i = this.uncounted.length - COUNT_PIECE_CHARS; i > 0; i--) {
      if (this.uncounted.charCodeAt(i) === 0x20 && !/\s/.test(this.uncounted[i - 1] as string) && /[\p{L}\p{N}]/u.test(this.uncounted[i + 1] ?? '')) {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      cut = this.uncounted.length - COUNT_PIECE_CHARS;
      const code = this.uncounted.charCodeAt(cut);
      if (code >= 0xdc00 && code <= 0xdfff) cut -= 1;
    }
    this.counted += countTextTokens(this.uncounted.slice(0, cut), this.encoding);
    this.uncounted = this.uncounted.slice(cut);
  }
}
