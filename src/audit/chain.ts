/**
 * The audit hash chain: every record carries `seq`, `prev_hash` and `hash`, where `hash` is the
 * SHA-256 of the record's line as written, up to the `hash` field: the JSON text of the record
 * without `hash`. Hashing the bytes written (rather than a canonical form re-derived from them)
 * costs one native JSON.stringify per record instead of a sorted re-serialisation, and any change
 * to a line, even one a canonical form would ignore, breaks its hash. Deleting or reordering
 * records breaks `seq` and `prev_hash`. (Truncating the newest records is not detectable from the
 * file alone; ship the log or its latest hash elsewhere for that.)
 *
 * Records written before this form hashed the canonical JSON of the record (keys sorted); verify
 * accepts a line that matches either, so older files still verify and the chain runs on across.
 */
import { hash as digest } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { canonicalJson } from '../core/canonical-json.js';
import { JsonText, memberOpening } from '../core/json-text.js';
import type { LineChunks } from './line-chunks.js';

/** The `prev_hash` of the first record of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** The fields that link a record into the chain. */
export interface ChainFields {
  seq: number;
  prev_hash: string;
  hash: string;
}

/** One-shot SHA-256 (no Hash object per record). */
function sha256Hex(data: string | Buffer): string {
  return digest('sha256', data, 'hex');
}

/** The end of every line this writer writes: the hash, last. */
const HASH_FIELD = /,"hash":"([0-9a-f]{64})"\}$/;

/**
 * True when a written line's `hash` is the hash of its own text (or, for a line written before
 * this form, of its record's canonical JSON). `record` is the line, parsed.
 */
export function lineHashMatches(line: string, record: Readonly<Record<string, unknown>>): boolean {
  const field = HASH_FIELD.exec(line);
  if (field && field[1] === record.hash && sha256Hex(`${line.slice(0, field.index)}}`) === field[1]) return true;
  const { hash, ...rest } = record;
  try {
    return sha256Hex(canonicalJson(rest)) === hash;
  } catch {
    return false; // too deep for the canonical form: not one of ours
  }
}

/**
 * The record's JSON text with `seq` and `prev_hash` appended, in pieces to be written one after
 * another: the same JSON as stringifying a copy with them added, without copying the record or
 * joining the text (it runs for every record). Members already written as JSON
 * ({@link JsonText}: the masked policy input, the policy's result) are spliced in as they are,
 * after the others.
 */
function linkedPieces(record: Readonly<Record<string, unknown>>, seq: number, prevHash: string): string[] {
  if ('seq' in record || 'prev_hash' in record || 'hash' in record) return [JSON.stringify({ ...record, seq, prev_hash: prevHash })];
  let plain: Readonly<Record<string, unknown>> = record;
  const written: string[] = [];
  for (const key in record) {
    const value = record[key];
    if (!(value instanceof JsonText)) continue;
    if (plain === record) plain = withoutJsonText(record);
    written.push(memberOpening(key), ...value.pieces, ',');
  }
  const own = JSON.stringify(plain);
  const link = `"seq":${seq},"prev_hash":${JSON.stringify(prevHash)}}`;
  return own.length === 2 ? ['{', ...written, link] : [own.slice(0, -1), ',', ...written, link];
}

/** The record's own members that are not already JSON text. */
function withoutJsonText(record: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const plain: Record<string, unknown> = {};
  for (const key in record) if (!(record[key] instanceof JsonText)) plain[key] = record[key];
  return plain;
}

/**
 * How many bytes the line grows by when the hash goes in: `,"hash":"<64 hex>"}\n` takes the place
 * of the text's closing brace. Reserving exactly this leaves no byte between one line and the
 * next, so the lines of a batch are one contiguous range to write.
 */
const HASH_SUFFIX_GROWTH = ',"hash":"'.length + 64 + '"}\n'.length - '}'.length;

/** A record linked into the chain: its line as UTF-8 bytes, and its hash. */
export interface ChainedLine {
  readonly bytes: Buffer;
  readonly hash: string;
}

/**
 * Links a record into the chain and encodes its line into `chunks`: the record's JSON text with
 * `seq` and `prev_hash`, then `hash`, the SHA-256 of that text, as the last member. The text is
 * encoded once; the hash is taken over those bytes and the line is written from them. Throws
 * what `JSON.stringify` throws, before anything is encoded.
 */
export function chainRecordInto(chunks: LineChunks, record: Readonly<Record<string, unknown>>, seq: number, prevHash: string): ChainedLine {
  const { buffer, start, end } = chunks.encode(linkedPieces(record, seq, prevHash), HASH_SUFFIX_GROWTH);
  const hash = sha256Hex(buffer.subarray(start, end));
  // The text ends with the record's closing brace; the hash member takes its place, then closes it.
  const closing = end - 1;
  const suffix = buffer.write(`,"hash":"${hash}"}\n`, closing, 'latin1');
  return { bytes: buffer.subarray(start, closing + suffix), hash };
}

/**
 * The record as it can be written: a top-level field that JSON cannot write (nested too deep
 * for the stack, a BigInt, a cycle) is replaced by `{"omitted": <why>}`, so the decision is
 * still recorded, with what it was about, rather than dropped. `omitted` lists those fields.
 */
