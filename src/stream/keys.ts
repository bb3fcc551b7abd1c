/**
 * The Redis key schema: every key the service reads or writes besides the
 * consumed streams themselves is built here, from the stream it belongs to,
 * so that a key derived from a stream keeps the stream's name (and, on Redis
 * Cluster, its hash tag and slot). The dead-letter field names live here too:
 * the consumer writes them and the dead-letter replay removes them.
 */

/** Fields a dead-letter copy adds to the original entry's fields, in this order. */
export const DEAD_LETTER_FIELDS = [
  "error",
  "sourceStream",
  "sourceId",
  "deliveries",
  "consumer",
  "failedAt",
] as const;

/** One dead-letter field name. */
export type DeadLetterField = typeof DEAD_LETTER_FIELDS[number];

/** Options of `KeySchema`. */
export interface KeySchemaOptions {
  /** The consumer group (CONSUMER_GROUP): checkpoints and dedup marks are per group. */
  group: string;
  /** DLQ_STREAM: one dead-letter stream for every stream. Default: `<stream>:dlq` each. */
  dlqStream?: string;
  /** SERVICE_NAME: scopes the trigger's idempotency records. */
  serviceName?: string;
}

/** Builds the keys derived from a stream. */
export class KeySchema {
  readonly group: string;
  readonly #dlqStream?: string;
  readonly #serviceName: string;

  constructor(options: KeySchemaOptions) {
    if (!options.group) throw new TypeError("group must not be empty");
    this.group = options.group;
    this.#dlqStream = options.dlqStream;
    this.#serviceName = options.serviceName ?? "service";
  }

  /** The dead-letter stream of `stream`: DLQ_STREAM, else `<stream>:dlq`. */
  dlq(stream: string): string {
    return this.#dlqStream ?? `${stream}:dlq`;
  }

  /** The checkpoint hash of `stream`: `<stream>:checkpoint:<group>`. */
  checkpoint(stream: string): string {
    return `${stream}:checkpoint:${this.group}`;
  }

  /** The processed mark of an idempotency key read from `stream`: `<stream>:dedup:<group>:<key>`. */
  dedup(stream: string, idempotencyKey: string): string {
    return `${stream}:dedup:${this.group}:${idempotencyKey}`;
  }

  /**
   * The trigger's record of a publication to `stream` with an `Idempotency-Key`:
   * `<service>:idempotency:<key>`, or for a stream with a hash tag `{<tag>}:idempotency:<service>:<key>`
   * so that the record and the XADD share a slot (one script on Redis Cluster).
   */
  publishIdempotency(stream: string, idempotencyKey: string): string {
    const tag = hashTag(stream);
    return tag === undefined
      ? `${this.#serviceName}:idempotency:${idempotencyKey}`
      : `{${tag}}:idempotency:${this.#serviceName}:${idempotencyKey}`;
  }

  /**
   * The lease of a partition for this group: `<partition key>:lease:<group>`, e.g.
   * `{orders:3}:lease:billing`. Its value is the owner's CONSUMER_NAME; it shares the
   * partition's slot, so the settle script can check it (fencing).
   */
  lease(partitionKey: string): string {
    return `${partitionKey}:lease:${this.group}`;
  }

  /**
   * The membership record of the live instances of this group consuming the partitioned stream
   * `stream`: a sorted set of CONSUMER_NAME scored by expiry, `{<stream>}:members:<group>`. One
   * per stream and group (not per partition): every instance computes the assignment of all
   * the stream's partitions from it. A stream with braces (never partitioned) keeps its name.
   */
  members(stream: string): string {
    return `${withOwnTag(stream)}:members:${this.group}`;
  }

  /**
   * The outbox of `stream`: `<stream>:outbox`, in the stream's slot. The settle writes there the
   * copies for `ROUTES` targets in another slot; the relay moves them on.
   */
  outbox(stream: string): string {
    return `${stream}:outbox`;
  }

