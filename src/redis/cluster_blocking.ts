/**
 * The dedicated blocking connections of a Redis Cluster link (README "Redis Cluster and
 * partitioned streams"): one per slot read, to the master serving that slot, so a blocked
 * XREADGROUP never delays another command nor another slot's read. Each knows its CLIENT ID so
 * that a read can be woken (CLIENT UNBLOCK on another connection to the same node). They are the
 * service's own `BlockingClient`s (blocking_client.ts), as on a single Redis.
 */
import { withDeadline } from "../clock.ts";
import type { Config } from "../config.ts";
import { errorInfo } from "../log.ts";
import { slotOf } from "../stream/keys.ts";
import { BlockingClient } from "./blocking_client.ts";
import type { Address } from "./client.ts";
import { NotConnectedError } from "./errors.ts";
import { destroyQuietly } from "./sentinel.ts";

/** One blocking connection: its client, its CLIENT ID, where it is connected. */
interface Blocking {
  client: BlockingClient;
  ready: Promise<BlockingClient>;
  id: Promise<number>;
  address: Address;
  /** A key of its slot (the first stream read), to route CLIENT UNBLOCK. */
  key: string;
}

/** Sends a command routed by `key` (to the master serving its slot). */
export type RoutedSend = (key: string, args: string[]) => Promise<unknown>;

/** Blocking connections by slot. */
export class BlockingPool {
  readonly #redis: Config["redis"];
  readonly #clientName: string;
  readonly #bySlot = new Map<number, Blocking>();

  constructor(redis: Config["redis"], clientName: string) {
    this.#redis = redis;
    this.#clientName = clientName;
  }

  /** A key of each slot that has a connection. */
  keys(): string[] {
    return [...this.#bySlot.values()].map((b) => b.key);
  }

  /**
   * The connection for `key`'s slot to `master` (created on first use, with the same TLS and ACL
   * settings; replaced when closed or when the slot's master changed).
   * @throws {NotConnectedError} when it cannot connect.
   */
  async get(key: string, master: Address): Promise<BlockingClient> {
    const slot = slotOf(key);
    const known = this.#bySlot.get(slot);
    if (
      known && known.client.isOpen && known.address.host === master.host &&
      known.address.port === master.port
    ) {
      return await known.ready;
    }
    if (known) this.drop(known.client);
    const client = new BlockingClient(this.#redis, master, `${this.#clientName}:blk:${slot}`);
    const ready = withDeadline(client.connect(), this.#redis.connectTimeoutMs).then(() => client);
    const id = ready.then(async (c) => Number(await c.sendCommand(["CLIENT", "ID"])));
    id.catch(() => {});
    const entry: Blocking = { client, ready, id, address: master, key };
    this.#bySlot.set(slot, entry);
    client.on("error", () => {
      if (this.#bySlot.get(slot) === entry) this.#bySlot.delete(slot);
      destroyQuietly(client);
    });
    try {
      return await ready;
    } catch (err) {
      if (this.#bySlot.get(slot) === entry) this.#bySlot.delete(slot);
      destroyQuietly(client);
      throw new NotConnectedError(errorInfo(err).message, { cause: err });
    }
  }

  /**
   * Wakes a blocked read of `key`'s slot (CLIENT UNBLOCK through `send`, routed by a key of the
   * slot to the master the read blocks on): it returns as if it timed out. Nothing happens when
   * no read is blocked there; a failure is ignored (the read wakes at BLOCK_MS anyway).
   */
  async unblock(key: string, send: RoutedSend): Promise<void> {
    const entry = this.#bySlot.get(slotOf(key));
    if (!entry) return;
    try {
      const id = String(await entry.id);
      await withDeadline(send(entry.key, ["CLIENT", "UNBLOCK", id]), 1000);
    } catch {
      // The read wakes at BLOCK_MS anyway.
    }
  }

  /** Closes `client` and forgets it (a failed read: the next one connects afresh). */
  drop(client: BlockingClient): void {
    for (const [slot, entry] of this.#bySlot) {
      if (entry.client === client) this.#bySlot.delete(slot);
    }
    destroyQuietly(client);
  }

  /** Closes every connection. */
  closeAll(): void {
    const clients = [...this.#bySlot.values()].map((b) => b.client);
    this.#bySlot.clear();
    for (const c of clients) destroyQuietly(c);
  }
}
