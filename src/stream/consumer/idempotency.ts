/**
 * The idempotency gate: an entry with `headers.idempotencyKey` runs only when
 * no entry with that key was processed (the processed mark is written by the
 * settle, atomically with the acknowledgement). Within this process the key
 * stays locked from the run until the entry settles, so a second entry with
 * the key waits for the first's outcome instead of racing it. This module is
 * the only writer of the set of keys in progress.
 */
import { errorInfo, type Logger } from "../../log.ts";
import type { RedisLink } from "../../redis/connection.ts";
import type { KeySchema } from "../keys.ts";
import type { Held } from "./in_flight.ts";

/** Options of `IdempotencyGate`. */
export interface IdempotencyGateOptions {
  connection: RedisLink;
  keys: KeySchema;
  logger: Logger;
}

/** What the gate decided for one entry. */
export type GateResult = "duplicate" | "ran";

/** Keys in progress and the processed-mark check. */
export class IdempotencyGate {
  readonly #conn: RedisLink;
  readonly #keys: KeySchema;
  readonly #log: Logger;
  readonly #inProgress = new Map<string, Promise<boolean>>();

  constructor(options: IdempotencyGateOptions) {
    this.#conn = options.connection;
    this.#keys = options.keys;
    this.#log = options.logger;
  }

  /** The processed mark of `h`'s idempotency key (which it must have). */
  markKey(h: Held): string {
    return this.#keys.dedup(h.stream, h.event!.headers.idempotencyKey);
  }

  /**
   * Runs `invoke` for `h` unless its key was processed (then resolves
   * "duplicate" without running it). `invoke` resolves true on success; the
   * key then stays locked until `unlock(h)` (called when `h` settles).
   */
  async run(h: Held, invoke: () => boolean | Promise<boolean>): Promise<GateResult> {
    const key = h.event!.headers.idempotencyKey;
    const lockKey = `${h.stream}\u0000${key}`;
    for (
      let earlier = this.#inProgress.get(lockKey);
      earlier;
      earlier = this.#inProgress.get(lockKey)
    ) {
      if (await earlier) return "duplicate";
    }
    let resolveKey!: (processed: boolean) => void;
    const promise = new Promise<boolean>((r) => (resolveKey = r));
    this.#inProgress.set(lockKey, promise);
    h.keyLock = { key: lockKey, promise };
    // Checked now, not when read: an entry with this key may have settled since.
    if (await this.#processedBefore(h)) {
      resolveKey(true);
      return "duplicate";
    }
    const ok = await invoke();
    // On success the lock stays until the entry is settled.
    if (!ok) this.unlock(h);
    resolveKey(ok);
    return "ran";
  }

  /** Releases `h`'s lock, if it holds one. */
  unlock(h: Held): void {
    if (h.keyLock && this.#inProgress.get(h.keyLock.key) === h.keyLock.promise) {
      this.#inProgress.delete(h.keyLock.key);
    }
    h.keyLock = undefined;
  }

  /** True when `h`'s idempotency key was already processed (false when Redis cannot tell). */
  async #processedBefore(h: Held): Promise<boolean> {
    try {
      const mark = await this.#conn.exec((c) => c.sendCommand(["GET", this.markKey(h)]));
      return mark != null;
    } catch (err) {
      // Not knowing, run the handler: at-least-once beats losing the entry.
      this.#log.warn("Idempotency check failed: {error}", { error: errorInfo(err).message });
      return false;
    }
  }
}
