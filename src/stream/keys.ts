/**
 * The Redis key schema: every key the service reads or writes besides the
 * consumed streams themselves is built here, from the stream it belongs to,
 * so that a key derived from a stream keeps the stream's name (and, on Redis
 * Cluster, its hash tag and slot). The dead-letter field names live here too:
 * the consumer writes them and the dead-letter replay removes them.
 */

/** Fields a dead-letter copy adds to the original entry's fields, in this order. */
export const DEAD_LETTER_FIELDS = [
  "error",
  "sourceStream",
  "sourceId",
  "deliveries",
  "consumer",
  "failedAt",
] as const;

/** One dead-letter field name. */
export type DeadLetterField = typeof DEAD_LETTER_FIELDS[number];

/** Options of `KeySchema`. */
export interface KeySchemaOptions {
  /** The consumer group (CONSUMER_GROUP): checkpoints and dedup marks are per group. */
  group: string;
  /** DLQ_STREAM: one dead-letter stream for every stream. Default: `<stream>:dlq` each. */
  dlqStream?: string;
  /** SERVICE_NAME: scopes the trigger's idempotency records. */
  serviceName?: string;
}

/** Builds the keys derived from a stream. */
export class KeySchema {
  readonly group: string;
  readonly #dlqStream?: string;
  readonly #serviceName: string;

  constructor(options: KeySchemaOptions) {
    if (!options.group) throw new TypeError("group must not be empty");
    this.group = options.group;
    this.#dlqStream = options.dlqStream;
    this.#serviceName = options.serviceName ?? "service";
  }

  /** The dead-letter stream of `stream`: DLQ_STREAM, else `<stream>:dlq`. */
  dlq(stream: string): string {
    return this.#dlqStream ?? `${stream}:dlq`;
  }

  /** The checkpoint hash of `stream`: `<stream>:checkpoint:<group>`. */
  checkpoint(stream: string): string {
    return `${stream}:checkpoint:${this.group}`;
  }

  /** The processed mark of an idempotency key read from `stream`: `<stream>:dedup:<group>:<key>`. */
  dedup(stream: string, idempotencyKey: string): string {
    return `${stream}:dedup:${this.group}:${idempotencyKey}`;
  }

  /** The trigger's record of a publication with an `Idempotency-Key`. */
  publishIdempotency(idempotencyKey: string): string {
    return `${this.#serviceName}:idempotency:${idempotencyKey}`;
  }
}
