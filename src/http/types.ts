/**
 * Shared HTTP types: the Hono environment (typed context variables and the
 * connection info passed by `Deno.serve`) and the JSON error body helper.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { TriggerRequest } from "./trigger.ts";

/** Hono environment of the app. */
export type AppEnv = {
  Variables: { correlationId: string; trigger: TriggerRequest };
  Bindings: { remoteAddr?: Deno.Addr };
};

/** Raised by `readBodyLimited` when the body is over the limit. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Body is over ${limit} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/**
 * Reads a request body as text, refusing more than `limit` bytes (checked on
 * Content-Length first, then while streaming, so a lying header cannot pass).
 * @throws {BodyTooLargeError}
 */
export async function readBodyLimited(req: Request, limit: number): Promise<string> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new BodyTooLargeError(limit);
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

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
