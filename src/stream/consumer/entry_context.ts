/**
 * What a handler gets besides the event: its delivery count, the abort
 * signal, and a logger carrying the entry's correlation id, made only if the
 * handler asks for it (most never log, and a child logger per entry costs).
 */
import type { Logger } from "../../log.ts";
import type { HandlerContext } from "../handlers.ts";

/** The context of one handler run. */
export class EntryContext implements HandlerContext {
  readonly deliveries: number;
  readonly signal: AbortSignal;
  readonly #base: Logger;
  readonly #correlationId: string | undefined;
  #logger?: Logger;

  constructor(
    deliveries: number,
    base: Logger,
    correlationId: string | undefined,
    signal: AbortSignal,
  ) {
    this.deliveries = deliveries;
    this.#base = base;
    this.#correlationId = correlationId;
    this.signal = signal;
  }

  get logger(): Logger {
    return this.#logger ??= this.#correlationId
      ? this.#base.with({ correlationId: this.#correlationId })
      : this.#base;
  }
}
