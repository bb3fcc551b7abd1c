/**
 * The reply of the settle script (`settle_script.ts`), pure: one result per op (settled, not
 * pending for this consumer, gone, failed and why, fenced), the bare acknowledgements' counts per
 * group, and whether the checkpoint was written. The ops' order is `EncodedSettle.order` of
 * `settle_codec.ts`.
 */

/** Why an op was not written (it stays pending); the label of `stream_settle_failures_total`. */
export type SettleFailure =
  | "target_type"
  | "dead_letter_type"
  | "dedup_key_type"
  | "emit_target_type"
  | "too_many_fields";

/** What the settle did with one op. */
export type SettleResult =
  /** Acknowledged, with its copies and mark. */
  | "settled"
  /** Not pending for this consumer (acknowledged elsewhere, or claimed by another): nothing written. */
  | "not_ours"
  /** Acknowledged, but Redis no longer had the entry, so no forwarded copy could be made. */
  | "gone"
  /** Nothing written: a write would have failed. */
  | { failed: SettleFailure }
  /** Partitioned streams: the partition's lease no longer names this consumer; nothing written. */
  | "fenced";

/** The decoded reply. */
export interface SettleReply {
  /**
   * Per group of bare acknowledgements, how many XACK took effect (the others
   * were no longer pending in the group: acknowledged elsewhere).
   */
  acked: number[];
  /** One per op of `order`. */
  results: SettleResult[];
  /** False when the checkpoint key has another type: the checkpoint was not written. */
  checkpointWritten: boolean;
  /** Partitioned streams: the lease was not held, nothing of the batch was written. */
  fenced: boolean;
}

const FAILURES: ReadonlySet<string> = new Set<SettleFailure>([
  "target_type",
  "dead_letter_type",
  "dedup_key_type",
  "emit_target_type",
  "too_many_fields",
]);

/** Decodes the reply to a call of `groups` groups of bare acknowledgements and `count` other ops. */
export function decodeSettle(reply: unknown, groups: number, count: number): SettleReply {
  if (reply === FENCED) {
    return {
      acked: new Array(groups).fill(0),
      results: new Array(count).fill(FENCED),
      checkpointWritten: true,
      fenced: true,
    };
  }
  if (!Array.isArray(reply) || reply.length !== groups + count + 1) {
    throw new TypeError(
      `Settle script answered ${describe(reply)} for ${groups} groups and ${count} entries`,
    );
  }
  const acked = reply.slice(0, groups).map((r) => {
    const n = Number(r);
    if (!Number.isInteger(n) || n < 0) {
      throw new TypeError(`Settle script answered ${JSON.stringify(r)} for a group`);
    }
    return n;
  });
  const results = reply.slice(groups, groups + count).map((r): SettleResult => {
    if (typeof r === "string" && FAILURES.has(r)) return { failed: r as SettleFailure };
    switch (Number(r)) {
      case 1:
        return "settled";
      case 0:
        return "not_ours";
      case 2:
        return "gone";
    }
    throw new TypeError(`Settle script answered ${JSON.stringify(r)} for an entry`);
  });
  return { acked, results, checkpointWritten: Number(reply[groups + count]) === 1, fenced: false };
}

/** The whole reply of `SETTLE_FENCED` when the lease is not held. */
const FENCED = "fenced";

function describe(reply: unknown): string {
  return Array.isArray(reply) ? `${reply.length} results` : typeof reply;
}
