/**
 * What a handler gets besides the event: its delivery count, the abort
 * signal, a logger carrying the entry's correlation id (made only if the
 * handler asks for it: most never log, and a child logger per entry costs),
 * and `publish`, which collects emitted entries for the settle to write with
 * the acknowledgement.
 */
import type { Logger } from "../../log.ts";
import { isoInZone, type StreamEvent, toFields } from "../entry.ts";
import type { EmitRequest, HandlerContext, HandlerLogger } from "../handler_api.ts";
import type { Router } from "../router.ts";

/** An entry emitted by a handler: the flat fields to XADD to each target. */
export interface Emit {
  targets: readonly string[];
  fields: string[];
}

/** What `publish` needs to build entries. */
export interface EmitSettings {
  /** ROUTES: the targets of an emitted entry that names no stream. */
  router: Router;
  /** SERVICE_NAME: the `serviceName` field of emitted entries. */
  serviceName: string;
  /** TIMEZONE: of the `timestamp` field. */
  timezone: string;
}

const EVENT_RE = /^[A-Za-z0-9_.:-]{1,256}$/;

/** The context of one handler run. */
export class EntryContext implements HandlerContext {
  readonly deliveries: number;
  readonly signal: AbortSignal;
  readonly #base: Logger;
  readonly #source: StreamEvent;
  readonly #emit: EmitSettings;
  #logger?: Logger;
  /** Entries published so far (undefined until the first). */
  emitted?: Emit[];

  constructor(
    deliveries: number,
    base: Logger,
    source: StreamEvent,
    signal: AbortSignal,
    emit: EmitSettings,
  ) {
    this.deliveries = deliveries;
    this.#base = base;
    this.#source = source;
    this.signal = signal;
    this.#emit = emit;
  }

  get logger(): HandlerLogger {
    const correlationId = this.#source.headers.correlationId;
    return this.#logger ??= correlationId ? this.#base.with({ correlationId }) : this.#base;
  }

  publish(entry: EmitRequest): Promise<void> {
    this.emitted ??= [];
    this.emitted.push(buildEmit(entry, this.#source, this.#emit));
    return Promise.resolve();
  }
}

/**
 * The entry `request` emitted while handling `source`: the wire format, with
 * `headers.correlationId` carried over and `headers.causationId` = the source's id.
 * @throws {TypeError} for a bad request, or when no target stream can be found.
 */
export function buildEmit(request: EmitRequest, source: StreamEvent, s: EmitSettings): Emit {
  if (typeof request?.event !== "string" || !EVENT_RE.test(request.event)) {
    throw new TypeError(`ctx.publish: event must match ${EVENT_RE.source}`);
  }
  const payload = request.payload;
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new TypeError(`ctx.publish(${request.event}): payload must be a JSON object`);
  }
  const targets = request.stream ? [request.stream] : s.router.targets(request.event);
  if (targets.length === 0) {
    throw new TypeError(
      `ctx.publish(${request.event}): no stream given and no ROUTES target matches the event`,
    );
  }
  const headers: Record<string, string> = { ...request.headers, causationId: source.id };
  const correlationId = source.headers.correlationId;
  if (correlationId) headers.correlationId = correlationId;
  const fields = toFields({
    event: request.event,
    aggregateId: request.aggregateId ?? source.aggregateId,
    payload,
    headers,
    serviceName: s.serviceName,
    timestamp: isoInZone(new Date(), s.timezone),
    mimeType: "application/json",
  });
  return { targets, fields: Object.entries(fields).flat() };
}
