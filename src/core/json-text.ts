/**
 * JSON text written once and reused. Every decision serialises its policy input for the engine
 * and then serialises a masked copy of the same input for the audit record; the copy shares
 * every member masking leaves alone, so the text of those members can be written once and
 * spliced into both. Values that outlive a decision and never change (a verified caller's
 * identity, a spend view nothing has changed since) are frozen with {@link frozenForJson}, and
 * their text is written once for every input that holds them.
 */

/** JSON text in pieces that are written one after another: splicing texts never copies them. */
type Pieces = readonly string[];

/**
 * A value already written as JSON. Writers that know it (the policy engine, the audit chain)
 * write its `pieces` as they are; anything else that stringifies it gets the same JSON through
 * `toJSON`.
 */
export class JsonText {
  readonly pieces: Pieces;

  /** The text, or its pieces. */
  constructor(text: string | Pieces) {
    this.pieces = typeof text === 'string' ? [text] : text;
  }

  /** The text, joined. */
  get text(): string {
    return this.pieces.join('');
  }

  /** The value again, for a serialiser that does not know this class (slow, but the same JSON). */
  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}

/** `"key":` for the few member names written around JSON text, made once each. */
const openings = new Map<string, string>();

/** `"key":`, the opening of an object member written as JSON text. */
export function memberOpening(key: string): string {
  let opening = openings.get(key);
  if (opening === undefined) {
    opening = `${JSON.stringify(key)}:`;
    // Member names are the writers' own; the bound only guards against a caller that varies them.
    if (openings.size < 64) openings.set(key, opening);
  }
  return opening;
}

/** The JSON text of each value frozen by {@link frozenForJson}; null until first written. */
const frozenTexts = new WeakMap<object, string | null>();

/**
 * Freezes `value` deeply and marks it as JSON whose text can be written once and reused for as
 * long as the value lives: an input member that is such a value is not serialised again.
 * Returns `value`. For values shared across decisions that must never change anyway.
 */
export function frozenForJson<T extends object>(value: T): T {
  deepFreeze(value);
  if (!frozenTexts.has(value)) frozenTexts.set(value, null);
  return value;
}

/** Freezes `value` and everything it holds (frozen or not: a frozen object may hold one that is not). */
function deepFreeze(value: object): void {
  const seen = new Set<object>();
  const pending: object[] = [value];
  while (pending.length > 0) {
    const item = pending.pop() as Record<string, unknown>;
    if (seen.has(item)) continue;
    seen.add(item);
    Object.freeze(item);
    for (const key of Object.keys(item)) {
      const member = item[key];
      if (typeof member === 'object' && member !== null) pending.push(member);
    }
  }
}

/** The text of a value frozen for JSON, written on first use; undefined for any other value. */
function frozenText(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const text = frozenTexts.get(value);
  if (text === undefined) return undefined;
  if (text !== null) return text;
  const written = JSON.stringify(value);
  frozenTexts.set(value, written);
  return written;
}

/** An object's pieces: its JSON text with `members` (each `,"key":text`, in pieces) added at the end. */
function withMembers(text: string, members: readonly string[]): Pieces {
  if (members.length === 0) return [text];
  // `{}` plus members: drop the first member's comma.
  return text.length === 2 ? ['{', ...members.slice(1), '}'] : [text.slice(0, -1), ...members, '}'];
}

/** `{…a's members…,…b's members…}` from the JSON text of one object and the pieces of another. */
function merged(a: string, b: Pieces): Pieces {
  if (a.length === 2) return b;
  if (b.length === 1 && b[0]!.length === 2) return [a];
  return [a.slice(0, -1), ',', b[0]!.slice(1), ...b.slice(1)];
}

/**
 * An object serialised in two parts, the members named `apart` and the rest, one
 * `JSON.stringify` each: its text is the object's JSON (the apart members first), and the text
 * of a copy with some apart members replaced (a masked copy) is written by serialising the apart
 * members again and reusing the rest's text. A member of the rest that is frozen for JSON
 * ({@link frozenForJson}) is not serialised: its text is spliced in, after the others.
 */
export class MemberwiseJson extends JsonText {
  private constructor(
    /** The apart members the object has, as serialised. */
    private readonly named: Readonly<Record<string, unknown>>,
    private readonly restPieces: Pieces,
    pieces: Pieces,
  ) {
    super(pieces);
  }

  /** Serialises `value`; throws what `JSON.stringify` throws (a cycle, a BigInt, nesting past the stack). */
  static of(value: Readonly<Record<string, unknown>>, apart: readonly string[]): MemberwiseJson {
    const named: Record<string, unknown> = {};
    const rest: Record<string, unknown> = {};
    const frozen: string[] = [];
    for (const key of Object.keys(value)) {
      const member = value[key];
      if (apart.includes(key)) {
        named[key] = member;
        continue;
      }
      const text = frozenText(member);
      if (text === undefined) rest[key] = member;
      else frozen.push(',', memberOpening(key), text);
    }
    const restPieces = withMembers(JSON.stringify(rest), frozen);
    return new MemberwiseJson(named, restPieces, merged(JSON.stringify(named), restPieces));
  }

  /**
   * The text of the object with the members in `replacements` replaced, each of them one the
   * object has apart. Throws for any other member, and what `JSON.stringify` throws.
   */
  textWith(replacements: Readonly<Record<string, unknown>>): Pieces {
    const named: Record<string, unknown> = { ...this.named };
    for (const key of Object.keys(replacements)) {
      if (!Object.prototype.hasOwnProperty.call(this.named, key)) throw new Error(`member ${JSON.stringify(key)} was not serialised apart`);
      named[key] = replacements[key];
    }
    return merged(JSON.stringify(named), this.restPieces);
  }
}
