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

/** Options of `InFlight`. */
export interface InFlightOptions {
  /** The consumed streams. With one, keys are the entry id alone. */
  streams: readonly string[];
  /** MAX_IN_FLIGHT: entries held at most. */
  capacity: number;
  /** Called with the new size whenever it changes by a batch or a release. */
  onSize?: (size: number) => void;
}

/** The held entries, their capacity and the wake-ups tied to them. */
export class InFlight {
  readonly capacity: number;
  readonly #single: boolean;
  readonly #held = new Map<string, Held>();
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
    return this.#held.size;
  }

  /** Entries that may still be taken before the capacity is reached (0 or more). */
  get room(): number {
    return Math.max(0, this.capacity - this.#held.size);
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
    return this.#held.has(this.keyOf(stream, id));
  }

  /** The held entries. */
  values(): IterableIterator<Held> {
    return this.#held.values();
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
    if (this.#held.has(key)) return undefined;
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
    };
    this.#held.set(key, held);
    return held;
  }

  /** Reports the size after a batch was held. */
  admitted(): void {
    this.#onSize?.(this.#held.size);
  }

  /** Lets go of `h` (settled, or left pending in Redis); false when it was not held. */
  release(h: Held): boolean {
    if (this.#held.get(h.key) !== h) return false;
    this.#held.delete(h.key);
    this.#room.notify();
    if (this.#held.size === 0) this.#empty.notify();
    return true;
  }

  /** True while `h` is the held entry under its key. */
  holds(h: Held): boolean {
    return this.#held.get(h.key) === h;
  }

  /** Reports the current size (after a batch of releases). */
  reportSize(): void {
    this.#onSize?.(this.#held.size);
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
