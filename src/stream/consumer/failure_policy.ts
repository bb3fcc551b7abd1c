/**
 * The failure policy, pure: what happens to an entry whose handler failed,
 * and to an entry handed over already past its delivery limit. Deliveries are
 * Redis' counters, so the decision survives restarts.
 */
import { exponentialBackoff } from "../../redis/backoff.ts";
import { DEAD_LETTER_FIELDS, type DeadLetterField } from "../keys.ts";

/** What to do with a failed delivery. */
export type FailureDecision =
  /** Claim the entry again after `delayMs` (Redis counts the delivery) and run it again. */
  | { action: "retry"; delayMs: number }
  /** Copy it to the dead-letter stream with `reason` and acknowledge it. */
  | { action: "dead_letter"; reason: string }
  /** Leave it pending: it is redelivered later (the consumer is stopping). */
  | { action: "leave" };

/** Inputs of `onFailure`. */
export interface FailureInput {
  /** Deliveries so far, this one included. */
  deliveries: number;
  /** MAX_DELIVERIES. */
  maxDeliveries: number;
  /** The handler's error message. */
  error: string;
  /** True while the consumer stops: no retry is started then. */
  stopping: boolean;
  /** Longest retry delay (ms). */
  retryMaxDelayMs: number;
  /** Random source of the retry delay's jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** Decides the fate of a failed delivery. */
export function onFailure(input: FailureInput): FailureDecision {
  if (input.deliveries >= input.maxDeliveries) {
    return { action: "dead_letter", reason: input.error };
  }
  if (input.stopping) return { action: "leave" };
  return {
    action: "retry",
    delayMs: exponentialBackoff(input.deliveries, {
      minMs: 100,
      maxMs: Math.max(100, input.retryMaxDelayMs),
      random: input.random,
    }),
  };
}

/**
 * The dead-letter reason for an entry handed over with `deliveries` already past
 * `maxDeliveries` (its handler is not run again), or undefined when it may run.
 */
export function overDeliveryLimit(deliveries: number, maxDeliveries: number): string | undefined {
  return deliveries > maxDeliveries
    ? `delivered ${deliveries} times without success (MAX_DELIVERIES ${maxDeliveries})`
    : undefined;
}

/** What a dead-letter copy records besides the original fields. */
export interface DeadLetterInfo {
  error: string;
  sourceStream: string;
  sourceId: string;
  deliveries: number;
  consumer: string;
  /** ISO 8601. */
  failedAt: string;
}

/** Longest `error` text kept in a dead-letter copy. */
export const MAX_DEAD_LETTER_ERROR = 4096;

/** The dead-letter fields, flat and in `DEAD_LETTER_FIELDS` order, appended to the entry's own. */
export function deadLetterFields(info: DeadLetterInfo): string[] {
  const values: Record<DeadLetterField, string> = {
    error: info.error.slice(0, MAX_DEAD_LETTER_ERROR),
    sourceStream: info.sourceStream,
    sourceId: info.sourceId,
    deliveries: String(info.deliveries),
    consumer: info.consumer,
    failedAt: info.failedAt,
  };
  return DEAD_LETTER_FIELDS.flatMap((name) => [name, values[name]]);
}