export function writableRecord(record: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  const omitted: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    try {
      JSON.stringify(value);
      copy[key] = value;
    } catch (error) {
      copy[key] = { omitted: error instanceof Error ? error.message : 'not serialisable' };
      omitted.push(key);
    }
  }
  if (omitted.length > 0) copy.audit_omitted = omitted;
  return copy;
}

/** Where and how a chain first fails verification. */
export interface ChainBreak {
  /** 1-based line number of the first record that fails. */
  readonly line: number;
  readonly seq: number | null;
  readonly problem: 'malformed' | 'hash_mismatch' | 'seq_gap' | 'prev_hash_mismatch' | 'torn_tail';
  readonly detail: string;
}

/** What `audit verify` found: how many records hold, the last good hash, and the first break. */
export interface VerifyReport {
  readonly ok: boolean;
  readonly records: number;
  readonly lastHash: string;
  /** The seq of the last good record. */
  readonly lastSeq: number;
  /** For a file started by rotation: the record it continues from (its first record names it). */
  readonly continues?: { readonly file: string; readonly seq: number; readonly hash: string };
  readonly firstBreak?: ChainBreak;
}

/** Checks one line (and its parsed record) against the chain state; returns the problem, if any. */
export function checkLink(
  line: string,
  record: unknown,
  expectedSeq: number,
  expectedPrev: string,
): { problem: ChainBreak['problem']; detail: string } | undefined {
  if (!record || typeof record !== 'object' || Array.isArray(record)) return { problem: 'malformed', detail: 'not a JSON object' };
  const r = record as Partial<ChainFields> & Record<string, unknown>;
  if (typeof r.seq !== 'number' || typeof r.prev_hash !== 'string' || typeof r.hash !== 'string') {
    return { problem: 'malformed', detail: 'missing seq, prev_hash or hash' };
  }
  if (!lineHashMatches(line, r)) return { problem: 'hash_mismatch', detail: 'record content does not match its hash (edited)' };
  if (r.seq !== expectedSeq) return { problem: 'seq_gap', detail: `expected seq ${expectedSeq}, found ${r.seq} (deleted or reordered records)` };
  if (r.prev_hash !== expectedPrev) return { problem: 'prev_hash_mismatch', detail: 'prev_hash does not match the previous record (deleted or reordered records)' };
  return undefined;
}

/**
 * Verifies a whole audit file, streaming, and reports the first break. A line that is not JSON
 * and is the file's last, with no newline after it (or only zero bytes), is a torn final write
 * from a crash (`torn_tail`), not an edit; the writer moves it aside when it next starts.
 */
export async function verifyAuditFile(path: string): Promise<VerifyReport> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  let lineNo = 0;
  let expectedSeq = 1;
  let prev = GENESIS_HASH;
  let records = 0;
  let continues: VerifyReport['continues'];
  let unreadable: ChainBreak | undefined;
  const report = (firstBreak?: ChainBreak): VerifyReport => ({
    ok: firstBreak === undefined,
    records,
    lastHash: prev,
    lastSeq: expectedSeq - 1,
    ...(continues ? { continues } : {}),
    ...(firstBreak ? { firstBreak } : {}),
  });
  for await (const line of lines) {
    lineNo++;
    if (line.replace(/\0/g, '').trim() === '') continue;
    if (unreadable) {
      // Something follows the unreadable line: it was not the last write.
      lines.close();
      return report(unreadable);
    }
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      unreadable = { line: lineNo, seq: null, problem: 'malformed', detail: 'not valid JSON' };
      continue;
    }
    const started = records === 0 ? rotationStart(record) : undefined;
    if (started) {
      // A file started by rotation continues the chain of the file its first record names.
      continues = started;
      expectedSeq = started.seq + 1;
      prev = started.hash;
    }
    const broken = checkLink(line, record, expectedSeq, prev);
    if (broken) {
      lines.close();
      const seq = typeof (record as { seq?: unknown })?.seq === 'number' ? (record as { seq: number }).seq : null;
      return report({ line: lineNo, seq, ...broken });
    }
    prev = (record as ChainFields).hash;
    expectedSeq++;
    records++;
  }
  if (unreadable) {
    const torn = !(await endsWithNewline(path));
    return report(torn ? { ...unreadable, problem: 'torn_tail', detail: 'the last line is a partial record (a write cut short by a crash)' } : unreadable);
  }
  return report();
}

/** The record a rotated-into file continues from, when `record` is such a file's opening record. */
function rotationStart(record: unknown): VerifyReport['continues'] {
  const r = record as { type?: unknown; seq?: unknown; prev_hash?: unknown; previous_file?: unknown; previous_last_seq?: unknown; previous_last_hash?: unknown } | null;
  if (!r || r.type !== 'rotation' || typeof r.seq !== 'number' || r.seq < 2) return undefined;
  if (typeof r.previous_file !== 'string' || r.previous_last_seq !== r.seq - 1 || r.previous_last_hash !== r.prev_hash || typeof r.prev_hash !== 'string') return undefined;
  return { file: r.previous_file, seq: r.seq - 1, hash: r.prev_hash };
}

/** Whether the file's last byte that is not zero is a newline. */
async function endsWithNewline(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(Math.min(size, 64 * 1024));
    await handle.read(buffer, 0, buffer.length, size - buffer.length);
    for (let i = buffer.length - 1; i >= 0; i--) if (buffer[i] !== 0) return buffer[i] === 0x0a;
    return false;
  } finally {
    await handle.close();
  }
}
