/**
 * Consumer: reads the configured streams through one consumer group and keeps
 * the delivery promises of spec section 5.
 *
 * - One read loop on the dedicated blocking connection: first this consumer's
 *   own pending entries (id 0), then new ones (`>`); again after a reconnect.
 * - Dispatch: entries of one (stream, aggregateId) run one after another in
 *   stream order; at most HANDLER_CONCURRENCY handlers run; at most
 *   MAX_IN_FLIGHT entries are held (reading pauses when full).
 * - Settling: successes, duplicates and dead letters are gathered and settled
 *   per stream in one Lua script (XACK, forwarding, idempotency mark,
 *   checkpoint), so per batch, not per entry, and only where XACK returns 1.
 * - Failures: retried with backoff by re-claiming the entry (Redis counts the
 *   delivery); after MAX_DELIVERIES they go to the dead-letter stream.
 * - Side loops: keep-alive of held entries, claiming of idle entries of other
 *   consumers (XAUTOCLAIM), removal of dead consumers, retention trimming, and
 *   the stats (pending, lag, dead-letter length) behind /health and /metrics.
 */
import type { Config } from "../config.ts";
import { dlqStreamFor } from "../config.ts";
import { delay } from "../clock.ts";
import { errorInfo, getLogger, type Logger } from "../log.ts";
import type { Metrics, Outcome } from "../metrics.ts";
import { CircuitOpenError } from "../redis/breaker.ts";
import { exponentialBackoff } from "../redis/backoff.ts";
import {
  classifyError,
  type ConnectionManager,
  NotConnectedError,
  type RedisClient,
} from "../redis/connection.ts";
import {
  type EntryFields,
  isoInZone,
  MalformedEntryError,
  parseEntry,
  type StreamEvent,
} from "./entry.ts";
import type { Handler, HandlerContext, HandlerRegistry } from "./handlers.ts";
import type { Tracing } from "../tracing.ts";
import { LaneScheduler } from "./lanes.ts";
import type { Router } from "./router.ts";
import { ensureGroup, readGroupFigures, removeIdleConsumers, trimOlderThan } from "./group_ops.ts";
import { CLAIM_OWN, DELIVERY_COUNTS, SETTLE } from "./scripts.ts";

/** Per-stream figures for /health, /admin and the gauges. */
export interface StreamStats {
  stream: string;
  group: string;
  pending: number;
  lag: number | null;
  length: number;
  consumers: number;
  lastDeliveredId: string | null;
  dlqStream: string;
  dlqLength: number;
  /** When the dead-letter stream was last seen growing. */
  dlqGrewAt?: number;
}

/** What /health reads of the consumer. */
export interface ConsumerStatus {
  active: boolean;
  lastMessage?: Date;
  inFlight: number;
  streams: StreamStats[];
}

type Phase = "queued" | "running" | "retry_wait" | "settling";

/** An entry this process holds: read, not yet acknowledged. */
interface Held {
  key: string;
  stream: string;
  id: string;
  deliveries: number;
  phase: Phase;
  event?: StreamEvent;
  fields: EntryFields | null;
  timer?: ReturnType<typeof setTimeout>;
  refreshedAt: number;
  /** Idempotency lock taken by this entry's run, held until it settles. */
  keyLock?: { key: string; promise: Promise<boolean> };
}

interface SettleOp {
  held: Held;
  outcome: Outcome | "deleted";
  eventType: string;
  dedupKey?: string;
  targets: readonly string[];
  fields?: Record<string, string>;
}

/** Distinct `event` label values of the consumption metric, at most. */
const MAX_EVENT_LABELS = 200;

/** Raw RESP2 entry: [id, [field, value, …] | null]. */
type RawEntry = [string, string[] | null];

/** Raw XREADGROUP reply: per stream its entries, or null on timeout. */
type ReadReply = [string, RawEntry[]][] | null;

/** Dependencies and settings of `StreamConsumer`. */
export interface StreamConsumerOptions {
  config: Config;
  connection: ConnectionManager;
  registry: HandlerRegistry;
  router: Router;
  metrics?: Metrics;
  logger?: Logger;
  /** Interval of the stats refresh in ms. Default 2000. */
  statsIntervalMs?: number;
  /** Tracing: a CONSUMER span per handled entry, continuing its `headers.traceparent`. */
  tracing?: Tracing;
}

/**
 * What a handler gets: its delivery count, the abort signal, and a logger
 * carrying the entry's correlation id, made only if the handler asks for it.
 */
class EntryContext implements HandlerContext {
  readonly deliveries: number;
  readonly signal: AbortSignal;
  readonly #base: Logger;
  readonly #correlationId: string | undefined;
  #logger?: Logger;

  constructor(
    deliveries: number,
    base: Logger,
    correlationId: string | undefined,
    signal: AbortSignal,
  ) {
    this.deliveries = deliveries;
    this.#base = base;
    this.#correlationId = correlationId;
    this.signal = signal;
  }

  get logger(): Logger {
    return this.#logger ??= this.#correlationId
      ? this.#base.with({ correlationId: this.#correlationId })
      : this.#base;
  }
}

