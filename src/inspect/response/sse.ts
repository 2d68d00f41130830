/**
 * An incremental reader of Server-Sent Events (`text/event-stream`, WHATWG HTML §9.2): raw
 * chunks in, split anywhere (mid-line, mid-UTF-8 sequence, between the CR and LF of a line end),
 * complete events out, each with the exact bytes it arrived as so an unchanged event is forwarded
 * byte for byte.
 *
 * Bounded: one event longer than `maxEventBytes` makes the reader fail (and stay failed) rather
 * than buffer without end. Lines end at CR, LF or CRLF, which are ASCII, so a line's bytes are
 * always whole UTF-8 and are decoded once, when the line is complete.
 */

/** One event: its fields (per the SSE parsing rules) and the bytes it arrived as. */
export interface SseEvent {
  /** The `event:` field; undefined for the default (`message`) type. */
  readonly event: string | undefined;
  /** The `data:` lines joined with LF; undefined when the event had none (a comment, a keep-alive). */
  readonly data: string | undefined;
  /** The bytes of the event up to and including the blank line that ended it. */
  readonly raw: Buffer;
}

/** What a push or the end of the stream yields: the events it completed, or why the stream failed. */
export type SseReadResult = { readonly ok: true; readonly events: SseEvent[] } | { readonly ok: false; readonly reason: 'event_too_large' };

/** Default {@link SseReader} limit on one event (4 MiB: OpenAI's `response.completed` repeats the whole output). */
export const DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024;

const CR = 13;
const LF = 10;

/** Splits a byte stream into SSE events; see the file comment. */
export class SseReader {
  /** Bytes of the current event from earlier chunks. */
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Bytes of the current line from earlier chunks. */
  private lineParts: Buffer[] = [];
  /** The last byte seen was a CR: an LF right after it belongs to the same line end. */
  private afterCR = false;
  private eventName: string | undefined;
  private dataLines: string[] | undefined;
  private firstLine = true;
  private failed = false;

  constructor(private readonly maxEventBytes: number = DEFAULT_MAX_EVENT_BYTES) {}

  /** Reads one chunk; returns the events it completed. */
  push(chunk: Buffer): SseReadResult {
    if (this.failed) return { ok: false, reason: 'event_too_large' };
    const events: SseEvent[] = [];
    let eventStart = 0;
    let lineStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (this.afterCR) {
        this.afterCR = false;
        if (byte === LF) {
          lineStart = i + 1;
          continue;
        }
      }
      if (byte !== CR && byte !== LF) continue;
      this.afterCR = byte === CR;
      const empty = this.endLine(chunk.subarray(lineStart, i));
      lineStart = i + 1;
      if (empty) {
        // A blank line's CRLF in one chunk stays with its event; split across chunks, the LF
        // starts the next event's bytes (where it is skipped as the rest of this line end).
        const crlf = byte === CR && chunk[i + 1] === LF;
        const end = crlf ? i + 2 : i + 1;
        if (this.partBytes + end - eventStart > this.maxEventBytes) return this.fail();
        events.push(this.dispatch(chunk.subarray(eventStart, end)));
        eventStart = end;
        if (crlf) {
          this.afterCR = false;
          i++;
        }
        lineStart = i + 1;
      }
    }
    if (lineStart < chunk.length) this.lineParts.push(chunk.subarray(lineStart));
    if (eventStart < chunk.length) {
      this.parts.push(chunk.subarray(eventStart));
      this.partBytes += chunk.length - eventStart;
    }
    if (this.partBytes > this.maxEventBytes) return this.fail();
    return { ok: true, events };
  }

  private fail(): SseReadResult {
    this.failed = true;
    this.parts = [];
    this.lineParts = [];
    this.partBytes = 0;
    return { ok: false, reason: 'event_too_large' };
  }

  /**
   * The end of the stream: an event cut short (no blank line after it) is still returned, so its
   * bytes are forwarded and its data inspected like any other.
   */
  end(): SseReadResult {
    if (this.failed) return { ok: false, reason: 'event_too_large' };
    if (this.partBytes === 0) return { ok: true, events: [] };
    if (this.lineParts.length > 0) this.endLine(Buffer.alloc(0));
    return { ok: true, events: [this.dispatch(Buffer.alloc(0))] };
  }

  /** Ends a line (its last bytes given); true when it was blank, which ends the event. */
  private endLine(tail: Buffer): boolean {
    const bytes = this.lineParts.length === 0 ? tail : Buffer.concat([...this.lineParts, tail]);
    this.lineParts = [];
    if (bytes.length > this.maxEventBytes) return false;
    let line = bytes.toString('utf8');
    if (this.firstLine) {
      this.firstLine = false;
      if (line.startsWith('\uFEFF')) line = line.slice(1);
    }
    if (line === '') return true;
    if (line.startsWith(':')) return false;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') (this.dataLines ??= []).push(value);
    else if (field === 'event') this.eventName = value;
    return false;
  }

  private dispatch(last: Buffer): SseEvent {
    const raw = this.parts.length === 0 ? Buffer.from(last) : Buffer.concat([...this.parts, last]);
    const event: SseEvent = { event: this.eventName, data: this.dataLines?.join('\n'), raw };
    this.parts = [];
    this.partBytes = 0;
    this.eventName = undefined;
    this.dataLines = undefined;
    return event;
  }
}

/**
 * The event with its data replaced: its other lines (`event:`, `id:`, `retry:`, comments) kept in
 * place, the data written as one `data:` line per line of `data`, ended by a blank line.
 */
export function withData(event: SseEvent, data: string): Buffer {
  const lines = event.raw.toString('utf8').split(/\r\n|\r|\n/);
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const out: string[] = [];
  let written = false;
  const dataLines = data.split('\n').map((line) => `data: ${line}`);
  for (const line of lines) {
    if (line === 'data' || line.startsWith('data:')) {
      if (!written) out.push(...dataLines);
      written = true;
    } else {
      out.push(line);
    }
  }
  if (!written) out.push(...dataLines);
  return Buffer.from(`${out.join('\n')}\n\n`, 'utf8');
}
