/**
 * Admin routes (API key when configured): GET /admin/streams,
 * GET /admin/partitions and POST /admin/dlq/replay, all through `StreamAdmin`
 * (a partitioned stream stands for its partition keys). The replay body follows
 * the same rules as the trigger's (`json_body.ts`: 415, 413, 400).
 */
import { Hono } from "npm:hono@^4.13.19";
import type { StreamAdmin } from "../stream/admin.ts";
import { readJsonBody, validationFailed } from "./json_body.ts";
import { apiKeyAuth } from "./middleware.ts";
import { DEFAULT_REPLAY_COUNT, replayRequestSchema } from "./schemas.ts";
import type { AppEnv } from "./types.ts";

/** What the admin routes need of `StreamAdmin`. */
export type AdminPort =
  & Pick<StreamAdmin, "report" | "replay">
  & Partial<Pick<StreamAdmin, "partitions" | "keysOf" | "partitionCount">>;

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
  const admin = options.admin;
  app.get("/admin/streams", auth, async (c) => {
    const keys = options.streams.flatMap((s) => admin.keysOf?.(s) ?? [s]);
    const streams = await Promise.all(keys.map((s) => admin.report(s)));
    return c.json({ streams });
  });
  app.get("/admin/partitions", auth, async (c) => {
    const partitions = admin.partitionCount ?? 1;
    const streams = partitions > 1 && admin.partitions
      ? await Promise.all(options.streams.map(async (stream) => ({
        stream,
        partitions: await admin.partitions!(stream),
      })))
      : [];
    return c.json({ partitions, streams });
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
