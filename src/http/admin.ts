/**
 * Admin routes (API key when configured): GET /admin/streams and
 * POST /admin/dlq/replay, both through `StreamAdmin`.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { StreamAdmin } from "../stream/admin.ts";

/** What the admin routes need of `StreamAdmin`. */
export type AdminPort = Pick<StreamAdmin, "report" | "replay">;
import { apiKeyAuth } from "./middleware.ts";
import { type AppEnv, BodyTooLargeError, jsonError, readBodyLimited } from "./types.ts";

/** Dependencies of the admin routes. */
export interface AdminOptions {
  admin: AdminPort;
  streams: readonly string[];
  apiKey?: string;
}

const replaySchema = z.object({
  stream: z.string().min(1),
  count: z.number().int().min(1).max(10_000).optional(),
});

/** The admin route group. */
export function adminRoutes(options: AdminOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("/admin/*", apiKeyAuth(options.apiKey));
  app.get("/admin/streams", async (c) => {
    const streams = await Promise.all(options.streams.map((s) => options.admin.report(s)));
    return c.json({ streams });
  });
  app.post(
    "/admin/dlq/replay",
    async (c) => {
      let body: unknown;
      try {
        body = JSON.parse(await readBodyLimited(c.req.raw, 10_240));
      } catch (err) {
        if (err instanceof BodyTooLargeError) {
          return jsonError(c, 413, "payload_too_large", err.message);
        }
        return jsonError(c, 400, "invalid_json", "Body is not valid JSON");
      }
      const parsed = replaySchema.safeParse(body);
      if (!parsed.success) {
        return jsonError(
          c,
          400,
          "validation_failed",
          "Body does not match the schema",
          parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
        );
      }
      if (!options.streams.includes(parsed.data.stream)) {
        return jsonError(c, 400, "validation_failed", "Unknown stream", [{
          path: "stream",
          message: `must be one of the consumed streams: ${options.streams.join(", ")}`,
        }]);
      }
      const ids = await options.admin.replay(parsed.data.stream, parsed.data.count ?? 100);
      return c.json({ success: true, stream: parsed.data.stream, replayed: ids.length, ids });
    },
  );
  return app;
}
