/**
 * Handler registry: handlers per event type, glob patterns allowed, exact
 * names winning over patterns and patterns going in order, and a default
 * handler for every other type (logs `manual_test` and `test_starters` at
 * INFO, others at DEBUG, and succeeds). A registered handler is resolved once
 * into what the dispatcher needs: the function, the schema, the timeout and a
 * concurrency limiter, and whether none of these applies (the fast path).
 */
import { getLogger } from "../log.ts";
import type { z } from "npm:zod@^4.6.7";
import type { StreamEvent } from "./entry.ts";
import { globMatcher } from "../glob.ts";
import type { AnyHandlerDefinition, HandlerContext } from "./handler_api.ts";

/** Handles one event; throwing means failure (the entry is retried or dead-lettered). */
export type Handler = (event: StreamEvent, ctx: HandlerContext) => void | Promise<void>;

/** At most `limit` holders at once; the others wait in order. */
export class Limiter {
  readonly limit: number;
  #held = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!(Number.isInteger(limit) && limit > 0)) {
      throw new RangeError("limit must be a positive integer");
    }
    this.limit = limit;
  }

  /** Holders now. */
  get held(): number {
    return this.#held;
  }

  /** Resolves once a place is held (at once when one is free). */
  acquire(): Promise<void> {
    if (this.#held < this.limit) {
      this.#held++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Gives a place back: to the first waiter, else free. */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#held = Math.max(0, this.#held - 1);
  }
}

/** A handler as the dispatcher runs it. */
export interface ResolvedHandler {
  handle: Handler;
  /** Validates the payload first. */
  schema?: z.ZodType;
  /** The run fails once this passes (ms). */
  timeoutMs?: number;
  /** Bounds the runs of this handler at once. */
  limiter?: Limiter;
  /** True when there is no schema, timeout or limit: the synchronous fast path applies. */
  simple: boolean;
  /**
   * True when running the handler for `event` would do nothing (the default handler when its
   * line would be dropped): the dispatcher then counts the entry as handled without calling
   * it, and without making its context (a few objects per entry at ~200,000 entries/s).
   */
  idle?: (event: StreamEvent) => boolean;
}

const LOUD_EVENTS = new Set(["manual_test", "test_starters"]);

/** The consumer's logger category, asked whether DEBUG lines are written at all. */
const consumerLog = getLogger("consumer");

/** True when the default handler's line for `event` would be dropped (DEBUG while not enabled). */
function quiet(event: StreamEvent): boolean {
  return !LOUD_EVENTS.has(event.event) && !consumerLog.isEnabledFor("debug");
}

/** The default handler: logs and succeeds. */
export const defaultHandler: Handler = (event, ctx) => {
  // A dropped DEBUG line costs nothing: not even the entry's child logger (`ctx.logger` makes
  // it, so it is read only past this line).
  if (quiet(event)) return;
  const loud = LOUD_EVENTS.has(event.event);
  const props = {
    event: event.event,
    aggregateId: event.aggregateId,
    id: event.id,
    stream: event.stream,
    deliveries: ctx.deliveries,
  };
  if (loud) ctx.logger.info("Received {event} {id}", props);
  else ctx.logger.debug("Received {event} {id}", props);
};

function resolved(handle: Handler): ResolvedHandler {
  return { handle, simple: true };
}

/** The default handler, idle for an event whose line would be dropped. */
const DEFAULT: ResolvedHandler = {
  handle: defaultHandler,
  simple: true,
  idle: quiet,
};

/** The runtime form of a definition. */
export function resolveDefinition(def: AnyHandlerDefinition): ResolvedHandler {
  // The payload's type is checked where the definition was made; here it is erased.
  const handle = def.handle as unknown as Handler;
  const limiter = def.concurrency ? new Limiter(def.concurrency) : undefined;
  return {
    handle,
    schema: def.payload as z.ZodType | undefined,
    timeoutMs: def.timeoutMs,
    limiter,
    simple: !def.payload && !def.timeoutMs && !limiter,
  };
}

/** Event types mapped to handlers. */
export class HandlerRegistry {
  readonly #exact = new Map<string, ResolvedHandler>();
  readonly #patterns: { match: (e: string) => boolean; handler: ResolvedHandler }[] = [];
  readonly #cache = new Map<string, ResolvedHandler>();
  readonly #names: string[] = [];
  #fallback: ResolvedHandler = DEFAULT;

  /** Registers `handler` for an event type or glob pattern (`order.*`). */
  on(pattern: string, handler: Handler): this {
    return this.#register(pattern, resolved(handler));
  }

  /** Registers a handler made by `defineHandler`. */
  add(definition: AnyHandlerDefinition): this {
    return this.#register(definition.event, resolveDefinition(definition));
  }

  /** Replaces the default handler. */
  fallback(handler: Handler): this {
    this.#fallback = resolved(handler);
    this.#cache.clear();
    return this;
  }

  /** The event types and patterns registered, in order. */
  get names(): readonly string[] {
    return this.#names;
  }

  /** The handler for `event`. */
  resolve(event: string): ResolvedHandler {
    let h = this.#cache.get(event);
    if (!h) {
      h = this.#exact.get(event) ?? this.#patterns.find((p) => p.match(event))?.handler ??
        this.#fallback;
      if (this.#cache.size < 10_000) this.#cache.set(event, h);
    }
    return h;
  }

  #register(pattern: string, handler: ResolvedHandler): this {
    if (!pattern) throw new TypeError("Pattern must not be empty");
    if (pattern.includes("*") || pattern.includes("?")) {
      this.#patterns.push({ match: globMatcher(pattern), handler });
    } else this.#exact.set(pattern, handler);
    this.#names.push(pattern);
    this.#cache.clear();
    return this;
  }
}
