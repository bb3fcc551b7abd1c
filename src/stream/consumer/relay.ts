/**
 * The relay (README "Redis Cluster and partitioned streams", docs/architecture.md "The outbox and
 * the relay"): in cross-slot mode the settle writes copies for targets in another slot to the
 * source stream's outbox (`<stream>:outbox`); the relay moves them to their targets, each exactly
 * once.
 *
 * One worker per outbox relayed (every consumed stream; with partitions, every partition this
 * instance holds), reading it through the consumer group `<CONSUMER_GROUP>:relay` as
 * CONSUMER_NAME: first its own pending entries (at start and after a failure), then the idle
 * entries of other relays (XAUTOCLAIM: dead instances; with partitions, at once when it takes
 * an outbox over, so that copies keep their order), then new entries. Per target, one `RELAY`
 * script in the target's slot writes each copy with its dedup mark (keyed by the copy's source
 * entry and index, `KeySchema.relayMark`), skipping copies whose mark exists; then, when the
 * target's master has replicas, `WAIT 1` on the same connection confirms a replica has them;
 * then one `OUTBOX_DONE` script acknowledges and deletes the entries in the outbox's slot. A relay
 * that dies between the two leaves the entries pending: whoever relays them next finds the marks
 * and writes nothing twice. Entries whose copies no replica confirmed stay pending and are read
 * again later (`recheckAt`). A settle that wrote to an outbox wakes its worker; an idle worker
 * polls with a backoff up to one second.
 */
import { delay, raceDeadline } from "../../clock.ts";
import { errorInfo, type Logger } from "../../log.ts";
import { errorReason, LogThrottle } from "../../log_throttle.ts";
import type { Metrics } from "../../metrics.ts";
import { exponentialBackoff } from "../../redis/backoff.ts";
import { CircuitOpenError } from "../../redis/breaker.ts";
import type { Commander } from "../../redis/commander.ts";
import type { Replication } from "../../redis/link.ts";
import { NotConnectedError } from "../../redis/errors.ts";
import type { KeySchema } from "../keys.ts";
import { isNoGroup } from "./groups.ts";
import { Wakeup } from "./in_flight.ts";
import { decodeOutboxEntry, decodeRelay, encodeRelay } from "./outbox_codec.ts";
import type { RawEntry, ReadReply } from "./raw.ts";
import { OUTBOX_DONE, RELAY } from "./relay_script.ts";

/** Options of `Relay`. */
export interface RelayOptions {
  /** Every command goes through it (routed by key on a cluster). */
  commander: Commander;
  /**
   * Redis Cluster: after the copies to a target whose master has replicas, `WAIT` for one of
   * them on that master's connection before the outbox entries are deleted; entries it does not
   * confirm stay (pending) and are relayed again later. Undefined: no confirmation (one Redis).
   */
  replication?: Replication;
  keys: KeySchema;
  /** CONSUMER_GROUP: the relay's group is `<group>:relay`. */
  group: string;
  /** CONSUMER_NAME: the relay's consumer in its group. */
  consumer: string;
  /** The source streams whose outboxes to relay now (read again every `reconcileMs`). */
  streams: () => readonly string[];
  /**
   * Partitioned streams: an outbox this instance starts relaying was another instance's until
   * now; its pending entries are claimed at once (min idle 0), before new ones, in id order.
   */
  takeOver: boolean;
  /** DEDUP_TTL_S: how long a relay mark lasts. */
  dedupTtlS: number;
  /** CLAIM_IDLE_MS: idle time after which other relays' pending entries are claimed. */
  claimIdleMs: number;
  /** Entries per read. */
  batchSize: number;
  metrics?: Metrics;
  logger: Logger;
  /** How often the set of outboxes is compared with `streams()` (ms). Default 250. */
  reconcileMs?: number;
}

/** Longest wait of an idle worker between two reads (ms). */
const MAX_POLL_MS = 1000;

