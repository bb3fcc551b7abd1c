/**
 * Consumer groups: created at start (MKSTREAM, at STREAM_START_ID) and again
 * whenever Redis turns out to have lost one (`NOGROUP` from a read, or the
 * stats poller finding no group after a restart without persistence).
 */
import { errorInfo, type Logger } from "../../log.ts";
import type { RedisLink } from "../../redis/connection.ts";
import { ensureGroup } from "../group_ops.ts";

/** Options of `Groups`. */
export interface GroupsOptions {
  connection: RedisLink;
  streams: readonly string[];
  group: string;
  startId: string;
  logger: Logger;
}

/** True when `err` is Redis' `NOGROUP` reply. */
export function isNoGroup(err: unknown): boolean {
  return errorInfo(err).message.startsWith("NOGROUP");
}

/** Creates the consumer group on each stream when missing. */
export class Groups {
  readonly #o: GroupsOptions;

  constructor(options: GroupsOptions) {
    this.#o = options;
  }

  /** Creates the group on `stream` when missing. */
  async ensure(stream: string): Promise<void> {
    const o = this.#o;
    if (await ensureGroup(o.connection, stream, o.group, o.startId)) {
      o.logger.info("Created consumer group {group} on {stream} at {startId}", {
        group: o.group,
        stream,
        startId: o.startId,
      });
    }
  }

  /** Creates the group on every stream where it is missing; throws the first failure. */
  async ensureAll(): Promise<void> {
    for (const stream of this.#o.streams) await this.ensure(stream);
  }

  /** After a `NOGROUP` reply: creates the groups again, logging (not throwing) failures. */
  async recreate(cause: unknown): Promise<void> {
    const o = this.#o;
    o.logger.warn("Consumer group missing ({error}); creating it again", {
      error: errorInfo(cause).message,
    });
    for (const s of o.streams) {
      await this.ensure(s).catch((e) =>
        o.logger.error("Creating group failed: {error}", { error: errorInfo(e).message })
      );
    }
  }
}
