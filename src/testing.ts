/**
 * A test kit for handlers, without Redis: `testHandler(handler, event)` runs
 * one delivery of a handler made by `defineHandler` as the service would
 * (payload schema first, then `handle` with its timeout) and returns what it
 * emitted with `ctx.publish`, what it logged, and what it threw. Teams
 * unit-test their handlers with it in milliseconds (README, "Writing handlers").
 */
import { parseRoutes } from "./config/routes.ts";
import { buildEmit } from "./stream/consumer/entry_context.ts";
import type { StreamEvent } from "./stream/entry.ts";
import {
  type AnyHandlerDefinition,
  describePayloadError,
  type EmitRequest,
  type HandlerContext,
  type HandlerLogger,
} from "./stream/handler_api.ts";
import { Router } from "./stream/router.ts";

/** The entry a test delivers; everything but the payload has a default. */
export interface TestEvent {
  /** Default: the handler's `event` (required when that is a pattern). */
  event?: string;
  payload?: Record<string, unknown>;
  /** Default `"test-aggregate"`. */
  aggregateId?: string;
  /** Default `{ correlationId: "test-correlation" }`. */
  headers?: Record<string, string>;
  /** Default `"1-0"`. */
  id?: string;
  /** Default `"test-stream"`. */
  stream?: string;
}

/** Options of `testHandler`. */
export interface TestHandlerOptions {
  /** The delivery count the handler sees. Default 1. */
  deliveries?: number;
  /** `ROUTES` for `ctx.publish` without a stream, e.g. `"invoice.*=>invoices"`. Default none. */
  routes?: string;
  /** `serviceName` of emitted entries. Default `"test-service"`. */
  serviceName?: string;
}

/** An entry the handler emitted. */
export interface EmittedEntry {
  stream: string;
  event: string;
  aggregateId: string;
  payload: Record<string, unknown>;
  headers: Record<string, string>;
  /** Every field as the service would write it. */
  fields: Record<string, string>;
}

/** A line the handler logged. */
export interface LoggedLine {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  properties?: Record<string, unknown>;
}

/** What one delivery did. */
export interface TestResult {
  /**
   * The entries the service would write with the acknowledgement: empty when
   * the delivery failed (`error`), as in the service.
   */
  emitted: EmittedEntry[];
  logs: LoggedLine[];
  /** What the handler threw, its timeout, or the payload's schema failure. */
  error?: Error;
  /** True when the payload failed the schema: the service dead-letters such an entry at once. */
  payloadInvalid: boolean;
}

/** Runs one delivery of `handler` for `input`. Never throws for the handler's own failures. */
export async function testHandler(
  handler: AnyHandlerDefinition,
  input: TestEvent = {},
  options: TestHandlerOptions = {},
): Promise<TestResult> {
  const eventType = input.event ?? handler.event;
  if (/[*?]/.test(eventType)) {
    throw new TypeError(`testHandler: give the event type (${handler.event} is a pattern)`);
  }
  const routes = options.routes ? parseRoutes(options.routes) : [];
  if (typeof routes === "string") throw new TypeError(`testHandler: routes ${routes}`);
  const payload = input.payload ?? {};
  const headers = input.headers ?? { correlationId: "test-correlation" };
  const source: StreamEvent = {
    stream: input.stream ?? "test-stream",
    id: input.id ?? "1-0",
    event: eventType,
    aggregateId: input.aggregateId ?? "test-aggregate",
    payload,
    headers,
    fields: {
      event: eventType,
      aggregateId: input.aggregateId ?? "test-aggregate",
      payload: JSON.stringify(payload),
      headers: JSON.stringify(headers),
    },
  };
  const logs: LoggedLine[] = [];
  const result: TestResult = { emitted: [], logs, payloadInvalid: false };
  let event = source;
  if (handler.payload) {
    const parsed = handler.payload.safeParse(payload);
    if (!parsed.success) {
      result.error = new Error(describePayloadError(parsed.error));
      result.payloadInvalid = true;
      return result;
    }
    event = { ...source, payload: parsed.data as Record<string, unknown> };
  }
  const emitSettings = {
    router: new Router(routes),
    serviceName: options.serviceName ?? "test-service",
    timezone: "UTC",
  };
  const emitted: EmittedEntry[] = [];
  const expiry = new AbortController();
  const line = (level: LoggedLine["level"]) => (m: string, p?: Record<string, unknown>) =>
    void logs.push(p === undefined ? { level, message: m } : { level, message: m, properties: p });
  const logger: HandlerLogger = {
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  };
  const ctx: HandlerContext = {
    deliveries: options.deliveries ?? 1,
    logger,
    signal: expiry.signal,
    publish(request: EmitRequest) {
      const emit = buildEmit(request, event, emitSettings);
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < emit.fields.length; i += 2) {
        fields[emit.fields[i]] = emit.fields[i + 1];
      }
      for (const stream of emit.targets) {
        emitted.push({
          stream,
          event: fields.event,
          aggregateId: fields.aggregateId,
          payload: JSON.parse(fields.payload),
          headers: JSON.parse(fields.headers),
          fields,
        });
      }
      return Promise.resolve();
    },
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const run = (async () => await handler.handle(event, ctx))();
    if (handler.timeoutMs) {
      run.catch(() => {});
      await Promise.race([
        run,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const err = new Error(`timed out after ${handler.timeoutMs} ms (timeoutMs)`);
            expiry.abort(err);
            reject(err);
          }, handler.timeoutMs);
        }),
      ]);
    } else await run;
    result.emitted = emitted;
  } catch (err) {
    result.error = err instanceof Error ? err : new Error(String(err));
  } finally {
    clearTimeout(timer);
  }
  return result;
}
