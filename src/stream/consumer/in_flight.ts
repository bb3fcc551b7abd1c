/**
 * The in-flight registry: the entries this process holds (read, not yet
 * acknowledged), keyed by stream and id. It is the only writer of that set;
 * the reader adds entries, the settler and the dispatcher release them, and
 * waiting loops are woken when room frees up or the set empties.
 */
import type { EntryFields, StreamEvent } from "../entry.ts";
import { pairsToRecord } from "../../redis/reply.ts";

/** Where a held entry is in its life. */
export type Phase = "queued" | "running" | "retry_wait" | "settling";

/** An entry this process holds: read, not yet acknowledged. */
export interface Held {
  /** Registry key (see `InFlight.keyOf`). */
  key: string;
  stream: string;
  id: string;
  /** Deliveries so far, as counted by Redis. */
  deliveries: number;
  phase: Phase;
  /** Set once parsed. */
  event?: StreamEvent;
  /** The entry's fields; null when Redis no longer has the entry (deleted or trimmed). */
  fields: EntryFields | null;
  /** How many fields the entry has, repeated names included. */
  fieldCount: number;
  /** Retry timer while in `retry_wait`. */
  timer?: ReturnType<typeof setTimeout>;
  /** When the entry was last refreshed (read, claimed or kept alive), epoch ms. */
  refreshedAt: number;
  /** Idempotency lock taken by this entry's run, held until it settles (see `IdempotencyGate`). */
  keyLock?: { key: string; promise: Promise<boolean> };
  /** Its slot in the registry (see `InFlight`). */
  slot: number;
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

/** Holds between two copies of the index map (see `InFlight`). */
const INDEX_RENEW = 16_384;

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
 * The entries live in an array of slots (reused through a free list); the map from key to
 * slot holds numbers only. A map whose values were the entries kept every entry read alive
 * until the next full collection: under a steady stream of `set`/`delete` V8 rebuilds a map's
 * table every few hundred operations, and once the table is in the old generation each
 * discarded table (garbage in the old generation) still points at the entries it held, so
 * minor collections kept those alive and promoted them (~450 bytes per entry, ~5 MB per
 * scavenge, and the old generation, so RSS, grew by that much between full collections:
 * bench/RESULTS.md). The slots are written in place and cleared on release. The index map is
 * copied into a new one every `INDEX_RENEW` holds: V8 allocates a rebuilt table in the
 * generation of the table it replaces, so a table that once got old (idle times) would make
 * every later rebuild garbage in the old generation; a copy starts young again.
 */
export class InFlight {
  readonly capacity: number;
  readonly #single: boolean;
  /** Key → slot of the held entry. */
  #index = new Map<string, number>();
  /** Holds until the index map is copied. */
  #renewIn = INDEX_RENEW;
  /** The held entries; undefined in free slots. */
  readonly #slots: (Held | undefined)[] = [];
  /** Free slots, reused last-freed first. */
  readonly #free: number[] = [];
  readonly #room = new Wakeup();
  readonly #empty = new Wakeup();
  readonly #onSize?: (size: number) => void;

  constructor(options: InFlightOptions) {
    this.capacity = options.capacity;
    this.#single = options.streams.length === 1;
    this.#onSize = options.onSize;
  }

  /** Entries held. */
  get size(): number {
    return this.#index.size;
  }

  /** Entries that may still be taken before the capacity is reached (0 or more). */
  get room(): number {
    return Math.max(0, this.capacity - this.#index.size);
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
    return this.#index.has(this.keyOf(stream, id));
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
   * Holds an entry read from Redis (`flat` its fields, null when deleted).
   * Returns undefined when it is held already (it must not run twice).
   */
  hold(
    stream: string,
    id: string,
    deliveries: number,
    flat: readonly string[] | null,
    now = Date.now(),
  ): Held | undefined {
    const key = this.keyOf(stream, id);
    if (--this.#renewIn === 0) {
      this.#index = new Map(this.#index);
      this.#renewIn = INDEX_RENEW;
    }
    const index = this.#index;
    if (index.has(key)) return undefined;
    const slot = this.#free.length > 0 ? this.#free.pop()! : this.#slots.length;
    // Every field set here, so all Held objects share one shape (fast property access).
    const held: Held = {
      key,
      stream,
      id,
      deliveries,
      phase: "queued",
      event: undefined,
      fields: flat ? pairsToRecord(flat) : null,
      fieldCount: flat ? flat.length >> 1 : 0,
      timer: undefined,
      refreshedAt: now,
      keyLock: undefined,
      slot,
    };
    this.#slots[slot] = held;
    index.set(key, slot);
    return held;
  }

  /** Reports the size after a batch was held. */
  admitted(): void {
    this.#onSize?.(this.#index.size);
  }

  /** Lets go of `h` (settled, or left pending in Redis); false when it was not held. */
  release(h: Held): boolean {
    if (this.#slots[h.slot] !== h) return false;
    this.#slots[h.slot] = undefined;
    this.#free.push(h.slot);
    this.#index.delete(h.key);
    this.#room.notify();
    if (this.#index.size === 0) this.#empty.notify();
    return true;
  }

  /** True while `h` is the held entry under its key. */
  holds(h: Held): boolean {
    return this.#slots[h.slot] === h;
  }

  /** Reports the current size (after a batch of releases). */
  reportSize(): void {
    this.#onSize?.(this.#index.size);
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
