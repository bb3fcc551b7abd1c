/**
 * Event-type glob patterns, pure: used by `ROUTES` (configuration and router)
 * and by handler registration. `*` matches any run of characters (dots
 * included), `?` one character; everything else is literal, so `order.*`
 * matches `order.created`.
 */

const PATTERN_RE = /^[A-Za-z0-9_.:*?-]{1,100}$/;

/** True when `pattern` is a valid event pattern: `[A-Za-z0-9_.:-]` with `*` and `?`, 1–100 long. */
export function isEventPattern(pattern: string): boolean {
  return PATTERN_RE.test(pattern);
}

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
