/**
 * The argument encoding of the settle script (`settle_script.ts`), pure: a batch of settle ops of
 * one stream becomes one script call's KEYS and ARGV (its reply: `settle_reply.ts`).
 *
 * The script checks before it writes, because Redis does not roll back a
 * script's earlier writes when a later call fails: for each op it first checks
 * everything that could make one of its writes fail (the entry still pending
 * for this consumer, the key types of its targets, dead-letter stream and
 * idempotency mark, the field count under Lua's stack limit), then writes
 * only the ops that pass: XACK, the copies, the mark. Bare acknowledgements
 * (no copy, no mark: the common case) skip the checks and go in bulk: one
 * multi-id XACK per group of ops that count alike, so Redis makes two calls
 * per group instead of one per entry. Copies are byte-exact (field names and values as Redis
 * holds them, in order, duplicates kept): a plain forward read with its bytes (`RawFields`, on
 * one Redis) carries them in a call sent as bytes (`settle_command.ts`), copied as they were
 * read; any other copy is made inside the script from one XRANGE over the batch's ids, and
 * nothing of its entry's fields travels from the process. The checkpoint moves last, to the
 * highest id acknowledged.
 */
import { MAX_ENTRY_FIELDS, sourceHeadersPrefix } from "../entry.ts";
import { outboxFields, OutboxRoute } from "./outbox_codec.ts";
import type { RawChunk } from "../../redis/raw_chunks.ts";

/** A copy the settle writes with the acknowledgement. */
export type SettleCopy =
  /**
   * The entry, with its `headers` field replaced by `headers`, to every target. Without
   * `headers` (plain forwards only: no mark, no emits), the script extends the entry's own
   * `headers` field with `sourceStream` and `sourceId` (see `headersExtendable` in `entry.ts`).
   */
  | { kind: "forward"; targets: readonly string[]; headers?: string }
  /**
   * The entry's leading fields (at most `MAX_ENTRY_FIELDS`), then `fields`
   * (the dead-letter fields, flat), to the dead-letter stream.
   */
  | { kind: "dead_letter"; target: string; fields: readonly string[] };

/**
 * A forward copy as a class instance: it lives as long as its held entry, so it must not come
 * from an object literal V8 may pretenure (see `HeldEntry` in `in_flight.ts`). One without
 * `headers` holds nothing of its entry, so one instance serves every entry with its targets.
 */
export class ForwardCopy {
  readonly kind = "forward";
  constructor(readonly targets: readonly string[], readonly headers?: string) {}
}

/** Makes forward copies: those without headers share one instance per list of targets. */
export class ForwardCopies {
  #shared?: ForwardCopy;

