/**
 * Handler registry: handlers per event type, glob patterns allowed, and a
 * default handler for every other type (logs `manual_test` and
 * `test_starters` at INFO, others at DEBUG, and succeeds). Also the
 * diagnostic handlers (README: Stream entries), registered only when enabled.
 */
import { getLogger, type Logger } from "../log.ts";
import { delay } from "../clock.ts";
import type { StreamEvent } from "./entry.ts";
import { globMatcher } from "../glob.ts";

/** What a handler gets besides the event. */
export interface HandlerContext {
  /** Deliveries of this entry so far, as counted by Redis (1 on first delivery). */
  deliveries: number;
  /** Logger of the consumer; its lines carry the entry's correlation id. */
  logger: Logger;
  /** Aborted when the service gives up waiting for handlers at shutdown. */
  signal: AbortSignal;
}

/** Handles one event; throwing means failure (the entry is retried or dead-lettered). */
export type Handler = (event: StreamEvent, ctx: HandlerContext) => void | Promise<void>;

const LOUD_EVENTS = new Set(["manual_test", "test_starters"]);

/** The consumer's logger category, asked whether DEBUG lines are written at all. */
const consumerLog = getLogger("consumer");

/** The default handler: logs and succeeds. */
export const defaultHandler: Handler = (event, { logger, deliveries }) => {
  const loud = LOUD_EVENTS.has(event.event);
  // A dropped DEBUG line costs nothing: not even the entry's child logger.
  if (!loud && !consumerLog.isEnabledFor("debug")) return;
  const props = {
    event: event.event,
    aggregateId: event.aggregateId,
    id: event.id,
    stream: event.stream,
    deliveries,
  };
  if (loud) logger.info("Received {event} {id}", props);
  else logger.debug("Received {event} {id}", props);
};

/** Event types mapped to handlers; exact names win over patterns, patterns go in order. */
export class HandlerRegistry {
  readonly #exact = new Map<string, Handler>();
  readonly #patterns: { match: (e: string) => boolean; handler: Handler }[] = [];
  readonly #cache = new Map<string, Handler>();
  #fallback: Handler = defaultHandler;

  /** Registers `handler` for an event type or glob pattern (`order.*`). */
  on(pattern: string, handler: Handler): this {
    if (!pattern) throw new TypeError("Pattern must not be empty");
    if (pattern.includes("*") || pattern.includes("?")) {
      this.#patterns.push({ match: globMatcher(pattern), handler });
    } else this.#exact.set(pattern, handler);
    this.#cache.clear();
    return this;
  }

  /** Replaces the default handler. */
  fallback(handler: Handler): this {
    this.#fallback = handler;
    this.#cache.clear();
    return this;
  }

  /** The handler for `event`. */
  resolve(event: string): Handler {
    let h = this.#cache.get(event);
    if (!h) {
      h = this.#exact.get(event) ?? this.#patterns.find((p) => p.match(event))?.handler ??
        this.#fallback;
      if (this.#cache.size < 10_000) this.#cache.set(event, h);
    }
    return h;
  }
}

/** Most a `diagnostic.sleep` waits. */
export const MAX_DIAGNOSTIC_SLEEP_MS = 120_000;

/**
 * Registers `diagnostic.fail` (throws on its first `payload.failTimes`
 * deliveries, all of them when absent) and `diagnostic.sleep` (waits
 * `payload.ms`, capped at 120 s).
 */
export function registerDiagnosticHandlers(registry: HandlerRegistry): void {
  registry.on("diagnostic.fail", (event, { deliveries }) => {
    const failTimes = event.payload.failTimes;
    const limit = typeof failTimes === "number" && Number.isFinite(failTimes)
      ? failTimes
      : Infinity;
    if (deliveries <= limit) {
      throw new Error(`diagnostic.fail: failing delivery ${deliveries}`);
    }
  });
  registry.on("diagnostic.sleep", async (event, { signal }) => {
    const ms = Number(event.payload.ms);
    const wait = Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_DIAGNOSTIC_SLEEP_MS) : 0;
    await delay(wait, signal);
    if (signal.aborted) throw new Error("diagnostic.sleep: aborted by shutdown");
  });
}
