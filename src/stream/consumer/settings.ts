/**
 * The consumer's settings: the narrow part of the configuration it reads,
 * and how it is taken from the whole `Config`.
 */
import type { Config } from "../../config.ts";
import { KeySchema } from "../keys.ts";

/** What the consumer needs to know; every field comes from one variable. */
export interface ConsumerSettings {
  /** STREAM: the streams consumed. */
  streams: readonly string[];
  /** CONSUMER_GROUP. */
  group: string;
  /** CONSUMER_NAME. */
  consumer: string;
  /** STREAM_START_ID: where a group created by the consumer starts. */
  startId: string;
  /** BATCH_SIZE: entries per XREADGROUP. */
  batchSize: number;
  /** BLOCK_MS: XREADGROUP BLOCK. */
  blockMs: number;
  /** MAX_IN_FLIGHT: entries held at most. */
  maxInFlight: number;
  /** HANDLER_CONCURRENCY: handlers running at most. */
  handlerConcurrency: number;
  /** CLAIM_IDLE_MS: idle time after which pending entries of others are claimed. */
  claimIdleMs: number;
  /** MAX_DELIVERIES: deliveries before an entry is dead-lettered. */
  maxDeliveries: number;
  /** DEDUP_TTL_S: how long processed idempotency marks last. */
  dedupTtlS: number;
  /** STREAM_RETENTION_MS: entries older than this are trimmed; 0 turns trimming off. */
  retentionMs: number;
  /** TIMEZONE: zone of the checkpoint's `<consumer>:at` timestamps and of emitted entries. */
  timezone: string;
  /** SERVICE_NAME: the `serviceName` of entries handlers emit. */
  serviceName: string;
  /** Every derived key (dead-letter stream, checkpoint, dedup marks). */
  keys: KeySchema;
  /**
   * STREAM_PARTITIONS: above 1, each stream S of `streams` is the partition keys {S:0} …
   * {S:N-1}, shared with the other instances through leases (default 1).
   */
  partitions?: number;
  /** PARTITION_LEASE_MS: how long a partition lease lasts without renewal (default 10000). */
  partitionLeaseMs?: number;
  /**
   * Cross-slot mode: copies to a target in another slot than their source go through the
   * source's outbox and the relay (README "Redis Cluster and partitioned streams"). True with
   * REDIS_CLUSTER_NODES; tests may set it on a single Redis.
   */
  outboxAcrossSlots?: boolean;
  /** Interval of the stats poller behind /health and the gauges (ms). Default 2000. */
  statsIntervalMs?: number;
}

/** The consumer's settings from the validated configuration. */
export function consumerSettings(config: Config): ConsumerSettings {
  const s = config.stream;
  return {
    streams: s.streams,
    group: s.group,
    consumer: s.consumer,
    startId: s.startId,
    batchSize: s.batchSize,
    blockMs: s.blockMs,
    maxInFlight: s.maxInFlight,
    handlerConcurrency: s.handlerConcurrency,
    claimIdleMs: s.claimIdleMs,
    maxDeliveries: s.maxDeliveries,
    dedupTtlS: s.dedupTtlS,
    retentionMs: s.retentionMs,
    timezone: config.service.timezone,
    serviceName: config.service.name,
    keys: keySchema(config),
    partitions: s.partitions,
    partitionLeaseMs: s.partitionLeaseMs,
    outboxAcrossSlots: config.redis.cluster !== undefined,
  };
}

/** The key schema of the configuration. */
export function keySchema(config: Config): KeySchema {
  return new KeySchema({
    group: config.stream.group,
    dlqStream: config.stream.dlqStream,
    serviceName: config.service.name,
  });
}
