/**
 * Where the audit writer encodes its lines: large byte chunks that each line is written into
 * once, as UTF-8, and then hashed and written to the file from, without another copy. A line
 * kept as a string was encoded twice (to hash it, then to write it) and copied once more when
 * a batch was joined; under load those copies were a measurable part of each decision.
 */

/** Bytes per chunk: many lines each, so a batch is usually one or two contiguous ranges. */
const CHUNK_BYTES = 256 * 1024;

/**
 * Byte chunks that lines are encoded into, one after another: a full chunk is left to the lines
 * that hold it, and the current one is encoded over again once they are all written.
 */
export class LineChunks {
  private chunk: Buffer = Buffer.alloc(0);
  private used = 0;

  /**
   * Starts over at the beginning of the current chunk: the caller holds no line encoded so far
   * (they are written). Reusing one chunk keeps it in the CPU's cache and spares allocating,
   * faulting in and collecting a new one every few hundred records.
   */
  reuse(): void {
    this.used = 0;
  }

  /**
   * Encodes `pieces` one after another as UTF-8 and returns where the bytes are: a range of a
   * chunk that no later line overwrites until {@link reuse}. `spareBytes` more are reserved after
   * them, for the caller to fill in place.
   */
  encode(pieces: readonly string[], spareBytes: number): { readonly buffer: Buffer; readonly start: number; readonly end: number } {
    let most = spareBytes;
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    for (const piece of pieces) most += piece.length * 3;
    if (this.used + most > this.chunk.length) {
      // A line larger than a chunk gets a chunk of its own.
      this.chunk = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, most));
      this.used = 0;
    }
    const start = this.used;
    let end = start;
    for (const piece of pieces) end += this.chunk.write(piece, end, 'utf8');
    this.used = end + spareBytes;
    return { buffer: this.chunk, start, end };
  }
}
