/**
 * What the consumer reports about itself: the status that `/health`, the
 * admin API and the gauges read. Types only, so that HTTP code depends on
 * these shapes and never on the consumer module.
 */

/** Per-stream figures for /health, /admin and the gauges. */
export interface StreamStats {
  stream: string;
  group: string;
  pending: number;
  lag: number | null;
  length: number;
  consumers: number;
  lastDeliveredId: string | null;
  dlqStream: string;
  dlqLength: number;
  /** When the dead-letter stream was last seen growing (epoch ms). */
  dlqGrewAt?: number;
  /** When a settle of this stream last failed and left an entry pending (epoch ms). */
  settleFailedAt?: number;
}

/** What /health reads of the consumer. */
export interface ConsumerStatus {
  /** Reading: started, connected, not stopping. */
  active: boolean;
  /** When an entry was last read. */
  lastMessage?: Date;
  /** Entries held: read and not yet acknowledged. */
  inFlight: number;
  streams: StreamStats[];
}
