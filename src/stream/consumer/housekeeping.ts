/**
 * Housekeeping: the consumer's background loops, each on its interval from
 * `schedule.ts`: keep-alive of held entries (so no one claims them while
 * their handlers run), claiming entries other consumers left idle
 * (XAUTOCLAIM), removing dead consumers, trimming by age, and the stats poller
 * behind /health and the gauges. A loop never throws; a failure is logged and
 * the loop goes on at its next turn.
 */
import { CircuitOpenError } from "../../redis/breaker.ts";
import { delay } from "../../clock.ts";
import { errorInfo, type Logger } from "../../log.ts";
import { errorReason, LogThrottle } from "../../log_throttle.ts";
import type { Metrics } from "../../metrics.ts";
import { NotConnectedError, type RedisLink } from "../../redis/connection.ts";
import { readGroupFigures, removeIdleConsumers, trimOlderThan } from "../group_ops.ts";
import { CLAIM_IDLE, CLAIM_OWN } from "../scripts.ts";
import { type Groups, isNoGroup } from "./groups.ts";
import type { Held, InFlight } from "./in_flight.ts";
import type { Reader, StreamSource } from "./reader.ts";
import type { Schedule } from "./schedule.ts";
import type { StatsBoard } from "./stats.ts";

/** Options of `Housekeeping`. */
export interface HousekeepingOptions {
  connection: RedisLink;
  /** Every consumed stream (with partitions: every partition key): the stats poller's. */
  streams: readonly string[];
  /**
   * Partitioned streams: the partitions this instance reads now; claims, the reaper and
   * trimming work on these only (default: `streams`).
   */
  source?: StreamSource;
  group: string;
  consumer: string;
  batchSize: number;
  claimIdleMs: number;
  retentionMs: number;
  schedule: Schedule;
  inFlight: InFlight;
  reader: Reader;
  groups: Groups;
  stats: StatsBoard;
  metrics?: Metrics;
  logger: Logger;
  /** Aborted when the consumer stops; every loop ends then. */
  stopping: AbortSignal;
  /** Limits the failure lines. Default: once a minute per loop and reason. */
  throttle?: LogThrottle;
}

/** Held entries refreshed by one script call, at most. */
const KEEP_ALIVE_CHUNK = 500;

/** The background loops. */
export class Housekeeping {
  readonly #o: HousekeepingOptions;
  readonly #throttle: LogThrottle;

  constructor(options: HousekeepingOptions) {
    this.#o = options;
    this.#throttle = options.throttle ?? new LogThrottle();
  }

  /** Starts every loop; the promises resolve when the loops end (on stopping). */
  start(): Promise<void>[] {
    const s = this.#o.schedule;
    const loops = [
      this.#every("keepalive", s.keepAliveMs, () => this.keepAlive()),
      this.#every("claim", s.claimIdleEveryMs, () => this.claimIdle()),
      this.#every("reaper", s.reaperEveryMs, () => this.removeDeadConsumers()),
      this.#every("stats", s.statsEveryMs, () => this.refreshStats()),
    ];
    if (s.trimEveryMs !== undefined) {
      loops.push(this.#every("trim", s.trimEveryMs, () => this.trim()));
    }
    return loops;
  }

  /** Resets the idle time of held entries older than the keep-alive period (owner-checked). */
  async keepAlive(): Promise<void> {
    const o = this.#o;
    const now = Date.now();
    const stale = now - o.schedule.keepAliveMs;
    const byStream = new Map<string, Held[]>();
    for (const h of o.inFlight.values()) {
      if (h.refreshedAt > stale) continue;
      let list = byStream.get(h.stream);
      if (!list) byStream.set(h.stream, list = []);
      list.push(h);
    }
    for (const [stream, list] of byStream) {
      for (let i = 0; i < list.length; i += KEEP_ALIVE_CHUNK) {
        const chunk = list.slice(i, i + KEEP_ALIVE_CHUNK);
        await o.connection.exec((c) =>
          CLAIM_OWN.run(c, [stream], [o.group, o.consumer, "keepalive", ...chunk.map((h) => h.id)])
        );
        for (const h of chunk) h.refreshedAt = now;
      }
    }
  }

  /**
   * Claims entries idle longer than CLAIM_IDLE_MS, as long as there is room:
   * those of other consumers, and this consumer's own that it does not hold
   * (left pending by a failed settle or a stop). Entries it holds are never
   * claimed: their handlers run here.
   */
  async claimIdle(): Promise<void> {
    const o = this.#o;
    for (const stream of o.source?.streams ?? o.streams) {
      let start = "-";
      while (start !== "") {
        const room = o.inFlight.room;
        if (room <= 0 || o.stopping.aborted) return;
        const [next, claimed, deleted] = await o.connection.exec((c) =>
          CLAIM_IDLE.run(c, [stream], [
            o.group,
            o.consumer,
            String(o.claimIdleMs),
            String(Math.min(o.batchSize, room)),
            start,
          ])
        ) as [string, [string, number, string[]][], string[]];
        start = next;
        if (deleted.length > 0) {
          o.metrics?.deletedPending.inc({ stream }, deleted.length);
          o.logger.warn("{count} pending entries of {stream} were deleted or trimmed", {
            count: deleted.length,
            stream,
          });
        }
        if (claimed.length > 0) {
          o.logger.info("Claimed {count} idle entries of {stream}", {
            count: claimed.length,
            stream,
          });
          o.reader.admitClaimed(stream, claimed);
        }
      }
      await this.#claimOwnOrphans(stream);
    }
  }

  /** Claims back this consumer's own pending entries idle past CLAIM_IDLE_MS that it does not hold. */
  async #claimOwnOrphans(stream: string): Promise<void> {
    const o = this.#o;
    const room = o.inFlight.room;
    if (room <= 0 || o.stopping.aborted) return;
    const rows = await o.connection.exec((c) =>
      c.sendCommand([
        "XPENDING",
        stream,
        o.group,
        "IDLE",
        String(o.claimIdleMs),
        "-",
        "+",
        String(Math.min(o.batchSize, room)),
        o.consumer,
      ])
    ) as [string, string, number, number][];
    const ids = rows.map((r) => r[0]).filter((id) => !o.inFlight.has(stream, id));
    if (ids.length === 0) return;
    const claimed = await o.connection.exec((c) =>
      CLAIM_OWN.run(c, [stream], [o.group, o.consumer, "claim", ...ids])
    ) as [string, number, string[]][];
    if (claimed.length > 0) {
      o.logger.info("Took back {count} idle entries of {stream} left pending here", {
        count: claimed.length,
        stream,
      });
      o.reader.admitClaimed(stream, claimed);
    }
  }

