/**
 * HTTP side of tracing: with `OTEL_DENO=true`, `Deno.serve` already makes a SERVER span per
 * request (continuing a caller's `traceparent`) and keeps it active while the app runs, so the
 * publish span of `/trigger-test-event` is its child. This middleware only names that span
 * after the matched route (`POST /trigger-test-event`) and sets `http.route`, which Deno
 * cannot know. Registered only when tracing is enabled.
 *
 * @module
 */
import type { MiddlewareHandler } from "npm:hono@^4.13.19";
import type { Tracing } from "../tracing.ts";
import type { AppEnv } from "./types.ts";

/** Options of `requestSpan`. */
export interface RequestSpanOptions {
  tracing: Tracing;
  /** Route patterns worth naming the span after; other paths keep Deno's name (the method). */
  routes: ReadonlySet<string>;
}

/** Names the active server span `<METHOD> <route>` and sets `http.route`. */
export function requestSpan(options: RequestSpanOptions): MiddlewareHandler<AppEnv> {
  return async function requestSpanMiddleware(c, next) {
    // Taken before `next()`: the handler may make spans of its own active meanwhile.
    const span = options.tracing.activeSpan();
    try {
      await next();
    } finally {
      const route = c.req.routePath;
      if (span && options.routes.has(route)) {
        span.setAttribute("http.route", route);
        span.updateName(`${c.req.method} ${route}`);
      }
    }
  };
}
