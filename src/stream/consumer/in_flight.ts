/**
 * The in-flight registry: the entries this process holds (read, not yet
 * acknowledged), keyed by stream and id. It is the only writer of that set;
 * the reader adds entries, the settler and the dispatcher release them, and
 * waiting loops are woken when room frees up or the set empties.
 */
import type { StreamEvent } from "../entry.ts";
import { IdIndex } from "./id_index.ts";
import type { Outcome } from "../../metrics.ts";
import { keep, letGo, type RawChunk } from "../../redis/raw_chunks.ts";
import type { EmitWrite, RawFields, SettleCopy } from "./settle_codec.ts";

/** Where a held entry is in its life. */
export type Phase = "queued" | "running" | "retry_wait" | "settling";

/**
 * An entry this process holds: read, not yet acknowledged. While it may be settled as a plain
 * forward, it also says where its fields' bytes lie (`RawFields`: one reference to their chunk,
 * given back when it is let go, or earlier by `dropRaw`).
 */
export interface Held extends RawFields {
  stream: string;
  id: string;
  /** Deliveries so far, as counted by Redis. */
  deliveries: number;
  phase: Phase;
  /** Set once parsed (its fields are `event.fields`), until it is settling. */
  event?: StreamEvent;
  /** Retry timer while in `retry_wait`. */
  timer?: ReturnType<typeof setTimeout>;
  /** When the entry was last refreshed (read, claimed or kept alive), epoch ms. */
  refreshedAt: number;
  /** Idempotency lock taken by this entry's run, held until it settles (see `IdempotencyGate`). */
  keyLock?: { key: string; promise: Promise<boolean> };
  /** Its slot in the registry (see `InFlight`). */
  slot: number;
  /**
   * Set when it is handed to the settler (phase `settling`): what it counts as (`deleted`:
   * Redis no longer has it), its `event` label, and what the settle writes with its
   * acknowledgement (see `SettleOpInput`). The entry is its own settle op: one object less
   * per entry waiting for its acknowledgement.
   */
  outcome?: Outcome | "deleted";
  eventType?: string;
  dedupKey?: string;
  copy?: SettleCopy;
  emits?: readonly EmitWrite[];
}

/**
 * A held entry as a class instance, not an object literal: V8 may decide early (from the first
 * batch, by whether a minor GC happened to find it alive) to allocate a literal's objects in the
 * old generation from then on ("allocation-site pretenuring"; class instances have no such site).
 * A held entry lives until it is settled, so that decision was a coin toss on a drain's first
 * batch; once made, every released entry, dead but old, kept its young strings alive through
 * minor GCs until the next full GC: ~1 MB more survived each minor GC and RSS rose by ~60 MiB
 * (bench/RESULTS.md, session 6). Every field is set here, so all share one shape.
 */
class HeldEntry implements Held {
  phase: Phase = "queued";
  event?: StreamEvent = undefined;
  outcome?: Outcome | "deleted" = undefined;
  eventType?: string = undefined;
  copy?: SettleCopy = undefined;
  rawChunk?: RawChunk = undefined;
  rawSpan = 0;
  /**
   * What few entries carry (a retry timer, an idempotency lock or mark, emitted entries), in an
   * object of its own made at the first one set: four fields less on every entry, each of which
   * a minor GC copies while the entry is held (bench/RESULTS.md, session 10).
   */
  #rare?: RareParts = undefined;
  /**
   * `refreshedAt` as ms since `TIME_BASE`: a small integer kept in the object itself, where an
   * epoch time (no small integer) would be a number object of its own per entry, one more to
   * copy at each minor GC while the entry is held (bench/RESULTS.md, session 10).
   */
  #refreshed: number;

  constructor(
    readonly stream: string,
    readonly id: string,
    public deliveries: number,
    refreshedAt: number,
    readonly slot: number,
  ) {
    this.#refreshed = refreshedAt - TIME_BASE;
  }

  get refreshedAt(): number {
    return this.#refreshed + TIME_BASE;
  }

  set refreshedAt(at: number) {
    this.#refreshed = at - TIME_BASE;
  }

  get timer(): ReturnType<typeof setTimeout> | undefined {
    return this.#rare?.timer;
  }

