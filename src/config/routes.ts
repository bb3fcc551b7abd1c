/**
 * The `ROUTES` syntax (`pattern=>stream,…`), pure: parsing and checking the
 * rules. Matching entries against them is the router's job
 * (src/stream/router.ts); both use the globs of src/glob.ts.
 */
import { isEventPattern } from "../glob.ts";

/** One forwarding rule: entries whose event matches `pattern` go to `target`. */
export interface Route {
  pattern: string;
  target: string;
}

const TARGET_RE = /^[^\s,=>]{1,256}$/;

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
    if (!isEventPattern(pattern)) {
      return `"${pattern}" is not an event pattern ([A-Za-z0-9_.:-] with * and ?)`;
    }
    if (!TARGET_RE.test(target)) return `"${target}" is not a stream name`;
    routes.push({ pattern, target });
  }
  return routes.length ? routes : "must hold at least one pattern=>stream rule";
}
