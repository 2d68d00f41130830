/**
 * Redaction: the same detectors as the scan, replacing each match with `[REDACTED:<type>]`.
 *
 * `redactBody` returns a deep copy with the same shape: every string is redacted, including
 * member names and the strings inside JSON-text strings (tool arguments stay a JSON string that
 * parses, with its numbers, order and formatting untouched outside the redacted strings);
 * numbers, booleans and null are copied as they are. It applies no size limit: whatever a scan
 * would find, redaction removes, however large the string.
 */
import { detect, replaceMatches, type FindingType } from './detectors.js';
import { isBinaryPayload, parseEmbeddedJson } from './scan.js';

interface Counter {
  n: number;
}

function redactPlain(text: string, context: string | undefined, types: ReadonlySet<FindingType> | undefined, counter: Counter): string {
  const matches = detect(text, { context, types });
  if (matches.length === 0) return text;
  counter.n += matches.length;
  return replaceMatches(text, matches);
}

function redactString(value: string, context: string | undefined, types: ReadonlySet<FindingType> | undefined, counter: Counter): string {
  if (isBinaryPayload(value, context)) return value;
  if (parseEmbeddedJson(value) !== undefined) return redactJsonText(value, context, types, counter);
  return redactPlain(value, context, types, counter);
}

interface JsonFrame {
  readonly object: boolean;
  /** The member name a value in this object sits under; for arrays, the array's own context. */
  key: string | undefined;
  expectKey: boolean;
  readonly context: string | undefined;
}

/**
 * Redacts the strings of a JSON text in place, token by token, so the result is the same JSON
 * with only the redacted strings re-encoded. Re-serialising a parsed copy instead would round
 * integers above 2^53 and reformat the text. `raw` must already be known to parse.
 */
function redactJsonText(raw: string, context: string | undefined, types: ReadonlySet<FindingType> | undefined, counter: Counter): string {
  const frames: JsonFrame[] = [];
  const contextHere = (): string | undefined => {
    const frame = frames[frames.length - 1];
    return frame === undefined ? context : frame.object ? frame.key : frame.context;
  };
  let out = '';
  let copied = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 34) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        const d = raw.charCodeAt(j);
        if (d === 34) break;
        if (d === 92) {
          escaped = true;
          j += 2;
        } else {
          j++;
        }
      }
      const decoded = escaped ? (JSON.parse(raw.slice(i, j + 1)) as string) : raw.slice(i + 1, j);
      const frame = frames[frames.length - 1];
      let replacement: string;
      if (frame !== undefined && frame.object && frame.expectKey) {
        frame.key = decoded;
        frame.expectKey = false;
        replacement = redactPlain(decoded, undefined, types, counter);
      } else {
        replacement = redactString(decoded, contextHere(), types, counter);
      }
      if (replacement !== decoded) {
        out += raw.slice(copied, i) + JSON.stringify(replacement);
        copied = j + 1;
      }
      i = j;
    } else if (c === 123 || c === 91) {
      frames.push({ object: c === 123, key: undefined, expectKey: true, context: contextHere() });
    } else if (c === 125 || c === 93) {
      frames.pop();
    } else if (c === 44) {
      const frame = frames[frames.length - 1];
      if (frame?.object === true) frame.expectKey = true;
    }
  }
  return copied === 0 ? raw : out + raw.slice(copied);
}

/** Defines an own property, so a member named `__proto__` stays data and never sets a prototype. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

interface CopyFrame {
  readonly source: object;
  readonly target: Record<string, unknown> | unknown[];
  readonly context: string | undefined;
}

/**
 * A deep copy of a parsed JSON body with every match replaced by `[REDACTED:<type>]` (only the
 * given types, when `types` is set). Member names are redacted too; if two names redact to the
 * same text, the later ones get `#2`, `#3`… so no member is lost. Iterative: no nesting depth
 * can overflow the stack.
 */
export function redactBody(body: unknown, types?: ReadonlySet<FindingType>): { body: unknown; redactions: number } {
  const counter: Counter = { n: 0 };
  const stack: CopyFrame[] = [];
  const copy = (value: unknown, context: string | undefined): unknown => {
    if (typeof value === 'string') return redactString(value, context, types, counter);
    if (typeof value !== 'object' || value === null) return value;
    const target: Record<string, unknown> | unknown[] = Array.isArray(value) ? new Array<unknown>(value.length) : {};
    stack.push({ source: value, target, context });
    return target;
  };
  const result = copy(body, undefined);
  while (stack.length > 0) {
    const { source, target, context } = stack.pop() as CopyFrame;
    if (Array.isArray(source)) {
      const out = target as unknown[];
      for (let i = 0; i < source.length; i++) out[i] = copy(source[i], context);
      continue;
    }
    const out = target as Record<string, unknown>;
    for (const [key, member] of Object.entries(source)) {
      let name = redactPlain(key, undefined, types, counter);
      if (Object.hasOwn(out, name)) {
        let n = 2;
        while (Object.hasOwn(out, `${name}#${n}`)) n++;
        name = `${name}#${n}`;
      }
      setOwn(out, name, copy(member, key));
    }
  }
  return { body: result, redactions: counter.n };
}

/**
 * One text with every match replaced (LiteLLM's `texts` list, a prompt outside JSON). The text
 * is treated as text even if it holds JSON.
 */
export function redactText(text: string, types?: ReadonlySet<FindingType>): { text: string; redactions: number } {
  const counter: Counter = { n: 0 };
  return { text: redactPlain(text, undefined, types, counter), redactions: counter.n };
}
