/**
 * The settler: gathers settle ops (successes, duplicates, dead letters,
 * entries Redis no longer has) and settles them per stream in batches of up
 * to 500 through one script call each (see `settle_codec.ts`). Connection
 * trouble is retried until the connection is back; a reply error gives up and
 * leaves the entries pending (redelivered later). Outcomes are counted per
 * batch. The settler is the only writer of the settle queue.
 */
import { delay } from "../../clock.ts";
import { errorInfo, type Logger } from "../../log.ts";
import type { Metrics, Outcome } from "../../metrics.ts";
import { classifyError, type RedisLink } from "../../redis/connection.ts";
import { CommandWriter } from "../../redis/command_writer.ts";
import type { LuaScript } from "../scripts.ts";
import { isoInZone, sourceHeadersPrefix } from "../entry.ts";
import type { KeySchema } from "../keys.ts";
import type { Held } from "./in_flight.ts";
import { OutboxRoute } from "./outbox_codec.ts";
import type { OutcomeCounter } from "./outcomes.ts";
import { type EncodedSettle, encodeSettle, type SettleOpInput } from "./settle_codec.ts";
import { writeSettleCommand } from "./settle_command.ts";
import { decodeSettle } from "./settle_reply.ts";
import { SETTLE, SETTLE_FENCED } from "./settle_script.ts";
import type { StatsBoard } from "./stats.ts";

/**
 * One held entry to settle: the entry itself, with what it counts as (`deleted`: Redis no
 * longer has it; acknowledged and counted apart) and its `event` label set (see `Held`).
 */
export type SettleOp = Held & SettleOpInput & { outcome: Outcome | "deleted"; eventType: string };

/** Ops settled by one script call, at most. */
const BATCH_LIMIT = 500;

/** Options of `Settler`. */
export interface SettlerOptions {
  connection: RedisLink;
  keys: KeySchema;
  group: string;
  consumer: string;
  timezone: string;
  dedupTtlS: number;
  /** Lets go of a held entry (its idempotency lock included). */
  release: (h: Held) => void;
  /** Reports the in-flight count after a batch. */
  reportInFlight: () => void;
  outcomes: OutcomeCounter;
  stats: StatsBoard;
  metrics?: Metrics;
  logger: Logger;
  /** Aborted when the consumer stops (waits for a lost connection are then bounded). */
  stopping: AbortSignal;
  /**
   * Partitioned streams: the lease key of a partition key. Its settles are fenced: written
   * only while the lease names this consumer (see `SETTLE_FENCED`).
   */
  leaseOf?: (stream: string) => string;
  /**
   * Cross-slot mode (Redis Cluster): copies and emitted entries to a target in another slot
   * than their source are written to the source's outbox, for the relay (`relay.ts`).
   */
  outboxAcrossSlots?: boolean;
  /** Told after each settle call, once `backlog` counts it out (wakes a waiting reader). */
  onSettled?: () => void;
  /** Told the streams whose outbox a settle wrote to (the relay reads it at once). */
  onOutbox?: (stream: string) => void;
}

/** Batches and settles ops. */
export class Settler {
  readonly #o: SettlerOptions;
  #queue = new Map<string, SettleOp[]>();
  #running?: Promise<void>;
  #backlog = 0;
  /** Writes settle calls sent as bytes (one at a time: the settler runs one call at once). */
  readonly #writer = new CommandWriter();

  constructor(options: SettlerOptions) {
    this.#o = options;
  }

  /** Ops queued or being settled. */
  get backlog(): number {
    return this.#backlog;
  }

  /** True while ops wait or a settle runs. */
  get busy(): boolean {
    return this.#queue.size > 0 || this.#running !== undefined;
  }

  /** Queues `op`; it is settled with the others queued in this turn. */
  enqueue(op: SettleOp): void {
    let q = this.#queue.get(op.stream);
    if (!q) this.#queue.set(op.stream, q = []);
    q.push(op);
    this.#backlog++;
    this.#schedule();
  }

