/**
 * JSON text written once and reused. Every decision serialises its policy input for the engine
 * and then serialises a masked copy of the same input for the audit record; the copy shares
 * every member masking leaves alone, so the text of those members can be written once and
 * spliced into both.
 */

/** JSON text in pieces that are written one after another: splicing texts never copies them. */
type Pieces = readonly string[];

/**
 * A value written as JSON, now or when first needed. Writers that know it (the policy engine,
 * the audit chain) write its `pieces` as they are; anything else that stringifies it gets the
 * same JSON through `toJSON`.
 */
export class JsonText {
  #pieces: Pieces | undefined;
  #write: (() => Pieces) | undefined;

  /** The text (or its pieces), or a function that writes them on first use (and may throw then, as JSON.stringify does). */
  constructor(text: string | Pieces | (() => Pieces)) {
    if (typeof text === 'function') this.#write = text;
    else this.#pieces = typeof text === 'string' ? [text] : text;
  }

  /** The text in pieces, to be written one after another. */
  get pieces(): Pieces {
    if (this.#pieces === undefined) {
      this.#pieces = (this.#write as () => Pieces)();
      this.#write = undefined;
    }
    return this.#pieces;
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
 * `JSON.stringify` each: its text is the object's JSON (the apart members first), and a variant
 * of it that replaces only apart members (a masked copy) is written by serialising those and
 * reusing the rest's text.
 */
export class MemberwiseJson extends JsonText {
  private constructor(
    private readonly apart: readonly string[],
    /** The members not apart, as serialised. */
    private readonly rest: Readonly<Record<string, unknown>>,
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
    return new MemberwiseJson(apart, rest, restText, merged(JSON.stringify(named), restText));
  }

  /**
   * The JSON text of `variant`: when it differs from the serialised object only in apart members
   * (a copy with those replaced), the rest's text is reused; otherwise it is serialised whole.
   * Throws what `JSON.stringify` throws.
   */
  textOf(variant: Readonly<Record<string, unknown>>): Pieces {
    const named: Record<string, unknown> = {};
    let restSeen = 0;
    for (const key of Object.keys(variant)) {
      if (this.apart.includes(key)) {
        named[key] = variant[key];
        continue;
      }
      if (this.rest[key] !== variant[key] || !Object.prototype.hasOwnProperty.call(this.rest, key)) return [JSON.stringify(variant)];
      restSeen += 1;
    }
    if (restSeen !== Object.keys(this.rest).length) return [JSON.stringify(variant)];
    return merged(JSON.stringify(named), this.restText);
  }
}