  /** A copy to `targets` with `headers`, or without (the shared one for those targets). */
  to(targets: readonly string[], headers?: string): ForwardCopy {
    if (headers !== undefined) return new ForwardCopy(targets, headers);
    if (this.#shared?.targets !== targets) this.#shared = new ForwardCopy(targets);
    return this.#shared;
  }
}

/** An entry a handler emitted: its fields, XADDed to each target. */
export interface EmitWrite {
  targets: readonly string[];
  fields: readonly string[];
}

/**
 * Where a read entry's fields' RESP bytes lie (`RawEntry`), for a settle sent as bytes
 * (`settle_command.ts`): set by the reader, only on a held entry that may be a plain forward.
 */
export interface RawFields {
  rawChunk?: RawChunk;
  /** Where in it, as `packRawSpan` packs it. */
  rawSpan?: number;
}

/**
 * Where a read entry's fields' bytes lie, as one small integer: one field on a held entry, not
 * three (each field of an entry held across a minor GC is copied by it; an entry waits for its
 * settle that long: bench/RESULTS.md, session 10). `start`: its first field name's `$` (below
 * `MAX_CHUNK_BYTES` of `raw_chunks.ts`); `fields`: its field names and values (at most
 * 2 × MAX_ENTRY_FIELDS, below 2048: an entry with more is dead-lettered before); `append`: it has
 * no headers field (one is appended; else its last headers field is replaced).
 */
export function packRawSpan(start: number, fields: number, append: boolean): number {
  return start * 4096 + (append ? 2048 : 0) + fields;
}

/** Where the entry's fields start in their chunk (see `packRawSpan`). */
export function rawStart(span: number): number {
  return Math.floor(span / 4096);
}

/** The entry's own field names and values (see `packRawSpan`). */
export function rawFieldCount(span: number): number {
  return span % 2048;
}

/** True when the copy appends a headers field (see `packRawSpan`). */
export function rawAppends(span: number): boolean {
  return span % 4096 >= 2048;
}

/** The copy's field names and values: the entry's, plus a headers field when appended. */
export function rawCopyCount(span: number): number {
  return rawFieldCount(span) + (rawAppends(span) ? 2 : 0);
}

/** One entry to settle. */
export interface SettleOpInput extends RawFields {
  /** Entry id. */
  id: string;
  /** The idempotency mark to write (SET with the dedup TTL), if any. */
  dedupKey?: string;
  /** The copy to write, if any. */
  copy?: SettleCopy;
  /** Entries the handler emitted (`ctx.publish`), written only with the acknowledgement. */
  emits?: readonly EmitWrite[];
}

/** The batch-wide arguments. */
export interface SettleBatch {
  stream: string;
  checkpointKey: string;
  group: string;
  consumer: string;
  /** ISO 8601 time written beside the checkpoint. */
  now: string;
  dedupTtlS: number;
  /**
   * Partitioned streams: the partition's lease key. The batch is fenced: it is written only
   * while the lease names `consumer` (run it with `SETTLE_FENCED`).
   */
  leaseKey?: string;
  /**
   * Cross-slot mode (Redis Cluster): the outbox of `stream` (`KeySchema.outbox`). Copies and
   * emitted entries to a target in another slot than `stream` are written there instead, for
   * the relay (`outbox_codec.ts`); dead-letter copies never (their stream shares the slot).
   */
  outbox?: string;
  /**
   * The call is sent as bytes (`settle_command.ts`): a plain forward whose fields' bytes are
   * known (`RawFields`) carries them (`#`), and the script reads nothing of it.
   */
  bytes?: boolean;
}

/** A script call, and the ops in the order of its reply. */
export interface EncodedSettle<T extends SettleOpInput> {
  keys: string[];
  args: string[];
  /**
   * The `#` forwards, in order, and the index in `args` of each one's id: its fields go right
   * after it (`rawCount` arguments, written from its bytes by `settle_command.ts`).
   */
  raws: T[];
  rawAt: number[];
  /** The bare acknowledgements, by group: the reply has one count per group, first. */
  groups: T[][];
  /** The other ops: the reply has one result per op, after the group counts. */
  order: T[];
}

const KIND_CODE = { forward: "f", dead_letter: "d" } as const;

/**
 * Encodes `ops`. Bare acknowledgements (no copy, no mark: the common case)
 * travel first: their number of groups (ops the caller counts alike, as
 * `sameGroup` tells; one group when not given), then per group one
 * comma-joined argument with the group's highest id first (swapped with the
 * first): one string to encode per group, not one per entry. Then the lowest
 * and the highest id of the other ops ("" when none). Plain forwards
 * (a forwarded copy, no mark, no emits: what ROUTES makes of every entry)
 * follow, grouped by their list of targets (in their order: copies reach a target
 * in the order of their entries): the number of such groups, then per group the
 * target count, the target key indexes, the text the script appends to an entry's
 * own headers (`sourceHeadersPrefix` of `entry.ts`), per id `=` (its new headers
 * given), `+` (the script makes them: the entry's own `headers` field and
 * `<prefix><id>"}`, so no text of the entry travels at all) or, with `batch.bytes`, `#` (its
 * id and its fields follow, written from its bytes by `settle_command.ts`, its headers
 * extended the same way: no XRANGE), one character for all when they are alike, their number,
 * the field count of the `#` ones, the ids joined by commas (empty when all are `#`), then the
 * given arguments in order (one per `=`, the id and fields per `#`, none per `+`).
 * The other ops follow, each as: id,
 * kind (`f` forward, `d` dead letter, `m` mark only), dedup key index (0 for
 * none), target count, target key indexes, extra count, extras (forward: the
 * new headers; dead letter: the dead-letter fields), then the count of
 * emitted writes and per write: target key index, field count, fields. Keys
 * are passed by index into KEYS, each once (with a lease key, that is KEYS[3]).
 * `order` lists the plain forwards first (group by group), then the other ops.
 * With `batch.outbox`, a forward target in another slot is passed as
 * `<outbox index>|<copy index>|<target>` (the script writes the copy to the outbox, led by the
 * fields `target` and `origin`), and an emitted write to such a target as a write to the outbox
 * of the fields `target`, the target, `origin`, `<id>:<copy index>`, then its fields. The copy
 * index counts an entry's copies to one target: its forward first, then its emits in order, so
 * a settle redone for the same entry gives each copy the same index (the relay's mark,
 * `KeySchema.relayMark`, is keyed by it).
 */
export function encodeSettle<T extends SettleOpInput>(
  batch: SettleBatch,
  ops: readonly T[],
  sameGroup?: (a: T, b: T) => boolean,
): EncodedSettle<T> {
  const keys = new SettleKeys(batch);
  const args = [
    batch.group,
    batch.consumer,
    batch.now,
    String(batch.dedupTtlS),
    String(MAX_ENTRY_FIELDS),
  ];
  const { groups, forwards, rich } = sortOps(ops, sameGroup);
  args.push(String(groups.length));
  for (const group of groups) args.push(joinHighestFirst(group));
  // The range of the other ops' ids: the script checks and copies over it in one call each.
  let lo = "";
  let hi = "";
  const widen = (id: string) => {
    if (lo === "") lo = hi = id;
    // Usually the newest so far (ops come in id order): one comparison.
    else if (newerId(id, hi)) hi = id;
    else if (newerId(lo, id)) lo = id;
  };
  for (const f of forwards) for (const op of f.ops) widen(op.id);
  for (const op of rich) widen(op.id);
  args.push(lo, hi, String(forwards.length));
  const order: T[] = [];
  const raws: T[] = [];
  const rawAt: number[] = [];
  const prefix = forwards.length > 0 ? sourceHeadersPrefix(batch.stream) : "";
  for (const f of forwards) {
    encodeForwards(args, keys, prefix, f, order, batch.bytes ? raws : undefined, rawAt);
  }
  for (const op of rich) {
    order.push(op);
    encodeOther(args, keys, op);
  }
  return { keys: keys.keys, args, groups, order, raws, rawAt };
}

/** The ops of a batch sorted for the encoding (see `encodeSettle`). */
function sortOps<T extends SettleOpInput>(
  ops: readonly T[],
  sameGroup?: (a: T, b: T) => boolean,
): { groups: T[][]; forwards: ForwardGroup<T>[]; rich: T[] } {
  const rich: T[] = [];
  const groups: T[][] = [];
  /** Plain forwards, by their targets. */
  const forwards: ForwardGroup<T>[] = [];
  let lastForward: ForwardGroup<T> | undefined;
  let last: T[] | undefined;
  for (const op of ops) {
    if (op.copy?.kind === "forward" && !op.dedupKey && !op.emits?.length) {
      const targets = op.copy.targets;
      if (!lastForward || !sameList(lastForward.targets, targets)) {
        lastForward = forwards.find((f) => sameList(f.targets, targets));
        if (!lastForward) forwards.push(lastForward = { targets, ops: [] });
      }
      lastForward.ops.push(op);
      continue;
    }
    if (op.dedupKey || op.copy || op.emits?.length) {
      rich.push(op);
      continue;
    }
    // Usually the group of the op before (few groups per batch: a short scan otherwise).
    if (!last || (sameGroup && !sameGroup(last[0], op))) {
      last = sameGroup ? groups.find((g) => sameGroup(g[0], op)) : undefined;
      if (!last) groups.push(last = []);
    }
    last.push(op);
  }
  return { groups, forwards, rich };
}

/**
 * One group of plain forwards: target count, target arguments, the headers `prefix`, per id
 * "=" (its new headers follow, in order), "+" (the script makes them) or "#" (its id and its
 * fields follow, from its bytes: with `raws`, for an op whose bytes are known and whose field
 * count is the group's), one character when they are all alike (the usual case: no string per
 * id then), the number of ids, the field count of its "#" ops, the ids (none when all are "#"),
 * then the given arguments in order. Its ops are appended to `order`, its "#" ops to `raws`
 * (and their ids' places in `args` to `rawAt`).
 */
function encodeForwards<T extends SettleOpInput>(
  args: string[],
  keys: SettleKeys,
  prefix: string,
  f: ForwardGroup<T>,
  order: T[],
  raws: T[] | undefined,
  rawAt: number[],
): void {
  args.push(String(f.targets.length));
  const seen = new Map<string, number>();
  for (const t of f.targets) args.push(keys.target(t, seen));
  args.push(prefix);
  const n = f.ops.length;
  const ids = new Array<string>(n);
  const codes = new Array<string>(n);
  let rawN = -1;
  let given = 0;
  let raw = 0;
  for (let i = 0; i < n; i++) {
    const op = f.ops[i];
    ids[i] = op.id;
    order.push(op);
    if ((op.copy as ForwardSettleCopy).headers !== undefined) {
      codes[i] = "=";
      given++;
    } else if (raws && op.rawChunk && (rawN < 0 || rawCopyCount(op.rawSpan!) === rawN)) {
      rawN = rawCopyCount(op.rawSpan!);
      codes[i] = "#";
      raw++;
    } else codes[i] = "+";
  }
  const modes = given === n ? "=" : raw === n ? "#" : given + raw === 0 ? "+" : codes.join("");
  args.push(modes, String(n), String(Math.max(rawN, 0)), raw === n ? "" : ids.join(","));
  if (given + raw === 0) return;
  for (let i = 0; i < n; i++) {
    const op = f.ops[i];
    if (codes[i] === "=") args.push((op.copy as ForwardSettleCopy).headers!);
    else if (codes[i] === "#") {
      rawAt.push(args.length);
      args.push(op.id);
      raws!.push(op);
    }
  }
}

/**
 * One op other than a bare acknowledgement or a plain forward: id, kind, dedup key index, its
 * copy's targets and extras, then its emitted writes (see `encodeSettle`).
 */
function encodeOther(args: string[], keys: SettleKeys, op: SettleOpInput): void {
  const copy = op.copy;
  const seen = new Map<string, number>();
  args.push(op.id, copy ? KIND_CODE[copy.kind] : "m", op.dedupKey ? keys.index(op.dedupKey) : "0");
  if (!copy) args.push("0", "0");
  else if (copy.kind === "forward") {
    args.push(String(copy.targets.length));
    for (const t of copy.targets) args.push(keys.target(t, seen));
    // Only a plain forward may leave its headers to the script (see `SettleCopy`).
    if (copy.headers === undefined) {
      throw new TypeError(`The forward of ${op.id} has a mark or emits but no headers`);
    }
    args.push("1", copy.headers);
  } else {
    args.push("1", keys.index(copy.target), String(copy.fields.length), ...copy.fields);
  }
  const writes: string[] = [];
  let count = 0;
  for (const emit of op.emits ?? []) {
    for (const t of emit.targets) {
      if (keys.route.via(t)) {
        const n = seen.get(t) ?? 0;
        seen.set(t, n + 1);
        writes.push(
          keys.index(keys.route.outbox!),
          String(emit.fields.length + 4),
          ...outboxFields(t, op.id, n, emit.fields),
        );
      } else writes.push(keys.index(t), String(emit.fields.length), ...emit.fields);
      count++;
    }
  }
  args.push(String(count), ...writes);
}

/** The KEYS of a settle call: each key once, referred to by its (1-based) index. */
class SettleKeys {
  readonly keys: string[];
  readonly route: OutboxRoute;
  readonly #index = new Map<string, number>();

