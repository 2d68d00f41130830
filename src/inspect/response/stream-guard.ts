/**
 * The stream guard: inspects a streamed (`text/event-stream`) LLM or MCP response on its way to
 * the client, so the policy can block or redact what the model writes before it leaves, and the
 * budget can be settled from what the stream reports or, failing that, from what was delivered.
 *
 * How it works. Each event's output text is placed on its output's channel (output-channel.ts).
 * An event leaves only once the text it carries lies at least `holdBackChars` before the end of
 * its output (or the output, or the stream, ended): a value typed over many events (a card
 * number, ten deltas of two characters) is then whole in the detectors' window before its first
 * character leaves. Events leave in the order they came; one that carries no text (a role, a
 * finish reason, a ping, `[DONE]`) waits only for the events before it. Other events with data
 * (Responses `….done` and `response.completed`, which repeat the text in full; MCP messages;
 * anything not recognised) are scanned whole, like a buffered body.
 *
 * Bounds. The window per output is the held text plus `holdBackChars` before it. Held events
 * never exceed `maxHeldBytes`: past it the oldest leave anyway (after their text was scanned;
 * only a value still being written at that moment could leave in part). One event over
 * `maxEventBytes` fails the stream: the next release ends it with an error event. Released text
 * is counted in pieces as it leaves and then forgotten.
 *
 * Usage: call {@link StreamGuard.push} with each chunk, ask the policy about `newFindings` if
 * there are any, then call {@link StreamGuard.release} with its answer and forward what it
 * returns. Pure and synchronous; one guard per response.
 */
import type { FindingType } from '../content/detectors.js';
import { redactBody, redactText } from '../content/redact.js';
import { scanBody, type Finding } from '../content/scan.js';
import { countTextTokens, encodingForModel, type EncodingName } from '../llm/tokenizer.js';
import { removeTools, type ResponseApi } from './buffered.js';
import { OutputChannel } from './output-channel.js';
import { DEFAULT_MAX_EVENT_BYTES, SseReader, withData, type SseEvent } from './sse.js';
import { blockedStreamEnd } from './stream-end.js';
import { readStreamEvent, type DataPath, type TextPiece } from './stream-events.js';
import { mergeUsage, type ProviderUsage } from './usage.js';

/** How a {@link StreamGuard} reads and bounds one stream. */
export interface StreamGuardOptions {
  readonly api: ResponseApi;
  /** The model asked for; picks the encoding delivered text is counted with. */
  readonly model?: string | null;
  /** Characters of each output held back until more follows (default {@link DEFAULT_HOLD_BACK_CHARS}). */
  readonly holdBackChars?: number;
  /** Most bytes of events held back at once (default {@link DEFAULT_MAX_HELD_BYTES}). */
  readonly maxHeldBytes?: number;
  /** Largest event accepted (default 4 MiB, see sse.ts). */
  readonly maxEventBytes?: number;
  /** For MCP: the JSON-RPC id the error that ends a blocked stream answers. */
  readonly requestId?: string | number | null;
}

/** Default hold-back: longer than a card number, IBAN, phone, SSN, most emails and API keys. */
export const DEFAULT_HOLD_BACK_CHARS = 64;
/** Default bound on held events (256 KiB: 64 one-character chat deltas are about 16 KiB). */
export const DEFAULT_MAX_HELD_BYTES = 256 * 1024;

/** What one {@link StreamGuard.push} found. */
export interface StreamPushResult {
  /**
   * Values about to leave that were not reported before: type, the output's path (as in a
   * buffered response) and how many; never a value.
   */
  readonly newFindings: Finding[];
  /** MCP only: the JSON-RPC messages completed by this chunk (read them with `mcpMessageFacts`). */
  readonly mcpMessages: unknown[];
  /** Set when the stream failed; the next release ends it with an error event. */
  readonly error?: 'event_too_large';
}

/** The policy's answer for what leaves next. */
export interface ReleaseAction {
  /** End the stream now with an error event; everything after is swallowed. */
  readonly block?: boolean;
  /** The code the error event carries (default `response_blocked`). */
  readonly reason?: string;
  /** Finding types to mask in what leaves, or every type. */
  readonly redact?: ReadonlySet<FindingType> | 'all';
  /** MCP: tools to take out of a `tools/list` answer. */
  readonly removeTools?: ReadonlySet<string>;
}

/** The usage to settle with: the provider's final report, or the delivered output counted. */
export interface StreamUsage {
  readonly source: 'provider' | 'counted';
  /**
   * In the shape a usage report accepts. Counted: `output_tokens` over the text that left (its
   * original text, redacted values included, as the provider bills them), plus the input counts
   * the stream reported before it was cut (Anthropic's `message_start`), if any.
   */
  readonly usage: ProviderUsage;
}

interface PlacedPiece {
  readonly piece: TextPiece;
  readonly channel: OutputChannel;
  readonly start: number;
  readonly end: number;
}

