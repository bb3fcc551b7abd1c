/**
 * The entries the chaos soak produces, in the service's wire format (README, "Stream entries"):
 * well-formed ones, and poison ones the service must dead-letter (no `event`, a `payload` that is
 * not JSON, a `diagnostic.fail` that always fails; unless `--gentle`, more than 1,000 fields and
 * over 1 MB). Every entry carries its sequence number in an extra field, `chaosSeq` (extra fields
 * are kept by the service), first of all, so that even a truncated copy names it.
 *
 * @module
 */

import type { Rng } from "./rng.ts";

/** What an entry is, and so where it must end: `good` in the route target, the rest dead-lettered. */
export type EntryKind =
  | "good"
  | "no-event"
  | "bad-json"
  | "always-fails"
  | "many-fields"
  | "huge";

/** Poison kinds mixed in by default. */
export const POISON_KINDS: readonly EntryKind[] = ["no-event", "bad-json", "always-fails"];
/** Hostile poison kinds, over the service's limits (left out with `--gentle`). */
export const HOSTILE_KINDS: readonly EntryKind[] = ["many-fields", "huge"];

/** The field that carries an entry's sequence number. */
export const SEQ_FIELD = "chaosSeq";
/** The event of well-formed entries (handled by the service's default handler). */
export const GOOD_EVENT = "chaos.tick";
/** Aggregates the well-formed entries are spread over. */
const AGGREGATES = 50;

/** Whether entries of `kind` must end in the dead-letter stream (and never in the target). */
export function isPoison(kind: EntryKind): boolean {
  return kind !== "good";
}

/**
 * Chooses the kind of the next entry: poison with probability `poisonRatio` (one of
 * {@linkcode POISON_KINDS}, plus {@linkcode HOSTILE_KINDS} when `hostile`; a hostile kind at most
 * a tenth as often as the others, as they are heavy), else good.
 */
export function chooseKind(rng: Rng, poisonRatio: number, hostile: boolean): EntryKind {
  if (rng.next() >= poisonRatio) return "good";
  if (hostile && rng.next() < 0.1) return rng.pick(HOSTILE_KINDS);
  return rng.pick(POISON_KINDS);
}

/**
 * The flat field list (`[name, value, …]`, for XADD) of entry `seq` of kind `kind`; `run` tags
 * the correlation ids of one soak.
 */
export function chaosEntry(seq: number, kind: EntryKind, run: string): string[] {
  const headers = JSON.stringify({ correlationId: `${run}-${seq}` });
  const base = (event: string | undefined, payload: string): string[] => [
    SEQ_FIELD,
    String(seq),
    ...(event === undefined ? [] : ["event", event]),
    "aggregateId",
    `agg-${seq % AGGREGATES}`,
    "timestamp",
    new Date().toISOString(),
    "payload",
    payload,
    "serviceName",
    "chaos-producer",
    "headers",
    headers,
  ];
  const payload = JSON.stringify({ seq });
  switch (kind) {
    case "good":
      return base(GOOD_EVENT, payload);
    case "no-event":
      return base(undefined, payload);
    case "bad-json":
      return base(GOOD_EVENT, `{"seq": ${seq}, not json`);
    case "always-fails":
      // No failTimes: the diagnostic handler throws on every delivery (DIAGNOSTIC_EVENTS=true).
      return base("diagnostic.fail", payload);
    case "many-fields": {
      const extra: string[] = [];
      for (let i = 0; i < 5_000; i++) extra.push(`f${i}`, String(i));
      return [...base(GOOD_EVENT, payload), ...extra];
    }
    case "huge":
      return base(GOOD_EVENT, JSON.stringify({ seq, blob: "x".repeat(1_100_000) }));
  }
}

/** The sequence number of an entry's fields, or undefined when it has none. */
export function seqOf(fields: Record<string, string>): number | undefined {
  const raw = fields[SEQ_FIELD];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  return Number(raw);
}