  constructor(batch: SettleBatch) {
    this.keys = [batch.stream, batch.checkpointKey];
    if (batch.leaseKey) this.keys.push(batch.leaseKey); // KEYS[3] of SETTLE_FENCED
    this.route = new OutboxRoute(batch.stream, batch.outbox);
  }

  /** The index argument of key `k` (added to the keys at first use). */
  index(k: string): string {
    let i = this.#index.get(k);
    if (i === undefined) {
      this.keys.push(k);
      i = this.keys.length; // Lua KEYS are 1-based
      this.#index.set(k, i);
    }
    return String(i);
  }

  /**
   * A copy's target argument: its key index, or the outbox's, the copy's index among the
   * entry's copies to that target (`seen`: the copies counted so far) and its name (another
   * slot).
   */
  target(t: string, seen: Map<string, number>): string {
    if (!this.route.via(t)) return this.index(t);
    const n = seen.get(t) ?? 0;
    seen.set(t, n + 1);
    return `${this.index(this.route.outbox!)}|${n}|${t}`;
  }
}

/** A forwarded copy. */
type ForwardSettleCopy = Extract<SettleCopy, { kind: "forward" }>;

/** Plain forwards to the same targets. */
interface ForwardGroup<T> {
  targets: readonly string[];
  ops: T[];
}

/** True when `a` and `b` hold the same strings in the same order. */
function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The ids of `ops` joined by commas, the highest first (the rest in their order). */
function joinHighestFirst(ops: readonly SettleOpInput[]): string {
  const ids = new Array<string>(ops.length);
  let top = 0;
  for (let i = 0; i < ops.length; i++) {
    ids[i] = ops[i].id;
    if (i > 0 && newerId(ids[i], ids[top])) top = i;
  }
  if (top > 0) [ids[0], ids[top]] = [ids[top], ids[0]];
  return ids.join(",");
}

/** True when stream id `a` (`ms-seq`) is after `b`. */
export function newerId(a: string, b: string): boolean {
  const da = a.indexOf("-");
  const db = b.indexOf("-");
  // Millisecond parts without leading zeros: a longer one is larger.
  if (da !== db) return da > db;
  // Parts of equal lengths (the usual case): the text order is the numeric order.
  if (a.length === b.length) return a > b;
  for (let i = 0; i < da; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return ca > cb;
  }
  const la = a.length - da;
  const lb = b.length - db;
  if (la !== lb) return la > lb;
  return a > b;
}
