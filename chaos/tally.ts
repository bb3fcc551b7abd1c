/**
 * The chaos soak's accounting, pure: from what the producer was told (acknowledged XADD ids, and
 * XADDs whose reply never came), what the source stream holds, the route target and the
 * dead-letter stream, it counts copies, duplicates, missing entries and misrouted poison, and
 * says whether the run passed. Nothing here talks to Redis.
 *
 * @module
 */

import { copiesBySource, deadLetterSourceIdOf, sourceIdOf } from "../tests/support/coverage.ts";
import type { StreamEntry } from "../tests/support/streams.ts";
import { type EntryKind, isPoison, seqOf } from "./entries.ts";

/** One XADD of the producer. */
export interface Produced {
  /** Sequence number (also in the entry's `chaosSeq` field). */
  seq: number;
  kind: EntryKind;
  /** The id Redis acknowledged; undefined when the reply never came (an "unknown" XADD). */
  id?: string;
  /** True when Redis answered the XADD with an error (not applied, not expected anywhere). */
  rejected?: boolean;
}

/** What {@linkcode tally} compares. */
export interface TallyInput {
  produced: readonly Produced[];
  /** Every entry of the source stream at the end. */
  source: readonly StreamEntry[];
  /** Every entry of the route target. */
  out: readonly StreamEntry[];
  /** Every entry of the dead-letter stream. */
  dlq: readonly StreamEntry[];
  /** Pending entries of the group at the end. */
  pending: number;
  /** Lag of the group at the end (null when Redis could not tell). */
  lag: number | null;
  /** Ids pending at the end (not counted as missing: still in the service's hands). */
  pendingIds?: ReadonlySet<string>;
  /** The group's last-delivered id at the end; later ids are unread, not missing. */
  lastDeliveredId?: string;
}

/** The counts of one soak. Lists of ids hold at most 10 examples. */
export interface Tally {
  /** XADDs acknowledged with an id. */
  acknowledged: number;
  /** XADDs whose reply never came (not counted as loss). */
  unknown: number;
  /** XADDs Redis refused with an error reply. */
  rejected: number;
  /** Unknown XADDs whose entry is in the source stream anyway (then it must be handled). */
  unknownLanded: number;
  /** Acknowledged XADDs whose entry is not in the source stream (lost by Redis, not the service). */
  ackedNotInSource: number;
  ackedNotInSourceIds: string[];
  /** Entries of the source stream. */
  sourceEntries: number;
  /** Source entries that must be handled: acknowledged or found in the source stream. */
  expected: number;
  /** Of those, poison (must be dead-lettered). */
  expectedPoison: number;
  /** Entries in the route target. */
  copies: number;
  /** Distinct source ids among them. */
  distinct: number;
  /** Extra copies: for each source id, (copies in the target + dead letters) - 1, when above 0. */
  duplicates: number;
  duplicateIds: string[];
  /** Expected source ids neither in the target nor in the dead-letter stream. */
  missing: number;
  missingIds: string[];
  /** Missing entries per kind of entry. */
  missingByKind: Partial<Record<EntryKind, number>>;
  /** Expected entries in neither stream but still pending or not read yet (group not drained). */
  unsettled: number;
  /** Entries in the dead-letter stream. */
  deadLettered: number;
  /** Poison entries in the dead-letter stream. */
  poisonDeadLettered: number;
  /** Poison entries found in the route target (must never happen). */
  poisonForwarded: number;
  poisonForwardedIds: string[];
  /** Well-formed entries dead-lettered instead of forwarded (not a loss; worth a look). */
  goodDeadLettered: number;
  goodDeadLetteredIds: string[];
  /** Copies (target or dead-letter) whose source id is not an expected one. */
  strangers: number;
  /** Copies without a readable source id. */
  unreadable: number;
  pending: number;
  lag: number | null;
}