  /** Removes consumers idle past ten times CLAIM_IDLE_MS that hold nothing. */
  async removeDeadConsumers(): Promise<void> {
    const o = this.#o;
    for (const stream of o.source?.streams ?? o.streams) {
      const removed = await removeIdleConsumers(
        o.connection,
        stream,
        o.group,
        o.consumer,
        o.schedule.deadConsumerIdleMs,
      );
      for (const { name, idleMs } of removed) {
        o.logger.info("Removed consumer {name} of {stream}: idle {idleMs} ms", {
          name,
          stream,
          idleMs,
        });
      }
    }
  }

  /** Trims entries older than STREAM_RETENTION_MS. */
  async trim(): Promise<void> {
    const o = this.#o;
    for (const stream of o.source?.streams ?? o.streams) {
      const count = await trimOlderThan(o.connection, stream, o.retentionMs);
      if (count > 0) {
        o.logger.debug("Trimmed {count} entries of {stream} older than {retentionMs} ms", {
          count,
          stream,
          retentionMs: o.retentionMs,
        });
      }
    }
  }

  /** Reads every stream's figures into the stats board and the gauges. */
  async refreshStats(): Promise<void> {
    const o = this.#o;
    for (const stream of o.streams) {
      const f = await readGroupFigures(o.connection, stream, o.group, o.stats.dlqOf(stream));
      // Redis lost the group (restart without persistence): create it again.
      if (!f.exists) await o.groups.ensure(stream);
      const s = o.stats.update(stream, f);
      const labels = { stream, group: o.group };
      o.metrics?.pendingMessages.set(labels, s.pending);
      if (s.lag !== null) o.metrics?.consumerLag.set(labels, s.lag);
      o.metrics?.dlqLength.set({ stream }, s.dlqLength);
    }
  }

  /**
   * Runs `fn` every `ms` until stopping, never throwing. A failure counts in
   * `stream_loop_errors_total{loop}` and logs at WARN, at most once a minute
   * per loop and reason. Turns while Redis is away are skipped, not counted:
   * the connection state says that already.
   */
  async #every(loop: LoopName, ms: number, fn: () => Promise<void>): Promise<void> {
    const o = this.#o;
    while (!o.stopping.aborted) {
      await delay(ms, o.stopping);
      if (o.stopping.aborted) break;
      if (!o.connection.connected) continue;
      try {
        await fn();
      } catch (err) {
        if (err instanceof NotConnectedError || err instanceof CircuitOpenError) continue;
        if (isNoGroup(err)) {
          await o.groups.recreate(err);
          continue;
        }
        o.metrics?.loopErrors.inc({ loop });
        const reason = errorReason(err);
        const suppressed = this.#throttle.take(`${loop}\u0000${reason}`);
        if (suppressed !== undefined) {
          o.logger.warn("Background loop {loop} failed: {error} ({suppressed} more since)", {
            loop,
            error: errorInfo(err).message,
            reason,
            suppressed,
          });
        }
      }
    }
  }
}

/** The background loops, as named in `stream_loop_errors_total{loop}`. */
export type LoopName = "keepalive" | "claim" | "reaper" | "stats" | "trim";
