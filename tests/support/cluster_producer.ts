/**
 * A producer for failover tests on a Redis Cluster (`redis_cluster.ts`): its entries count only
 * once a replica confirmed them (`WAIT`), so that a test can require every confirmed entry to be
 * handled after the master serving the stream failed over.
 *
 * @module
 */

import { createClient } from "@redis/client";
import { destroyQuietly, HOST, type RedisClusterFixture } from "./redis_cluster.ts";
import type { Fields } from "./streams.ts";
import { sleep, withTimeout } from "./wait.ts";

/** Options of {@linkcode ConfirmedProducer}. */
export interface ConfirmedProducerOptions {
  /** The stream to append to. */
  stream: string;
  /** Entry `i`'s fields. */
  make: (i: number) => Fields;
  /** Entries per batch (one WAIT each). Default: 10. */
  batchSize?: number;
  /** `WAIT` timeout in ms. Default: 2000. */
  waitMs?: number;
  /** Pause between batches in ms (pacing, not a wait for a condition). Default: 20. */
  pauseMs?: number;
}

/**
 * A producer that appends entries `make(0)`, `make(1)`, … to `stream` in batches over a plain
 * connection to the master serving it, and after each batch sends `WAIT 1 <waitMs>` on that
 * connection: a batch counts as confirmed only when a replica acknowledged it. On any error (the
 * master killed, demoted, or the slot moved) it finds the stream's master again and goes on with
 * new entries; the batch in doubt is not confirmed (it may or may not be in the stream). It starts
 * at once; stop it with `stop()` (also through `Cleanup.use`).
 */
export class ConfirmedProducer implements AsyncDisposable {
  /** Indexes `i` of the entries a replica confirmed, in order. */
  readonly confirmed: number[] = [];
  /** Entries sent so far, confirmed or not (the next index). */
  sent = 0;
  /** Errors met (each one made the producer look for the master again). */
  readonly errors: string[] = [];
  readonly #done: Promise<void>;
  readonly #stop = new AbortController();

  constructor(cluster: RedisClusterFixture, opts: ConfirmedProducerOptions) {
    this.#done = this.#run(cluster, opts);
  }

  /** Stops after the current batch (its outcome recorded) and resolves once it has. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#done;
  }

  /** Same as {@linkcode ConfirmedProducer.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #run(cluster: RedisClusterFixture, o: ConfirmedProducerOptions) {
    const { batchSize = 10, waitMs = 2_000, pauseMs = 20 } = o;
    const signal = this.#stop.signal;
    let client: ReturnType<typeof createClient> | undefined;
    try {
      while (!signal.aborted) {
        try {
          if (!client) {
            const port = await cluster.masterOf(o.stream);
            client = createClient({
              RESP: 2,
              password: cluster.password,
              socket: { host: HOST, port, connectTimeout: 2_000, reconnectStrategy: false },
            });
            client.on("error", () => {});
            await withTimeout(client.connect(), 2_000, `connect to ${port}`);
          }
          const batch = Array.from({ length: batchSize }, (_, k) => this.sent + k);
          this.sent += batchSize;
          const c = client;
          await withTimeout(
            Promise.all(
              batch.map((i) =>
                c.sendCommand(["XADD", o.stream, "*", ...Object.entries(o.make(i)).flat()])
              ),
            ),
            5_000,
            "XADD batch",
          );
          const acked = await withTimeout(
            c.sendCommand(["WAIT", "1", String(waitMs)]),
            waitMs + 3_000,
            "WAIT",
          );
          if (Number(acked) >= 1) this.confirmed.push(...batch);
        } catch (err) {
          this.errors.push(err instanceof Error ? err.message : String(err));
          if (client) destroyQuietly(client);
          client = undefined;
          await sleep(100, signal); // Pacing while the cluster settles; the loop asks again.
          continue;
        }
        await sleep(pauseMs, signal);
      }
    } finally {
      if (client) destroyQuietly(client);
    }
  }
}