/** Counts where every produced entry ended; see {@linkcode Tally}. */
export function tally(input: TallyInput): Tally {
  const bySeq = new Map<number, Produced>();
  for (const p of input.produced) bySeq.set(p.seq, p);
  const kindOfId = new Map<string, EntryKind>();
  const inSource = new Set<string>();
  let unknownLanded = 0;
  for (const entry of input.source) {
    inSource.add(entry.id);
    const seq = seqOf(entry.fields);
    const p = seq === undefined ? undefined : bySeq.get(seq);
    kindOfId.set(entry.id, p?.kind ?? "good");
    if (p !== undefined && p.id === undefined) unknownLanded++;
  }
  const ackedNotInSource: string[] = [];
  let acknowledged = 0;
  let rejected = 0;
  for (const p of input.produced) {
    if (p.rejected) rejected++;
    if (p.id === undefined) continue;
    acknowledged++;
    kindOfId.set(p.id, p.kind);
    if (!inSource.has(p.id)) ackedNotInSource.push(p.id);
  }

  const out = copiesBySource(input.out, sourceIdOf);
  const dlq = copiesBySource(input.dlq, deadLetterSourceIdOf);
  let duplicates = 0;
  const duplicateIds: string[] = [];
  const missingIds: string[] = [];
  const poisonForwardedIds: string[] = [];
  const goodDeadLetteredIds: string[] = [];
  let missing = 0;
  let unsettled = 0;
  const missingByKind: Partial<Record<EntryKind, number>> = {};
  let poisonForwarded = 0;
  let goodDeadLettered = 0;
  let poisonDeadLettered = 0;
  let expectedPoison = 0;
  for (const [id, kind] of kindOfId) {
    const forwarded = out.copies.get(id) ?? 0;
    const dead = dlq.copies.get(id) ?? 0;
    const extra = forwarded + dead - 1;
    if (extra > 0) {
      duplicates += extra;
      if (duplicateIds.length < 10) duplicateIds.push(id);
    }
    if (forwarded + dead === 0 && isUnsettled(id, input)) {
      unsettled++;
    } else if (forwarded + dead === 0) {
      missing++;
      missingByKind[kind] = (missingByKind[kind] ?? 0) + 1;
      if (missingIds.length < 10) missingIds.push(id);
    }
    if (isPoison(kind)) {
      expectedPoison++;
      if (dead > 0) poisonDeadLettered++;
      if (forwarded > 0) {
        poisonForwarded++;
        if (poisonForwardedIds.length < 10) poisonForwardedIds.push(id);
      }
    } else if (dead > 0) {
      goodDeadLettered++;
      if (goodDeadLetteredIds.length < 10) goodDeadLetteredIds.push(id);
    }
  }
  let strangers = 0;
  for (const copies of [out.copies, dlq.copies]) {
    for (const id of copies.keys()) if (!kindOfId.has(id)) strangers++;
  }

  return {
    acknowledged,
    unknown: input.produced.length - acknowledged - rejected,
    rejected,
    unknownLanded,
    ackedNotInSource: ackedNotInSource.length,
    ackedNotInSourceIds: ackedNotInSource.slice(0, 10),
    sourceEntries: input.source.length,
    expected: kindOfId.size,
    expectedPoison,
    copies: input.out.length,
    distinct: out.copies.size,
    duplicates,
    duplicateIds,
    missing,
    missingIds,
    missingByKind,
    unsettled,
    deadLettered: input.dlq.length,
    poisonDeadLettered,
    poisonForwarded,
    poisonForwardedIds,
    goodDeadLettered,
    goodDeadLetteredIds,
    strangers,
    unreadable: out.unreadable + dlq.unreadable,
    pending: input.pending,
    lag: input.lag,
  };
}

/** Whether `id` is pending or not read yet, according to `input`. */
function isUnsettled(id: string, input: TallyInput): boolean {
  if (input.pendingIds?.has(id)) return true;
  return input.lastDeliveredId !== undefined && compareIds(id, input.lastDeliveredId) > 0;
}

/** Compares two stream ids (`ms-seq`): negative, 0 or positive. */
export function compareIds(a: string, b: string): number {
  const [am, as = "0"] = a.split("-");
  const [bm, bs = "0"] = b.split("-");
  const d = BigInt(am) - BigInt(bm) || BigInt(as) - BigInt(bs);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/**
 * Why the soak failed, one line per reason (empty when it passed): any missing entry, any
 * duplicate, poison in the target, copies of unknown or unreadable source ids, or a group not
 * drained (pending or lag above 0).
 */
export function problems(t: Tally): string[] {
  const out: string[] = [];
  const ids = (list: string[], n: number) =>
    list.length === 0 ? "" : `: ${list.join(", ")}${n > list.length ? ", …" : ""}`;
  if (t.missing > 0) {
    const kinds = Object.entries(t.missingByKind).map(([k, n]) => `${k} ${n}`).join(", ");
    out.push(
      `${t.missing} entries lost (neither forwarded nor dead-lettered; ${kinds})${
        ids(t.missingIds, t.missing)
      }`,
    );
  }
  if (t.duplicates > 0) {
    out.push(`${t.duplicates} duplicate copies${ids(t.duplicateIds, t.duplicateIds.length)}`);
  }
  if (t.poisonForwarded > 0) {
    out.push(
      `${t.poisonForwarded} poison entries forwarded${
        ids(t.poisonForwardedIds, t.poisonForwarded)
      }`,
    );
  }
  if (t.strangers > 0) out.push(`${t.strangers} copies of source ids never produced`);
  if (t.unreadable > 0) out.push(`${t.unreadable} copies without a readable source id`);
  if (t.pending > 0 || t.lag !== 0) {
    out.push(
      `group not drained: pending ${t.pending}, lag ${t.lag ?? "unknown"} ` +
        `(${t.unsettled} expected entries still pending or unread)`,
    );
  }
  return out;
}

/**
 * Things worth a look that are not failures: well-formed entries dead-lettered (their delivery
 * counter reached MAX_DELIVERIES through kills and claims), acknowledged XADDs that Redis itself
 * lost (they also count as missing).
 */
export function warnings(t: Tally): string[] {
  const out: string[] = [];
  if (t.goodDeadLettered > 0) {
    out.push(
      `${t.goodDeadLettered} well-formed entries dead-lettered: ${
        t.goodDeadLetteredIds.join(", ")
      }`,
    );
  }
  if (t.ackedNotInSource > 0) {
    out.push(
      `${t.ackedNotInSource} acknowledged XADDs absent from the source stream (lost by Redis): ` +
        t.ackedNotInSourceIds.join(", "),
    );
  }
  return out;
}