  /**
   * The relay's mark that copy `index` of the entry `sourceId` of the stream `source` (among that
   * entry's copies to `target`) was written to `target`, in the target's slot (so the copy and
   * the mark are one script): `<target>:relayed:<source>:<sourceId>:<index>` when the target has
   * a hash tag, else `{<target>}:relayed:<source>:<sourceId>:<index>`. Keyed by the source entry,
   * not by the outbox entry that carried the copy: a settle redone after the source's master
   * failed over with lost writes writes a new outbox entry (a new id) for the same copy, and
   * the mark still matches it (README "Forwarding across slots").
   * @throws {TypeError} for a target with braces but no hash tag that contains `}`: no key with
   * a tag can land in its slot.
   */
  relayMark(target: string, source: string, sourceId: string, index: number): string {
    return `${withOwnTag(target)}:relayed:${source}:${sourceId}:${index}`;
  }
}

/**
 * `key` itself when it has a hash tag, else `{key}`: a prefix whose derived keys hash to the
 * slot of `key` whatever follows it.
 */
function withOwnTag(key: string): string {
  if (hashTag(key) !== undefined) return key;
  if (key.includes("}")) {
    throw new TypeError(`no hash-tagged key shares the slot of ${JSON.stringify(key)}`);
  }
  return `{${key}}`;
}

// ---------------------------------------------------------------------------
// Slots and partitions (README "Redis Cluster and partitioned streams").
// ---------------------------------------------------------------------------

/** Number of hash slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16_384;

const encoder = new TextEncoder();

/**
 * The hash tag of `key` by Redis' rule: the content of the first `{…}` when that content is not
 * empty (the first `{` and the first `}` after it), else `undefined` (the whole key is hashed).
 */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf("{");
  if (open < 0) return undefined;
  const close = key.indexOf("}", open + 1);
  if (close < 0 || close === open + 1) return undefined;
  return key.slice(open + 1, close);
}

/** CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with. */
const CRC16_TABLE: Uint16Array = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    }
    table[i] = crc & 0xffff;
  }
  return table;
})();

/** CRC16/XMODEM of `bytes`. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff]) & 0xffff;
  return crc;
}

/**
 * The cluster hash slot of `key`, as `CLUSTER KEYSLOT` computes it: CRC16 of the UTF-8 bytes of
 * its hash tag (or of the whole key when it has none) modulo 16384. The tag is found on the
 * bytes, as Redis does; `{` and `}` are single bytes in UTF-8, so finding it on the string's
 * characters gives the same result.
 */
export function slotOf(key: string): number {
  return crc16(encoder.encode(hashTag(key) ?? key)) % CLUSTER_SLOTS;
}

/** FNV-1a, 32 bits, of the UTF-8 bytes of `text` (offset basis 0x811c9dc5, prime 0x01000193). */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const b of encoder.encode(text)) {
    hash ^= b;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The partition of an entry of a stream with `partitions` partitions: FNV-1a (32-bit) of the
 * UTF-8 bytes of its `aggregateId`, modulo `partitions`. Every producer can compute it.
 */
export function partitionOf(aggregateId: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`);
  }
  return fnv1a32(aggregateId) % partitions;
}

/** The key of partition `index` of the partitioned stream `stream`: `{<stream>:<index>}`. */
export function partitionKey(stream: string, index: number): string {
  if (!Number.isInteger(index) || index < 0) {
    throw new RangeError(`partition index must be a non-negative integer, got ${index}`);
  }
  if (stream.includes("{") || stream.includes("}")) {
    throw new TypeError(`a partitioned stream name must contain no braces: ${stream}`);
  }
  return `{${stream}:${index}}`;
}

/** Every partition key of `stream`, `{S:0}` … `{S:N-1}`, in partition order. */
export function partitionKeys(stream: string, partitions: number): string[] {
  return Array.from({ length: partitions }, (_, i) => partitionKey(stream, i));
}

/** Whether `a` and `b` hash to one cluster slot (so one script may name both). */
export function sameSlot(a: string, b: string): boolean {
  return slotOf(a) === slotOf(b);
}