  /** Resolves when nothing waits and no settle runs. */
  async drained(): Promise<void> {
    while (this.busy) {
      if (!this.#running) this.#schedule();
      await this.#running;
    }
  }

  #schedule(): void {
    if (this.#running) return;
    this.#running = (async () => {
      // Let handlers finishing in this turn join the batch: one macrotask turn, not a
      // microtask. Under a backlog the settle then leaves after the read loop's next read
      // (see Reader.run), not between it and Redis, and settles stay batched: with a
      // microtask a drain fell into a slower rhythm in about one run in three (a settle per
      // read batch, the consumer idle ~30 % of the time, same CPU: bench/RESULTS.md).
      await new Promise((r) => setImmediate(r));
      while (this.#queue.size > 0) {
        const queues = this.#queue;
        this.#queue = new Map();
        for (const [stream, ops] of queues) {
          for (let i = 0; i < ops.length; i += BATCH_LIMIT) {
            const batch = ops.slice(i, i + BATCH_LIMIT);
            try {
              await this.#settleWithRetry(stream, batch);
            } finally {
              // After the releases (which woke a reader waiting on the backlog too early): tell
              // it again, now that the backlog is down (else it could wait for a release forever).
              this.#backlog -= batch.length;
              this.#o.onSettled?.();
            }
          }
        }
      }
    })().finally(() => {
      this.#running = undefined;
      if (this.#queue.size > 0) this.#schedule();
    });
  }

