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
import type { Metrics } from "../../metrics.ts";
import { type ConnectionManager, NotConnectedError } from "../../redis/connection.ts";
import { readGroupFigures, removeIdleConsumers, trimOlderThan } from "../group_ops.ts";
import { CLAIM_OWN } from "../scripts.ts";
import { type Groups, isNoGroup } from "./groups.ts";
import type { Held, InFlight } from "./in_flight.ts";
import type { RawEntry } from "./raw.ts";
import type { Reader } from "./reader.ts";
import type { Schedule } from "./schedule.ts";
import type { StatsBoard } from "./stats.ts";

/** Options of `Housekeeping`. */
export interface HousekeepingOptions {
  connection: ConnectionManager;
  streams: readonly string[];
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
}

/** Held entries refreshed by one script call, at most. */
const KEEP_ALIVE_CHUNK = 500;

/** The background loops. */
export class Housekeeping {
  readonly #o: HousekeepingOptions;

  constructor(options: HousekeepingOptions) {
    this.#o = options;
  }

  /** Starts every loop; the promises resolve when the loops end (on stopping). */
  start(): Promise<void>[] {
    const s = this.#o.schedule;
    const loops = [
      this.#every(s.keepAliveMs, () => this.keepAlive()),
      this.#every(s.claimIdleEveryMs, () => this.claimIdle()),
      this.#every(s.reaperEveryMs, () => this.removeDeadConsumers()),
      this.#every(s.statsEveryMs, () => this.refreshStats()),
    ];
    if (s.trimEveryMs !== undefined) loops.push(this.#every(s.trimEveryMs, () => this.trim()));
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

  /** Claims entries idle longer than CLAIM_IDLE_MS, as long as there is room. */
  async claimIdle(): Promise<void> {
    const o = this.#o;
    for (const stream of o.streams) {
      let cursor = "0-0";
      do {
        const room = o.inFlight.room;
        if (room <= 0 || o.stopping.aborted) return;
        const reply = await o.connection.exec((c) =>
          c.sendCommand([
            "XAUTOCLAIM",
            stream,
            o.group,
            o.consumer,
            String(o.claimIdleMs),
            cursor,
            "COUNT",
            String(Math.min(o.batchSize, room)),
          ])
        ) as [string, RawEntry[], string[]?];
        cursor = reply[0];
        const entries = reply[1] ?? [];
        const deleted = reply[2] ?? [];
        if (deleted.length > 0) {
          // Redis 7 removed them from the PEL already.
          o.metrics?.deletedPending.inc({ stream }, deleted.length);
          o.logger.warn("{count} pending entries of {stream} were deleted or trimmed", {
            count: deleted.length,
            stream,
          });
        }
        if (entries.length > 0) {
          o.logger.info("Claimed {count} idle entries of {stream}", {
            count: entries.length,
            stream,
          });
          await o.reader.admitRedelivered(stream, entries);
        }
      } while (cursor !== "0-0");
    }
  }

  /** Removes consumers idle past ten times CLAIM_IDLE_MS that hold nothing. */
  async removeDeadConsumers(): Promise<void> {
    const o = this.#o;
    for (const stream of o.streams) {
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
    for (const stream of o.streams) {
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

  /** Runs `fn` every `ms` until stopping, logging failures, never throwing. */
  async #every(ms: number, fn: () => Promise<void>): Promise<void> {
    const o = this.#o;
    while (!o.stopping.aborted) {
      await delay(ms, o.stopping);
      if (o.stopping.aborted) break;
      if (!o.connection.connected) continue;
      try {
        await fn();
      } catch (err) {
        if (err instanceof NotConnectedError || err instanceof CircuitOpenError) continue;
        if (isNoGroup(err)) await o.groups.recreate(err);
        else o.logger.debug("Background task failed: {error}", { error: errorInfo(err).message });
      }
    }
  }
}
