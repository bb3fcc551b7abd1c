/**
 * Health: the probe routes, which only read a snapshot of state (the rules
 * that judge it are in src/health_state.ts) and so answer in well under
 * 100 ms whatever Redis does.
 */
import { Hono } from "npm:hono@^4.13.19";
import { evaluateHealth, type HealthSnapshot, readiness } from "../health_state.ts";
import type { AppEnv } from "./types.ts";

/** Source of snapshots (main wires it to the health state). */
export type HealthSource = () => HealthSnapshot;

/** The probe routes: /health/live, /health/ready, /health, /health-check. */
export function healthRoutes(source: HealthSource): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/health/live", (c) => c.text("OK", 200));
  app.get("/health/ready", (c) => {
    const s = source();
    const r = readiness(s);
    const timestamp = s.now.toISOString();
    if (r.ready) return c.json({ status: "ready", timestamp }, 200);
    return c.json({ status: "not_ready", reason: r.reason, timestamp }, 503);
  });
  app.get("/health", (c) => {
    const { status, body } = evaluateHealth(source());
    return c.json(body, status === 503 ? 503 : 200);
  });
  app.get("/health-check", (c) => {
    const r = readiness(source());
    return r.ready ? c.text("ok", 200) : c.text("not ok", 503);
  });
  return app;
}
