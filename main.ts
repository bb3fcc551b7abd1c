/**
 * The service's entry point: `createService` (src/service.ts) with the
 * default handler, and the diagnostic handlers when DIAGNOSTIC_EVENTS=true.
 * `main.ts healthcheck` answers Docker's HEALTHCHECK instead (exit 0 when
 * /health/ready answers 200). Teams add their own handlers through `mod.ts`
 * (README, "Writing handlers").
 */
import { createService, healthcheck } from "./src/service.ts";

if (import.meta.main) {
  if (Deno.args[0] === "healthcheck") Deno.exit(await healthcheck());
  await createService().run();
}