/** A resolvable signal used to wake waiting loops. */
class Wakeup {
  #resolve?: () => void;
  #promise?: Promise<void>;
  wait(): Promise<void> {
    this.#promise ??= new Promise((r) => (this.#resolve = r));
    return this.#promise;
  }
  notify(): void {
    const r = this.#resolve;
    this.#promise = this.#resolve = undefined;
    r?.();
  }
}

/** Consumes the configured streams with the guarantees of spec section 5. */
export class StreamConsumer {
  readonly #cfg: Config["stream"];
  readonly #config: Config;
  readonly #conn: ConnectionManager;
  readonly #registry: HandlerRegistry;
  readonly #router: Router;
  readonly #metrics?: Metrics;
  readonly #log: Logger;
  readonly #statsIntervalMs: number;
  /** Set only when tracing is enabled: disabled, the hot path makes no span. */
  readonly #tracing?: Tracing;

  readonly #singleStream: boolean;
  #held = new Map<string, Held>();
  /** Entries of one (stream, aggregateId) in order; HANDLER_CONCURRENCY at once. */
  readonly #lanes: LaneScheduler<Held>;
  #settleQueue = new Map<string, SettleOp[]>();
  #settling?: Promise<void>;
  #keysInProgress = new Map<string, Promise<boolean>>();
  #capacity = new Wakeup();
  #idle = new Wakeup();
  #stop = new AbortController();
  #handlerAbort = new AbortController();
  #loops: Promise<void>[] = [];
  #readerActive = false;
  #started = false;
  #lastMessage?: Date;
  #stats = new Map<string, StreamStats>();
  #eventLabels = new Set<string>();
  /** Streams whose stats were read once (the first reading is a baseline, not growth). */
  #statsSeen = new Set<string>();