  async #settleWithRetry(stream: string, ops: SettleOp[]): Promise<void> {
    const o = this.#o;
    for (let attempt = 1;; attempt++) {
      try {
        await this.#settle(stream, ops);
        return;
      } catch (err) {
        const msg = errorInfo(err).message;
        if (attempt === 1 || attempt % 20 === 0) {
          o.logger.warn("Acknowledging {count} entries of {stream} failed: {error}; will retry", {
            count: ops.length,
            stream,
            error: msg,
          });
        }
        if (classifyError(err) === "reply") {
          // Redis answered with an error (a script error): retrying will not heal it. The
          // entries stay pending and are redelivered. Connection trouble (including READONLY
          // or LOADING replies) is retried below.
          o.logger.error("Giving up acknowledging {count} entries: {error}", {
            count: ops.length,
            error: msg,
          });
          for (const op of ops) o.release(op);
          return;
        }
        if (!o.connection.connected) {
          const up = await o.connection.waitConnected(
            o.stopping.aborted ? AbortSignal.timeout(60_000) : undefined,
          );
          if (!up) {
            // Connection closed (or gone too long while stopping): the entries stay
            // pending and are redelivered; retrying now would spin without end.
            for (const op of ops) o.release(op);
            return;
          }
        } else await delay(Math.min(2000, 50 * attempt));
      }
    }
  }

  /**
   * Runs `script` for `call` as bytes (`settle_command.ts`) on the link's connection for them,
   * loading the script first (through `exec`) when it is not, or no longer, loaded.
   */
  async #runBytes(
    script: LuaScript,
    call: EncodedSettle<SettleOp>,
    stream: string,
  ): Promise<unknown> {
    const link = this.#o.connection;
    const prefix = sourceHeadersPrefix(stream);
    const sha = script.sha ?? await link.exec((c) => script.load(c));
    const send = (sha: string) => {
      const bytes = writeSettleCommand(this.#writer, sha, call, prefix);
      return link.execBytes!((c) => c.sendBytes(bytes));
    };
    try {
      return await send(sha);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      // Redis restarted or flushed its script cache.
      return await send(await link.exec((c) => script.load(c)));
    }
  }

  async #settle(stream: string, ops: SettleOp[]): Promise<void> {
    const o = this.#o;
    const leaseKey = o.leaseOf?.(stream);
    const bytes = o.connection.execBytes !== undefined;
    const call = encodeSettle(
      {
        stream,
        checkpointKey: o.keys.checkpoint(stream),
        group: o.group,
        consumer: o.consumer,
        now: isoInZone(new Date(), o.timezone),
        dedupTtlS: o.dedupTtlS,
        leaseKey,
        outbox: o.outboxAcrossSlots ? o.keys.outbox(stream) : undefined,
        bytes,
      },
      ops,
      countedAlike,
    );
    const { groups, order } = call;
    const script = leaseKey ? SETTLE_FENCED : SETTLE;
    const reply = decodeSettle(
      bytes
        ? await this.#runBytes(script, call, stream)
        : await o.connection.exec((c) => script.run(c, call.keys, call.args)),
      groups.length,
      order.length,
    );
    // Counted per batch: one increment per (event, outcome), not per entry.
    const counts = new Map<string, { event: string; outcome: Outcome; n: number }>();
    let deleted = 0;
    let deadLettered = 0;
    groups.forEach((group, g) => {
      // A group's ops share their outcome and event type (`countedAlike`).
      const acked = reply.acked[g];
      const { outcome, eventType } = group[0];
      if (outcome === "deleted") deleted += acked;
      else if (acked > 0) {
        const k = countedAs(group[0]);
        const c = counts.get(k);
        if (c) c.n += acked;
        else counts.set(k, { event: eventType, outcome, n: acked });
      }
      if (acked < group.length && !reply.fenced) {
        o.logger.debug("{count} entries of {stream} were no longer pending in the group", {
          count: group.length - acked,
          stream,
        });
      }
      for (const op of group) o.release(op);
    });
    // Copies to the outbox count as published when the relay writes them to their target.
    const route = new OutboxRoute(stream, o.outboxAcrossSlots ? o.keys.outbox(stream) : undefined);
    let outboxed = false;
    order.forEach((op, i) => {
      const result = reply.results[i];
      if ((result === "settled" || result === "gone") && op.emits) {
        for (const emit of op.emits) {
          for (const target of emit.targets) {
            if (route.via(target)) outboxed = true;
            else o.metrics?.published.inc({ stream: target });
          }
        }
      }
      if (result === "settled" && op.copy?.kind === "forward" && !outboxed) {
        outboxed = op.copy.targets.some((t) => route.via(t));
      }
      if (result === "settled" || result === "gone") {
        if (op.outcome === "deleted") deleted++;
        else {
          const k = countedAs(op);
          const c = counts.get(k);
          if (c) c.n++;
          else counts.set(k, { event: op.eventType, outcome: op.outcome, n: 1 });
          if (op.outcome === "dead_lettered") deadLettered++;
        }
        if (result === "gone") {
          deleted++;
          o.logger.warn(
            "Entry {id} of {stream} was trimmed before its copy could be written; acknowledged",
            { id: op.id, stream },
          );
        }
      } else if (result === "not_ours") {
        o.logger.debug("Entry {id} of {stream} is no longer pending for this consumer", {
          id: op.id,
          stream,
        });
      } else if (result !== "fenced") this.#failed(stream, op, result.failed);
      o.release(op);
    });
    for (const c of counts.values()) o.outcomes.count(stream, c.event, c.outcome, c.n);
    if (deadLettered > 0) {
      o.stats.deadLettered(stream);
      o.metrics?.deadLetters.inc({ stream }, deadLettered);
    }
    if (deleted > 0) o.metrics?.deletedPending.inc({ stream }, deleted);
    if (reply.fenced) {
      // The partition changed owner: its entries stay pending for the new one. Expected
      // during a rebalance, so neither an error nor a /health degradation.
      const count = ops.length;
      o.metrics?.settleFailures.inc({ stream, reason: "fenced" }, count);
      o.logger.info(
        "{count} entries of {stream} left pending: this instance no longer holds the partition's lease",
        { count, stream },
      );
    }
    if (outboxed) o.onOutbox?.(stream);
    if (!reply.checkpointWritten) this.#failed(stream, undefined, "checkpoint_type");
    o.reportInFlight();
  }

  /**
   * An op whose settle would have failed (it stays pending: claimed again
   * later), or a checkpoint of the wrong type: logged at ERROR, counted, and
   * `/health` degraded.
   */
  #failed(stream: string, op: SettleOp | undefined, reason: string): void {
    const o = this.#o;
    o.metrics?.settleFailures.inc({ stream, reason });
    o.stats.settleFailed(stream);
    if (!op) {
      o.logger.error(
        "Checkpoint {key} is not a hash; acknowledged entries were not checkpointed",
        { key: o.keys.checkpoint(stream) },
      );
      return;
    }
    o.logger.error(
      "Entry {id} of {stream} stays pending: its settle would fail ({reason}: {detail})",
      { id: op.id, stream, reason, detail: FAILURE_DETAIL[reason] ?? reason },
    );
  }
}

/** True when `a` and `b` count alike: same outcome and event type. */
function countedAlike(a: SettleOp, b: SettleOp): boolean {
  return a.outcome === b.outcome && a.eventType === b.eventType;
}

/** The key ops are counted under: outcome and event type. */
function countedAs(op: SettleOp): string {
  return `${op.outcome}\u0000${op.eventType}`;
}

/** What each settle failure means, for the log. */
const FAILURE_DETAIL: Record<string, string> = {
  target_type: "a ROUTES target exists and is not a stream",
  dead_letter_type: "the dead-letter stream exists and is not a stream",
  dedup_key_type: "the idempotency mark key exists and is not a string",
  too_many_fields: "the entry has too many fields to copy",
  emit_target_type: "a stream a handler published to exists and is not a stream",
};
