/**
 * `src/` and `mod.ts` import npm packages by full `npm:` specifiers, so that another project can
 * import `mod.ts` without this repository's import map (README, "Writing handlers"); the tests
 * use the import map of deno.json. Both must name the same versions.
 */
import { assert, assertEquals } from "../support/assert.ts";

const ROOT = new URL("../../", import.meta.url);

async function* sources(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* sources(url);
    else if (e.name.endsWith(".ts")) yield url;
  }
}

Deno.test("src/ and mod.ts import npm packages with the versions of deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))) as {
    imports: Record<string, string>;
  };
  const files = [new URL("mod.ts", ROOT)];
  for await (const f of sources(new URL("src/", ROOT))) files.push(f);
  const problems: string[] = [];
  let seen = 0;
  for (const file of files) {
    const text = await Deno.readTextFile(file);
    for (const m of text.matchAll(/from "([^"]+)"/g)) {
      const spec = m[1];
      if (spec.startsWith(".") || spec.startsWith("node:")) continue;
      const pkg = /^npm:(@?[^@/]+(?:\/[^@/]+)?)@([^/]+)/.exec(spec);
      const where = file.pathname.slice(ROOT.pathname.length);
      if (!pkg) {
        problems.push(`${where}: "${spec}" is not an npm: specifier with a version`);
        continue;
      }
      seen++;
      const mapped = config.imports[pkg[1]];
      if (mapped !== `npm:${pkg[1]}@${pkg[2]}`) {
        problems.push(`${where}: ${spec} but deno.json maps ${pkg[1]} to ${mapped}`);
      }
    }
  }
  assertEquals(problems, []);
  assert(seen > 10, `only ${seen} npm imports found`);
});
