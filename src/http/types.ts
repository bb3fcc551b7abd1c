/**
 * Shared HTTP types: the Hono environment (typed context variables and the
 * connection info passed by `Deno.serve`), the validated trigger request, and
 * the JSON error body helper. Imports nothing from the route modules, so every
 * route module can import it without a circle.
 */
import type { Context } from "npm:hono@^4.13.19";
import type { ContentfulStatusCode } from "npm:hono@^4.13.19/utils/http-status";

/** The validated trigger request, passed from validation to publishing. */
export interface TriggerRequest {
  event?: string;
  aggregateId?: string;
  data?: Record<string, unknown>;
  stream: string;
  idempotencyKey?: string;
}

/** Hono environment of the app. */
export type AppEnv = {
  Variables: { correlationId: string; trigger: TriggerRequest };
  Bindings: { remoteAddr?: Deno.Addr };
};

/** Answers `{"success":false,"error":code,"message"}` (plus `details`) with `status`. */
export function jsonError(
  c: Context<AppEnv>,
  status: ContentfulStatusCode,
  error: string,
  message: string,
  details?: unknown,
): Response {
  const body: Record<string, unknown> = { success: false, error, message };
  if (details !== undefined) body.details = details;
  return c.json(body, status);
}
