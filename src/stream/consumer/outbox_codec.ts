/**
 * The outbox's entry format and the relay's script arguments, pure (README "Redis Cluster and
 * partitioned streams", docs/architecture.md "The outbox and the relay").
 *
 * On Redis Cluster a script may only touch keys of one slot, so the settle cannot XADD a copy to
 * a `ROUTES` target (or a stream a handler published to) in another slot. In cross-slot mode it
 * writes the copy to the outbox of the source stream instead (`<stream>:outbox`, same slot), as
 * an entry whose first field pair names the target, whose second names the copy's origin (the
 * source entry's id and the copy's index among that entry's copies to the target), and whose
 * other fields are the copy's, in order and byte-exact. The relay reads the outbox and moves
 * each copy to its target with a dedup mark keyed by the origin (`KeySchema.relayMark`), written
 * in the same script as the copy (the target's slot).
 */
import { slotOf } from "../keys.ts";

/** The first field name of an outbox entry; its value is the target stream. */
export const OUTBOX_TARGET_FIELD = "target";

/**
 * The second field name of an outbox entry; its value is `<source id>:<index>`: the entry of the
 * source stream the copy was made for, and the copy's index among that entry's copies to the
 * target (ROUTES forwards first, in target order, then `ctx.publish` emits, in emit order).
 */
export const OUTBOX_ORIGIN_FIELD = "origin";

/** The `origin` value of a copy: `<sourceId>:<index>`. */
export function outboxOrigin(sourceId: string, index: number): string {
  return `${sourceId}:${index}`;
}

/** The fields of the outbox entry that carries `fields` (a copy, flat) to `target`. */
export function outboxFields(
  target: string,
  sourceId: string,
  index: number,
  fields: readonly string[],
): string[] {
  return [
    OUTBOX_TARGET_FIELD,
    target,
    OUTBOX_ORIGIN_FIELD,
    outboxOrigin(sourceId, index),
    ...fields,
  ];
}

/**
 * An outbox entry, decoded: the stream to copy to, the source entry and the copy's index among
 * that entry's copies to the target, and the copy's flat fields.
 */
export interface OutboxCopy {
  target: string;
  sourceId: string;
  index: number;
  fields: string[];
}

const ORIGIN_RE = /^(\d+-\d+):(\d+)$/;

/**
 * The copy an outbox entry carries, or `undefined` when the entry is not one (no leading
 * `target` field, an empty target, no `origin` field or a malformed one, or no field to copy).
 */
export function decodeOutboxEntry(fields: readonly string[]): OutboxCopy | undefined {
  if (fields.length < 6 || fields.length % 2 !== 0) return undefined;
  if (fields[0] !== OUTBOX_TARGET_FIELD || fields[1] === "") return undefined;
  if (fields[2] !== OUTBOX_ORIGIN_FIELD) return undefined;
  const origin = ORIGIN_RE.exec(fields[3]);
  if (!origin) return undefined;
  return {
    target: fields[1],
    sourceId: origin[1],
    index: Number(origin[2]),
    fields: fields.slice(4),
  };
}

/**
 * Says which targets of a source stream go through its outbox: in cross-slot mode, those whose
 * slot differs from the source's; otherwise none. The slots are remembered (targets are few).
 */
export class OutboxRoute {
  /** The outbox key of the source stream, or undefined when the mode is off. */
  readonly outbox?: string;
  readonly #slot?: number;
  readonly #cross = new Map<string, boolean>();

  constructor(stream: string, outbox: string | undefined) {
    this.outbox = outbox;
    if (outbox !== undefined) this.#slot = slotOf(stream);
  }

  /** True when a copy to `target` is written to the outbox rather than to `target`. */
  via(target: string): boolean {
    if (this.outbox === undefined) return false;
    let cross = this.#cross.get(target);
    if (cross === undefined) {
      cross = slotOf(target) !== this.#slot;
      if (this.#cross.size < 1000) this.#cross.set(target, cross);
    }
    return cross;
  }
}

/** What the relay script did with one outbox entry. */
export type RelayResult =
  /** Copied to the target, mark set. */
  | "copied"
  /** The mark was there: copied before (a relay that crashed before its acknowledgement). */
  | "already"
  /** The target exists and is not a stream: nothing written, the entry stays in the outbox. */
  | "target_type";

/** One relay script call: every key in the target's slot, the target first. */
export interface EncodedRelay {
  keys: string[];
  args: string[];
}

/**
 * The call of `RELAY` (`relay_script.ts`) for `copies` to one `target`: KEYS = target, then
 * the mark of each copy (`marks[i]`); ARGV = dedup TTL s, then per copy its field count and
 * fields.
 */
export function encodeRelay(
  target: string,
  marks: readonly string[],
  copies: readonly (readonly string[])[],
  ttlS: number,
): EncodedRelay {
  if (marks.length !== copies.length) {
    throw new RangeError(`${marks.length} marks for ${copies.length} copies`);
  }
  const args = [String(ttlS)];
  for (const fields of copies) args.push(String(fields.length), ...fields);
  return { keys: [target, ...marks], args };
}

/** Decodes `RELAY`'s reply to a call for `count` copies. */
export function decodeRelay(reply: unknown, count: number): RelayResult[] {
  if (reply === "target_type") return new Array(count).fill("target_type");
  if (!Array.isArray(reply) || reply.length !== count) {
    throw new TypeError(
      `Relay script answered ${
        Array.isArray(reply) ? `${reply.length} results` : typeof reply
      } for ${count} copies`,
    );
  }
  return reply.map((r) => {
    switch (Number(r)) {
      case 1:
        return "copied";
      case 0:
        return "already";
    }
    throw new TypeError(`Relay script answered ${JSON.stringify(r)} for a copy`);
  });
}
