/**
 * Event-type glob patterns and `ROUTES` rules (`pattern=>stream,…`), pure.
 * Patterns: `*` matches any run of characters (dots included), `?` one
 * character; everything else is literal. `order.*` matches `order.created`.
 */

/** One forwarding rule: entries whose event matches `pattern` go to `target`. */
export interface Route {
  pattern: string;
  target: string;
}

const PATTERN_RE = /^[A-Za-z0-9_.:*?-]{1,100}$/;
const TARGET_RE = /^[^\s,=>]{1,256}$/;

/** Compiles a glob into a function that tests event types. */
export function globMatcher(pattern: string): (event: string) => boolean {
  if (!pattern.includes("*") && !pattern.includes("?")) return (e) => e === pattern;
  if (pattern === "*") return () => true;
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(
    /\?/g,
    ".",
  );
  const re = new RegExp(`^${source}$`);
  return (e) => re.test(e);
}

/**
 * Parses `ROUTES`. Returns the rules, or a message saying what is wrong.
 * @example parseRoutes("order.*=>orders,*=>audit")
 */
export function parseRoutes(text: string): Route[] | string {
  const routes: Route[] = [];
  for (const raw of text.split(",")) {
    const rule = raw.trim();
    if (!rule) continue;
    const parts = rule.split("=>");
    if (parts.length !== 2) return `"${rule}" is not pattern=>stream`;
    const pattern = parts[0].trim();
    const target = parts[1].trim();
    if (!PATTERN_RE.test(pattern)) {
      return `"${pattern}" is not an event pattern ([A-Za-z0-9_.:-] with * and ?)`;
    }
    if (!TARGET_RE.test(target)) return `"${target}" is not a stream name`;
    routes.push({ pattern, target });
  }
  return routes.length ? routes : "must hold at least one pattern=>stream rule";
}

/**
 * Resolves target streams per event type, caching the answer per type, since
 * a service sees few distinct event types and many entries.
 */
export class Router {
  readonly #rules: { match: (e: string) => boolean; target: string }[];
  readonly #cache = new Map<string, readonly string[]>();

  constructor(routes: readonly Route[]) {
    this.#rules = routes.map((r) => ({ match: globMatcher(r.pattern), target: r.target }));
  }

  /** True when no rule is configured. */
  get empty(): boolean {
    return this.#rules.length === 0;
  }

  /** Distinct targets of every rule matching `event`, in rule order. */
  targets(event: string): readonly string[] {
    let t = this.#cache.get(event);
    if (t === undefined) {
      t = [...new Set(this.#rules.filter((r) => r.match(event)).map((r) => r.target))];
      if (this.#cache.size < 10_000) this.#cache.set(event, t);
    }
    return t;
  }

  /** Every target stream of every rule. */
  allTargets(): string[] {
    return [...new Set(this.#rules.map((r) => r.target))];
  }
}
