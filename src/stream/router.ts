/**
 * The router, pure: which target streams an event type is forwarded to under
 * the `ROUTES` rules (parsed by src/config/routes.ts; globs of src/glob.ts).
 */
import type { Route } from "../config/routes.ts";
import { globMatcher } from "../glob.ts";

/**
 * Resolves target streams per event type, caching the answer per type, since
 * a service sees few distinct event types and many entries.
 */
export class Router {
  readonly #rules: { match: (e: string) => boolean; target: string }[];
  readonly #cache = new Map<string, readonly string[]>();
  #lastEvent?: string;
  #lastTargets: readonly string[] = [];

  constructor(routes: readonly Route[]) {
    this.#rules = routes.map((r) => ({ match: globMatcher(r.pattern), target: r.target }));
  }

  /** True when no rule is configured. */
  get empty(): boolean {
    return this.#rules.length === 0;
  }

  /** Distinct targets of every rule matching `event`, in rule order. */
  targets(event: string): readonly string[] {
    // Most entries have the type of the entry before: a comparison, not a lookup (which would
    // hash the type, a new string per entry).
    if (event === this.#lastEvent) return this.#lastTargets;
    let t = this.#cache.get(event);
    if (t === undefined) {
      t = [...new Set(this.#rules.filter((r) => r.match(event)).map((r) => r.target))];
      if (this.#cache.size < 10_000) this.#cache.set(event, t);
    }
    this.#lastEvent = event;
    this.#lastTargets = t;
    return t;
  }

  /** Every target stream of every rule. */
  allTargets(): string[] {
    return [...new Set(this.#rules.map((r) => r.target))];
  }
}
