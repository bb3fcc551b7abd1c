/**
 * Shapes of raw RESP2 stream replies as the consumer reads them.
 */

import type { RawChunk } from "../../redis/raw_chunks.ts";

/**
 * Raw RESP2 entry: [id, [field, value, …] | null]. Read by the consumer's own reader with a
 * `RawChunks` (`ReplyReader.take`), it also says where its fields' RESP bytes lie: in `chunk`,
 * from `start` (the first field name's `$`).
 */
export type RawEntry = [id: string, fields: string[] | null, chunk?: RawChunk, start?: number];

/** Raw XREADGROUP reply: per stream its entries, or null on timeout. */
export type ReadReply = [string, RawEntry[]][] | null;

/** An entry claimed by a script: [id, delivery counter, fields (empty when gone)]. */
export type ClaimedEntry = [string, number, string[]];
