/**
 * Scans a parsed request body for content findings: which types occur, at which JSON path, how
 * many times. Never the values: a finding is `{type, path, count}`, which is what the policy sees
 * under `input.content.findings` and what the audit trail may keep.
 *
 * Every string in the body is scanned, whatever the API: chat history of every role, content
 * parts, system prompts, OpenAI `tool_calls[].function.arguments`, Responses API input items
 * (`function_call.arguments`, `function_call_output.output`), Anthropic `tool_use.input` and
 * `tool_result.content`, MCP `tools/call` `params.arguments`. There is no per-API list to fall
 * behind: a field a provider adds next month is scanned too.
 *
 * Paths are JSONPath in normalised form, `$.messages[3].content[0].text`, with `['…']` for
 * member names that are not identifiers, and three suffixes of Signalbox's own:
 * - `<json>`: the string at this path holds a JSON object or array (tool arguments, tool
 *   results); the path continues inside it: `$.messages[2].tool_calls[0].function.arguments<json>.url`.
 * - `<keys>`: the finding is in a member name of the object at this path (a dictionary keyed by
 *   email address, say). A member name with a finding appears redacted in the paths below it, so a
 *   path never carries a value.
 * - `<deep>`: the path stopped growing at `maxDepth` levels; the finding is somewhere below.
 */
import { detectRemembered, replaceMatches, type FindingType, type Match } from './detectors.js';

/** One finding type at one JSON path, with how often it occurs there; never the matched text. */
export interface Finding {
  readonly type: FindingType;
  readonly path: string;
  readonly count: number;
}

/** Bounds on the work spent on one huge string and on the length of paths in deeply nested bodies. */
export interface ScanOptions {
  /**
   * A string longer than this (UTF-8 bytes) is scanned up to this length only, and the result is
   * marked `truncated`. A JSON string over the limit is scanned as text, not parsed.
   */
  readonly maxStringBytes?: number;
  /** Paths stop growing past this nesting depth (see `<deep>`); scanning goes on to the bottom. */
  readonly maxDepth?: number;
}

/** What {@link scanBody} found and how much it looked at. */
export interface ScanResult {
  readonly findings: Finding[];
  /** Strings (values and member names) the detectors ran on; binary payloads are skipped. */
  readonly scannedStrings: number;
  /** UTF-8 bytes the detectors ran on. */
  readonly scannedBytes: number;
  /** True when some string was longer than `maxStringBytes` and only its start was scanned. */
  readonly truncated: boolean;
}

/** Default for {@link ScanOptions.maxStringBytes} (1 MiB), the same as the `content.max_string_bytes` default. */
export const DEFAULT_MAX_STRING_BYTES = 1024 * 1024;
/** Default for {@link ScanOptions.maxDepth}, the same as the `content.max_depth` default. */
export const DEFAULT_MAX_DEPTH = 64;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** One JSONPath step into an object: `.name` or `['odd name']`. */
export function memberSegment(key: string): string {
  return IDENTIFIER.test(key) ? `.${key}` : `['${key.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}']`;
}

function isSpaceCode(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}

/**
 * The object or array a string holds, when it is JSON text (tool arguments and results usually
 * are); undefined for anything else, including JSON scalars.
 */
