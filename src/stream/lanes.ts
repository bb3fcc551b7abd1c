/**
 * Lanes: runs items one after another within a lane (an aggregate) and at
 * most `concurrency` at once across lanes, round-robin between ready lanes.
 * Pure scheduling, no I/O: the consumer passes entries keyed by aggregate.
 * An item that finishes synchronously costs no promise.
 */

/**
 * Starts one item. Returns undefined when it finished at once, else a promise
 * that settles when it finished (a rejection counts as finished too).
 */
export type StartItem<T> = (item: T) => Promise<unknown> | undefined;

/** Options of `LaneScheduler`. */
export interface LaneSchedulerOptions<T> {
  /** Items running at once, at most. Must be at least 1. */
  concurrency: number;
  /** Runs one item. */
  start: StartItem<T>;
}

/** Per-lane FIFO queues drained with bounded concurrency. */
export class LaneScheduler<T> {
  readonly #concurrency: number;
  readonly #start: StartItem<T>;
  readonly #lanes = new Map<string, T[]>();
  #ready: string[] = [];
  #readyHead = 0;
  #running = 0;
  #pumping = false;

  constructor(options: LaneSchedulerOptions<T>) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError("concurrency must be an integer of at least 1");
    }
    this.#concurrency = options.concurrency;
    this.#start = options.start;
  }

  /** Items running now. */
  get running(): number {
    return this.#running;
  }

  /** Lanes with queued or running items. */
  get lanes(): number {
    return this.#lanes.size;
  }

  /** Queues `item` at the end of `lane`; it runs after the lane's earlier items. */
  push(lane: string, item: T): void {
    const queue = this.#lanes.get(lane);
    if (queue) queue.push(item);
    else {
      this.#lanes.set(lane, [item]);
      this.#ready.push(lane);
    }
    this.#pump();
  }

  #pump(): void {
    if (this.#pumping) return; // an item finishing synchronously inside the loop below
    this.#pumping = true;
    try {
      while (this.#running < this.#concurrency && this.#readyHead < this.#ready.length) {
        const lane = this.#ready[this.#readyHead++];
        if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
          this.#ready = this.#ready.slice(this.#readyHead);
          this.#readyHead = 0;
        }
        const queue = this.#lanes.get(lane)!;
        this.#running++;
        const done = () => {
          this.#running--;
          queue.shift();
          if (queue.length > 0) this.#ready.push(lane); // the lane's next item, in order
          else this.#lanes.delete(lane);
        };
        let pending: Promise<unknown> | undefined;
        try {
          pending = this.#start(queue[0]);
        } catch {
          pending = undefined; // a throwing start counts as finished
        }
        if (pending) {
          const after = () => {
            done();
            this.#pump();
          };
          pending.then(after, after);
        } else done();
      }
    } finally {
      this.#pumping = false;
    }
  }
}
