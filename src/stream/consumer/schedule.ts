/**
 * Every interval and delay of the consumer's loops, derived from the settings
 * in one pure table, so that their relations (keep-alive well inside the claim
 * threshold, claiming at half of it, dead consumers at ten times it) are
 * stated once and unit-tested.
 */

/** The settings the schedule depends on. */
export interface ScheduleInput {
  /** CLAIM_IDLE_MS. */
  claimIdleMs: number;
  /** STREAM_RETENTION_MS (0: no trimming). */
  retentionMs: number;
  /** Stats poller interval. Default 2000. */
  statsIntervalMs?: number;
}

/** The consumer's intervals, in ms. */
export interface Schedule {
  /** How often held entries are refreshed (XCLAIM JUSTID), and the age that makes one due. */
  keepAliveMs: number;
  /** How often idle entries of other consumers are claimed (XAUTOCLAIM). */
  claimIdleEveryMs: number;
  /** How often dead consumers are looked for. */
  reaperEveryMs: number;
  /** Idle time after which a consumer with nothing pending is removed: ten times CLAIM_IDLE_MS. */
  deadConsumerIdleMs: number;
  /** How often old entries are trimmed; undefined when trimming is off. */
  trimEveryMs?: number;
  /** How often the stats behind /health and the gauges are read. */
  statsEveryMs: number;
  /** Longest wait before retrying a failed entry (exponential backoff from 100 ms). */
  retryMaxDelayMs: number;
}

const clamp = (v: number, min: number, max: number) => Math.max(min, Math.min(max, v));

/** The schedule for `input`. */
export function schedule(input: ScheduleInput): Schedule {
  const claim = input.claimIdleMs;
  return {
    // A quarter of the claim threshold: an entry's idle time stays near half of it, which
    // leaves a margin of a whole keep-alive period for a late loop turn.
    keepAliveMs: Math.max(20, Math.floor(claim / 4)),
    claimIdleEveryMs: clamp(Math.floor(claim / 2), 20, 5000),
    reaperEveryMs: clamp(claim * 10, 1000, 60_000),
    deadConsumerIdleMs: claim * 10,
    trimEveryMs: input.retentionMs > 0
      ? clamp(Math.floor(input.retentionMs / 10), 1000, 60_000)
      : undefined,
    statsEveryMs: input.statsIntervalMs ?? 2000,
    retryMaxDelayMs: clamp(Math.floor(claim / 2), 100, 30_000),
  };
}
