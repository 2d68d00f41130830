/**
 * JSON text written once and reused. Every decision serialises its policy input for the engine
 * and then serialises a masked copy of the same input for the audit record; the copy shares
 * every member masking leaves alone, so the text of those members can be written once and
 * spliced into both.
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

/** `{…a's members…,…b's members…}` from the JSON texts of two objects, in pieces. */
function merged(a: string, b: string): Pieces {
  if (a.length === 2) return [b];
  if (b.length === 2) return [a];
  return [a.slice(0, -1), ',', b.slice(1)];
}

/**
 * An object serialised in two parts, the members named `apart` and the rest, one
 * `JSON.stringify` each: its text is the object's JSON (the apart members first), and the text
 * of a copy with some apart members replaced (a masked copy) is written by serialising the apart
 * members again and reusing the rest's text.
 */
export class MemberwiseJson extends JsonText {
  private constructor(
    /** The apart members the object has, as serialised. */
    private readonly named: Readonly<Record<string, unknown>>,
    private readonly restText: string,
    pieces: Pieces,
  ) {
    super(pieces);
  }

  /** Serialises `value`; throws what `JSON.stringify` throws (a cycle, a BigInt, nesting past the stack). */
  static of(value: Readonly<Record<string, unknown>>, apart: readonly string[]): MemberwiseJson {
    const named: Record<string, unknown> = {};
    const rest: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      if (apart.includes(key)) named[key] = value[key];
      else rest[key] = value[key];
    }
    const restText = JSON.stringify(rest);
    return new MemberwiseJson(named, restText, merged(JSON.stringify(named), restText));
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
    return merged(JSON.stringify(named), this.restText);
  }
}
