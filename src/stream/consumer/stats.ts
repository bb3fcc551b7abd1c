/**
 * The consumer's per-stream figures (pending, lag, lengths, when the
 * dead-letter stream last grew): the one owner of that state. The stats
 * poller writes what it reads from Redis; the settler notes dead letters as
 * it writes them; `/health` and the gauges read copies.
 */
import type { GroupFigures } from "../group_ops.ts";
import type { StreamStats } from "../status.ts";

/** Per-stream figures, updated by the poller and by dead-lettering. */
export class StatsBoard {
  readonly #stats = new Map<string, StreamStats>();
  /** Streams read once: the first reading is a baseline, not growth. */
  readonly #seen = new Set<string>();
  readonly #clock: () => number;

  constructor(
    streams: readonly string[],
    group: string,
    dlqOf: (stream: string) => string,
    clock: () => number = Date.now,
  ) {
    this.#clock = clock;
    for (const stream of streams) {
      this.#stats.set(stream, {
        stream,
        group,
        pending: 0,
        lag: null,
        length: 0,
        consumers: 0,
        lastDeliveredId: null,
        dlqStream: dlqOf(stream),
        dlqLength: 0,
      });
    }
  }

  /** The dead-letter stream of a consumed stream. */
  dlqOf(stream: string): string {
    return this.#stats.get(stream)!.dlqStream;
  }

  /** Records a reading of `stream`'s figures; returns the updated copy. */
  update(stream: string, f: GroupFigures): StreamStats {
    const s = this.#stats.get(stream)!;
    if (this.#seen.has(stream) && f.dlqLength > s.dlqLength) s.dlqGrewAt = this.#clock();
    this.#seen.add(stream);
    s.pending = f.pending;
    s.lag = f.lag;
    s.consumers = f.consumers;
    s.lastDeliveredId = f.lastDeliveredId;
    s.length = f.length;
    s.dlqLength = f.dlqLength;
    return { ...s };
  }

  /** Notes that this process just wrote a dead letter for `stream`. */
  deadLettered(stream: string): void {
    const s = this.#stats.get(stream);
    if (s) s.dlqGrewAt = this.#clock();
  }

  /** Notes that a settle of `stream` would have failed (an entry stays pending). */
  settleFailed(stream: string): void {
    const s = this.#stats.get(stream);
    if (s) s.settleFailedAt = this.#clock();
  }

  /** Copies of every stream's figures. */
  snapshot(): StreamStats[] {
    return [...this.#stats.values()].map((s) => ({ ...s }));
  }
}
