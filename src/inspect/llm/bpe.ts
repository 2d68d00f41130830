/**
 * Byte-pair-encoding token counts over a compact rank table.
 *
 * gpt-tokenizer keeps each encoding as a JavaScript array of 200,000 strings plus a Map from
 * string to rank, loaded from a 2 MB array literal: about 55 MiB of resident memory per process
 * for `o200k_base` and `cl100k_base` together, in every worker. Counting needs only "what is the
 * rank of this byte sequence", so the table here is one byte buffer, one offset array and one
 * open-addressing hash table (about 6 MiB for `o200k_base`), read from the same `.tiktoken` file
 * gpt-tokenizer ships. The merge is tiktoken's `byte_pair_merge`; the pre-tokenizer regexes are
 * gpt-tokenizer's. test/bpe.test.ts compares counts with gpt-tokenizer's on a varied corpus.
 */

/** The rank table of one encoding: token bytes → rank, by hash lookup on byte slices. */
export class BpeRanks {
  /** Every token's bytes, back to back. */
  private readonly bytes: Uint8Array;
  /** Token `t` (by table position) is `bytes[starts[t] .. starts[t + 1]]`. */
  private readonly starts: Uint32Array;
  /**
   * The rank of the token at each table position; undefined when every token's rank is its
   * position, as in the rank files gpt-tokenizer ships (0.8 MiB less per process for `o200k_base`).
   */
  private readonly ranks: Uint32Array | undefined;
  /** Open addressing, linear probing: table position + 1 of the token hashed there, 0 = empty. */
  private readonly slots: Uint32Array;
  private readonly slotMask: number;

  private constructor(bytes: Uint8Array, starts: Uint32Array, ranks: Uint32Array) {
    this.bytes = bytes;
    this.starts = starts;
    this.ranks = ranks.every((rank, position) => rank === position) ? undefined : ranks;
    const count = ranks.length;
    // At most half full, so probes stay short.
    let size = 1;
    while (size < count * 2) size *= 2;
    this.slots = new Uint32Array(size);
    this.slotMask = size - 1;
    for (let token = 0; token < count; token++) {
      const start = starts[token] as number;
      const end = starts[token + 1] as number;
      let slot = hashBytes(bytes, start, end) & this.slotMask;
      while (this.slots[slot] !== 0) {
        if (this.equalsToken((this.slots[slot] as number) - 1, bytes, start, end)) {
          throw new Error(`the rank file lists the same token twice (ranks ${ranks[(this.slots[slot] as number) - 1]} and ${ranks[token]})`);
        }
        slot = (slot + 1) & this.slotMask;
      }
      this.slots[slot] = token + 1;
    }
  }

  /**
   * Reads tiktoken's rank format: one `<base64 token bytes> <rank>` per line.
   * Throws on a malformed line, so a changed file fails at start-up, not with wrong counts.
   */
  static fromTiktoken(file: Uint8Array): BpeRanks {
    // Parsed from the bytes directly: splitting the text would make 200,000 short-lived strings,
    // and the heap pages they grow stay resident long after.
    let lineCount = 0;
    for (let i = 0; i < file.length; i++) if (file[i] === NEWLINE) lineCount++;
    if (file.length > 0 && file[file.length - 1] !== NEWLINE) lineCount++;
    // Base64 decodes to at most 3/4 of its length; copied to the exact size below.
    const decoded = new Uint8Array(Math.ceil((file.length * 3) / 4));
    const starts = new Uint32Array(lineCount + 1);
    const ranks = new Uint32Array(lineCount);
    let written = 0;
    let at = 0;
    for (let line = 0; line < lineCount; line++) {
      const fail = (what: string): never => {
        throw new Error(`line ${line + 1} of the rank file ${what}`);
      };
      starts[line] = written;
      // Base64 token bytes up to the space: 4 characters → 3 bytes, '=' padding at the end.
      let bits = 0;
      let bitCount = 0;
      let padded = false;
      for (; at < file.length && file[at] !== SPACE; at++) {
        const value = BASE64_VALUE[file[at] as number] as number;
        if (value === PAD && !padded) padded = true;
        if (padded ? value !== PAD : value >= 64) fail('does not start with base64 token bytes');
        if (padded) continue;
        bits = (bits << 6) | value;
        bitCount += 6;
        if (bitCount >= 8) {
          bitCount -= 8;
          decoded[written++] = (bits >> bitCount) & 0xff;
        }
      }
      if (written === starts[line] || at >= file.length) fail('is not "<base64> <rank>"');
      at++;
      let rank = 0;
      const digitsFrom = at;
      for (; at < file.length && file[at] !== NEWLINE; at++) {
        const digit = (file[at] as number) - 0x30;
        if (digit < 0 || digit > 9 || at - digitsFrom >= 10) fail('does not end with a rank');
        rank = rank * 10 + digit;
      }
      if (at === digitsFrom || rank > 0xffffffff) fail('does not end with a rank');
      ranks[line] = rank;
      at++;
    }
    starts[lineCount] = written;
    return new BpeRanks(decoded.slice(0, written), starts, ranks);
  }

  /** How many tokens the table holds. */
  get size(): number {
    return this.starts.length - 1;
  }

