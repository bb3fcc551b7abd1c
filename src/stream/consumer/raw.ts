/**
 * Shapes of raw RESP2 stream replies as the consumer reads them.
 */

/** Raw RESP2 entry: [id, [field, value, …] | null]. */
export type RawEntry = [string, string[] | null];

/** Raw XREADGROUP reply: per stream its entries, or null on timeout. */
export type ReadReply = [string, RawEntry[]][] | null;

/** An entry claimed by a script: [id, delivery counter, fields (empty when gone)]. */
export type ClaimedEntry = [string, number, string[]];