interface Queued {
  readonly event: SseEvent;
  readonly json: unknown;
  readonly pieces: readonly PlacedPiece[];
  /** Scanned whole and something was found: redaction may rewrite it. */
  readonly wholeFindings: boolean;
}

function setAt(root: unknown, path: DataPath, value: unknown): void {
  let node = root as Record<string | number, unknown>;
  for (let i = 0; i < path.length - 1; i++) node = node[path[i] as string | number] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (node[last] !== undefined) node[last] = value;
}

function getAt(root: unknown, path: DataPath): unknown {
  let node: unknown = root;
  for (const step of path) node = typeof node === 'object' && node !== null ? (node as Record<string | number, unknown>)[step] : undefined;
  return node;
}

/** See the file comment. */
export class StreamGuard {
  private readonly api: ResponseApi;
  private readonly holdBack: number;
  private readonly maxHeldBytes: number;
  private readonly encoding: EncodingName;
  private readonly requestId: string | number | null;
  private readonly reader: SseReader;
  private readonly channels = new Map<string, OutputChannel>();
  /** The channel each group is writing now. */
  private readonly current = new Map<string, OutputChannel>();
  /** Tokens of channels that ended and were forgotten. */
  private retiredTokens = 0;
  private queue: Queued[] = [];
  /** The first `readyCount` queued events may leave. */
  private readyCount = 0;
  private heldBytes = 0;
  private ended = false;
  private blocked = false;
  private failed = false;
  private providerUsage: ProviderUsage | undefined;
  private usageFinal = false;
  private streamModel: string | null = null;

  constructor(options: StreamGuardOptions) {
    this.api = options.api;
    this.holdBack = Math.max(0, options.holdBackChars ?? DEFAULT_HOLD_BACK_CHARS);
    this.maxHeldBytes = options.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES;
    this.encoding = encodingForModel(options.model ?? null);
    this.requestId = options.requestId ?? null;
    this.reader = new SseReader(options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES);
  }

  /** Reads a chunk (`endOfStream` once, with the last chunk or an empty one). */
  push(chunk: Buffer, endOfStream: boolean): StreamPushResult {
    if (this.failed || this.ended) return { newFindings: [], mcpMessages: [], ...(this.failed ? { error: 'event_too_large' as const } : {}) };
    const read = this.reader.push(chunk);
    const tail = endOfStream && read.ok ? this.reader.end() : read;
    if (!read.ok || !tail.ok) {
      this.failed = true;
      this.queue = [];
      this.readyCount = 0;
      return { newFindings: [], mcpMessages: [], error: 'event_too_large' };
    }
    const found = new Map<string, Finding & { count: number }>();
    const note = (type: FindingType, path: string, count = 1): void => {
      const key = `${type}\u0000${path}`;
      const entry = found.get(key);
      if (entry) entry.count += count;
      else found.set(key, { type, path, count });
    };
    const mcpMessages: unknown[] = [];
    for (const event of endOfStream ? [...read.events, ...tail.events] : read.events) {
      const facts = readStreamEvent(this.api, event);
      this.providerUsage = mergeUsage(this.providerUsage, facts.usage);
      if (facts.usageFinal) this.usageFinal = true;
      if (facts.model !== undefined) this.streamModel = facts.model;
      if (this.blocked) {
        // Nothing leaves any more, but the provider bills what it goes on generating: count it.
        for (const piece of facts.pieces) this.retiredTokens += countTextTokens(piece.text, this.encoding);
        continue;
      }
      const pieces = facts.pieces.map((piece) => this.place(piece));
      for (const group of facts.closesGroups) this.closeGroup(group);
      if (facts.closesAll) for (const channel of this.channels.values()) channel.closed = true;
      let wholeFindings = false;
      if (pieces.length === 0 && event.data !== undefined && event.data !== '[DONE]') {
        const { findings } = scanBody(facts.json ?? event.data);
        for (const f of findings) note(f.type, f.path, f.count);
        wholeFindings = findings.length > 0;
      }
      if (this.api === 'mcp' && facts.json !== undefined) mcpMessages.push(facts.json);
      this.queue.push({ event, json: facts.json, pieces, wholeFindings });
      this.heldBytes += event.raw.length;
    }
    if (endOfStream) {
      this.ended = true;
      for (const channel of this.channels.values()) channel.closed = true;
    }
    if (this.blocked) return { newFindings: [], mcpMessages: [] };
    this.markReady();
    for (const channel of this.channels.values()) for (const type of channel.scan()) note(type, channel.path);
    return { newFindings: [...found.values()], mcpMessages };
  }

