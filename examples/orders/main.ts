/**
 * The orders example service: the service with this folder's handlers.
 * Run from the repository root with the service's variables, e.g.
 * `REDIS_HOST=localhost REDIS_PORT=6379 SERVICE_NAME=orders STREAM=orders
 *  deno run --allow-net --allow-env --allow-read examples/orders/main.ts`.
 */
import { createService } from "../../mod.ts";
import { handlers } from "./handlers.ts";

if (import.meta.main) await createService({ handlers }).run();
