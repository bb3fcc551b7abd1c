/**
 * The diagnostic handlers, registered only with `DIAGNOSTIC_EVENTS=true`
 * (README, "Stream entries"): they let operators and outside tests exercise
 * retries, dead-lettering, claiming, the shutdown budget, typed payloads,
 * timeouts and exactly-once emits end to end.
 */
import { z } from "npm:zod@^4.6.7";
import { delay } from "../clock.ts";
import { type AnyHandlerDefinition, defineHandler } from "./handler_api.ts";
import type { HandlerRegistry } from "./handlers.ts";

/** Most a `diagnostic.sleep` waits. */
export const MAX_DIAGNOSTIC_SLEEP_MS = 120_000;

/** Most entries one `diagnostic.emit` publishes. */
export const MAX_DIAGNOSTIC_EMITS = 1000;

const finite = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) ? v : undefined;

/** `diagnostic.fail`: throws on its first `payload.failTimes` deliveries (all when absent). */
export const diagnosticFail = defineHandler({
  event: "diagnostic.fail",
  handle(event, { deliveries }) {
    const limit = finite(event.payload.failTimes) ?? Infinity;
    if (deliveries <= limit) throw new Error(`diagnostic.fail: failing delivery ${deliveries}`);
  },
});

/** `diagnostic.sleep`: waits `payload.ms` (capped at 120 s), then succeeds. */
export const diagnosticSleep = defineHandler({
  event: "diagnostic.sleep",
  async handle(event, { signal }) {
    const ms = finite(event.payload.ms) ?? 0;
    await delay(Math.max(0, Math.min(ms, MAX_DIAGNOSTIC_SLEEP_MS)), signal);
    if (signal.aborted) throw new Error("diagnostic.sleep: aborted by shutdown");
  },
});

/**
 * `diagnostic.emit`: publishes `payload.count` entries (event
 * `diagnostic.emitted`, payload `{i, of}`) to `payload.stream`, then throws
 * when this is one of its first `payload.failTimes` deliveries (default 0).
 */
export const diagnosticEmit = defineHandler({
  event: "diagnostic.emit",
  payload: z.object({
    count: z.number().int().min(0).max(MAX_DIAGNOSTIC_EMITS),
    stream: z.string().min(1),
    failTimes: z.number().int().min(0).optional(),
  }),
  async handle(event, ctx) {
    const { count, stream, failTimes = 0 } = event.payload;
    for (let i = 0; i < count; i++) {
      await ctx.publish({ stream, event: "diagnostic.emitted", payload: { i, of: count } });
    }
    if (ctx.deliveries <= failTimes) {
      throw new Error(`diagnostic.emit: failing delivery ${ctx.deliveries} after emitting`);
    }
  },
});

/** `diagnostic.typed`: requires a payload `{"n": number}`. */
export const diagnosticTyped = defineHandler({
  event: "diagnostic.typed",
  payload: z.object({ n: z.number() }),
  handle(event, { logger }) {
    logger.debug("diagnostic.typed n={n}", { n: event.payload.n });
  },
});

/** `diagnostic.hang`: `timeoutMs` 1000, waits until aborted. */
export const diagnosticHang = defineHandler({
  event: "diagnostic.hang",
  timeoutMs: 1000,
  async handle(_event, { signal }) {
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    throw new Error("diagnostic.hang: aborted");
  },
});

/** Every diagnostic handler. */
export const DIAGNOSTIC_HANDLERS: readonly AnyHandlerDefinition[] = [
  diagnosticFail,
  diagnosticSleep,
  diagnosticEmit,
  diagnosticTyped,
  diagnosticHang,
];

/** Registers every diagnostic handler in `registry`. */
export function registerDiagnosticHandlers(registry: HandlerRegistry): void {
  for (const def of DIAGNOSTIC_HANDLERS) registry.add(def);
}
