/**
 * Creating one node-redis client as the service uses it: RESP2, no offline
 * queue, no reconnect of its own (the connection manager owns reconnects),
 * TLS from the PEM files (read on every connect, so renewed certificates are
 * picked up), TCP keep-alive; and `enforceDeadlines`, which makes a client's
 * `sendCommand` keep its deadline itself.
 */
import type { createClient, RedisClientOptions } from "npm:@redis/client@^5.12.1";
import nodeRedisClient from "npm:@redis/client@^5.12.1/dist/lib/client/index.js";
import { DeadlineError, withDeadline } from "../clock.ts";
import { type Config, readTlsFiles } from "../config.ts";

/** A RESP2 node-redis client as this service creates it. */
export type RedisClient = ReturnType<typeof createClient>;

/**
 * Makes clients of one class. `createClient(options)` builds a class with a
 * method per Redis command for each distinct options object (it caches only
 * the last one), which took ~13 ms and ~14 MB of garbage per connection here
 * (two per connection pair, again on every reconnect); the class depends only
 * on the protocol version and the modules, scripts and functions (none).
 */
const makeClient = nodeRedisClient.default.factory({ RESP: 2 });

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
  const client = makeClient(options) as unknown as RedisClient;
  // Errors surface through the commands and the listener the manager adds on
  // success; this one keeps an early socket error from being an unhandled event.
  client.on("error", () => {});
  return client;
}

/**
 * Makes `client.sendCommand` (how the consumer sends its XREADGROUP BLOCK on
 * the blocking client) keep its deadline: the command's `timeout` option
 * (the consumer passes BLOCK_MS + CONNECTION_TIMEOUT), else `defaultMs`. When
 * it passes, the call rejects with a `DeadlineError` and `onExpired` is told,
 * so the connection is replaced instead of waiting on a hung Redis forever.
 * Only direct `sendCommand` calls on this object are covered; the command
 * client's deadlines are kept by `exec`.
 */
export function enforceDeadlines(
  client: RedisClient,
  defaultMs: number,
  onExpired: (err: DeadlineError) => void,
): void {
  const send = client.sendCommand.bind(client);
  const guarded = (args: Parameters<typeof send>[0], options?: Parameters<typeof send>[1]) =>
    withDeadline(send(args, options), options?.timeout ?? defaultMs).catch((err: unknown) => {
      if (err instanceof DeadlineError) onExpired(err);
      throw err;
    });
  // sendCommand is generic in its reply type only; the reply passes through unchanged.
  client.sendCommand = guarded as typeof send;
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}
