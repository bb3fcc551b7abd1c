/**
 * The dispatcher: admits held entries (parses them; the malformed and those
 * past their delivery limit go to the dead-letter stream at once), runs their
 * handlers in per-aggregate lanes (stream order within an aggregate, at most
 * HANDLER_CONCURRENCY at once), with a synchronous fast path for handlers that
 * return no promise and a span per run when tracing is on, and hands each
 * outcome on: a success or duplicate to the settler, a failure to the failure
 * policy (retry after a delay by re-claiming, dead-letter, or leave pending).
 */
import { errorInfo, type Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import type { RedisLink } from "../../redis/connection.ts";
import type { Tracing } from "../../tracing.ts";
import {
  entryRecord,
  forwardHeaders,
  headersExtendable,
  isoInZone,
  MalformedEntryError,
  MAX_ENTRY_FIELDS,
  parseEntry,
  type StreamEvent,
} from "../entry.ts";
import type { Handler, HandlerRegistry, ResolvedHandler } from "../handlers.ts";
import { describePayloadError, type HandlerContext } from "../handler_api.ts";
import type { KeySchema } from "../keys.ts";
import { LaneScheduler } from "../lanes.ts";
import type { Router } from "../router.ts";
import { CLAIM_OWN } from "../scripts.ts";
import { type EmitSettings, EntryContext } from "./entry_context.ts";
import { deadLetterFields, onFailure, overDeliveryLimit } from "./failure_policy.ts";
import type { IdempotencyGate } from "./idempotency.ts";
import { dropRaw, type Held, type InFlight, keepRaw } from "./in_flight.ts";
import type { RawEntry } from "./raw.ts";
import type { OutcomeCounter } from "./outcomes.ts";
import { ForwardCopies, packRawSpan } from "./settle_codec.ts";
import type { SettleOp, Settler } from "./settler.ts";

/** Options of `Dispatcher`. */
export interface DispatcherOptions {
  connection: RedisLink;
  registry: HandlerRegistry;
  router: Router;
  /** How handlers' `ctx.publish` builds entries. */
  emit: EmitSettings;
  keys: KeySchema;
  group: string;
  consumer: string;
  handlerConcurrency: number;
  maxDeliveries: number;
  /** Longest delay before a failed entry is retried (ms). */
  retryMaxDelayMs: number;
  inFlight: InFlight;
  gate: IdempotencyGate;
  settler: Settler;
  outcomes: OutcomeCounter;
  /** Lets go of a held entry (its idempotency lock included). */
  release: (h: Held) => void;
  /** Aborted when the consumer stops: no retry is started then. */
  stopping: AbortSignal;
  metrics?: Metrics;
  /** Set only when tracing is enabled: disabled, the hot path makes no span. */
  tracing?: Tracing;
  logger: Logger;
}

/** Runs handlers for held entries. */
export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #lanes: LaneScheduler<Held>;
  readonly #handlerAbort = new AbortController();
  readonly #copies = new ForwardCopies();

  constructor(options: DispatcherOptions) {
    this.#o = options;
    this.#lanes = new LaneScheduler({
      concurrency: options.handlerConcurrency,
      start: (h) => this.#start(h),
    });
  }

  /**
   * Hands `h` to the settler (now settling), to count as `outcome` and write `write` with its
   * acknowledgement. Its event (and fields) are let go: an entry awaiting its settle keeps
   * ~150 bytes alive, not ~1.5 KB, so less survives each minor GC (bench/RESULTS.md).
   */
  #settle(
    h: Held,
    outcome: SettleOp["outcome"],
    eventType: string,
    write: Pick<SettleOp, "dedupKey" | "copy" | "emits"> = NOTHING,
  ): void {
    h.phase = "settling";
    h.event = undefined;
    h.outcome = outcome;
    h.eventType = this.#o.outcomes.label(eventType); // one string per type, not one per entry
    h.dedupKey = write.dedupKey;
    h.copy = write.copy;
    h.emits = write.emits;
    this.#o.settler.enqueue(h as SettleOp);
  }

  /** Aborts the signal handlers see (the shutdown budget ran out). */
  abortHandlers(): void {
    this.#handlerAbort.abort();
  }

  /**
   * Admits one newly held entry with its fields as read (`flat`; null when Redis no longer has
   * the entry): parses them, settles the entry at once when hopeless, else queues it (and runs
   * it at once when its lane is free). The caller reports the batch (`InFlight.admitted`).
   * The fields are not kept on the entry: the event holds them (`event.fields`) until it is
   * settling.
   */
  admit(h: Held, flat: readonly string[] | null, read?: RawEntry): void {
    const o = this.#o;
    if (flat === null) {
      o.logger.warn("Pending entry {id} of {stream} was deleted or trimmed; acknowledging", {
        id: h.id,
        stream: h.stream,
      });
      this.#settle(h, "deleted", "unknown");
      return;
    }
    const fields = entryRecord(flat);
    const count = flat.length >> 1;
    if (count > MAX_ENTRY_FIELDS) {
      this.#deadLetter(
        h,
        `malformed entry: ${count} fields, over the ${MAX_ENTRY_FIELDS} field limit`,
        fields.event ?? "unknown",
      );
      return;
    }
    try {
      h.event = parseEntry(h.stream, h.id, fields);
    } catch (err) {
      if (!(err instanceof MalformedEntryError)) throw err;
      this.#deadLetter(h, `malformed entry: ${err.message}`, fields.event ?? "unknown");
      return;
    }
    const over = overDeliveryLimit(h.deliveries, o.maxDeliveries);
    if (over) {
      this.#deadLetter(h, over, h.event.event);
      return;
    }
    if (read?.[2] && this.#forwardsAsRead(h.event)) {
      // Where its bytes lie, and whether a headers field is appended (it has none).
      keepRaw(h, read[2], packRawSpan(read[3]!, flat.length, h.event.fields.headers === undefined));
    }
    h.phase = "queued";
    this.#lanes.push(o.inFlight.keyOf(h.stream, h.event.aggregateId), h);
  }

  /**
   * True when `event` will likely be settled as a plain forward with its headers extended by
   * the script (or by `settle_command.ts`): it has routes, the default handler (which finishes
   * at once: its bytes are kept only that long) and no idempotency key.
   */
  #forwardsAsRead(event: StreamEvent): boolean {
    const o = this.#o;
    if (event.headers.idempotencyKey || o.router.targets(event.event).length === 0) return false;
    return o.registry.resolve(event.event).idle !== undefined;
  }

  /**
   * Starts one entry. Returns undefined when it finished at once (a handler
   * that returns no promise: no promise is made per entry), else a promise
   * that resolves when it finished; it never rejects.
   */
  #start(h: Held): Promise<unknown> | undefined {
    if (h.event!.headers.idempotencyKey) return this.#runKeyed(h);
    const r = this.#invoke(h);
    return typeof r === "boolean" ? undefined : r;
  }

  async #runKeyed(h: Held): Promise<void> {
    if (await this.#o.gate.run(h, () => this.#invoke(h)) === "duplicate") {
      this.#settle(h, "duplicate", h.event!.event);
    }
  }

  /**
   * Runs the handler (in a span when tracing); true when it succeeded. A
   * payload that fails the handler's schema is dead-lettered at once (false).
   * A handler without schema, timeout or concurrency limit that returns no
   * promise finishes synchronously: no promise is made for it.
   */
  #invoke(h: Held): boolean | Promise<boolean> {
    const o = this.#o;
    let event = h.event!;
    h.phase = "running";
    const handler = o.registry.resolve(event.event);
    if (handler.schema) {
      const parsed = handler.schema.safeParse(event.payload);
      if (!parsed.success) {
        this.#deadLetter(h, describePayloadError(parsed.error), event.event);
        return false;
      }
      event = { ...event, payload: parsed.data as StreamEvent["payload"] };
    }
    if (!handler.simple) return this.#guarded(h, handler, event);
    // Nothing to run (the default handler, its line dropped), and no span to make for it.
    if (handler.idle && !o.tracing && handler.idle(event)) return this.#finish(h, UNTIMED, true);
    const ctx = new EntryContext(h.deliveries, o.logger, event, this.#handlerAbort.signal, o.emit);
    const started = o.metrics ? performance.now() : 0;
    let result: void | Promise<void>;
    try {
      result = o.tracing
        ? this.#traced(o.tracing, h, handler.handle, event, ctx)
        : handler.handle(event, ctx);
    } catch (err) {
      return this.#finish(h, started, false, err);
    }
    if (result instanceof Promise) {
      return result.then(
        () => this.#finish(h, started, true, undefined, ctx),
        (err: unknown) => this.#finish(h, started, false, err),
      );
    }
    return this.#finish(h, started, true, undefined, ctx);
  }

  /** Runs a handler with a concurrency limit and/or a timeout. */
  async #guarded(h: Held, handler: ResolvedHandler, event: StreamEvent): Promise<boolean> {
    const o = this.#o;
    if (handler.limiter) await handler.limiter.acquire();
    const timeoutMs = handler.timeoutMs;
    const expiry = timeoutMs ? new AbortController() : undefined;
    const signal = expiry
      ? AbortSignal.any([this.#handlerAbort.signal, expiry.signal])
      : this.#handlerAbort.signal;
    const ctx = new EntryContext(h.deliveries, o.logger, event, signal, o.emit);
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const run = (async () =>
        o.tracing
          ? await this.#traced(o.tracing, h, handler.handle, event, ctx)
          : await handler.handle(event, ctx))();
      if (expiry) {
        run.catch(() => {}); // a run that ends after its timeout changes nothing
        await Promise.race([
          run,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              const err = new Error(`timed out after ${timeoutMs} ms (timeoutMs)`);
              expiry.abort(err);
              reject(err);
            }, timeoutMs);
          }),
        ]);
      } else await run;
      return this.#finish(h, started, true, undefined, ctx);
    } catch (err) {
      return this.#finish(h, started, false, err);
    } finally {
      clearTimeout(timer);
      handler.limiter?.release();
    }
  }

  /**
   * Records a handler's outcome: settle the success (with the entries it
   * emitted), or apply the failure policy (what it emitted is dropped).
   */
  #finish(h: Held, started: number, ok: boolean, err?: unknown, ctx?: EntryContext): boolean {
    const o = this.#o;
    o.metrics?.processingDuration.observe(
      started === UNTIMED ? 0 : (performance.now() - started) / 1000,
    );
    if (!ok) {
      this.#onHandlerError(h, err);
      return false;
    }
    const event = h.event!;
    const targets = o.router.targets(event.event);
    const dedupKey = event.headers.idempotencyKey ? o.gate.markKey(h) : undefined;
    const emits = ctx?.emitted;
    // A plain forward (no mark, no emits) whose headers field the script can extend itself
    // carries no text of the entry: nothing of it waits for the settle.
    const copy = targets.length === 0 ? undefined : this.#copies.to(
      targets,
      !dedupKey && !emits?.length && headersExtendable(event) ? undefined : forwardHeaders(event),
    );
    if (copy?.headers !== undefined || !copy) dropRaw(h);
    this.#settle(h, "acked", event.event, { dedupKey, copy, emits });
    return true;
  }

  /** Runs the handler in a CONSUMER span whose parent is the entry's `traceparent`. */
  #traced(
    tracing: Tracing,
    h: Held,
    handler: Handler,
    event: StreamEvent,
    ctx: HandlerContext,
  ): Promise<void> {
    return tracing.withSpan(`process ${h.stream}`, {
      kind: "consumer",
      parentHeaders: event.headers,
      attributes: {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": h.stream,
        "messaging.consumer.group.name": this.#o.group,
        "messaging.message.id": h.id,
        "messaging.message.deliveries": h.deliveries,
        "event.type": event.event,
        "event.aggregate_id": event.aggregateId,
      },
    }, () => handler(event, ctx));
  }

  #onHandlerError(h: Held, err: unknown): void {
    const o = this.#o;
    const event = h.event!;
    const log = logFor(o.logger, h);
    const failure = {
      deliveries: h.deliveries,
      maxDeliveries: o.maxDeliveries,
      error: errorInfo(err).message,
    };
    const props = { event: event.event, id: h.id, ...failure };
    const decision = onFailure({
      ...failure,
      stopping: o.stopping.aborted,
      retryMaxDelayMs: o.retryMaxDelayMs,
    });
    if (decision.action === "dead_letter") {
      log.error(
        "Handler for {event} {id} failed on delivery {deliveries}/{maxDeliveries}; dead-lettering: {error}",
        props,
      );
      this.#deadLetter(h, decision.reason, event.event);
      return;
    }
    o.outcomes.count(h.stream, event.event, "retried");
    if (decision.action === "leave") {
      log.warn("Handler for {event} {id} failed while stopping; left pending: {error}", props);
      o.release(h);
      return;
    }
    log.warn(
      "Handler for {event} {id} failed on delivery {deliveries}/{maxDeliveries}; retrying in {delayMs} ms: {error}",
      { ...props, delayMs: decision.delayMs },
    );
    h.phase = "retry_wait";
    h.timer = setTimeout(() => void this.#retry(h), decision.delayMs);
  }

  /** Re-claims a failed entry for ourselves (Redis counts the delivery) and runs it again. */
  async #retry(h: Held): Promise<void> {
    const o = this.#o;
    if (!o.inFlight.holds(h)) return;
    if (o.stopping.aborted) {
      o.release(h); // left pending: redelivered later
      return;
    }
    try {
      const reply = await o.connection.exec((c) =>
        CLAIM_OWN.run(c, [h.stream], [o.group, o.consumer, "claim", h.id])
      ) as [string, number, string[]][];
      o.release(h);
      // Empty: another consumer claimed it meanwhile; it is theirs now.
      if (reply.length === 0) return;
      const [id, deliveries, flat] = reply[0];
      const again = o.inFlight.hold(h.stream, id, Number(deliveries));
      if (again) {
        this.admit(again, flat.length ? flat : null);
        o.inFlight.admitted();
      }
    } catch (err) {
      if (o.stopping.aborted) {
        o.release(h);
        return;
      }
      o.logger.debug("Retry of {id} postponed: {error}", {
        id: h.id,
        error: errorInfo(err).message,
      });
      h.timer = setTimeout(() => void this.#retry(h), 1000);
    }
  }

  #deadLetter(h: Held, error: string, eventType: string): void {
    const o = this.#o;
    logFor(o.logger, h).warn("Dead-lettering {id} of {stream}: {error}", {
      id: h.id,
      stream: h.stream,
      error,
    });
    this.#settle(h, "dead_lettered", eventType, {
      copy: {
        kind: "dead_letter",
        target: o.keys.dlq(h.stream),
        fields: deadLetterFields({
          error,
          sourceStream: h.stream,
          sourceId: h.id,
          deliveries: h.deliveries,
          consumer: o.consumer,
          failedAt: isoInZone(new Date(), "UTC"),
        }),
      },
    });
  }
}

/** `started` of a handler that was not run (`ResolvedHandler.idle`): it took no time. */
const UNTIMED = -1;

/** No copy, mark or emitted entry to write with an acknowledgement. */
const NOTHING: Pick<SettleOp, "dedupKey" | "copy" | "emits"> = {};

/** The consumer's logger, carrying the entry's correlation id when it has one. */
function logFor(log: Logger, h: Held): Logger {
  const correlationId = h.event?.headers.correlationId;
  return correlationId ? log.with({ correlationId }) : log;
}
