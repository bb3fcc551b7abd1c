/**
 * Counting consumption outcomes in `stream_messages_consumed_total`, with the
 * `event` label bounded: producers choose event types, so past
 * `MAX_EVENT_LABELS` distinct ones the rest count as `other`.
 */
import type { Metrics, Outcome } from "../../metrics.ts";

/** Distinct `event` label values, at most. */
export const MAX_EVENT_LABELS = 200;

/** Counts outcomes per (stream, event, outcome); the owner of the label set. */
export class OutcomeCounter {
  readonly #metrics?: Metrics;
  /** The label values so far, each mapped to itself: the one string kept per value. */
  readonly #labels = new Map<string, string>();
  #lastEvent?: string;
  #lastLabel = "other";

  constructor(metrics?: Metrics) {
    this.#metrics = metrics;
  }

  /**
   * The `event` label for `event`: always the same string for a value (entries waiting for
   * their settle carry it: one string per event type, not the one read with each entry).
   */
  label(event: string): string {
    // Most entries have the type of the entry before: a comparison, not a lookup (which would
    // hash the type, a new string per entry).
    if (event === this.#lastEvent) return this.#lastLabel;
    let label = this.#labels.get(event);
    if (label === undefined) {
      if (this.#labels.size >= MAX_EVENT_LABELS || event.length > 100) label = "other";
      else this.#labels.set(event, label = event);
    }
    this.#lastEvent = event;
    this.#lastLabel = label;
    return label;
  }

  /** Adds `n` to the count of (`stream`, `event`, `outcome`). */
  count(stream: string, event: string, outcome: Outcome, n = 1): void {
    this.#metrics?.consumed.inc({ stream, event: this.label(event), outcome }, n);
  }
}
