/**
 * The reader: one read loop on the dedicated blocking connection (on a cluster, one per slot). After each
 * (re)connection it first takes back this consumer's own pending entries
 * (re-read from id 0 when nothing is held; after a reconnect, claimed back
 * only where not held, so running handlers are neither duplicated nor
 * recounted), then reads new entries (`>`), prefetching the next read while
 * the current batch is dispatched. Reading pauses while MAX_IN_FLIGHT entries
 * are held. The reader owns `lastMessage` and whether it is active.
 *
 * With partitioned streams the streams read come from a `StreamSource` (the
 * partitions this instance reads now, see `partitions.ts`) instead of the fixed
 * list; a stream that joins it is first searched for own pending entries, and
 * `reading(stream)` tells the hand-over whether a read naming it is still out.
 */
import { CircuitOpenError } from "../../redis/breaker.ts";
import { delay } from "../../clock.ts";
import { errorInfo, type Logger } from "../../log.ts";
import { classifyError, NotConnectedError, type RedisLink } from "../../redis/connection.ts";
import { CLAIM_OWN, DELIVERY_COUNTS } from "../scripts.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { type Groups, isNoGroup } from "./groups.ts";
import type { InFlight } from "./in_flight.ts";
import type { ClaimedEntry, RawEntry, ReadReply } from "./raw.ts";
import { letGo, type RawChunk, type RawChunks } from "../../redis/raw_chunks.ts";
import { CapturedReply } from "../../redis/resp.ts";

/** The streams to read, when they change while running (partitioned streams). */
export interface StreamSource {
  /** The streams to read now. */
  readonly streams: readonly string[];
  /** Changes whenever `streams` does. */
  readonly version: number;
  /** Resolves at the next change (or when stopping). */
  changed(): Promise<void>;
}

/** Options of `Reader`. */
export interface ReaderOptions {
  connection: RedisLink;
  /** The streams read, unless `source` is given. */
  streams: readonly string[];
  /** Partitioned streams: the streams read now (replaces `streams`). */
  source?: StreamSource;
  group: string;
  consumer: string;
  batchSize: number;
  blockMs: number;
  inFlight: InFlight;
  dispatcher: Dispatcher;
  groups: Groups;
  /** Aborted when the consumer stops. */
  stopping: AbortSignal;
  logger: Logger;
  /**
   * Entries handed to the settler and not yet settled (`Settler.backlog`). The reader reads no
   * more while over `2 × batchSize` of them wait (see `#settlesBehind`): when settles are the
   * bottleneck (ROUTES copies), reading ahead only fills MAX_IN_FLIGHT with entries waiting for
   * their acknowledgement, which survive minor GCs and make V8 grow its young generation
   * (bench/RESULTS.md, session 5).
   */
  settleBacklog?: () => number;
  /**
   * Set when plain forwards may be settled with their fields' bytes (`execBytes`): new entries
   * are read into these chunks, and come with where their bytes lie (`RawEntry`).
   */
  chunks?: RawChunks;
}

/** Reads entries and hands them to the dispatcher. */
export class Reader {
  readonly #o: ReaderOptions;
  #active = false;
  #lastMessage?: Date;
  /** With a source: per stream, the reads naming it whose entries are not admitted yet. */
  readonly #out = new Map<string, number>();

  constructor(options: ReaderOptions) {
    this.#o = options;
  }

  /** True while the loop runs on a live connection. */
  get active(): boolean {
    return this.#active;
  }

  /** When entries were last handed to this consumer. */
  get lastMessage(): Date | undefined {
    return this.#lastMessage;
  }

