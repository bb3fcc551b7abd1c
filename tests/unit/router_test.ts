/**
 * Unit tests of event routing: `globMatcher` of src/glob.ts (`*`, `?`, literal
 * dots and regex metacharacters), `parseRoutes` of src/config/routes.ts (valid
 * rules and each kind of bad rule) and `Router.targets` of src/stream/router.ts
 * (several matching rules, dedupe, rule order).
 */
import { parseRoutes } from "../../src/config/routes.ts";
import { globMatcher } from "../../src/glob.ts";
import { Router } from "../../src/stream/router.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

Deno.test("globMatcher() * matches any run of characters, dots included", () => {
  const m = globMatcher("order.*");
  assert(m("order.created"));
  assert(m("order.item.added"));
  assert(m("order."));
  assert(!m("order"));
  assert(!m("orders.created"));
  assert(globMatcher("*")("anything.at:all"));
  assert(globMatcher("*.created")("user.created"));
  assert(!globMatcher("*.created")("user.created.v2"));
});

Deno.test("globMatcher() ? matches exactly one character", () => {
  const m = globMatcher("v?.ready");
  assert(m("v1.ready"));
  assert(m("vx.ready"));
  assert(!m("v.ready"));
  assert(!m("v12.ready"));
});

Deno.test("globMatcher() treats dots literally", () => {
  assert(!globMatcher("order.*")("orderXcreated"));
  assert(!globMatcher("a.b")("aXb"));
  assert(globMatcher("a.b")("a.b"));
  assert(!globMatcher("a.?")("aXc"));
});

Deno.test("globMatcher() treats regex metacharacters in patterns literally", () => {
  for (const p of ["a+b", "(x)", "a|b", "[ab]", "^a$", "a{2}", "a\\d", "$x"]) {
    assert(globMatcher(p)(p), `${p} matches itself`);
    assert(globMatcher(`${p}*`)(`${p}-tail`), `${p}* matches ${p}-tail`);
  }
  assert(!globMatcher("a+b*")("aab"));
  assert(!globMatcher("a|b*")("a"));
  assert(!globMatcher("[ab]*")("a"));
  assert(!globMatcher("a\\d*")("a1"));
});

Deno.test("parseRoutes() reads comma-separated pattern=>stream rules", () => {
  assertEquals(parseRoutes("order.*=>orders,*=>audit"), [
    { pattern: "order.*", target: "orders" },
    { pattern: "*", target: "audit" },
  ]);
  assertEquals(parseRoutes(" user.? => users:v2 , , x:y-z_1=>t "), [
    { pattern: "user.?", target: "users:v2" },
    { pattern: "x:y-z_1", target: "t" },
  ]);
});

Deno.test("parseRoutes() returns a message for bad rules", () => {
  const cases: [string, string][] = [
    ["order.*", "is not pattern=>stream"],
    ["a=>b=>c", "is not pattern=>stream"],
    ["bad pattern=>x", "is not an event pattern"],
    ["a+b=>x", "is not an event pattern"],
    ["=>x", "is not an event pattern"],
    ["a=>", "is not a stream name"],
    ["a=>two words", "is not a stream name"],
    ["", "at least one"],
    [" , ", "at least one"],
    ["ok=>fine,broken", "broken"],
  ];
  for (const [text, message] of cases) {
    const r = parseRoutes(text);
    assertEquals(typeof r, "string", `${JSON.stringify(text)} should be rejected`);
    assertStringIncludes(r as string, message);
  }
});

Deno.test("Router.targets() lists every matching rule's target once, in rule order", () => {
  const router = new Router([
    { pattern: "order.*", target: "orders" },
    { pattern: "*", target: "audit" },
    { pattern: "order.created", target: "orders" },
    { pattern: "order.created", target: "billing" },
    { pattern: "user.*", target: "users" },
  ]);
  assertEquals(router.targets("order.created"), ["orders", "audit", "billing"]);
  assertEquals(router.targets("order.paid"), ["orders", "audit"]);
  assertEquals(router.targets("user.x"), ["audit", "users"]);
  assertEquals(router.targets("other"), ["audit"]);
  // A second look (cached) answers the same.
  assertEquals(router.targets("order.created"), ["orders", "audit", "billing"]);
  assertEquals(router.allTargets(), ["orders", "audit", "billing", "users"]);
  assertEquals(router.empty, false);
});

Deno.test("Router.targets() is empty without rules or without a match", () => {
  const none = new Router([]);
  assertEquals(none.empty, true);
  assertEquals(none.targets("order.created"), []);
  assertEquals(new Router([{ pattern: "a.*", target: "x" }]).targets("b.c"), []);
});
