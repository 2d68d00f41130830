/**
 * JSON as Go's encoding/json reads and writes it, for the places Signalbox must agree with OPA
 * to the byte: JWT segments in the io.jwt.* builtins (OPA decodes them with UseNumber) and the
 * structured files of a signed bundle (OPA's bundle hash.go hashes their canonical form).
 *
 * The parser is strict JSON (RFC 8259, as Go's decoder): numbers are kept as their source text,
 * as Go's `json.Number`, so 12345678901234567890 stays exact; the last of duplicate keys wins; a
 * lone UTF-16 surrogate escape decodes as U+FFFD. There is one parser and two writers: the
 * document as read (toJsonText) and Go's own output with keys sorted (canonicalGoJson).
 */

/** A JSON number kept as its source text, so claims such as 12345678901234567890 stay exact. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** A parsed JSON value: numbers as {@link JsonNumber}, objects as {@link JsonObject}. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
/** A Map, not a plain object: a "__proto__" claim must stay an ordinary key. */
export type JsonObject = Map<string, JsonValue>;

/** How {@link parseGoJson} reads a document. */
export interface GoJsonOptions {
  /**
   * The deepest nesting accepted, the top-level value being at depth 0; a value deeper than this
   * is an error. Without it, nesting is limited only by the stack (a RangeError).
   */
  readonly maxDepth?: number;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y;
const LITERALS: readonly (readonly [string, JsonValue])[] = [
  ['true', true],
  ['false', false],
  ['null', null],
];

/**
 * Parses one JSON document as Go's decoder with UseNumber does. Throws on anything that is not
 * strict JSON, including trailing data after the value.
 */
export function parseGoJson(text: string, options: GoJsonOptions = {}): JsonValue {
  return new StrictJsonParser(text, options.maxDepth ?? Infinity).parseDocument();
}

class StrictJsonParser {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  parseDocument(): JsonValue {
    this.skipWhitespace();
    const value = this.value(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) throw new Error('trailing characters');
    return value;
  }

  private skipWhitespace(): void {
    while (this.pos < this.text.length && ' \t\n\r'.includes(this.text[this.pos] as string)) this.pos++;
  }

  private value(depth: number): JsonValue {
    if (depth > this.maxDepth) throw new Error('nested too deeply');
    const c = this.text[this.pos];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    for (const [literal, value] of LITERALS) {
      if (this.text.startsWith(literal, this.pos)) {
        this.pos += literal.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.pos;
    const number = NUMBER.exec(this.text);
    if (!number) throw new Error(`unexpected character at ${this.pos}`);
    this.pos += number[0].length;
    return new JsonNumber(number[0]);
  }

  private object(depth: number): JsonObject {
    const result: JsonObject = new Map();
    this.pos++;
    this.skipWhitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') throw new Error(`expected a key at ${this.pos}`);
      const key = this.string();
      this.skipWhitespace();
      if (this.text[this.pos++] !== ':') throw new Error(`expected ":" at ${this.pos - 1}`);
      this.skipWhitespace();
      result.set(key, this.value(depth + 1)); // a repeated key: the last wins, as in Go
      this.skipWhitespace();
      const next = this.text[this.pos++];
      if (next === '}') return result;
      if (next !== ',') throw new Error(`expected "," or "}" at ${this.pos - 1}`);
    }
  }

  private array(depth: number): JsonValue[] {
    const result: JsonValue[] = [];
    this.pos++;
    this.skipWhitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return result;
    }
    for (;;) {
      this.skipWhitespace();
      result.push(this.value(depth + 1));
      this.skipWhitespace();
      const next = this.text[this.pos++];
      if (next === ']') return result;
      if (next !== ',') throw new Error(`expected "," or "]" at ${this.pos - 1}`);
    }
  }

  /** Scanned by hand rather than by one regular expression, whose backtracking overflows on a string of tens of megabytes. */
  private string(): string {
    const start = this.pos;
    let i = start + 1;
    for (;;) {
      const c = this.text.charCodeAt(i);
      if (Number.isNaN(c) || c < 0x20) throw new Error(`malformed string at ${start}`);
      if (c === 0x22) break;
      if (c === 0x5c) {
        ESCAPE.lastIndex = i;
        if (!ESCAPE.test(this.text)) throw new Error(`malformed escape at ${i}`);
        i = ESCAPE.lastIndex;
      } else i++;
    }
    this.pos = i + 1;
    const literal = this.text.slice(start, this.pos);
    // Go decodes an unpaired surrogate escape to U+FFFD.
    return wellFormed(JSON.parse(literal) as string);
  }
}

/** `s` with each lone UTF-16 surrogate replaced by U+FFFD, as Go decodes and encodes it. */
export function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** Serialises a JsonValue in document order, without whitespace; numbers are written as their source text. */
export function toJsonText(value: JsonValue): string {
  if (value instanceof JsonNumber) return value.text;
  if (value instanceof Map) return `{${[...value].map(([k, v]) => `${JSON.stringify(k)}:${toJsonText(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  return JSON.stringify(value);
}

/** A string as Go's encoding/json writes it with HTML escaping off (hash.go `encodePrimitive`). */
function goJsonString(s: string): string {
  return JSON.stringify(wellFormed(s)).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** Go's order of strings, and so of map keys: by their UTF-8 bytes. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function writeCanonical(value: JsonValue, out: string[]): void {
  if (value === null) out.push('null');
  else if (typeof value === 'boolean') out.push(String(value));
  else if (typeof value === 'string') out.push(goJsonString(value));
  else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item, i) => {
      if (i > 0) out.push(',');
      writeCanonical(item, out);
    });
    out.push(']');
  } else if (value instanceof Map) {
    out.push('{');
    [...value.keys()].sort(compareUtf8).forEach((key, i) => {
      if (i > 0) out.push(',');
      out.push(goJsonString(key), ':');
      writeCanonical(value.get(key) as JsonValue, out);
    });
    out.push('}');
  } else out.push(value.text);
}

/**
 * The text Go's encoding/json writes for a value with HTML escaping off, as OPA's bundle hash.go
 * does: object keys sorted by their UTF-8 bytes, no insignificant whitespace, numbers as written.
 */
export function canonicalGoJson(value: JsonValue): string {
  const out: string[] = [];
  writeCanonical(value, out);
  return out.join('');
}
