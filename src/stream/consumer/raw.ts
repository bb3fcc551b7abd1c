/**
 * Shapes of raw RESP2 stream replies as the consumer reads them, and the one
 * conversion of a flat `[field, value, …]` list into an entry's fields.
 */
import type { EntryFields } from "../entry.ts";

/** Raw RESP2 entry: [id, [field, value, …] | null]. */
export type RawEntry = [string, string[] | null];

/** Raw XREADGROUP reply: per stream its entries, or null on timeout. */
export type ReadReply = [string, RawEntry[]][] | null;

/** An entry claimed by a script: [id, delivery counter, fields (empty when gone)]. */
export type ClaimedEntry = [string, number, string[]];

/** A flat `[field, value, …]` list as an entry's fields (a repeated name keeps its last value). */
export function pairsToFields(flat: readonly string[]): EntryFields {
  const out: EntryFields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}