  /** The rank of `source[start .. end]` as one token, or -1 when it is not one. */
  rank(source: Uint8Array, start: number, end: number): number {
    let slot = hashBytes(source, start, end) & this.slotMask;
    for (;;) {
      const entry = this.slots[slot] as number;
      if (entry === 0) return -1;
      if (this.equalsToken(entry - 1, source, start, end)) return this.ranks ? (this.ranks[entry - 1] as number) : entry - 1;
      slot = (slot + 1) & this.slotMask;
    }
  }

  private equalsToken(token: number, source: Uint8Array, start: number, end: number): boolean {
    const tokenStart = this.starts[token] as number;
    if ((this.starts[token + 1] as number) - tokenStart !== end - start) return false;
    const bytes = this.bytes;
    for (let i = 0; i < end - start; i++) {
      if (bytes[tokenStart + i] !== source[start + i]) return false;
    }
    return true;
  }
}

const NEWLINE = 0x0a;
const SPACE = 0x20;
const PAD = 64;
/** Base64 alphabet → 6-bit value; '=' → {@link PAD}; anything else → 255. */
const BASE64_VALUE = (() => {
  const table = new Uint8Array(256).fill(255);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  table[0x3d] = PAD;
  return table;
})();

/** FNV-1a, 32 bits: cheap, and spreads short byte strings well enough for a half-full table. */
function hashBytes(source: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ (source[i] as number), 0x01000193);
  return hash >>> 0;
}

const NOT_A_TOKEN = 0xffffffff;

/**
 * Counts tokens of text with a rank table and its pre-tokenizer, as tiktoken's `encode_ordinary`
 * does: special-token text is ordinary text. Not re-entrant per instance (it reuses buffers),
 * which is fine on one thread.
 */
export class BpeCounter {
  private readonly ranks: BpeRanks;
  private readonly split: RegExp;
  private readonly encoder = new TextEncoder();
  private utf8 = new Uint8Array(1024);
  private positions = new Uint32Array(1025);
  private pairRanks = new Uint32Array(1025);

  constructor(ranks: BpeRanks, split: RegExp) {
    this.ranks = ranks;
    // Own copy: the pattern is shared with gpt-tokenizer, and exec() moves lastIndex.
    this.split = new RegExp(split.source, split.flags.includes('g') ? split.flags : `${split.flags}g`);
  }

  /** Tokens in `text`. */
  count(text: string): number {
    const split = this.split;
    split.lastIndex = 0;
    let tokens = 0;
    for (let match = split.exec(text); match !== null; match = split.exec(text)) {
      const piece = match[0];
      if (piece === '') {
        split.lastIndex++;
        continue;
      }
      tokens += this.countPiece(piece);
    }
    return tokens;
  }

  /** Tokens in one pre-token: one when it is a token, else tiktoken's byte_pair_merge. */
  private countPiece(piece: string): number {
    if (this.utf8.length < piece.length * 3) this.grow(piece.length * 3);
    const length = this.encoder.encodeInto(piece, this.utf8).written;
    const bytes = this.utf8;
    if (length === 1) return 1;
    const ranks = this.ranks;
    if (ranks.rank(bytes, 0, length) !== -1) return 1;
    // positions[i] is where part i starts; pairRanks[i] the rank of parts i and i+1 merged.
    const positions = this.positions;
    const pairRanks = this.pairRanks;
    let parts = length + 1;
    for (let i = 0; i < parts; i++) {
      positions[i] = i;
      pairRanks[i] = i + 2 <= length ? rankOrNone(ranks, bytes, i, i + 2) : NOT_A_TOKEN;
    }
    for (;;) {
      let best = NOT_A_TOKEN;
      let at = -1;
      for (let i = 0; i < parts - 1; i++) {
        const rank = pairRanks[i] as number;
        if (rank < best) {
          best = rank;
          at = i;
        }
      }
      if (at === -1) break;
      // Merge part `at` with the next: its new pair is with the part after that one, and the
      // part before it now pairs with the merged part.
      if (at > 0) pairRanks[at - 1] = this.spanRank(bytes, positions, parts, at - 1);
      pairRanks[at] = this.spanRank(bytes, positions, parts, at);
      positions.copyWithin(at + 1, at + 2, parts);
      pairRanks.copyWithin(at + 1, at + 2, parts);
      parts--;
    }
    return parts - 1;
  }

  /** Rank of parts i, i+1 and i+2 as one token: the pair (i, i+1) once i+1 absorbs i+2. */
  private spanRank(bytes: Uint8Array, positions: Uint32Array, parts: number, i: number): number {
    if (i + 3 >= parts) return NOT_A_TOKEN;
    return rankOrNone(this.ranks, bytes, positions[i] as number, positions[i + 3] as number);
  }

  private grow(size: number): void {
    this.utf8 = new Uint8Array(size);
    this.positions = new Uint32Array(size + 1);
    this.pairRanks = new Uint32Array(size + 1);
  }
}

function rankOrNone(ranks: BpeRanks, bytes: Uint8Array, start: number, end: number): number {
  const rank = ranks.rank(bytes, start, end);
  return rank === -1 ? NOT_A_TOKEN : rank;
}
