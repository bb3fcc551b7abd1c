/**
 * Creating one node-redis client as the service uses it: RESP2, no offline
 * queue, no reconnect of its own (the connection manager owns reconnects),
 * TLS from the PEM files (read on every connect, so renewed certificates are
 * picked up), TCP keep-alive. (The blocking reads have a client of their own on a single Redis:
 * `blocking_client.ts`.)
 */
import type { createClient, RedisClientOptions } from "npm:@redis/client@^5.12.1";
import nodeRedisClient from "npm:@redis/client@^5.12.1/dist/lib/client/index.js";
import { type Config, readTlsFiles } from "../config.ts";

/** The node-redis client (RESP2) as this service creates it: no method per Redis command. */
export type RedisClient =
  & Pick<
    ReturnType<typeof createClient>,
    "sendCommand" | "connect" | "close" | "destroy" | "on" | "isOpen" | "isReady"
  >
  & {
    /** PING; resolves "PONG". */
    ping(): Promise<string>;
  };

/**
 * The client class: node-redis' base client, with no method per Redis command.
 * `createClient(options)` (and `factory`) builds a class with one method per command (two
 * classes: the client's and its MULTI's), which allocated ~13 MB while the service started;
 * those survived minor GCs long enough to push V8 into growing the young generation to its
 * largest size before the first entry was read, ~16 MB more RSS from then on (bench/RESULTS.md).
 * The service sends every command through `sendCommand`, except PING below.
 */
const BaseClient = nodeRedisClient.default as unknown as new (
  options: RedisClientOptions,
) => Omit<RedisClient, "ping">;

class LeanClient extends BaseClient {
  ping(): Promise<string> {
    return this.sendCommand(["PING"]) as Promise<string>;
  }
}

/** A Redis server address. */
export interface Address {
  host: string;
  port: number;
}

/**
 * A new, not yet connected client for `address`, shown as `name` in CLIENT
 * LIST; `timeoutMs` is node-redis' own per-command timeout (none when undefined).
 */
export function newClient(
  r: Config["redis"],
  address: Address,
  name: string,
  timeoutMs: number | undefined,
): RedisClient {
  const tls = r.tls.enabled
    ? {
      tls: true as const,
      servername: isIp(address.host) ? undefined : address.host,
      ...readTlsFiles(r.tls),
    }
    : {};
  // keepAlive/noDelay apply to TLS sockets too (node-redis passes them to
  // net.connect under tls.connect); its TLS option type just omits them.
  const socket = {
    host: address.host,
    port: address.port,
    connectTimeout: r.connectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelay: 5000,
    noDelay: true,
    reconnectStrategy: false as const,
    ...tls,
  } as RedisClientOptions["socket"];
  const options: RedisClientOptions = {
    socket,
    username: r.username,
    password: r.password,
    name: name.replace(/[^\x21-\x7e]/g, "_"),
    RESP: 2,
    disableOfflineQueue: true,
    disableClientInfo: true,
    commandOptions: timeoutMs ? { timeout: timeoutMs } : undefined,
  };
  const client: RedisClient = new LeanClient(options);
  // Errors surface through the commands and the listener the manager adds on
  // success; this one keeps an early socket error from being an unhandled event.
  client.on("error", () => {});
  return client;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}