  /**
   * True while a read naming `stream` (or its prefetch) is out or its entries are not yet
   * held: a partition being handed over waits for this to turn false (partitioned streams).
   */
  reading(stream: string): boolean {
    return (this.#out.get(stream) ?? 0) > 0;
  }

  /** The read loop; resolves once stopping and the last read's entries are dispatched. */
  async run(): Promise<void> {
    const o = this.#o;
    const source = o.source;
    let streams = source ? source.streams : o.streams;
    let version = source?.version;
    let generation = -1;
    const pendingCursor = new Map<string, string>();
    // The next read of new entries, sent before the current batch is dispatched
    // so that Redis works on it meanwhile (it is sent only when the batch it may
    // return still fits under MAX_IN_FLIGHT).
    let prefetch: Promise<ReadReply | CapturedReply> | undefined;
    let prefetchStreams = streams;
    while (!o.stopping.aborted) {
      if (!o.connection.connected) {
        this.#active = false;
        if (!await o.connection.waitConnected(o.stopping)) break;
      }
      if (o.connection.generation !== generation) {
        // New connection: first re-read our own pending entries from id 0.
        generation = o.connection.generation;
        for (const s of streams) pendingCursor.set(s, "0");
      }
      if (source && source.version !== version) {
        // Partitions joined or left: look for own pending entries in the new ones first.
        const before = new Set(streams);
        streams = source.streams;
        version = source.version;
        for (const s of streams) if (!before.has(s)) pendingCursor.set(s, "0");
        for (const s of pendingCursor.keys()) if (!streams.includes(s)) pendingCursor.delete(s);
      }
      if (streams.length === 0 && !prefetch) {
        this.#active = o.connection.connected;
        await source?.changed();
        continue;
      }
      const room = o.inFlight.room;
      // Settled entries are released, which frees room: the same wake-up serves both waits.
      if (room <= 0 || this.#settlesBehind()) {
        await o.inFlight.roomFreed();
        continue;
      }
      const count = Math.min(o.batchSize, room);
      try {
        this.#active = true;
        if (pendingCursor.size > 0) {
          const [stream, cursor] = pendingCursor.entries().next().value as [string, string];
          // At start nothing is held: re-read own pending entries from id 0. After a
          // reconnect, entries still held (handlers running) must not be handed out
          // again, nor have their delivery counters raised: claim only the others.
          if (source) this.#begin([stream]);
          try {
            const last = o.inFlight.size === 0
              ? await this.#readPendingPage(stream, cursor, count)
              : await this.#claimPendingPage(stream, cursor, count);
            if (last === null) pendingCursor.delete(stream);
            else pendingCursor.set(stream, last);
          } finally {
            if (source) this.#end([stream]);
          }
        } else {
          const list = prefetch ? prefetchStreams : streams;
          if (source && !prefetch) this.#begin(list);
          const current = prefetch ?? this.#readNew(count, list);
          prefetch = undefined;
          try {
            const answer = await current;
            const reply = answer instanceof CapturedReply ? answer.read() as ReadReply : answer;
            const got = reply ? reply.reduce((n, [, entries]) => n + entries.length, 0) : 0;
            const next = Math.min(o.batchSize, room - got);
            // With a source, no prefetch of a list that changed meanwhile.
            if (
              got > 0 && next >= o.batchSize && !o.stopping.aborted && !this.#settlesBehind() &&
              (!source || source.version === version)
            ) {
              if (source) this.#begin(streams);
              prefetchStreams = streams;
              prefetch = this.#readNew(next, streams);
              prefetch.catch(() => {}); // awaited (and its error handled) next turn
            }
            // Let HTTP and timers run between batches. Before dispatching, not after:
            // node-redis writes a command in a later macrotask (setImmediate), so the prefetch
            // leaves now, and Redis works on it while the batch is dispatched (after, it left
            // only once the batch was done, and the next read waited a full round trip).
            await yieldToEventLoop();
            if (reply) this.#admitReply(reply);
          } finally {
            if (source) this.#end(list);
          }
          continue;
        }
      } catch (err) {
        if (o.stopping.aborted) break;
        await this.#onError(err);
      }
      // Let HTTP and timers run between batches.
      await yieldToEventLoop();
    }
    if (prefetch) {
      // Entries it read are pending for this consumer: handle them before stopping.
      const answer = await prefetch.catch(() => null);
      const reply = answer instanceof CapturedReply ? answer.read() as ReadReply : answer;
      if (reply) this.#admitReply(reply);
      if (source) this.#end(prefetchStreams);
    }
    this.#active = false;
  }

  /**
   * Holds and admits entries handed to this consumer again (own pending, claimed):
   * their delivery counters come from Redis. Entries held already are skipped.
   */
  async admitRedelivered(stream: string, entries: RawEntry[]): Promise<void> {
    const o = this.#o;
    const todo = entries.filter(([id]) => !o.inFlight.has(stream, id));
    if (todo.length === 0) return;
    this.#lastMessage = new Date();
    const counts = await o.connection.exec((c) =>
      DELIVERY_COUNTS.run(c, [stream], [o.group, ...todo.map(([id]) => id)])
    ) as number[];
    todo.forEach(([id, flat], i) => {
      const held = o.inFlight.hold(stream, id, Math.max(1, Number(counts[i]) || 1));
      if (held) o.dispatcher.admit(held, flat);
    });
    o.inFlight.admitted();
  }

  /**
   * Holds and admits entries claimed by a script, each with its delivery
   * counter and its fields (empty when the entry is gone from the stream).
   */
  admitClaimed(stream: string, claimed: readonly ClaimedEntry[]): void {
    const o = this.#o;
    let admitted = false;
    for (const [id, deliveries, flat] of claimed) {
      const held = o.inFlight.hold(stream, id, Number(deliveries));
      if (!held) continue;
      o.dispatcher.admit(held, flat.length ? flat : null);
      admitted = true;
    }
    if (admitted) this.#lastMessage = new Date();
    o.inFlight.admitted();
  }

  /**
   * True while more entries wait for their settle than reading ahead is worth: 2 × BATCH_SIZE,
   * or 1.5 × when forwards settle with their bytes (`chunks`: settles are then the bottleneck,
   * ~200–250 entries wait for theirs, and each one waiting is copied by every minor GC; at 2 × the
   * young generation grew at the 5th or 6th of repeated drains: bench/RESULTS.md, session 10).
   */
  #settlesBehind(): boolean {
    const o = this.#o;
    const backlog = o.settleBacklog;
    return backlog !== undefined && backlog() > (o.chunks ? 1.5 : 2) * o.batchSize;
  }