export function parseEmbeddedJson(text: string): object | undefined {
  let first = 0;
  while (first < text.length && isSpaceCode(text.charCodeAt(first))) first++;
  let last = text.length - 1;
  while (last > first && isSpaceCode(text.charCodeAt(last))) last--;
  const open = text[first];
  const close = text[last];
  if (!((open === '{' && close === '}') || (open === '[' && close === ']'))) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

const BASE64_TEXT = /^[A-Za-z0-9+/=\r\n]*$/;
const BINARY_MEMBERS = new Set(['data', 'b64_json', 'file_data']);

/**
 * Base64 images, audio and files are not text: a `data:…;base64,` URI, or a long base64 string
 * under `data` (Anthropic image `source.data`, MCP image/audio content, OpenAI `input_audio`).
 * Scanning them costs time and finds only noise; they are skipped, not counted.
 */
export function isBinaryPayload(text: string, context: string | undefined): boolean {
  if (text.startsWith('data:')) {
    const comma = text.indexOf(',');
    return comma > 0 && comma < 256 && text.slice(0, comma).endsWith(';base64') && BASE64_TEXT.test(text.slice(comma + 1));
  }
  return context !== undefined && BINARY_MEMBERS.has(context) && text.length >= 256 && BASE64_TEXT.test(text);
}

/** The longest prefix of `text` that fits in `maxBytes` UTF-8 bytes. */
function utf8Prefix(text: string, maxBytes: number): string {
  const prefix = Buffer.from(text.slice(0, maxBytes), 'utf8').subarray(0, maxBytes).toString('utf8');
  return prefix.endsWith('\uFFFD') && !text.startsWith(prefix) ? prefix.slice(0, -1) : prefix;
}

interface Item {
  readonly value: unknown;
  readonly path: string;
  /** The member name this value sits under (array elements inherit their array's). */
  readonly context: string | undefined;
  readonly depth: number;
}

/**
 * Every finding in a parsed JSON body, aggregated per (type, path), in document order.
 *
 * Numbers, booleans and null are not scanned: a card number sent as a JSON number is not seen
 * (and could not be redacted without changing its type).
 */
export function scanBody(body: unknown, options: ScanOptions = {}): ScanResult {
  const maxStringBytes = options.maxStringBytes ?? DEFAULT_MAX_STRING_BYTES;
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  const found = new Map<string, { type: FindingType; path: string; count: number }>();
  let scannedStrings = 0;
  let scannedBytes = 0;
  let truncated = false;

  const record = (type: FindingType, path: string): void => {
    const key = `${type}\u0000${path}`;
    const entry = found.get(key);
    if (entry === undefined) found.set(key, { type, path, count: 1 });
    else entry.count++;
  };

  /** Runs the detectors on one string; returns the matches for member names that need masking. */
  const scanText = (value: string, path: string, context: string | undefined): readonly Match[] => {
    let text = value;
    let bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > maxStringBytes) {
      text = utf8Prefix(value, maxStringBytes);
      bytes = Buffer.byteLength(text, 'utf8');
      truncated = true;
    }
    scannedStrings++;
    scannedBytes += bytes;
    const matches = detectRemembered(text, context);
    for (const m of matches) record(m.type, path);
    return text === value ? matches : [];
  };

  const stack: Item[] = [{ value: body, path: '$', context: undefined, depth: 0 }];
  while (stack.length > 0) {
    const { value, path, context, depth } = stack.pop() as Item;
    if (typeof value === 'string') {
      if (isBinaryPayload(value, context)) continue;
      const embedded = Buffer.byteLength(value, 'utf8') <= maxStringBytes ? parseEmbeddedJson(value) : undefined;
      if (embedded !== undefined) stack.push({ value: embedded, path: `${path}<json>`, context, depth });
      else scanText(value, path, context);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    const deep = depth >= maxDepth;
    const child = (segment: string): string => (deep ? (path.endsWith('<deep>') ? path : `${path}<deep>`) : path + segment);
    const children: Item[] = [];
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) children.push({ value: value[i], path: child(`[${i}]`), context, depth: depth + 1 });
    } else {
      for (const [key, member] of Object.entries(value)) {
        const matches = scanText(key, `${path}<keys>`, undefined);
        // A member name with a finding (or one too long to check) appears redacted in paths below it.
        const shown = matches.length > 0 ? replaceMatches(key, matches) : Buffer.byteLength(key) > maxStringBytes ? '[UNSCANNED]' : key;
        children.push({ value: member, path: child(memberSegment(shown)), context: key, depth: depth + 1 });
      }
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as Item);
  }
  return { findings: [...found.values()], scannedStrings, scannedBytes, truncated };
}
