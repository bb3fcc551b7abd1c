/**
 * A hash map from entry-id numbers (`idNumber`: integers from 0 to 2^53) to slot numbers,
 * pure, with its table in typed arrays: open addressing, linear probing, deletion by
 * backward shift (no tombstones), at most half full.
 *
 * Why not a `Map`: under the in-flight set's steady churn (one `set` and one `delete` per
 * entry) V8 rebuilds a map's table every few hundred operations, a new ~50 KB table in the
 * young generation each time, alive, so copied by the next minor GC: about a fifth of the
 * bytes surviving each one while draining, enough to make V8 double its young generation
 * drain after drain (bench/RESULTS.md). These tables live outside the JS heap, written in
 * place, and are replaced only when the set outgrows them.
 */

/** Slot value of an empty cell. */
const EMPTY = -1;

export class IdIndex {
  #keys: Float64Array;
  #slots: Int32Array;
  #mask: number;
  #size = 0;

  /** `capacity`: cells to start with (rounded up to a power of two, at least 16). */
  constructor(capacity = 1024) {
    let n = 16;
    while (n < capacity) n *= 2;
    this.#keys = new Float64Array(n);
    this.#slots = new Int32Array(n).fill(EMPTY);
    this.#mask = n - 1;
  }

  /** Keys held. */
  get size(): number {
    return this.#size;
  }

  /** The slot of `key`, or -1. */
  get(key: number): number {
    const keys = this.#keys;
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = hash(key) & mask;; i = (i + 1) & mask) {
      const s = slots[i];
      if (s === EMPTY || keys[i] === key) return s;
    }
  }

  /** True when `key` is held. */
  has(key: number): boolean {
    return this.get(key) !== EMPTY;
  }

  /** Maps `key` to `slot` (a number from 0 to 2^31 - 1), replacing what it mapped to. */
  set(key: number, slot: number): void {
    if ((this.#size + 1) * 2 > this.#slots.length) this.#grow();
    const keys = this.#keys;
    const slots = this.#slots;
    const mask = this.#mask;
    let i = hash(key) & mask;
    while (slots[i] !== EMPTY && keys[i] !== key) i = (i + 1) & mask;
    if (slots[i] === EMPTY) this.#size++;
    keys[i] = key;
    slots[i] = slot;
  }

  /** Removes `key`; false when it was not held. */
  delete(key: number): boolean {
    const keys = this.#keys;
    const slots = this.#slots;
    const mask = this.#mask;
    let i = hash(key) & mask;
    for (;; i = (i + 1) & mask) {
      if (slots[i] === EMPTY) return false;
      if (keys[i] === key) break;
    }
    // Backward shift: move later cells of the probe run into the hole when their home
    // position does not lie cyclically in (hole, cell].
    let hole = i;
    for (let j = (i + 1) & mask; slots[j] !== EMPTY; j = (j + 1) & mask) {
      const home = hash(keys[j]) & mask;
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!between) {
        keys[hole] = keys[j];
        slots[hole] = slots[j];
        hole = j;
      }
    }
    slots[hole] = EMPTY;
    this.#size--;
    return true;
  }

  #grow(): void {
    const keys = this.#keys;
    const slots = this.#slots;
    const n = slots.length * 2;
    this.#keys = new Float64Array(n);
    this.#slots = new Int32Array(n).fill(EMPTY);
    this.#mask = n - 1;
    this.#size = 0;
    for (let i = 0; i < slots.length; i++) if (slots[i] !== EMPTY) this.set(keys[i], slots[i]);
  }
}

/** A 32-bit mix of an integer from 0 to 2^53 (both halves). */
function hash(key: number): number {
  const lo = key >>> 0;
  const hi = (key / 4294967296) >>> 0;
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
