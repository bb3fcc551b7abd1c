/**
 * The service as a library (README, "Writing handlers"):
 *
 * ```ts
 * import { createService, defineHandler, z } from "./mod.ts";
 *
 * const orderCreated = defineHandler({
 *   event: "order.created",
 *   payload: z.object({ total: z.number() }),
 *   async handle(event, ctx) {
 *     await ctx.publish({ stream: "invoices", event: "invoice.requested", payload: { total: event.payload.total } });
 *   },
 * });
 *
 * await createService({ handlers: [orderCreated] }).run();
 * ```
 *
 * @module
 */
export { z } from "npm:zod@^4.6.7";
export { createService, type Service, type ServiceOptions } from "./src/service.ts";
export {
  type AnyHandlerDefinition,
  defineHandler,
  type EmitRequest,
  type HandlerContext,
  type HandlerDefinition,
  type HandlerLogger,
  type HandlerSpec,
  type TypedEvent,
} from "./src/stream/handler_api.ts";
export type { StreamEvent } from "./src/stream/entry.ts";
export {
  type EmittedEntry,
  type LoggedLine,
  type TestEvent,
  testHandler,
  type TestHandlerOptions,
  type TestResult,
} from "./src/testing.ts";
