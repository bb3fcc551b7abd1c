/**
 * Finding the master through Sentinel: each sentinel in turn is asked
 * `SENTINEL get-master-addr-by-name` on a short-lived connection, each step
 * under its own deadline, so an unreachable or hung sentinel only moves the
 * search on to the next one.
 */
import { createClient } from "npm:@redis/client@^5.12.1";
import { withDeadline } from "../clock.ts";
import type { HostPort } from "../config.ts";
import { errorInfo } from "../log.ts";

/** Most time one sentinel gets to connect or to answer (ms). */
const SENTINEL_DEADLINE_MS = 2000;

/**
 * The master's address as the first sentinel that knows `master` gives it.
 * @throws {Error} naming every sentinel's failure when none gave an address.
 */
export async function resolveSentinelMaster(
  nodes: readonly HostPort[],
  master: string,
  connectTimeoutMs: number,
): Promise<HostPort> {
  const connectMs = Math.min(connectTimeoutMs, SENTINEL_DEADLINE_MS);
  const errors: string[] = [];
  for (const node of nodes) {
    const client = createClient({
      socket: {
        host: node.host,
        port: node.port,
        connectTimeout: connectMs,
        reconnectStrategy: false,
      },
      RESP: 2,
      disableOfflineQueue: true,
      disableClientInfo: true,
    });
    client.on("error", () => {});
    try {
      await withDeadline(client.connect(), connectMs);
      const reply = await withDeadline(
        client.sendCommand(["SENTINEL", "get-master-addr-by-name", master]),
        SENTINEL_DEADLINE_MS,
      ) as string[] | null;
      if (reply && reply.length === 2) return { host: reply[0], port: Number(reply[1]) };
      errors.push(`${node.host}:${node.port} does not know master "${master}"`);
    } catch (err) {
      errors.push(`${node.host}:${node.port}: ${errorInfo(err).message}`);
    } finally {
      destroyQuietly(client); // an unreachable sentinel must not stop the loop
    }
  }
  throw new Error(`No sentinel gave a master address (${errors.join("; ")})`);
}

/** Closes `client` at once; no-op (instead of ClientClosedError) when it already closed. */
export function destroyQuietly(client: { isOpen: boolean; destroy(): void }): void {
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // already gone
  }
}
