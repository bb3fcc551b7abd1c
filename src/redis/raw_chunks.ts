/**
 * Byte chunks that keep the RESP bytes of read entries until they are settled, pure: a forwarded
 * entry's fields then travel back to Redis in its settle call as they came, copied byte for byte
 * into the command (`settle_codec.ts`), not read again by the settle script (an XRANGE, and its
 * rows made into Lua values, was the largest part of a forwarded entry's Redis time:
 * bench/RESULTS.md, session 10).
 *
 * A read reply is copied into a chunk and parsed from there (`ReplyReader.take`); each held entry
 * that may need its bytes counts as one reference to its chunk, the reply itself as one more
 * until its entries are held. A chunk is written again only once nothing refers to it. Chunks
 * are reused, not made per reply: a new `Uint8Array` per reply, still referred to by entries
 * across a minor GC, would be promoted, and its bytes outside the heap freed only by a full GC.
 * There are at most `MAX_CHUNKS`.
 */

/** Bytes of read replies, and how many held entries (or replies being held) refer to them. */
export class RawChunk {
  readonly bytes: Uint8Array;
  /** Bytes written from the start. */
  used = 0;
  /** Entries and replies that still refer to these bytes. */
  refs = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
}

/**
 * Bytes per chunk, at most: several read replies of a batch of entries each. An offset in a
 * chunk is below this (`packRawSpan` of `settle_codec.ts` packs one into a small integer).
 */
export const MAX_CHUNK_BYTES = 2 ** 19;
/**
 * Chunks at most (8 MiB). When every one is still referred to (entries held long: a lane behind
 * a slow handler), or a reply is larger than a chunk, a reply is read without its bytes (its
 * forwards are then copied by the script from an XRANGE, as on a cluster).
 */
const MAX_CHUNKS = 16;

/** The chunks of one reader (see the module comment). */
export class RawChunks {
  readonly #chunks: RawChunk[] = [];
  #current?: RawChunk;
  readonly #chunkBytes: number;
  readonly #maxChunks: number;

  constructor(chunkBytes = MAX_CHUNK_BYTES, maxChunks = MAX_CHUNKS) {
    this.#chunkBytes = Math.min(chunkBytes, MAX_CHUNK_BYTES);
    this.#maxChunks = maxChunks;
  }

  /** Chunks made (for tests). */
  get size(): number {
    return this.#chunks.length;
  }

  /**
   * Copies `src[start, end)` into a chunk and returns it with the offset copied to; the chunk
   * counts one more reference (the caller's, to give back with `letGo`). Undefined when no
   * chunk has room (see `MAX_CHUNKS`).
   */
  copy(src: Uint8Array, start: number, end: number): [RawChunk, number] | undefined {
    const n = end - start;
    if (n > this.#chunkBytes) return undefined;
    let c = this.#current;
    if (c && c.refs === 0) c.used = 0;
    if (!c || c.bytes.length - c.used < n) {
      c = this.#chunks.find((k) => k.refs === 0);
      if (c) c.used = 0;
      else if (this.#chunks.length < this.#maxChunks) {
        this.#chunks.push(c = new RawChunk(this.#chunkBytes));
      } else return undefined;
      this.#current = c;
    }
    const at = c.used;
    c.bytes.set(src.subarray(start, end), at);
    c.used = at + n;
    c.refs++;
    return [c, at];
  }
}

/** Takes one more reference to `chunk` (a held entry that may need its bytes). */
export function keep(chunk: RawChunk): void {
  chunk.refs++;
}

/** Gives back one reference to `chunk`. */
export function letGo(chunk: RawChunk): void {
  chunk.refs--;
}
