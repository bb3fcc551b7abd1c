/**
 * Partition ownership (README "Partitioned streams"): the single owner of which partitions this
 * instance holds and in which phase (taking over, reading, draining). Every turn (a third of
 * PARTITION_LEASE_MS, at most a second) it heartbeats into each stream's membership record,
 * computes the assignment from the live members (`assignPartitions`), renews the leases it
 * holds, takes the free leases assigned to it and hands over the partitions no longer assigned.
 *
 * - Take-over: a new lease first creates the group on the partition key, then claims the
 *   partition's pending entries of other consumers (min-idle 0, in id order, in pages) and
 *   admits them in that order; only then does the reader read the partition (`streams`), so
 *   entries of one aggregate run in stream order across instances.
 * - Hand-over: the partition leaves the reader's list, entries waiting for a retry are left
 *   pending, and once no read naming it is out and no entry of it is held, the lease is
 *   released (renewed meanwhile, for at most one lease time).
 * - Lost lease (renewal refused): the partition leaves the list at once; its settles are fenced
 *   (`SETTLE_FENCED`), so what it still held stays pending for the new owner.
 *
 * It is the reader's and housekeeping's `StreamSource`.
 */
import { delay } from "../../clock.ts";
import { errorInfo, type Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import { managedCommander } from "../../redis/commander.ts";
import type { RedisLink } from "../../redis/connection.ts";
import { type KeySchema, partitionKey } from "../keys.ts";
import { partitionsOf } from "../partitions/assignment.ts";
import { Leases } from "../partitions/leases.ts";
import { Membership } from "../partitions/membership.ts";
import { CLAIM_IDLE } from "../scripts.ts";
import type { Groups } from "./groups.ts";
import { ownershipIntervalMs, type PartitionPhase, planHandover } from "./handover.ts";
import { type Held, type InFlight, Wakeup } from "./in_flight.ts";
import type { Reader, StreamSource } from "./reader.ts";

/** Options of `Ownership`. */
export interface OwnershipOptions {
  connection: RedisLink;
  keys: KeySchema;
  /** The partitioned streams (STREAM), by their names without partition. */
  streams: readonly string[];
  /** STREAM_PARTITIONS (above 1). */
  partitions: number;
  /** PARTITION_LEASE_MS. */
  leaseMs: number;
  group: string;
  consumer: string;
  batchSize: number;
  inFlight: InFlight;
  reader: Reader;
  groups: Groups;
  /** Lets go of a held entry (left pending in Redis). */
  release: (h: Held) => void;
  metrics?: Metrics;
  logger: Logger;
  /** Aborted when the consumer stops. */
  stopping: AbortSignal;
}

/** The partitions this instance holds, and the loop that keeps them. */
export class Ownership implements StreamSource {
  readonly #o: OwnershipOptions;
  readonly #leases: Leases;
  readonly #members: Map<string, Membership>;
  /** Partition key → phase, for every partition whose lease this instance holds. */
  readonly #held = new Map<string, PartitionPhase>();
  readonly #changes = new Wakeup();
  readonly #tasks = new Set<Promise<void>>();
  /** Aborted by `leave()`: ends the loop. */
  readonly #leaving = new AbortController();
  #loop?: Promise<void>;
  #streams: readonly string[] = [];
  #version = 0;

  constructor(options: OwnershipOptions) {
    const o = this.#o = options;
    const cmd = managedCommander(o.connection);
    this.#leases = new Leases(cmd, o.consumer, o.leaseMs);
    this.#members = new Map();
    for (const s of o.streams) {
      this.#members.set(s, new Membership(cmd, o.keys.members(s), o.consumer, o.leaseMs));
    }
    o.stopping.addEventListener("abort", () => this.#changes.notify(), { once: true });
  }

  /** The partition keys read now (phase "reading"). */
  get streams(): readonly string[] {
    return this.#streams;
  }

  /** Changes whenever `streams` does. */
  get version(): number {
    return this.#version;
  }

  /** Resolves at the next change of `streams` (or when stopping). */
  changed(): Promise<void> {
    return this.#o.stopping.aborted ? Promise.resolve() : this.#changes.wait();
  }

  /** The partition keys whose leases this instance holds, with their phase (a copy). */
  held(): Map<string, PartitionPhase> {
    return new Map(this.#held);
  }

  /** Starts the ownership loop (`run`); `leave()` ends it. */
  start(): void {
    this.#loop ??= this.run();
  }

  /**
   * The ownership loop, until `leave()`. Once the consumer stops it only renews the leases it
   * holds, so that the entries still held settle under them (not fenced) however long the
   * stop's drain takes.
   */
  async run(): Promise<void> {
    const o = this.#o;
    const every = ownershipIntervalMs(o.leaseMs);
    let failures = 0;
    while (!this.#leaving.signal.aborted) {
      try {
        if (o.stopping.aborted) await this.#renewAll();
        else await this.turn();
        failures = 0;
      } catch (err) {
        if (failures++ % 30 === 0) {
          o.logger.warn("Partition ownership turn failed: {error}", {
            error: errorInfo(err).message,
          });
        }
      }
      await delay(every, this.#leaving.signal);
    }
  }

  async #renewAll(): Promise<void> {
    for (const key of [...this.#held.keys()]) {
      if (!await this.#leases.renew(this.#o.keys.lease(key))) this.#held.delete(key);
    }
  }

  /** One turn: heartbeat, assignment, renewals, acquisitions, hand-overs (see the module). */
  async turn(): Promise<void> {
    const o = this.#o;
    for (const stream of o.streams) {
      const live = await this.#members.get(stream)!.heartbeat();
      if (o.stopping.aborted) return;
      const assigned = partitionsOf(o.consumer, live, o.partitions).map((i) =>
        partitionKey(stream, i)
      );
      const mine = new Map(
        [...this.#held].filter(([key]) => this.#streamOf(key) === stream),
      );
      const plan = planHandover(assigned, mine);
      for (const key of plan.renew) {
        if (!this.#held.has(key)) continue;
        if (!await this.#leases.renew(o.keys.lease(key))) this.#lost(key);
      }
      for (const key of plan.drain) this.#drain(key);
      for (const key of plan.acquire) {
        if (o.stopping.aborted) return;
        if (await this.#leases.acquire(o.keys.lease(key))) this.#takeOver(key);
      }
      this.#report(stream);
    }
  }

  /**
   * At stop, after the held entries settled: leaves every membership record (the others
   * rebalance at once) and releases the leases still held. Errors are logged, not thrown.
   */
  async leave(): Promise<void> {
    const o = this.#o;
    this.#leaving.abort();
    await this.#loop;
    await Promise.allSettled(this.#tasks);
    for (const [stream, m] of this.#members) {
      await m.leave().catch((err) =>
        o.logger.warn("Leaving the members of {stream} failed: {error}", {
          stream,
          error: errorInfo(err).message,
        })
      );
    }
    for (const key of [...this.#held.keys()]) {
      await this.#leases.release(o.keys.lease(key)).catch(() => false);
      this.#held.delete(key);
    }
    for (const stream of o.streams) this.#report(stream);
  }

  #streamOf(key: string): string {
    return key.slice(1, key.lastIndexOf(":"));
  }

  #report(stream: string): void {
    let n = 0;
    for (const key of this.#held.keys()) if (this.#streamOf(key) === stream) n++;
    this.#o.metrics?.partitionsOwned.set({ stream }, n);
  }

  /** Publishes the partitions in phase "reading" to the reader. */
  #publish(): void {
    this.#streams = [...this.#held].filter(([, p]) => p === "reading").map(([k]) => k).sort();
    this.#version++;
    this.#changes.notify();
    // A blocking read of the old list would wait up to BLOCK_MS: wake it.
    void this.#o.connection.unblockReader();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  /**
   * A new lease: group, then every pending entry in id order (other consumers', and this one's
   * left from an earlier ownership; those still held here are skipped), then reading.
   */
  #takeOver(key: string): void {
    const o = this.#o;
    this.#held.set(key, "taking_over");
    o.logger.info("Took the lease of partition {partition}", { partition: key });
    this.#track((async () => {
      let start = "-";
      let groupReady = false;
      let claimedTotal = 0;
      while (start !== "" && this.#held.get(key) === "taking_over" && !o.stopping.aborted) {
        try {
          if (!groupReady) {
            await o.groups.ensure(key);
            groupReady = true;
          }
          const room = o.inFlight.room;
          if (room <= 0) {
            await Promise.race([o.inFlight.roomFreed(), delay(100, o.stopping)]);
            continue;
          }
          const [next, claimed] = await o.connection.exec((c) =>
            CLAIM_IDLE.run(c, [key], [
              o.group,
              o.consumer,
              "0",
              String(Math.min(o.batchSize, room)),
              start,
              // Its own leftovers too (an earlier ownership), so that all go in id order.
              "own",
            ])
          ) as [string, [string, number, string[]][], string[]];
          start = next;
          if (claimed.length > 0) {
            claimedTotal += claimed.length;
            o.reader.admitClaimed(key, claimed);
          }
        } catch (err) {
          o.logger.warn("Taking over partition {partition} failed: {error}; retrying", {
            partition: key,
            error: errorInfo(err).message,
          });
          await delay(200, o.stopping);
        }
      }
      if (this.#held.get(key) !== "taking_over" || o.stopping.aborted) return;
      if (claimedTotal > 0) {
        o.logger.info("Took over {count} pending entries of partition {partition}", {
          count: claimedTotal,
          partition: key,
        });
      }
      this.#held.set(key, "reading");
      this.#publish();
    })());
  }

  /** Hands `key` over: stop reading it, let its held entries settle, release the lease. */
  #drain(key: string): void {
    const o = this.#o;
    const wasReading = this.#held.get(key) === "reading";
    this.#held.set(key, "draining");
    if (wasReading) this.#publish();
    this.#leavePending(key);
    o.logger.info("Handing over partition {partition}", { partition: key });
    this.#track((async () => {
      const deadline = Date.now() + o.leaseMs;
      while (
        (o.reader.reading(key) || this.#holds(key)) && Date.now() < deadline &&
        !o.stopping.aborted
      ) {
        await Promise.race([o.inFlight.roomFreed(), delay(50, o.stopping)]);
        this.#leavePending(key);
      }
      // While stopping, `leave()` releases it once everything settled.
      if (o.stopping.aborted || this.#held.get(key) !== "draining") return;
      try {
        await this.#leases.release(o.keys.lease(key));
      } catch (err) {
        // It expires on its own within the lease time.
        o.logger.warn("Releasing the lease of {partition} failed: {error}", {
          partition: key,
          error: errorInfo(err).message,
        });
      }
      if (this.#held.get(key) === "draining") this.#held.delete(key);
      this.#report(this.#streamOf(key));
      o.logger.info("Released partition {partition}", { partition: key });
    })());
  }

  /** The lease of `key` was lost (expired and taken, or deleted): stop at once. */
  #lost(key: string): void {
    const wasReading = this.#held.get(key) === "reading";
    this.#held.delete(key);
    if (wasReading) this.#publish();
    this.#leavePending(key);
    this.#o.logger.warn(
      "Lost the lease of partition {partition}; what this instance still holds of it is fenced",
      { partition: key },
    );
  }

  /** True while an entry of `key` is held. */
  #holds(key: string): boolean {
    for (const h of this.#o.inFlight.values()) if (h.stream === key) return true;
    return false;
  }

  /** Entries of `key` waiting for a retry stay pending in Redis, for the next owner. */
  #leavePending(key: string): void {
    for (const h of this.#o.inFlight.values()) {
      if (h.stream === key && h.phase === "retry_wait") {
        clearTimeout(h.timer);
        this.#o.release(h);
      }
    }
  }
}