interface Worker {
  stream: string;
  outbox: string;
  wake: Wakeup;
  /** Set by `wake()`: a settle wrote since the worker last read. */
  woken: boolean;
  stop: AbortController;
  done?: Promise<void>;
  /** The worker's loop returned (it is started again while its stream is wanted). */
  ended: boolean;
}

/** Moves outbox entries to their targets, exactly once each. */
export class Relay {
  readonly #o: RelayOptions;
  readonly #group: string;
  readonly #workers = new Map<string, Worker>();
  readonly #throttle = new LogThrottle();
  /** Aborted by `stop()`: the workers finish what the outboxes hold, then end. */
  readonly #drain = new AbortController();
  #supervisor?: Promise<void>;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#group = `${options.group}:relay`;
  }

  /** The relay's consumer group on every outbox. */
  get group(): string {
    return this.#group;
  }

  /** Starts relaying (idempotent). */
  start(): void {
    this.#supervisor ??= this.#supervise();
  }

  /** A settle wrote to the outbox of `stream`: its worker reads at once. */
  wake(stream: string): void {
    const w = this.#workers.get(stream);
    if (!w) return;
    w.woken = true;
    w.wake.notify();
  }

  /**
   * Relays what the outboxes hold now, then stops. Resolves true when done before `deadline`
   * (epoch ms); else the workers are stopped after their current step and false is returned
   * (what is left stays in the outboxes, relayed later by this or another instance).
   */
  async stop(deadline: number): Promise<boolean> {
    if (!this.#supervisor) return true;
    this.#drain.abort();
    for (const w of this.#workers.values()) w.wake.notify();
    const all = (async () => {
      await this.#supervisor;
      await Promise.all([...this.#workers.values()].map((w) => w.done));
      return true;
    })();
    const ok = await raceDeadline(all, Math.max(0, deadline - Date.now()), false);
    for (const w of this.#workers.values()) w.stop.abort();
    return ok;
  }

  async #supervise(): Promise<void> {
    const every = this.#o.reconcileMs ?? 250;
    while (!this.#drain.signal.aborted) {
      const wanted = new Set(this.#o.streams());
      for (const stream of wanted) {
        if (this.#workers.get(stream)?.ended === false) continue;
        const w: Worker = {
          stream,
          outbox: this.#o.keys.outbox(stream),
          wake: new Wakeup(),
          woken: false,
          stop: new AbortController(),
          ended: false,
        };
        this.#workers.set(stream, w);
        w.done = this.#run(w).catch((err) => this.#failed(w, err)).finally(() => (w.ended = true));
      }
      for (const [stream, w] of this.#workers) {
        if (wanted.has(stream)) continue;
        // Partition handed over: the new owner claims what this one left pending.
        w.stop.abort();
        w.wake.notify();
        this.#workers.delete(stream);
      }
      await delay(every, this.#drain.signal);
    }
  }

  /** One outbox's worker: own pending first, then claims when due, then new entries. */
  async #run(w: Worker): Promise<void> {
    const o = this.#o;
    const claimEveryMs = Math.max(100, Math.floor(o.claimIdleMs / 2));
    let groupReady = false;
    let ownCursor: string | undefined = "0";
    let claimCursor = "0-0";
    let claimMinIdle = o.takeOver ? 0 : o.claimIdleMs;
    let claimAt = 0;
    let idle = 0;
    let failures = 0;
    /** Copies a replica did not confirm stay pending: own pending is read again from then on. */
    let recheckAt = 0;
    let shortfalls = 0;
    /** Relays `entries`; false when some stay pending, unconfirmed (read again at `recheckAt`). */
    const relay = async (entries: readonly RawEntry[]): Promise<boolean> => {
      if (await this.#relay(w, entries) === 0) return true;
      shortfalls++;
      if (recheckAt === 0) {
        recheckAt = Date.now() + exponentialBackoff(shortfalls, { minMs: 200, maxMs: 5000 });
      }
      return false;
    };
    while (!w.stop.signal.aborted) {
      let more = false;
      try {
        if (!groupReady) {
          await this.#ensureGroup(w.outbox);
          groupReady = true;
        }
        if (ownCursor === undefined && recheckAt > 0 && Date.now() >= recheckAt) {
          ownCursor = "0";
          recheckAt = 0;
        }
        if (ownCursor !== undefined) {
          const entries = await this.#read(w.outbox, ownCursor);
          if (entries.length === 0) {
            ownCursor = undefined;
            if (recheckAt === 0) shortfalls = 0; // the whole pass was confirmed
          } else {
            ownCursor = entries[entries.length - 1][0];
            // Unconfirmed: the replica is behind or away; the rest of the pass waits with them.
            if (!(await relay(entries))) ownCursor = undefined;
            more = true;
          }
        } else if (Date.now() >= claimAt) {
          const [next, entries] = await this.#claim(w.outbox, claimMinIdle, claimCursor);
          if (entries.length > 0) await relay(entries);
          if (next === "0-0") {
            claimCursor = "0-0";
            claimMinIdle = o.claimIdleMs;
            claimAt = Date.now() + claimEveryMs;
          } else claimCursor = next;
          more = true;
        } else {
          // A partition handed over since the last turn: its new owner relays what comes next
          // (checked before each read, not only by the supervisor, so copies keep their order).
          if (o.takeOver && !o.streams().includes(w.stream)) return;
          w.woken = false;
          const entries = await this.#read(w.outbox, ">");
          if (entries.length > 0) {
            await relay(entries);
            more = true;
          } else if (this.#drain.signal.aborted && recheckAt === 0) return;
        }
        failures = 0;
      } catch (err) {
        if (isNoGroup(err)) groupReady = false;
        // What was read and not relayed is pending for this consumer: it goes first again.
        ownCursor = "0";
        this.#failed(w, err);
        failures++;
        if (this.#drain.signal.aborted && failures > 3) return;
        await delay(exponentialBackoff(failures, { minMs: 100, maxMs: 5000 }), w.stop.signal);
        continue;
      }
      if (more || w.woken) {
        idle = 0;
        continue;
      }
      const wait = Math.min(MAX_POLL_MS, 10 * 2 ** Math.min(idle++, 7));
      await Promise.race([delay(wait, w.stop.signal), w.wake.wait()]);
    }
  }

  async #ensureGroup(outbox: string): Promise<void> {
    try {
      await this.#o.commander.send(outbox, [
        "XGROUP",
        "CREATE",
        outbox,
        this.#group,
        "0",
        "MKSTREAM",
      ]);
    } catch (err) {
      if (!errorInfo(err).message.startsWith("BUSYGROUP")) throw err;
    }
  }

  /** XREADGROUP of `outbox` after `id` (`>`: new entries; else own pending after it). */
  async #read(outbox: string, id: string): Promise<RawEntry[]> {
    const o = this.#o;
    const reply = await o.commander.send(outbox, [
      "XREADGROUP",
      "GROUP",
      this.#group,
      o.consumer,
      "COUNT",
      String(o.batchSize),
      "STREAMS",
      outbox,
      id,
    ]) as ReadReply;
    return reply?.[0]?.[1] ?? [];
  }

  /** XAUTOCLAIM of `outbox`'s entries idle `minIdle` ms from `cursor`: the next cursor, entries. */
  async #claim(outbox: string, minIdle: number, cursor: string): Promise<[string, RawEntry[]]> {
    const o = this.#o;
    const reply = await o.commander.send(outbox, [
      "XAUTOCLAIM",
      outbox,
      this.#group,
      o.consumer,
      String(minIdle),
      cursor,
      "COUNT",
      String(o.batchSize),
    ]) as [string, RawEntry[]];
    return [String(reply[0]), reply[1].filter((e) => e !== null)];
  }

  /**
   * Relays `entries` of `w`'s outbox (in their order per target), then removes those whose
   * copies are confirmed (see `RelayOptions.replication`). Resolves to the number of entries
   * left pending because a replica did not confirm their copies in time.
   */
  async #relay(w: Worker, entries: readonly RawEntry[]): Promise<number> {
    const o = this.#o;
    const done: string[] = [];
    const byTarget = new Map<string, { ids: string[]; marks: string[]; copies: string[][] }>();
    for (const [id, fields] of entries) {
      if (fields === null) {
        done.push(id); // deleted from the outbox: nothing left to copy
        continue;
      }
      const copy = decodeOutboxEntry(fields);
      let mark: string | undefined;
      try {
        if (copy) mark = o.keys.relayMark(copy.target, w.stream, copy.sourceId, copy.index);
      } catch { /* a target no mark can share the slot of: not relayable */ }
      if (!copy || !mark) {
        this.#log(`malformed\u0000${w.outbox}`, (suppressed) =>
          o.logger.error(
            "Outbox entry {id} of {outbox} is not a copy to relay; left pending ({suppressed} more since)",
            { id, outbox: w.outbox, suppressed },
          ));
        continue;
      }
      let g = byTarget.get(copy.target);
      if (!g) byTarget.set(copy.target, g = { ids: [], marks: [], copies: [] });
      g.ids.push(id);
      g.marks.push(mark);
      g.copies.push(copy.fields);
    }
    let kept = 0;
    for (const [target, g] of byTarget) {
      const { keys, args } = encodeRelay(target, g.marks, g.copies, o.dedupTtlS);
      const results = decodeRelay(await RELAY.run(o.commander, keys, args), g.ids.length);
      let copied = 0;
      const relayed: string[] = [];
      results.forEach((r, i) => {
        if (r === "target_type") return;
        relayed.push(g.ids[i]);
        if (r === "copied") copied++;
      });
      if (copied > 0) o.metrics?.published.inc({ stream: target }, copied);
      if (relayed.length > 0 && !(await this.#confirmed(w, target, relayed.length))) {
        kept += relayed.length;
      } else done.push(...relayed);
      if (results[0] === "target_type") {
        o.metrics?.settleFailures.inc(
          { stream: w.stream, reason: "relay_target_type" },
          g.ids.length,
        );
        this.#log(`target_type\u0000${target}`, (suppressed) =>
          o.logger.error(
            "{count} copies in {outbox} stay there: {target} exists and is not a stream ({suppressed} more since)",
            { count: g.ids.length, outbox: w.outbox, target, suppressed },
          ));
      }
    }
    if (done.length > 0) await OUTBOX_DONE.run(o.commander, [w.outbox], [this.#group, ...done]);
    return kept;
  }

  /**
   * True when the copies just written to `target` (and the marks that say so) are on a replica
   * of its master, or when that master has none: `WAIT 1` on the connection the RELAY script
   * went through. A master that fails over to a replica without them would lose them, and the
   * outbox entries are the only other record of them (README "Forwarding across slots").
   */
  async #confirmed(w: Worker, target: string, count: number): Promise<boolean> {
    const replication = this.#o.replication;
    if (!replication || await replication.replicasOf(target) === 0) return true;
    if (await replication.waitReplicas(target, 1) >= 1) return true;
    this.#log(`unconfirmed\u0000${target}`, (suppressed) =>
      this.#o.logger.warn(
        "{count} copies to {target} not yet on a replica of its master; kept in {outbox}, relayed again later ({suppressed} more since)",
        { count, target, outbox: w.outbox, suppressed },
      ));
    return false;
  }

  #failed(w: Worker, err: unknown): void {
    const o = this.#o;
    if (err instanceof NotConnectedError || err instanceof CircuitOpenError) return;
    o.metrics?.loopErrors.inc({ loop: "relay" });
    const reason = errorReason(err);
    this.#log(`${reason}\u0000${w.outbox}`, (suppressed) =>
      o.logger.warn(
        "Relaying the outbox {outbox} failed: {error}; will retry ({suppressed} more since)",
        { outbox: w.outbox, error: errorInfo(err).message, reason, suppressed },
      ));
  }

  /** Writes a line through `write` at most once a minute per `key`. */
  #log(key: string, write: (suppressed: number) => void): void {
    const suppressed = this.#throttle.take(key);
    if (suppressed !== undefined) write(suppressed);
  }
}
