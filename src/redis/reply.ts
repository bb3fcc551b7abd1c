/**
 * Shapes of raw Redis (RESP2) replies, pure: the one place a flat
 * `[name, value, name, value, …]` reply becomes a record.
 */

/**
 * A flat RESP2 reply `[k1, v1, k2, v2, …]` as a record (names as strings; a
 * trailing odd element is ignored; a repeated name keeps its last value).
 */
export function pairsToRecord<T>(flat: readonly T[]): Record<string, T> {
  const out: Record<string, T> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}
