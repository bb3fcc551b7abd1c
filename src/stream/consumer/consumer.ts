/**
 * `StreamConsumer`: the facade that wires the consumer's parts and keeps
 * `start` / `stop` / `status`. The parts, each the single writer of its state
 * (see docs/architecture.md):
 *
 * - `InFlight`: the held entries, capacity and wake-ups;
 * - `Reader`: the read loop, own-pending recovery, prefetch;
 * - `Dispatcher`: lanes, handler runs, retries and dead letters;
 * - `IdempotencyGate`: idempotency keys in progress;
 * - `Settler`: batched atomic settling;
 * - `Housekeeping`: keep-alive, idle claims, reaper, trimming, stats;
 * - `StatsBoard`: the per-stream figures that `status()` reports;
 * - `Ownership` (STREAM_PARTITIONS above 1): the partitions this instance holds;
 * - `Relay` (cross-slot mode, Redis Cluster): moves the outboxes' copies to their targets.
 *
 * With partitions, the consumed streams are every partition key (groups, stats, in-flight
 * keys); the reader and housekeeping read the ones this instance holds from `Ownership`, and
 * the settles are fenced by the partition's lease.
 */
import { delay, raceDeadline } from "../../clock.ts";
import { errorInfo, getLogger, type Logger } from "../../log.ts";
import { exponentialBackoff } from "../../redis/backoff.ts";
import type { Metrics } from "../../metrics.ts";
import { managedCommander } from "../../redis/commander.ts";
import type { RedisLink } from "../../redis/connection.ts";
import type { Tracing } from "../../tracing.ts";
import type { HandlerRegistry } from "../handlers.ts";
import { partitionKeys } from "../keys.ts";
import type { Router } from "../router.ts";
import type { ConsumerStatus } from "../status.ts";
import { Dispatcher } from "./dispatcher.ts";
import { Groups } from "./groups.ts";
import { Housekeeping } from "./housekeeping.ts";
import { IdempotencyGate } from "./idempotency.ts";
import { type Held, InFlight } from "./in_flight.ts";
import { OutcomeCounter } from "./outcomes.ts";
import { Ownership } from "./partitions.ts";
import { Reader } from "./reader.ts";
import { RawChunks } from "../../redis/raw_chunks.ts";
import { Relay } from "./relay.ts";
import { schedule } from "./schedule.ts";
import type { ConsumerSettings } from "./settings.ts";
import { Settler } from "./settler.ts";
import { StatsBoard } from "./stats.ts";

/** Dependencies and settings of `StreamConsumer`. */
export interface StreamConsumerOptions {
  settings: ConsumerSettings;
  connection: RedisLink;
  registry: HandlerRegistry;
  router: Router;
  metrics?: Metrics;
  /** Default: the `consumer` category. */
  logger?: Logger;
  /** Tracing: a CONSUMER span per handled entry, continuing its `headers.traceparent`. */
  tracing?: Tracing;
}

/** Consumes the configured streams through one consumer group. */
export class StreamConsumer {
  readonly #s: ConsumerSettings;
  readonly #conn: RedisLink;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  readonly #inFlight: InFlight;
  readonly #gate: IdempotencyGate;
  readonly #stats: StatsBoard;
  readonly #groups: Groups;
  readonly #settler: Settler;
  readonly #dispatcher: Dispatcher;
  readonly #reader: Reader;
  readonly #housekeeping: Housekeeping;
  readonly #ownership?: Ownership;
  readonly #relay?: Relay;
  /** Every stream consumed: the streams, or with partitions every partition key. */
  readonly #keys: readonly string[];
  #loops: Promise<void>[] = [];
  #started = false;

