/**
 * The handler API that teams write against (README, "Writing handlers"):
 * `defineHandler` with an optional zod schema for the payload (its type flows
 * into `handle`), a timeout and a concurrency limit, and the context a
 * handler gets: its delivery count, a logger, an abort signal, and `publish`,
 * whose entries are written by the settle, atomically with the
 * acknowledgement, only when it takes effect.
 */
import type { z } from "npm:zod@^4.6.7";
import type { StreamEvent } from "./entry.ts";

/** The logger a handler gets; its lines carry the entry's correlation id. */
export interface HandlerLogger {
  debug(message: string, properties?: Record<string, unknown>): void;
  info(message: string, properties?: Record<string, unknown>): void;
  warn(message: string, properties?: Record<string, unknown>): void;
  error(message: string, properties?: Record<string, unknown>): void;
}

/** An entry a handler emits with `ctx.publish`. */
export interface EmitRequest {
  /** Event type of the new entry. */
  event: string;
  /** Its payload (a JSON object). */
  payload: Record<string, unknown>;
  /** Default: the source entry's `aggregateId`. */
  aggregateId?: string;
  /** Extra headers; `correlationId` and `causationId` are set by the service. */
  headers?: Record<string, string>;
  /** Target stream. Default: the `ROUTES` targets matching `event` (none: `publish` throws). */
  stream?: string;
}

/** What a handler gets besides the event. */
export interface HandlerContext {
  /** Deliveries of this entry so far, as counted by Redis (1 on first delivery). */
  readonly deliveries: number;
  /** Logger whose lines carry the entry's correlation id. */
  readonly logger: HandlerLogger;
  /** Aborted when the handler's `timeoutMs` passes or the service gives up at shutdown. */
  readonly signal: AbortSignal;
  /**
   * Emits an entry. Nothing is written at once: the settle writes it with the
   * acknowledgement, only when that takes effect, so a failed, timed-out or
   * lost delivery emits nothing and a successful one emits exactly once.
   * Throws (synchronously) when no target stream can be found.
   */
  publish(entry: EmitRequest): Promise<void>;
}

/** A stream event whose payload has the type `P`. */
export type TypedEvent<P> = Omit<StreamEvent, "payload"> & { payload: P };

/** What every handler definition has. */
export interface HandlerSpec<P> {
  /** Event type, or a glob pattern (`order.*`). */
  event: string;
  /** Past it, `ctx.signal` aborts and the delivery fails (retried, then dead-lettered). */
  timeoutMs?: number;
  /** At most this many runs at once (besides `HANDLER_CONCURRENCY` for all). */
  concurrency?: number;
  /** Handles one event; throwing means failure. */
  handle(event: TypedEvent<P>, ctx: HandlerContext): void | Promise<void>;
}

/** A handler made by `defineHandler`. */
export interface HandlerDefinition<P = Record<string, unknown>> extends HandlerSpec<P> {
  /** Validates the payload before `handle`; a payload that fails is dead-lettered at once. */
  payload?: z.ZodType<P>;
}

/**
 * A definition of any payload type, as a registry holds them: each was
 * type-checked where `defineHandler` made it; the dispatcher validates the
 * payload at run time before calling it.
 */
// deno-lint-ignore no-explicit-any
export type AnyHandlerDefinition = HandlerDefinition<any>;

/** The payload type of entries without a schema. */
export type AnyPayload = Record<string, unknown>;

/**
 * Defines a handler. With `payload` (a zod schema), `handle` gets the parsed
 * payload with the schema's type, and a payload that fails the schema goes to
 * the dead-letter stream at once with an error starting `payload invalid:`.
 * @throws {TypeError} when `event` is empty or `handle` is not a function.
 * @throws {RangeError} when `timeoutMs` or `concurrency` is not a positive integer.
 */
export function defineHandler<S extends z.ZodType>(
  spec: HandlerSpec<z.output<S>> & { payload: S },
): HandlerDefinition<z.output<S>>;
export function defineHandler(
  spec: HandlerSpec<AnyPayload> & { payload?: undefined },
): HandlerDefinition<AnyPayload>;
export function defineHandler(
  spec: HandlerSpec<unknown> & { payload?: z.ZodType },
): HandlerDefinition<unknown> {
  if (typeof spec.event !== "string" || spec.event.length === 0) {
    throw new TypeError("defineHandler: event must be a non-empty string");
  }
  if (typeof spec.handle !== "function") {
    throw new TypeError(`defineHandler(${spec.event}): handle must be a function`);
  }
  for (const key of ["timeoutMs", "concurrency"] as const) {
    const v = spec[key];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
      throw new RangeError(`defineHandler(${spec.event}): ${key} must be a positive integer`);
    }
  }
  return Object.freeze({ ...spec });
}

/** Why a payload failed its schema, naming the failing fields: `payload invalid: total: …`. */
export function describePayloadError(error: z.ZodError): string {
  const parts = error.issues.slice(0, 10).map((issue) => {
    const path = issue.path.map(String).join(".");
    return path ? `${path}: ${issue.message}` : issue.message;
  });
  if (error.issues.length > 10) parts.push(`and ${error.issues.length - 10} more`);
  return `payload invalid: ${parts.join("; ")}`;
}