  constructor(options: StreamConsumerOptions) {
    this.#config = options.config;
    this.#cfg = options.config.stream;
    this.#conn = options.connection;
    this.#registry = options.registry;
    this.#router = options.router;
    this.#metrics = options.metrics;
    this.#log = options.logger ?? getLogger("consumer");
    this.#statsIntervalMs = options.statsIntervalMs ?? 2000;
    this.#singleStream = this.#cfg.streams.length === 1;
    this.#lanes = new LaneScheduler({
      concurrency: this.#cfg.handlerConcurrency,
      start: (h) => this.#start(h),
    });
    if (options.tracing?.enabled) this.#tracing = options.tracing;
    for (const stream of this.#cfg.streams) {
      this.#stats.set(stream, {
        stream,
        group: this.#cfg.group,
        pending: 0,
        lag: null,
        length: 0,
        consumers: 0,
        lastDeliveredId: null,
        dlqStream: dlqStreamFor(this.#config, stream),
        dlqLength: 0,
      });
    }
  }

  /** Snapshot for health checks; never touches Redis. */
  status(): ConsumerStatus {
    return {
      active: this.#started && this.#readerActive && this.#conn.connected &&
        !this.#stop.signal.aborted,
      lastMessage: this.#lastMessage,
      inFlight: this.#held.size,
      streams: [...this.#stats.values()].map((s) => ({ ...s })),
    };
  }

  /** Entries held (read and not yet acknowledged). */
  get inFlight(): number {
    return this.#held.size;
  }

  /** Creates the groups and starts the loops. Resolves once the first read is under way. */
  async start(): Promise<void> {
    if (this.#started) throw new Error("Consumer already started");
    this.#started = true;
    for (const stream of this.#cfg.streams) await this.#ensureGroup(stream);
    await this.#refreshStats().catch(() => {});
    this.#loops.push(
      this.#readLoop(),
      this.#every(Math.max(20, Math.floor(this.#cfg.claimIdleMs / 4)), () => this.#keepAlive()),
      this.#every(
        Math.max(20, Math.min(5000, Math.floor(this.#cfg.claimIdleMs / 2))),
        () => this.#claimIdle(),
      ),
      this.#every(
        Math.max(1000, Math.min(60_000, this.#cfg.claimIdleMs * 10)),
        () => this.#removeDeadConsumers(),
      ),
      this.#every(this.#statsIntervalMs, () => this.#refreshStats()),
    );
    if (this.#cfg.retentionMs > 0) {
      this.#loops.push(
        this.#every(
          Math.max(1000, Math.min(60_000, this.#cfg.retentionMs / 10)),
          () => this.#trim(),
        ),
      );
    }
    this.#log.info("Consuming {streams} as {consumer} in group {group}", {
      streams: this.#cfg.streams.join(","),
      consumer: this.#cfg.consumer,
      group: this.#cfg.group,
    });
  }

  /**
   * Stops reading, lets held entries finish and settles them, writing the
   * checkpoint. Resolves true when everything settled before `deadline`
   * (epoch ms); false leaves the rest pending in Redis (redelivered later).
   */
  async stop(deadline: number): Promise<boolean> {
    if (!this.#started) return true;
    this.#stop.abort();
    this.#capacity.notify();
    await this.#conn.unblockReader();
    const remaining = () => Math.max(0, deadline - Date.now());
    const loopsDone = Promise.all(this.#loops).then(() => true);
    if (!await raceDeadline(loopsDone, remaining())) return false;
    // Entries waiting for a retry stay pending in Redis: they are not in flight.
    for (const h of this.#held.values()) {
      if (h.phase === "retry_wait") {
        clearTimeout(h.timer);
        this.#release(h);
      }
    }
    const drained = async () => {
      while (this.#held.size > 0) {
        if (this.#settleQueue.size > 0 && !this.#settling) this.#scheduleSettle();
        await Promise.race([this.#idle.wait(), delay(50)]);
      }
      await this.#settling;
      return true;
    };
    const ok = await raceDeadline(drained(), remaining());
    if (!ok) this.#handlerAbort.abort();
    return ok;
  }

  // --- reading ---------------------------------------------------------------

  async #readLoop(): Promise<void> {
    let generation = -1;
    const pendingCursor = new Map<string, string>();
    // The next read of new entries, sent before the current batch is dispatched
    // so that Redis works on it meanwhile (it is sent only when the batch it may
    // return still fits under MAX_IN_FLIGHT).
    let prefetch: Promise<ReadReply> | undefined;
    while (!this.#stop.signal.aborted) {
      if (!this.#conn.connected) {
        this.#readerActive = false;
        if (!await this.#conn.waitConnected(this.#stop.signal)) break;
      }
      if (this.#conn.generation !== generation) {
        // New connection: first re-read our own pending entries from id 0.
        generation = this.#conn.generation;
        for (const s of this.#cfg.streams) pendingCursor.set(s, "0");
      }
      const room = this.#cfg.maxInFlight - this.#held.size;
      if (room <= 0) {
        await this.#capacity.wait();
        continue;
      }
      const count = Math.min(this.#cfg.batchSize, room);
      try {
        this.#readerActive = true;
        if (pendingCursor.size > 0) {
          const [stream, cursor] = pendingCursor.entries().next().value as [string, string];
          // At start nothing is held: re-read own pending entries from id 0. After a
          // reconnect, entries still held (handlers running) must not be handed out
          // again, nor have their delivery counters raised: claim only the others.
          const last = this.#held.size === 0
            ? await this.#readPendingPage(stream, cursor, count)
            : await this.#claimPendingPage(stream, cursor, count);
          if (last === null) pendingCursor.delete(stream);
          else pendingCursor.set(stream, last);
        } else {
          const current = prefetch ?? this.#readNew(count);
          prefetch = undefined;
          const reply = await current;
          const got = reply ? reply.reduce((n, [, entries]) => n + entries.length, 0) : 0;
          const next = Math.min(this.#cfg.batchSize, room - got);
          if (got > 0 && next >= this.#cfg.batchSize && !this.#stop.signal.aborted) {
            prefetch = this.#readNew(next);
            prefetch.catch(() => {}); // awaited (and its error handled) next turn
          }
          if (reply) {
            for (const [stream, entries] of reply) this.#dispatchNew(stream, entries);
          }
        }
      } catch (err) {
        if (this.#stop.signal.aborted) break;
        await this.#onLoopError("read", err);
      }
      // Let HTTP and timers run between batches.
      await yieldToEventLoop();
    }
    if (prefetch) {
      // Entries it read are pending for this consumer: handle them before stopping.
      const reply = await prefetch.catch(() => null);
      if (reply) { for (const [stream, entries] of reply) this.#dispatchNew(stream, entries); }
    }
    this.#readerActive = false;
  }

  async #readNew(count: number): Promise<ReadReply> {
    const streams = this.#cfg.streams;
    const args = [
      "XREADGROUP",
      "GROUP",
      this.#cfg.group,
      this.#cfg.consumer,
      "COUNT",
      String(count),
      "BLOCK",
      String(this.#cfg.blockMs),
      "STREAMS",
      ...streams,
      ...streams.map(() => ">"),
    ];
    const client = this.#conn.blocking;
    const reply = await client.sendCommand(args, {
      timeout: this.#cfg.blockMs + this.#config.redis.connectTimeoutMs,
    }) as [string, RawEntry[]][] | null;
    return reply;
  }

  /** One page of own pending entries re-read from `cursor`; the last id, or null when done. */
  async #readPendingPage(stream: string, cursor: string, count: number): Promise<string | null> {
    const reply = await this.#conn.exec((c) =>
      c.sendCommand([
        "XREADGROUP",
        "GROUP",
        this.#cfg.group,
        this.#cfg.consumer,
        "COUNT",
        String(count),
        "STREAMS",
        stream,
        cursor,
      ])
    ) as [string, RawEntry[]][] | null;
    const entries = reply?.[0]?.[1] ?? [];
    if (entries.length === 0) return null;
    await this.#dispatchRedelivered(stream, entries);
    return entries[entries.length - 1][0];
  }

  /**
   * One page of own pending entries after `cursor` (XPENDING, which counts no
   * delivery), claiming back only those this process does not hold. The last
   * id, or null when done.
   */
  async #claimPendingPage(stream: string, cursor: string, count: number): Promise<string | null> {
    const rows = await this.#conn.exec((c) =>
      c.sendCommand([
        "XPENDING",
        stream,
        this.#cfg.group,
        cursor === "0" ? "-" : `(${cursor}`,
        "+",
        String(count),
        this.#cfg.consumer,
      ])
    ) as [string, string, number, number][];
    if (rows.length === 0) return null;
    const ids = rows.map((r) => r[0]).filter((id) => !this.#held.has(this.#keyOf(stream, id)));
    if (ids.length > 0) {
      const claimed = await this.#conn.exec((c) =>
        CLAIM_OWN.run(c, [stream], [this.#cfg.group, this.#cfg.consumer, "claim", ...ids])
      ) as [string, number, string[]][];
      const fresh: Held[] = [];
      for (const [id, deliveries, flat] of claimed) {
        const held = this.#hold(stream, id, Number(deliveries), flat.length ? flat : null);
        if (held) fresh.push(held);
      }
      if (fresh.length > 0) this.#lastMessage = new Date();
      this.#admit(fresh);
    }
    return rows[rows.length - 1][0];
  }

  #dispatchNew(stream: string, entries: RawEntry[]): void {
    if (entries.length === 0) return;
    this.#lastMessage = new Date();
    const fresh: Held[] = [];
    const now = Date.now();
    for (const [id, flat] of entries) {
      const held = this.#hold(stream, id, 1, flat, now);
      if (held) fresh.push(held);
    }
    this.#admit(fresh);
  }

  /** Entries handed to us again (own pending, claimed): their counters come from Redis. */
  async #dispatchRedelivered(stream: string, entries: RawEntry[]): Promise<void> {
    const todo = entries.filter(([id]) => !this.#held.has(this.#keyOf(stream, id)));
    if (todo.length === 0) return;
    this.#lastMessage = new Date();
    const counts = await this.#conn.exec((c) =>
      DELIVERY_COUNTS.run(c, [stream], [this.#cfg.group, ...todo.map(([id]) => id)])
    ) as number[];
    const fresh: Held[] = [];
    todo.forEach(([id, flat], i) => {
      const held = this.#hold(stream, id, Math.max(1, Number(counts[i]) || 1), flat);
      if (held) fresh.push(held);
    });
    this.#admit(fresh);
  }

  /**
   * Map key of an entry (or of an aggregate's lane): the id alone when one
   * stream is consumed, which spares building and hashing a compound string
   * per entry on the hot path.
   */
  #keyOf(stream: string, id: string): string {
    return this.#singleStream ? id : `${stream}\u0000${id}`;
  }

  #hold(
    stream: string,
    id: string,
    deliveries: number,
    flat: string[] | null,
    now = Date.now(),
  ): Held | undefined {
    const key = this.#keyOf(stream, id);
    if (this.#held.has(key)) return undefined;
    // Every field set here, so all Held objects share one shape (fast property access).
    const held: Held = {
      key,
      stream,
      id,
      deliveries,
      phase: "queued",
      event: undefined,
      fields: flat ? toRecord(flat) : null,
      timer: undefined,
      refreshedAt: now,
      keyLock: undefined,
    };
    this.#held.set(key, held);
    return held;
  }

  /** Parses held entries, settles the hopeless at once, queues the rest. */
  #admit(batch: Held[]): void {
    this.#metrics?.inFlight.set(this.#held.size);
    for (const h of batch) {
      if (h.fields === null) {
        this.#log.warn("Pending entry {id} of {stream} was deleted or trimmed; acknowledging", {
          id: h.id,
          stream: h.stream,
        });
        this.#enqueueSettle({ held: h, outcome: "deleted", eventType: "unknown", targets: [] });
        continue;
      }
      try {
        h.event = parseEntry(h.stream, h.id, h.fields);
      } catch (err) {
        if (!(err instanceof MalformedEntryError)) throw err;
        this.#deadLetter(h, `malformed entry: ${err.message}`, h.fields.event ?? "unknown");
        continue;
      }
      if (h.deliveries > this.#cfg.maxDeliveries) {
        this.#deadLetter(
          h,
          `delivered ${h.deliveries} times without success (MAX_DELIVERIES ${this.#cfg.maxDeliveries})`,
          h.event.event,
        );
        continue;
      }
      this.#enqueue(h);
    }
  }

  /** True when `h`'s idempotency key was already processed (false when Redis cannot tell). */
  async #processedBefore(h: Held): Promise<boolean> {
    try {
      const mark = await this.#conn.exec((c) => c.sendCommand(["GET", this.#dedupKey(h)]));
      return mark != null;
    } catch (err) {
      // Not knowing, run the handler: at-least-once beats losing the entry.
      this.#log.warn("Idempotency check failed: {error}", { error: errorInfo(err).message });
      return false;
    }
  }

  #dedupKey(h: Held): string {
    return `${h.stream}:dedup:${this.#cfg.group}:${h.event!.headers.idempotencyKey}`;
  }

  // --- running handlers ------------------------------------------------------

  #enqueue(h: Held): void {
    h.phase = "queued";
    this.#lanes.push(this.#keyOf(h.stream, h.event!.aggregateId), h);
  }

  /**
   * Starts one entry. Returns undefined when it finished at once (a handler
   * that returns no promise: no promise is made per entry), else a promise
   * that resolves when it finished; it never rejects.
   */
  #start(h: Held): Promise<unknown> | undefined {
    if (h.event!.headers.idempotencyKey) return this.#runKeyed(h, h.event!.headers.idempotencyKey);
    const r = this.#invoke(h);
    return typeof r === "boolean" ? undefined : r;
  }

  /** Runs the handler (in a span when tracing); true when it succeeded. */
  #invoke(h: Held): boolean | Promise<boolean> {
    const event = h.event!;
    h.phase = "running";
    const handler = this.#registry.resolve(event.event);
    const ctx = new EntryContext(
      h.deliveries,
      this.#log,
      event.headers.correlationId,
      this.#handlerAbort.signal,
    );
    const started = this.#metrics ? performance.now() : 0;
    let result: void | Promise<void>;
    try {
      result = this.#tracing ? this.#traced(this.#tracing, h, handler, ctx) : handler(event, ctx);
    } catch (err) {
      return this.#finish(h, started, false, err);
    }
    if (result instanceof Promise) {
      return result.then(
        () => this.#finish(h, started, true),
        (err: unknown) => this.#finish(h, started, false, err),
      );
    }
    return this.#finish(h, started, true);
  }

  /**
   * Records a handler's outcome: settle the success, or retry / dead-letter the
   * failure. Returns `ok`.
   */
  #finish(h: Held, started: number, ok: boolean, err?: unknown): boolean {
    if (this.#metrics) {
      this.#metrics.processingDuration.observe((performance.now() - started) / 1000);
    }
    if (!ok) {
      this.#onHandlerError(h, err);
      return false;
    }
    const event = h.event!;
    const targets = this.#router.targets(event.event);
    this.#enqueueSettle({
      held: h,
      outcome: "acked",
      eventType: event.event,
      dedupKey: event.headers.idempotencyKey ? this.#dedupKey(h) : undefined,
      targets,
      fields: targets.length > 0 ? this.#forwardFields(event) : undefined,
    });
    return true;
  }

  /**
   * An entry with an idempotency key: runs only when no entry with the key was
   * processed. The key stays locked in this process from the run until the
   * entry settles (which writes the processed mark), so a second entry with the
   * key waits for the first's outcome instead of racing it.
   */
  async #runKeyed(h: Held, key: string): Promise<void> {
    const lockKey = `${h.stream}\u0000${key}`;
    const duplicate = () =>
      this.#enqueueSettle({
        held: h,
        outcome: "duplicate",
        eventType: h.event!.event,
        targets: [],
      });
    for (
      let earlier = this.#keysInProgress.get(lockKey);
      earlier;
      earlier = this.#keysInProgress.get(lockKey)
    ) {
      if (await earlier) return duplicate();
    }
    let resolveKey!: (processed: boolean) => void;
    const promise = new Promise<boolean>((r) => (resolveKey = r));
    this.#keysInProgress.set(lockKey, promise);
    h.keyLock = { key: lockKey, promise };
    // Checked now, not when read: an entry with this key may have settled since.
    if (await this.#processedBefore(h)) {
      duplicate();
      resolveKey(true);
      return;
    }
    const ok = await this.#invoke(h);
    // On success the lock stays until the entry is settled (see #release).
    if (!ok) this.#unlockKey(h);
    resolveKey(ok);
  }

  /** The consumer's logger, carrying the entry's correlation id when it has one. */
  #logFor(h: Held): Logger {
    const correlationId = h.event?.headers.correlationId;
    return correlationId ? this.#log.with({ correlationId }) : this.#log;
  }

  #unlockKey(h: Held): void {
    if (h.keyLock && this.#keysInProgress.get(h.keyLock.key) === h.keyLock.promise) {
      this.#keysInProgress.delete(h.keyLock.key);
    }
    h.keyLock = undefined;
  }

  /** Runs the handler in a CONSUMER span whose parent is the entry's `traceparent`. */
  #traced(tracing: Tracing, h: Held, handler: Handler, ctx: HandlerContext): Promise<void> {
    const event = h.event!;
    return tracing.withSpan(`process ${h.stream}`, {
      kind: "consumer",
      parentHeaders: event.headers,
      attributes: {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": h.stream,
        "messaging.consumer.group.name": this.#cfg.group,
        "messaging.message.id": h.id,
        "messaging.message.deliveries": h.deliveries,
        "event.type": event.event,
        "event.aggregate_id": event.aggregateId,
      },
    }, () => handler(event, ctx));
  }

  #forwardFields(event: StreamEvent): Record<string, string> {
    const headers = { ...event.headers, sourceStream: event.stream, sourceId: event.id };
    return { ...event.fields, headers: JSON.stringify(headers) };
  }

  #onHandlerError(h: Held, err: unknown): void {
    const event = h.event!;
    const message = errorInfo(err).message;
    const log = this.#logFor(h);
    if (h.deliveries >= this.#cfg.maxDeliveries) {
      log.error(
        "Handler for {event} {id} failed on delivery {deliveries}/{maxDeliveries}; dead-lettering: {error}",
        {
          event: event.event,
          id: h.id,
          deliveries: h.deliveries,
          maxDeliveries: this.#cfg.maxDeliveries,
          error: message,
        },
      );
      this.#deadLetter(h, message, event.event);
      return;
    }
    this.#metrics?.consumed.inc({
      stream: h.stream,
      event: this.#eventLabel(event.event),
      outcome: "retried",
    });
    if (this.#stop.signal.aborted) {
      // Stopping: no retry here; the entry stays pending and is redelivered later.
      log.warn("Handler for {event} {id} failed while stopping; left pending: {error}", {
        event: event.event,
        id: h.id,
        error: message,
      });
      this.#release(h);
      return;
    }
    const wait = exponentialBackoff(h.deliveries, {
      minMs: 100,
      maxMs: Math.max(100, Math.min(30_000, this.#cfg.claimIdleMs / 2)),
    });
    log.warn(
      "Handler for {event} {id} failed on delivery {deliveries}/{maxDeliveries}; retrying in {delayMs} ms: {error}",
      {
        event: event.event,
        id: h.id,
        deliveries: h.deliveries,
        maxDeliveries: this.#cfg.maxDeliveries,
        delayMs: wait,
        error: message,
      },
    );
    h.phase = "retry_wait";
    h.timer = setTimeout(() => void this.#retry(h), wait);
  }

  /** Re-claims a failed entry for ourselves (Redis counts the delivery) and runs it again. */
  async #retry(h: Held): Promise<void> {
    if (this.#held.get(h.key) !== h) return;
    if (this.#stop.signal.aborted) {
      this.#release(h); // left pending: redelivered later
      return;
    }
    try {
      const reply = await this.#conn.exec((c) =>
        CLAIM_OWN.run(c, [h.stream], [this.#cfg.group, this.#cfg.consumer, "claim", h.id])
      ) as [string, number, string[]][];
      this.#release(h);
      if (reply.length === 0) {
        // Another consumer claimed it meanwhile; it is theirs now.
        return;
      }
      const [id, deliveries, flat] = reply[0];
      const again = this.#hold(h.stream, id, Number(deliveries), flat.length ? flat : null);
      if (again) this.#admit([again]);
    } catch (err) {
      if (this.#stop.signal.aborted) {
        this.#release(h);
        return;
      }
      this.#log.debug("Retry of {id} postponed: {error}", {
        id: h.id,
        error: errorInfo(err).message,
      });
      h.timer = setTimeout(() => void this.#retry(h), 1000);
    }
  }

  #deadLetter(h: Held, error: string, eventType: string): void {
    const fields: Record<string, string> = {
      ...(h.fields ?? {}),
      error: error.slice(0, 4096),
      sourceStream: h.stream,
      sourceId: h.id,
      deliveries: String(h.deliveries),
      consumer: this.#cfg.consumer,
      failedAt: isoInZone(new Date(), "UTC"),
    };
    this.#logFor(h).warn("Dead-lettering {id} of {stream}: {error}", {
      id: h.id,
      stream: h.stream,
      error,
    });
    this.#enqueueSettle({
      held: h,
      outcome: "dead_lettered",
      eventType,
      targets: [dlqStreamFor(this.#config, h.stream)],
      fields,
    });
  }

  // --- settling --------------------------------------------------------------

  #enqueueSettle(op: SettleOp): void {
    op.held.phase = "settling";
    let q = this.#settleQueue.get(op.held.stream);
    if (!q) this.#settleQueue.set(op.held.stream, q = []);
    q.push(op);
    this.#scheduleSettle();
  }

  #scheduleSettle(): void {
    if (this.#settling) return;
    this.#settling = (async () => {
      // Let handlers finishing in this turn join the batch.
      await Promise.resolve();
      while (this.#settleQueue.size > 0) {
        const queues = this.#settleQueue;
        this.#settleQueue = new Map();
        for (const [stream, ops] of queues) {
          for (let i = 0; i < ops.length; i += 500) {
            await this.#settleWithRetry(stream, ops.slice(i, i + 500));
          }
        }
      }
    })().finally(() => {
      this.#settling = undefined;
      if (this.#settleQueue.size > 0) this.#scheduleSettle();
    });
  }

  async #settleWithRetry(stream: string, ops: SettleOp[]): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        await this.#settle(stream, ops);
        return;
      } catch (err) {
        const msg = errorInfo(err).message;
        if (attempt === 1 || attempt % 20 === 0) {
          this.#log.warn("Acknowledging {count} entries of {stream} failed: {error}; will retry", {
            count: ops.length,
            stream,
            error: msg,
          });
        }
        if (classifyError(err) === "reply") {
          // Redis answered with an error (a script error): retrying will not heal it. The
          // entries stay pending and are redelivered. Connection trouble (including READONLY
          // or LOADING replies) is retried below.
          this.#log.error("Giving up acknowledging {count} entries: {error}", {
            count: ops.length,
            error: msg,
          });
          for (const op of ops) this.#release(op.held);
          return;
        }
        if (!this.#conn.connected) {
          const up = await this.#conn.waitConnected(
            this.#stop.signal.aborted ? AbortSignal.timeout(60_000) : undefined,
          );
          if (!up) {
            // Connection closed (or gone too long while stopping): the entries stay
            // pending and are redelivered; retrying now would spin without end.
            for (const op of ops) this.#release(op.held);
            return;
          }
        } else await delay(Math.min(2000, 50 * attempt));
      }
    }
  }

  async #settle(stream: string, ops: SettleOp[]): Promise<void> {
    const keys = [stream, `${stream}:checkpoint:${this.#cfg.group}`];
    const keyIndex = new Map<string, number>();
    const indexOf = (k: string) => {
      let i = keyIndex.get(k);
      if (i === undefined) {
        keys.push(k);
        i = keys.length; // Lua KEYS are 1-based
        keyIndex.set(k, i);
      }
      return String(i);
    };
    const args = [
      this.#cfg.group,
      this.#cfg.consumer,
      isoInZone(new Date(), this.#config.service.timezone),
      String(this.#cfg.dedupTtlS),
    ];
    // Bare acknowledgements first (the common case: one argument each), then the
    // ops that forward, dead-letter or mark an idempotency key. `ops` is put in
    // that same order so results line up with it.
    const plain: SettleOp[] = [];
    const rich: SettleOp[] = [];
    for (const op of ops) (op.dedupKey || op.targets.length > 0 ? rich : plain).push(op);
    // Plain ids travel as one comma-joined argument: one string to encode, not N.
    args.push(plain.map((op) => op.held.id).join(","));
    for (const op of rich) {
      args.push(op.held.id, op.dedupKey ? indexOf(op.dedupKey) : "0", String(op.targets.length));
      for (const t of op.targets) args.push(indexOf(t));
      const flat = op.fields ? Object.entries(op.fields).flat() : [];
      args.push(String(flat.length), ...flat);
    }
    if (rich.length > 0) ops = plain.concat(rich);
    const results = await this.#conn.exec((c: RedisClient) =>
      SETTLE.run(c, keys, args)
    ) as number[];
    // Counted per batch: one increment per (event, outcome), not per entry.
    const counts = new Map<string, { event: string; outcome: Outcome; n: number }>();
    let deleted = 0;
    ops.forEach((op, i) => {
      if (Number(results[i]) === 1) {
        if (op.outcome === "deleted") deleted++;
        else {
          const k = `${op.eventType}\u0000${op.outcome}`;
          const c = counts.get(k);
          if (c) c.n++;
          else counts.set(k, { event: op.eventType, outcome: op.outcome, n: 1 });
        }
        if (op.outcome === "dead_lettered") {
          const s = this.#stats.get(stream);
          if (s) s.dlqGrewAt = Date.now();
        }
      } else {
        this.#log.debug("Entry {id} of {stream} was already acknowledged elsewhere", {
          id: op.held.id,
          stream,
        });
      }
      this.#release(op.held);
    });
    if (this.#metrics) {
      for (const c of counts.values()) {
        this.#metrics.consumed.inc(
          { stream, event: this.#eventLabel(c.event), outcome: c.outcome },
          c.n,
        );
      }
      if (deleted > 0) this.#metrics.deletedPending.inc({ stream }, deleted);
      this.#metrics.inFlight.set(this.#held.size);
    }
  }

  /**
   * The `event` metric label: producers choose event types, so past
   * MAX_EVENT_LABELS distinct ones the rest count as `other` (bounded cardinality).
   */
  #eventLabel(event: string): string {
    if (this.#eventLabels.has(event)) return event;
    if (this.#eventLabels.size >= MAX_EVENT_LABELS || event.length > 100) return "other";
    this.#eventLabels.add(event);
    return event;
  }

  #release(h: Held): void {
    this.#unlockKey(h);
    if (this.#held.get(h.key) !== h) return;
    this.#held.delete(h.key);
    this.#capacity.notify();
    if (this.#held.size === 0) this.#idle.notify();
  }

  // --- side loops ------------------------------------------------------------

  async #keepAlive(): Promise<void> {
    const now = Date.now();
    // Refreshed every CLAIM_IDLE_MS/4 once older than that: idle stays near half
    // the claim threshold, leaving margin for a slow loop turn.
    const stale = now - Math.floor(this.#cfg.claimIdleMs / 4);
    const byStream = new Map<string, Held[]>();
    for (const h of this.#held.values()) {
      if (h.refreshedAt > stale) continue;
      let list = byStream.get(h.stream);
      if (!list) byStream.set(h.stream, list = []);
      list.push(h);
    }
    for (const [stream, list] of byStream) {
      for (let i = 0; i < list.length; i += 500) {
        const chunk = list.slice(i, i + 500);
        await this.#conn.exec((c) =>
          CLAIM_OWN.run(c, [stream], [
            this.#cfg.group,
            this.#cfg.consumer,
            "keepalive",
            ...chunk.map((h) => h.id),
          ])
        );
        for (const h of chunk) h.refreshedAt = now;
      }
    }
  }

  async #claimIdle(): Promise<void> {
    for (const stream of this.#cfg.streams) {
      let cursor = "0-0";
      do {
        const room = this.#cfg.maxInFlight - this.#held.size;
        if (room <= 0 || this.#stop.signal.aborted) return;
        const reply = await this.#conn.exec((c) =>
          c.sendCommand([
            "XAUTOCLAIM",
            stream,
            this.#cfg.group,
            this.#cfg.consumer,
            String(this.#cfg.claimIdleMs),
            cursor,
            "COUNT",
            String(Math.min(this.#cfg.batchSize, room)),
          ])
        ) as [string, RawEntry[], string[]?];
        cursor = reply[0];
        const entries = reply[1] ?? [];
        const deleted = reply[2] ?? [];
        if (deleted.length > 0) {
          // Redis 7 removed them from the PEL already.
          this.#metrics?.deletedPending.inc({ stream }, deleted.length);
          this.#log.warn("{count} pending entries of {stream} were deleted or trimmed", {
            count: deleted.length,
            stream,
          });
        }
        if (entries.length > 0) {
          this.#log.info("Claimed {count} idle entries of {stream}", {
            count: entries.length,
            stream,
          });
          await this.#dispatchRedelivered(stream, entries);
        }
      } while (cursor !== "0-0");
    }
  }

  async #removeDeadConsumers(): Promise<void> {
    for (const stream of this.#cfg.streams) {
      const removed = await removeIdleConsumers(
        this.#conn,
        stream,
        this.#cfg.group,
        this.#cfg.consumer,
        this.#cfg.claimIdleMs * 10,
      );
      for (const { name, idleMs } of removed) {
        this.#log.info("Removed consumer {name} of {stream}: idle {idleMs} ms", {
          name,
          stream,
          idleMs,
        });
      }
    }
  }

  async #trim(): Promise<void> {
    for (const stream of this.#cfg.streams) {
      const count = await trimOlderThan(this.#conn, stream, this.#cfg.retentionMs);
      if (count > 0) {
        this.#log.debug("Trimmed {count} entries of {stream} older than {retentionMs} ms", {
          count,
          stream,
          retentionMs: this.#cfg.retentionMs,
        });
      }
    }
  }

  async #refreshStats(): Promise<void> {
    for (const stream of this.#cfg.streams) {
      const s = this.#stats.get(stream)!;
      const f = await readGroupFigures(this.#conn, stream, this.#cfg.group, s.dlqStream);
      // Redis lost the group (restart without persistence): create it again.
      if (!f.exists) await this.#ensureGroup(stream);
      // The first reading is the baseline, not growth.
      if (this.#statsSeen.has(stream) && f.dlqLength > s.dlqLength) s.dlqGrewAt = Date.now();
      this.#statsSeen.add(stream);
      Object.assign(s, {
        pending: f.pending,
        lag: f.lag,
        consumers: f.consumers,
        lastDeliveredId: f.lastDeliveredId,
        length: f.length,
        dlqLength: f.dlqLength,
      });
      const labels = { stream, group: this.#cfg.group };
      this.#metrics?.pendingMessages.set(labels, s.pending);
      if (s.lag !== null) this.#metrics?.consumerLag.set(labels, s.lag);
      this.#metrics?.dlqLength.set({ stream }, s.dlqLength);
    }
  }

  async #ensureGroup(stream: string): Promise<void> {
    if (await ensureGroup(this.#conn, stream, this.#cfg.group, this.#cfg.startId)) {
      this.#log.info("Created consumer group {group} on {stream} at {startId}", {
        group: this.#cfg.group,
        stream,
        startId: this.#cfg.startId,
      });
    }
  }

  async #onLoopError(what: string, err: unknown): Promise<void> {
    const msg = errorInfo(err).message;
    if (msg.startsWith("NOGROUP")) {
      this.#log.warn("Consumer group missing ({error}); creating it again", { error: msg });
      for (const s of this.#cfg.streams) {
        await this.#ensureGroup(s).catch((e) =>
          this.#log.error("Creating group failed: {error}", { error: errorInfo(e).message })
        );
      }
      return;
    }
    if (err instanceof NotConnectedError || err instanceof CircuitOpenError) {
      await delay(100, this.#stop.signal);
      return;
    }
    this.#log.warn("{what} failed: {error}", { what, error: msg });
    // A socket problem, or a reply that says this node cannot serve us (READONLY
    // after a failover that kept the connection): reconnect, asking Sentinel again.
    if (classifyError(err) !== "reply") this.#conn.forceReconnect(`${what} failed: ${msg}`);
    await delay(200, this.#stop.signal);
  }

  /** Runs `fn` every `ms` until stopped, logging failures, never throwing. */
  async #every(ms: number, fn: () => Promise<void>): Promise<void> {
    while (!this.#stop.signal.aborted) {
      await delay(ms, this.#stop.signal);
      if (this.#stop.signal.aborted) break;
      if (!this.#conn.connected) continue;
      try {
        await fn();
      } catch (err) {
        if (err instanceof NotConnectedError || err instanceof CircuitOpenError) continue;
        const msg = errorInfo(err).message;
        if (msg.startsWith("NOGROUP")) await this.#onLoopError("side loop", err);
        else this.#log.debug("Background task failed: {error}", { error: msg });
      }
    }
  }
}

function toRecord(flat: string[]): EntryFields {
  const out: EntryFields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

/**
 * One macrotask turn (pending I/O such as HTTP requests and due timers run first). Not
 * setTimeout(0): Deno clamps it to ~1 ms and it takes ~2 ms, which capped the read loop at
 * ~100 entries per 2 ms (see bench/).
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

async function raceDeadline(p: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