  set timer(timer: ReturnType<typeof setTimeout> | undefined) {
    if (timer !== undefined || this.#rare) this.#rareParts().timer = timer;
  }

  get keyLock(): RareParts["keyLock"] {
    return this.#rare?.keyLock;
  }

  set keyLock(lock: RareParts["keyLock"]) {
    if (lock !== undefined || this.#rare) this.#rareParts().keyLock = lock;
  }

  get dedupKey(): string | undefined {
    return this.#rare?.dedupKey;
  }

  set dedupKey(key: string | undefined) {
    if (key !== undefined || this.#rare) this.#rareParts().dedupKey = key;
  }

  get emits(): readonly EmitWrite[] | undefined {
    return this.#rare?.emits;
  }

  set emits(emits: readonly EmitWrite[] | undefined) {
    if (emits !== undefined || this.#rare) this.#rareParts().emits = emits;
  }

  #rareParts(): RareParts {
    return this.#rare ??= new RareParts();
  }
}

/** The parts of a `HeldEntry` few entries have (a class: see `HeldEntry`). */
class RareParts {
  timer?: ReturnType<typeof setTimeout> = undefined;
  keyLock?: { key: string; promise: Promise<boolean> } = undefined;
  dedupKey?: string = undefined;
  emits?: readonly EmitWrite[] = undefined;
}

/** The epoch time `HeldEntry` counts `refreshedAt` from (this process' start). */
const TIME_BASE = Date.now();

/**
 * Keeps where `h`'s fields' bytes lie (`RawFields`): one more reference to `chunk`, given back by
 * `dropRaw` (at the latest when `h` is let go).
 */
export function keepRaw(h: Held, chunk: RawChunk, span: number): void {
  keep(chunk);
  h.rawChunk = chunk;
  h.rawSpan = span;
}

/** Lets go of `h`'s fields' bytes (its reference to their chunk), if it has them. */
export function dropRaw(h: Held): void {
  const chunk = h.rawChunk;
  if (chunk) {
    h.rawChunk = undefined;
    letGo(chunk);
  }
}

/** A resolvable signal used to wake waiting loops. */
export class Wakeup {
  #resolve?: () => void;
  #promise?: Promise<void>;

  /** Resolves at the next `notify()`. */
  wait(): Promise<void> {
    this.#promise ??= new Promise((r) => (this.#resolve = r));
    return this.#promise;
  }

  /** Wakes every waiter. */
  notify(): void {
    const r = this.#resolve;
    this.#promise = this.#resolve = undefined;
    r?.();
  }
}

/** Holds between two copies of the index maps (see `InFlight`). */
const INDEX_RENEW = 16_384;
/** Sequence numbers below this fit the numeric key of an id (`idNumber`). */
const SEQ_LIMIT = 2048;
/** Milliseconds below this (2^42, the year 2109) fit it: key < 2^53, exact. */
const MS_LIMIT = 2 ** 42;

/**
 * A stream entry id `<ms>-<seq>` as one exact number, `ms * 2048 + seq`, when both parts are
 * plain decimals that fit (seq below 2048, ms below 2^42); else -1. Distinct ids get distinct
 * numbers. Exported for the tests.
 */
export function idNumber(id: string): number {
  let ms = 0;
  let i = 0;
  const n = id.length;
  for (; i < n; i++) {
    const c = id.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    ms = ms * 10 + c;
  }
  // Also rejects a leading zero (a second spelling of the same id) and an empty part.
  if (i === 0 || i === n || id.charCodeAt(i) !== 45 || (id.charCodeAt(0) === 48 && i > 1)) {
    return -1;
  }
  const at = ++i;
  let seq = 0;
  for (; i < n; i++) {
    const c = id.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    seq = seq * 10 + c;
    if (seq >= SEQ_LIMIT) return -1;
  }
  if (i === at || (id.charCodeAt(at) === 48 && n - at > 1) || ms >= MS_LIMIT) return -1;
  return ms * SEQ_LIMIT + seq;
}

/** The index of one stream's held entries: id (as a number, see `idNumber`) → slot. */
class StreamIndex {
  nums = new IdIndex();
  /** Ids that do not fit a number (rare). */
  strs = new Map<string, number>();

  /** A fresh copy of the string map (its table starts young again, see `InFlight`). */
  renew(): void {
    if (this.strs.size > 0) this.strs = new Map(this.strs);
  }
}

/** Options of `InFlight`. */
export interface InFlightOptions {
  /** The consumed streams. With one, keys are the entry id alone. */
  streams: readonly string[];
  /** MAX_IN_FLIGHT: entries held at most. */
  capacity: number;
  /** Called with the new size whenever it changes by a batch or a release. */
  onSize?: (size: number) => void;
}

/**
 * The held entries, their capacity and the wake-ups tied to them.
 *
 * The entries live in an array of slots (reused through a free list); the index from id to
 * slot holds numbers only. A map whose values were the entries kept every entry read alive
 * until the next full collection: under a steady stream of `set`/`delete` V8 rebuilds a map's
 * table every few hundred operations, and once the table is in the old generation each
 * discarded table (garbage in the old generation) still points at the entries it held, so
 * minor collections kept those alive and promoted them (~450 bytes per entry, ~5 MB per
 * scavenge, and the old generation, so RSS, grew by that much between full collections:
 * bench/RESULTS.md). The slots are written in place and cleared on release.
 *
 * The index is per stream and keyed by the id as a number (`idNumber`), not by the id string:
 * V8 puts a string used as a `Map` key into its string table (a copy in the old generation,
 * and an off-heap table that doubles as it fills), so a map keyed by ids, each one new, grew
 * the old generation by ~40 bytes per entry read and the string table to 2 + 4 + 8 MB within
 * one drain of 200,000 entries (bench/RESULTS.md, session 3). It is an `IdIndex`, whose table
 * is off the JS heap (a `Map`'s rebuilt tables were a fifth of the bytes surviving each minor
 * GC). Ids that do not fit a number exactly (a sequence of 2048 or more within one
 * millisecond) use a string-keyed map, copied into a new one every `INDEX_RENEW` holds: V8
 * allocates a rebuilt table in the generation of the table it replaces, so a table that once
 * got old (idle times) would make every later rebuild garbage in the old generation; a copy
 * starts young again.
 */
export class InFlight {
  readonly capacity: number;
  readonly #single: boolean;
  /** Per stream: key → slot of the held entry. */
  readonly #indexes = new Map<string, StreamIndex>();
  /** The index when one stream is consumed. */
  readonly #only?: StreamIndex;
  /** Entries held. */
  #size = 0;
  /** Holds until the index map is copied. */
  #renewIn = INDEX_RENEW;
  /** The held entries; undefined in free slots. */
  readonly #slots: (Held | undefined)[] = [];
  /** Per slot, its entry's id as a number (`idNumber`; -1 for an id kept as a string). */
  #slotKeys = new Float64Array(1024);
  /** Free slots, reused last-freed first. */
  readonly #free: number[] = [];
  readonly #room = new Wakeup();
  readonly #empty = new Wakeup();
  readonly #onSize?: (size: number) => void;

  constructor(options: InFlightOptions) {
    this.capacity = options.capacity;
    this.#single = options.streams.length === 1;
    this.#onSize = options.onSize;
    for (const s of options.streams) this.#indexes.set(s, new StreamIndex());
    if (this.#single) this.#only = this.#indexes.get(options.streams[0]);
  }

  /** The index of `stream` (made on first use for a stream not named at construction). */
  #indexOf(stream: string): StreamIndex {
    if (this.#only) return this.#only;
    let index = this.#indexes.get(stream);
    if (!index) this.#indexes.set(stream, index = new StreamIndex());
    return index;
  }

  /** Entries held. */
  get size(): number {
    return this.#size;
  }

  /** Entries that may still be taken before the capacity is reached (0 or more). */
  get room(): number {
    return Math.max(0, this.capacity - this.#size);
  }

  /**
   * Map key of an entry (or of an aggregate's lane): the id alone when one
   * stream is consumed, which spares building and hashing a compound string
   * per entry on the hot path.
   */
  keyOf(stream: string, id: string): string {
    return this.#single ? id : `${stream}\u0000${id}`;
  }

  /** True when the entry `id` of `stream` is held. */
  has(stream: string, id: string): boolean {
    const index = this.#indexOf(stream);
    const n = idNumber(id);
    return n >= 0 ? index.nums.has(n) : index.strs.has(id);
  }

  /** The held entries (releasing one while iterating is safe). */
  *values(): IterableIterator<Held> {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const h = slots[i];
      if (h) yield h;
    }
  }

  /**
   * Holds an entry read from Redis (its fields go to `Dispatcher.admit`).
   * Returns undefined when it is held already (it must not run twice).
   */
  hold(stream: string, id: string, deliveries: number, now = Date.now()): Held | undefined {
    if (--this.#renewIn === 0) {
      for (const index of this.#indexes.values()) index.renew();
      this.#renewIn = INDEX_RENEW;
    }
    const index = this.#indexOf(stream);
    const n = idNumber(id);
    if (n >= 0 ? index.nums.has(n) : index.strs.has(id)) return undefined;
    const slot = this.#free.length > 0 ? this.#free.pop()! : this.#slots.length;
    const held = new HeldEntry(stream, id, deliveries, now, slot);
    this.#slots[slot] = held;
    if (slot >= this.#slotKeys.length) {
      const grown = new Float64Array(this.#slotKeys.length * 2);
      grown.set(this.#slotKeys);
      this.#slotKeys = grown;
    }
    this.#slotKeys[slot] = n;
    if (n >= 0) index.nums.set(n, slot);
    else index.strs.set(id, slot);
    this.#size++;
    return held;
  }

  /** Reports the size after a batch was held. */
  admitted(): void {
    this.#onSize?.(this.#size);
  }

  /** Lets go of `h` (settled, or left pending in Redis); false when it was not held. */
  release(h: Held): boolean {
    if (this.#slots[h.slot] !== h) return false;
    dropRaw(h);
    this.#slots[h.slot] = undefined;
    this.#free.push(h.slot);
    const index = this.#indexOf(h.stream);
    const n = this.#slotKeys[h.slot];
    if (n >= 0) index.nums.delete(n);
    else index.strs.delete(h.id);
    this.#size--;
    this.#room.notify();
    if (this.#size === 0) this.#empty.notify();
    return true;
  }

  /** True while `h` is the held entry under its key. */
  holds(h: Held): boolean {
    return this.#slots[h.slot] === h;
  }

  /** Reports the current size (after a batch of releases). */
  reportSize(): void {
    this.#onSize?.(this.#size);
  }

  /** Resolves when room may have freed up (or on `wakeAll`). */
  roomFreed(): Promise<void> {
    return this.#room.wait();
  }

  /** Resolves when the set may have emptied (or on `wakeAll`). */
  emptied(): Promise<void> {
    return this.#empty.wait();
  }

  /** Wakes every waiter (stopping). */
  wakeAll(): void {
    this.#room.notify();
    this.#empty.notify();
  }
}
