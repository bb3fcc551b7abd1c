/**
 * Admin routes (API key when configured): GET /admin/streams and
 * POST /admin/dlq/replay, both through `StreamAdmin`. The replay body follows
 * the same rules as the trigger's (`json_body.ts`: 415, 413, 400).
 */
import { Hono } from "npm:hono@^4.13.19";
import type { StreamAdmin } from "../stream/admin.ts";
import { readJsonBody, validationFailed } from "./json_body.ts";
import { apiKeyAuth } from "./middleware.ts";
import { DEFAULT_REPLAY_COUNT, replayRequestSchema } from "./schemas.ts";
import type { AppEnv } from "./types.ts";

/** What the admin routes need of `StreamAdmin`. */
export type AdminPort = Pick<StreamAdmin, "report" | "replay">;

/** Dependencies of the admin routes. */
export interface AdminOptions {
  admin: AdminPort;
  streams: readonly string[];
  apiKey?: string;
}

/** The admin route group. */
export function adminRoutes(options: AdminOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const auth = apiKeyAuth(options.apiKey);
  app.get("/admin/streams", auth, async (c) => {
    const streams = await Promise.all(options.streams.map((s) => options.admin.report(s)));
    return c.json({ streams });
  });
  app.post("/admin/dlq/replay", auth, async (c) => {
    const body = await readJsonBody(c, replayRequestSchema);
    if (!body.ok) return body.response;
    const { stream, count = DEFAULT_REPLAY_COUNT } = body.value;
    if (!options.streams.includes(stream)) {
      return validationFailed(c, [{
        path: "stream",
        message: `must be one of the consumed streams: ${options.streams.join(", ")}`,
      }]);
    }
    const ids = await options.admin.replay(stream, count);
    return c.json({ success: true, stream, replayed: ids.length, ids });
  });
  return app;
}