  #begin(streams: readonly string[]): void {
    for (const s of streams) this.#out.set(s, (this.#out.get(s) ?? 0) + 1);
  }

  #end(streams: readonly string[]): void {
    for (const s of streams) this.#out.set(s, (this.#out.get(s) ?? 1) - 1);
  }

  async #readNew(
    count: number,
    streams: readonly string[],
  ): Promise<ReadReply | CapturedReply> {
    const o = this.#o;
    const head = ["GROUP", o.group, o.consumer, "COUNT", String(count)];
    const ids = streams.map(() => ">");
    return await o.connection.readGroup(streams, ids, head, o.blockMs, o.chunks) as
      | ReadReply
      | CapturedReply;
  }

  /** Admits a read's entries, then gives back the read's reference to their bytes' chunk. */
  #admitReply(reply: [string, RawEntry[]][]): void {
    let chunk: RawChunk | undefined;
    for (const [, entries] of reply) {
      for (const e of entries) if ((chunk ??= e[2])) break;
      if (chunk) break;
    }
    for (const [stream, entries] of reply) this.#admitNew(stream, entries);
    if (chunk) letGo(chunk);
  }

  /**
   * Holds and admits new entries one at a time, letting go of each raw entry as it goes: an
   * entry whose handler finishes at once is settling (its fields let go) before the next one
   * is parsed, so the batch's fields are not all alive at once. Fewer bytes then survive each
   * minor GC, and V8 does not grow its young generation drain after drain (bench/RESULTS.md).
   */
  #admitNew(stream: string, entries: (RawEntry | undefined)[]): void {
    if (entries.length === 0) return;
    this.#lastMessage = new Date();
    const o = this.#o;
    const now = Date.now();
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      entries[i] = undefined;
      const held = o.inFlight.hold(stream, e[0], 1, now);
      if (held) o.dispatcher.admit(held, e[1], e);
    }
    o.inFlight.admitted();
  }

  /** One page of own pending entries re-read from `cursor`; the last id, or null when done. */
  async #readPendingPage(stream: string, cursor: string, count: number): Promise<string | null> {
    const o = this.#o;
    const reply = await o.connection.exec((c) =>
      c.sendCommand([
        "XREADGROUP",
        "GROUP",
        o.group,
        o.consumer,
        "COUNT",
        String(count),
        "STREAMS",
        stream,
        cursor,
      ])
    ) as [string, RawEntry[]][] | null;
    const entries = reply?.[0]?.[1] ?? [];
    if (entries.length === 0) return null;
    await this.admitRedelivered(stream, entries);
    return entries[entries.length - 1][0];
  }

  /**
   * One page of own pending entries after `cursor` (XPENDING, which counts no
   * delivery), claiming back only those this process does not hold. The last
   * id, or null when done.
   */
  async #claimPendingPage(stream: string, cursor: string, count: number): Promise<string | null> {
    const o = this.#o;
    const rows = await o.connection.exec((c) =>
      c.sendCommand([
        "XPENDING",
        stream,
        o.group,
        cursor === "0" ? "-" : `(${cursor}`,
        "+",
        String(count),
        o.consumer,
      ])
    ) as [string, string, number, number][];
    if (rows.length === 0) return null;
    const ids = rows.map((r) => r[0]).filter((id) => !o.inFlight.has(stream, id));
    if (ids.length > 0) {
      const claimed = await o.connection.exec((c) =>
        CLAIM_OWN.run(c, [stream], [o.group, o.consumer, "claim", ...ids])
      ) as ClaimedEntry[];
      this.admitClaimed(stream, claimed);
    }
    return rows[rows.length - 1][0];
  }

  async #onError(err: unknown): Promise<void> {
    const o = this.#o;
    if (isNoGroup(err)) return await o.groups.recreate(err);
    if (err instanceof NotConnectedError || err instanceof CircuitOpenError) {
      await delay(100, o.stopping);
      return;
    }
    const msg = errorInfo(err).message;
    o.logger.warn("read failed: {error}", { error: msg });
    // A socket problem, or a reply that says this node cannot serve us (READONLY
    // after a failover that kept the connection): reconnect, asking Sentinel again.
    if (classifyError(err) !== "reply") o.connection.forceReconnect(`read failed: ${msg}`);
    await delay(200, o.stopping);
  }
}

/**
 * One macrotask turn (pending I/O such as HTTP requests and due timers run first). Not
 * setTimeout(0): Deno clamps it to ~1 ms and it takes ~2 ms, which capped the read loop at
 * ~100 entries per 2 ms (see bench/).
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
