/**
 * The chaos soak's producer: XADDs entries (see `entries.ts`) to the source stream at a fixed
 * rate, and records each XADD's fate: acknowledged with an id, or "unknown" when the reply never
 * came (the connection died with the command in flight, so it may or may not have been applied),
 * or rejected by an error reply (e.g. `LOADING` while Redis reads its append-only file).
 * It outlives Redis being killed or paused: its client reconnects by itself and commands issued
 * meanwhile wait in the client's offline queue. At most `maxInFlight` XADDs wait for a reply; ticks
 * beyond that are skipped (counted, not produced), so a long outage cannot exhaust memory.
 *
 * @module
 */

import { ErrorReply } from "@redis/client";
import type { RedisClient } from "../tests/support/redis_server.ts";
import { sleep } from "../tests/support/wait.ts";
import { chaosEntry, chooseKind } from "./entries.ts";
import type { Rng } from "./rng.ts";
import type { Produced } from "./tally.ts";

/** Options of {@linkcode Producer}. */
export interface ProducerOptions {
  /** Client to XADD with (should reconnect by itself). */
  client: RedisClient;
  /** Source stream. */
  stream: string;
  /** Entries per second. */
  rate: number;
  /** Share of poison entries, 0..1. */
  poisonRatio: number;
  /** Mix in entries over the service's limits (more than 1,000 fields, over 1 MB). */
  hostile: boolean;
  /** Decides each entry's kind. */
  rng: Rng;
  /** Tag of this run in correlation ids. */
  run: string;
  /** XADDs waiting for a reply, at most. Default: 15 s worth of `rate` (at least 1000). */
  maxInFlight?: number;
}

/** Produces entries at a fixed rate until `stop()`; see the module documentation. */
export class Producer {
  /** Every XADD issued, in order; `id` set once acknowledged. */
  readonly produced: Produced[] = [];
  /** Ticks skipped because `maxInFlight` XADDs were waiting. */
  skipped = 0;
  /** XADD failures by reason (the error's first words): error replies and lost connections. */
  readonly failures: Map<string, number> = new Map();
  /** Acknowledged ids of `always-fails` entries (they stay pending while they are retried). */
  readonly retriedIds: Set<string> = new Set();

  readonly #opts: ProducerOptions;
  readonly #maxInFlight: number;
  readonly #stop = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();
  #loop: Promise<void> | undefined;
  #acked = 0;
  #lastAckAt = 0;

  constructor(opts: ProducerOptions) {
    if (!(opts.rate > 0)) throw new RangeError(`rate must be above 0, got ${opts.rate}`);
    this.#opts = opts;
    this.#maxInFlight = opts.maxInFlight ?? Math.max(1_000, Math.ceil(opts.rate * 15));
  }

  /** XADDs acknowledged so far. */
  get acknowledged(): number {
    return this.#acked;
  }

  /** When the last XADD was acknowledged (epoch ms; 0 before the first). */
  get lastAckAt(): number {
    return this.#lastAckAt;
  }

  /** XADDs waiting for a reply. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Starts producing. */
  start(): void {
    if (this.#loop) throw new Error("Producer already started");
    this.#loop = this.#run();
  }

  /**
   * Stops producing, then waits up to `settleMs` (default 30000) for the XADDs in flight; those
   * still without a reply stay "unknown".
   */
  async stop(settleMs = 30_000): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    const settled = Promise.all(this.#inFlight);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([settled, new Promise((r) => timer = setTimeout(r, settleMs))]);
    clearTimeout(timer);
  }

  async #run(): Promise<void> {
    const { rate } = this.#opts;
    const started = performance.now();
    let issued = 0;
    while (!this.#stop.signal.aborted) {
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      for (; issued < due; issued++) {
        if (this.#inFlight.size >= this.#maxInFlight) this.skipped++;
        else this.#add();
      }
      await sleep(20, this.#stop.signal);
    }
  }

  #add(): void {
    const { client, stream, rng, poisonRatio, hostile, run } = this.#opts;
    const record: Produced = {
      seq: this.produced.length,
      kind: chooseKind(rng, poisonRatio, hostile),
    };
    this.produced.push(record);
    const fields = chaosEntry(record.seq, record.kind, run);
    const done = client.sendCommand(["XADD", stream, "*", ...fields]).then(
      (id) => {
        record.id = String(id);
        if (record.kind === "always-fails") this.retriedIds.add(record.id);
        this.#acked++;
        this.#lastAckAt = Date.now();
      },
      (err) => {
        // An error reply (e.g. LOADING) means Redis refused it; otherwise no reply came and the
        // XADD stays "unknown".
        if (err instanceof ErrorReply) record.rejected = true;
        const reason = err instanceof Error ? err.message.split(/\s+/).slice(0, 4).join(" ") : "?";
        this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
      },
    ).finally(() => this.#inFlight.delete(done));
    this.#inFlight.add(done);
  }
}
