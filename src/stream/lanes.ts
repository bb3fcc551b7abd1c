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
  /** The lane whose item #runDirect is starting, and items pushed to it meanwhile. */
  #directLane?: string;
  #directRest?: T[];

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
    if (lane === this.#directLane) {
      // Pushed from inside the start of that lane's item (see #runDirect).
      (this.#directRest ??= []).push(item);
      return;
    }
    // No lane waits or runs async (the usual case with handlers that finish at once): no
    // lookup, which would hash the key, a new string per entry.
    const queue = this.#lanes.size > 0 ? this.#lanes.get(lane) : undefined;
    if (queue) {
      // The lane runs or waits in #ready: the item follows in turn.
      queue.push(item);
      return;
    }
    if (
      this.#running < this.#concurrency && this.#readyHead >= this.#ready.length && !this.#pumping
    ) {
      this.#runDirect(lane, item);
      return;
    }
    this.#lanes.set(lane, [item]);
    this.#ready.push(lane);
    this.#pump();
  }

  /**
   * Starts the item of an idle lane while nothing waits: the common case costs
   * at most one map lookup (in `push`) and no queue, unless the item goes async.
   */
  #runDirect(lane: string, item: T): void {
    this.#running++;
    this.#pumping = true;
    this.#directLane = lane;
    let pending: Promise<unknown> | undefined;
    try {
      pending = this.#start(item);
    } catch {
      pending = undefined; // a throwing start counts as finished
    } finally {
      this.#directLane = undefined;
      this.#pumping = false;
    }
    const rest = this.#directRest;
    this.#directRest = undefined;
    if (!pending && !rest) {
      this.#running--;
      if (this.#readyHead < this.#ready.length) this.#pump(); // lanes pushed meanwhile
      return;
    }
    const queue = rest ? [item, ...rest] : [item];
    this.#lanes.set(lane, queue);
    if (pending) this.#await(lane, queue, pending);
    else this.#finished(lane, queue);
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
        let pending: Promise<unknown> | undefined;
        try {
          pending = this.#start(queue[0]);
        } catch {
          pending = undefined; // a throwing start counts as finished
        }
        if (pending) this.#await(lane, queue, pending);
        else this.#finished(lane, queue);
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Finishes the lane's running item once `pending` settles, then starts more. */
  #await(lane: string, queue: T[], pending: Promise<unknown>): void {
    const after = () => {
      this.#finished(lane, queue);
      this.#pump();
    };
    pending.then(after, after);
  }

  /** The lane's running item (its queue's head) finished: its next item, in order, is ready. */
  #finished(lane: string, queue: T[]): void {
    this.#running--;
    queue.shift();
    if (queue.length > 0) this.#ready.push(lane);
    else this.#lanes.delete(lane);
  }
}
