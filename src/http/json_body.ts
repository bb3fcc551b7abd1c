/**
 * Reading a JSON request body, the same way for every route that takes one
 * (`POST /trigger-test-event`, `POST /admin/dlq/replay`): at most
 * `MAX_JSON_BODY_BYTES` (413), `application/json` when not empty (415), valid
 * JSON (400 `invalid_json`) matching a zod schema (400 `validation_failed`
 * with `details`). An empty body reads as `{}`.
 */
import type { Context } from "npm:hono@^4.13.19";
import type { z } from "npm:zod@^4.6.7";
import { type AppEnv, jsonError } from "./types.ts";

/** Largest accepted JSON body, in bytes (10 KB). */
export const MAX_JSON_BODY_BYTES = 10_240;

/** Raised by `readBodyLimited` when the body is over the limit. */
export class BodyTooLargeError extends Error {
  /** @param limit the limit in bytes */
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

const JSON_TYPE_RE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i;

/** What `readJsonBody` gives: the parsed value, or the error answer to return. */
export type JsonBodyResult<T> = { ok: true; value: T } | { ok: false; response: Response };

/** One `details` item of a 400 answer. */
export interface ValidationDetail {
  path: string;
  message: string;
}

/** The 400 `validation_failed` answer with `details`. */
export function validationFailed(
  c: Context<AppEnv>,
  details: ValidationDetail[],
  message = "Body does not match the schema",
): Response {
  return jsonError(c, 400, "validation_failed", message, details);
}

/**
 * Reads the request body of `c` as JSON and validates it with `schema`.
 * `maxBytes` defaults to `MAX_JSON_BODY_BYTES`.
 */
export async function readJsonBody<S extends z.ZodType>(
  c: Context<AppEnv>,
  schema: S,
  maxBytes: number = MAX_JSON_BODY_BYTES,
): Promise<JsonBodyResult<z.output<S>>> {
  let text: string;
  try {
    text = await readBodyLimited(c.req.raw, maxBytes);
  } catch (err) {
    if (!(err instanceof BodyTooLargeError)) throw err;
    return { ok: false, response: jsonError(c, 413, "payload_too_large", err.message) };
  }
  let body: unknown = {};
  if (text.trim().length > 0) {
    if (!JSON_TYPE_RE.test(c.req.header("content-type") ?? "")) {
      return {
        ok: false,
        response: jsonError(c, 415, "unsupported_media_type", "Body must be application/json"),
      };
    }
    try {
      body = JSON.parse(text);
    } catch {
      return { ok: false, response: jsonError(c, 400, "invalid_json", "Body is not valid JSON") };
    }
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      response: validationFailed(
        c,
        parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
      ),
    };
  }
  return { ok: true, value: parsed.data };
}