  constructor(options: StreamConsumerOptions) {
    const s = this.#s = options.settings;
    const connection = this.#conn = options.connection;
    const logger = this.#log = options.logger ?? getLogger("consumer");
    const metrics = options.metrics;
    const stopping = this.#stop.signal;
    const times = schedule(s);
    const partitions = s.partitions ?? 1;
    const streams = this.#keys = partitions > 1
      ? s.streams.flatMap((x) => partitionKeys(x, partitions))
      : s.streams;
    // Every consumed stream has a dead-letter series from the start, at 0, so that an
    // alert on its increase catches the first dead letter.
    for (const stream of streams) metrics?.deadLetters.inc({ stream }, 0);
    const common = { connection, group: s.group, consumer: s.consumer, logger, stopping };

    const inFlight = this.#inFlight = new InFlight({
      streams,
      capacity: s.maxInFlight,
      onSize: metrics ? (n) => metrics.inFlight.set(n) : undefined,
    });
    const gate = this.#gate = new IdempotencyGate({ connection, keys: s.keys, logger });
    const release = (h: Held) => this.#release(h);
    const stats = this.#stats = new StatsBoard(streams, s.group, (x) => s.keys.dlq(x));
    const outcomes = new OutcomeCounter(metrics);
    this.#groups = new Groups({
      connection,
      streams,
      group: s.group,
      startId: s.startId,
      logger,
    });
    this.#settler = new Settler({
      ...common,
      keys: s.keys,
      timezone: s.timezone,
      dedupTtlS: s.dedupTtlS,
      release,
      reportInFlight: () => inFlight.reportSize(),
      outcomes,
      stats,
      metrics,
      leaseOf: partitions > 1 ? (key) => s.keys.lease(key) : undefined,
      outboxAcrossSlots: s.outboxAcrossSlots,
      onOutbox: (stream) => this.#relay?.wake(stream),
      onSettled: () => inFlight.wakeAll(),
    });
    this.#dispatcher = new Dispatcher({
      ...common,
      registry: options.registry,
      router: options.router,
      emit: { router: options.router, serviceName: s.serviceName, timezone: s.timezone },
      keys: s.keys,
      handlerConcurrency: s.handlerConcurrency,
      maxDeliveries: s.maxDeliveries,
      retryMaxDelayMs: times.retryMaxDelayMs,
      inFlight,
      gate,
      settler: this.#settler,
      outcomes,
      release,
      metrics,
      tracing: options.tracing?.enabled ? options.tracing : undefined,
    });
    // The reader and housekeeping ask the ownership for the partitions held now; it is
    // built after the reader it drives, so they reach it through this late-bound source.
    const source = partitions > 1
      ? {
        get streams() {
          return own().streams;
        },
        get version() {
          return own().version;
        },
        changed: () => own().changed(),
      }
      : undefined;
    const own = () => this.#ownership!;
    this.#reader = new Reader({
      ...common,
      streams,
      source,
      batchSize: s.batchSize,
      blockMs: s.blockMs,
      inFlight,
      dispatcher: this.#dispatcher,
      groups: this.#groups,
      settleBacklog: () => this.#settler.backlog,
      // Forwards settle with their fields' bytes, on a link that sends commands as bytes.
      chunks: connection.execBytes && !options.router.empty ? new RawChunks() : undefined,
    });
    this.#housekeeping = new Housekeeping({
      ...common,
      streams,
      source,
      batchSize: s.batchSize,
      claimIdleMs: s.claimIdleMs,
      retentionMs: s.retentionMs,
      schedule: times,
      inFlight,
      reader: this.#reader,
      groups: this.#groups,
      stats,
      metrics,
    });
    if (partitions > 1) {
      this.#ownership = new Ownership({
        connection,
        keys: s.keys,
        streams: s.streams,
        partitions,
        leaseMs: s.partitionLeaseMs ?? 10_000,
        group: s.group,
        consumer: s.consumer,
        batchSize: s.batchSize,
        inFlight,
        reader: this.#reader,
        groups: this.#groups,
        release,
        metrics,
        logger,
        stopping,
      });
    }
    if (s.outboxAcrossSlots) {
      // With partitions, the outboxes of the partitions held: their copies keep their order.
      this.#relay = new Relay({
        commander: managedCommander(connection),
        replication: connection.replication,
        keys: s.keys,
        group: s.group,
        consumer: s.consumer,
        streams: partitions > 1 ? () => [...own().held().keys()] : () => streams,
        takeOver: partitions > 1,
        dedupTtlS: s.dedupTtlS,
        claimIdleMs: s.claimIdleMs,
        batchSize: Math.max(10, s.batchSize),
        metrics,
        logger,
      });
    }
  }

  /** Partitioned streams: the partition keys held now, with their phase (a copy). */
  partitionsHeld(): Map<string, string> {
    return this.#ownership?.held() ?? new Map();
  }

  /** Snapshot for health checks; never touches Redis. */
  status(): ConsumerStatus {
    return {
      active: this.#started && this.#reader.active && this.#conn.connected &&
        !this.#stop.signal.aborted,
      lastMessage: this.#reader.lastMessage,
      inFlight: this.#inFlight.size,
      streams: this.#stats.snapshot(),
    };
  }

  /** Entries held (read and not yet acknowledged). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Creates the groups and starts the loops. A failure to create a group (a
   * key of another type in the way, a LOADING Redis, a lost connection) is
   * retried with backoff until it succeeds or `stop()` is called, logged at
   * WARN: start-up heals without a restart once the cause is gone. Resolves
   * once the loops run (or at once when stopped meanwhile).
   */
  async start(): Promise<void> {
    if (this.#started) throw new Error("Consumer already started");
    this.#started = true;
    const stopping = this.#stop.signal;
    for (let attempt = 1; !stopping.aborted; attempt++) {
      try {
        await this.#groups.ensureAll();
        break;
      } catch (err) {
        const wait = exponentialBackoff(attempt, { minMs: 200, maxMs: 5000 });
        this.#log.warn(
          "Creating the consumer groups failed (attempt {attempt}): {error}; retrying in {delayMs} ms",
          { attempt, error: errorInfo(err).message, delayMs: wait },
        );
        await delay(wait, stopping);
      }
    }
    if (stopping.aborted) return;
    await this.#housekeeping.refreshStats().catch((err) =>
      this.#log.warn("Reading the stream figures failed: {error}", {
        error: errorInfo(err).message,
      })
    );
    this.#loops.push(this.#reader.run(), ...this.#housekeeping.start());
    // Not one of #loops: it keeps renewing the leases while stop() drains, until leave().
    this.#ownership?.start();
    // Not one of #loops either: it relays what the last settles wrote, after them (stop()).
    this.#relay?.start();
    this.#log.info("Consuming {streams} as {consumer} in group {group}", {
      streams: this.#ownership
        ? `${this.#s.streams.join(",")} (${this.#s.partitions} partitions each, shared)`
        : this.#s.streams.join(","),
      consumer: this.#s.consumer,
      group: this.#s.group,
    });
  }

  /**
   * Stops reading, lets held entries finish and settles them, writing the
   * checkpoint. Resolves true when everything settled before `deadline`
   * (epoch ms); false leaves the rest pending in Redis (redelivered later).
   */
  async stop(deadline: number): Promise<boolean> {
    if (!this.#started) return true;
    const settled = await this.#stopConsuming(deadline);
    // The copies the last settles wrote to the outboxes, before the leases go.
    await this.#relay?.stop(deadline);
    if (this.#ownership) {
      // Partitions: leave the membership, release the leases (held entries settled, or left
      // pending for the next owner when the deadline passed). A short grace past it.
      const budget = Math.max(1000, deadline - Date.now());
      await raceDeadline(this.#ownership.leave().then(() => true), budget, false);
    }
    return settled;
  }

  async #stopConsuming(deadline: number): Promise<boolean> {
    this.#stop.abort();
    this.#inFlight.wakeAll();
    await this.#conn.unblockReader();
    const remaining = () => Math.max(0, deadline - Date.now());
    const loopsDone = Promise.all(this.#loops).then(() => true);
    if (!await raceDeadline(loopsDone, remaining(), false)) return false;
    // Entries waiting for a retry stay pending in Redis: they are not in flight.
    for (const h of this.#inFlight.values()) {
      if (h.phase === "retry_wait") {
        clearTimeout(h.timer);
        this.#release(h);
      }
    }
    const drained = async () => {
      while (this.#inFlight.size > 0) {
        await Promise.race([this.#inFlight.emptied(), delay(50)]);
      }
      await this.#settler.drained();
      return true;
    };
    const ok = await raceDeadline(drained(), remaining(), false);
    if (!ok) this.#dispatcher.abortHandlers();
    return ok;
  }

  #release(h: Held): void {
    this.#gate.unlock(h);
    this.#inFlight.release(h);
  }
}