  /** The bytes to forward now, after the policy's answer to the findings so far (see the file comment). */
  release(action: ReleaseAction = {}): Buffer {
    if (this.blocked) return Buffer.alloc(0);
    if (this.failed || action.block === true) {
      this.blocked = true;
      this.queue = [];
      this.readyCount = 0;
      return blockedStreamEnd(this.api, this.failed ? 'response_event_too_large' : (action.reason ?? 'response_blocked'), this.requestId);
    }
    const redactAll = action.redact === 'all';
    const redactTypes = action.redact === 'all' ? undefined : action.redact;
    const redactFor = (type: FindingType): boolean => redactAll || (redactTypes?.has(type) ?? false);
    const out: Buffer[] = [];
    for (const queued of this.queue.slice(0, this.readyCount)) {
      this.heldBytes -= queued.event.raw.length;
      out.push(this.rewrite(queued, redactFor, redactAll || (redactTypes !== undefined && redactTypes.size > 0) ? redactTypes : null, action.removeTools));
    }
    this.queue = this.queue.slice(this.readyCount);
    this.readyCount = 0;
    this.retire();
    return Buffer.concat(out);
  }

  /** The usage to settle with, as of now (see {@link StreamUsage}). */
  usage(): StreamUsage {
    if (this.usageFinal && this.providerUsage !== undefined) return { source: 'provider', usage: this.providerUsage };
    let tokens = this.retiredTokens;
    for (const channel of this.channels.values()) tokens += channel.tokens();
    const { output_tokens: _o, completion_tokens: _c, ...input } = this.providerUsage ?? {};
    return { source: 'counted', usage: { ...input, output_tokens: tokens } };
  }

  /** The model the stream says answered, once it said so. */
  model(): string | null {
    return this.streamModel;
  }

  private place(piece: TextPiece): PlacedPiece {
    let channel = this.channels.get(piece.channel);
    if (channel === undefined) {
      channel = new OutputChannel(piece.channel, piece.group, this.holdBack, this.encoding);
      this.channels.set(piece.channel, channel);
    }
    const previous = this.current.get(piece.group);
    if (previous !== undefined && previous !== channel) previous.closed = true;
    this.current.set(piece.group, channel);
    channel.closed = false;
    const start = channel.append(piece.text);
    return { piece, channel, start, end: start + piece.text.length };
  }

  private closeGroup(group: string): void {
    for (const channel of this.channels.values()) if (channel.group === group) channel.closed = true;
  }

  /** Extends the ready prefix: by the hold-back rule, then by age while too many bytes are held. */
  private markReady(): void {
    const ready = (queued: Queued): boolean =>
      queued.pieces.every(({ channel, end }) => channel.closed || end <= channel.total - this.holdBack);
    let readyBytes = 0;
    for (let i = 0; i < this.readyCount; i++) readyBytes += (this.queue[i] as Queued).event.raw.length;
    while (this.readyCount < this.queue.length) {
      const next = this.queue[this.readyCount] as Queued;
      if (!ready(next) && this.heldBytes - readyBytes <= this.maxHeldBytes) break;
      readyBytes += next.event.raw.length;
      for (const { channel, end } of next.pieces) channel.readyTo = Math.max(channel.readyTo, end);
      this.readyCount++;
    }
  }

  private rewrite(queued: Queued, redactFor: (type: FindingType) => boolean, wholeTypes: ReadonlySet<FindingType> | undefined | null, removeNames: ReadonlySet<string> | undefined): Buffer {
    let changed = false;
    for (const { piece, channel, start, end } of queued.pieces) {
      const masked = channel.release(start, end, redactFor);
      if (masked === piece.text) continue;
      changed = true;
      setAt(queued.json, piece.at, masked);
      if (piece.logprobsAt !== undefined) setAt(queued.json, piece.logprobsAt, Array.isArray(getAt(queued.json, piece.logprobsAt)) ? [] : null);
    }
    let json = queued.json;
    if (queued.wholeFindings && wholeTypes !== null) {
      if (json === undefined) {
        const { text, redactions } = redactText(queued.event.data ?? '', wholeTypes);
        if (redactions > 0) return withData(queued.event, text);
      } else {
        const { body, redactions } = redactBody(json, wholeTypes);
        if (redactions > 0) {
          json = body;
          changed = true;
        }
      }
    }
    if (removeNames !== undefined && this.api === 'mcp' && json !== undefined) {
      const filtered = removeTools(json, removeNames);
      if (filtered.removed.length > 0) {
        json = filtered.body;
        changed = true;
      }
    }
    return changed ? withData(queued.event, JSON.stringify(json)) : queued.event.raw;
  }

  /** Forgets outputs that ended and have left in full, keeping their token counts. */
  private retire(): void {
    for (const [path, channel] of this.channels) {
      if (!channel.closed || channel.releasedTo < channel.total) continue;
      this.retiredTokens += channel.tokens();
      this.channels.delete(path);
      if (this.current.get(channel.group) === channel) this.current.delete(channel.group);
    }
  }
}
