/**
 * `deno task start` loads `.env` with Deno's own `--env-file`; `deno task dev` reads it with
 * `parseEnvFile` of scripts/dev.ts. These tests run Deno itself on env files (a variable set
 * twice, comments, quotes, escapes, `$NAME` expansion, `.env.example`) and check that
 * `parseEnvFile` gives every variable the same value. Also: the permission flags both tasks
 * pass to the service come from the `start` task.
 */
import denoJson from "../../deno.json" with { type: "json" };
import { parseEnvFile } from "../../scripts/dev.ts";
import { permissionFlags, startPermissionFlags } from "../../scripts/permissions.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";
import { REPO_ROOT } from "../support/service.ts";

const PRINTER = `console.log(JSON.stringify(Deno.env.toObject()));`;

/** The variables Deno's `--env-file` sets from `text`, with `env` as the process environment. */
async function denoReads(
  text: string,
  env: Record<string, string>,
): Promise<Record<string, string>> {
  const dir = await Deno.makeTempDir({ prefix: "env-file-test-" });
  try {
    await Deno.writeTextFile(`${dir}/test.env`, text);
    await Deno.writeTextFile(`${dir}/print.ts`, PRINTER);
    const base: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
    };
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", "--allow-env", `--env-file=${dir}/test.env`, `${dir}/print.ts`],
      cwd: dir,
      clearEnv: true,
      env: { ...base, ...env },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    const all = JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, string>;
    // Only what the file set: drop the process environment we passed (unless the file changed it).
    for (const [k, v] of Object.entries({ ...base, ...env })) if (all[k] === v) delete all[k];
    return all;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What `deno task dev` passes: the file's variables, the process environment winning. */
function devReads(text: string, env: Record<string, string>): Record<string, string> {
  const { vars } = parseEnvFile(text, env);
  const out = { ...vars };
  for (const k of Object.keys(env)) delete out[k];
  return out;
}

const TRICKY = `# comment line
FIRST=one
FIRST=two
SPACED = spaced value  
TRAILING=unquoted # comment
HASH=a#b
SINGLE='single $FIRST # not a comment'
DOUBLE="double $FIRST and \${FIRST} # kept"
ESCAPES="esc \\$FIRST \\n \\t \\" \\\\ end"
DOLLAR=\\$FIRST
DOTTED=$FIRST.$FIRST
BRACED=\${FIRST}suffix
UNKNOWN=$NOPE-x
LONE=a$.b
FROM_PROCESS=\${PROC}
export EXPORTED=exported
MULTI="multi
line"
EMPTY=
EQUALS=a=b=c
QUOTED_COMMENT="x" # trailing
DEFAULTED=\${FIRST:-def}
PADDED=  "  padded  "  
OVERRIDDEN=from-file
`;

Deno.test("deno task dev reads an env file as deno task start does", async () => {
  const env = { PROC: "from-process", OVERRIDDEN: "from-env" };
  const deno = await denoReads(TRICKY, env);
  assertEquals(deno.FIRST, "one", "Deno: the first of two lines wins");
  assertEquals(devReads(TRICKY, env), deno);
});

Deno.test("a variable set twice keeps its first value, in dev as in start", async () => {
  const text = "SERVICE_NAME=first-name\nREDIS_PORT=6380\nSERVICE_NAME=second-name\n";
  const deno = await denoReads(text, {});
  assertEquals(deno, { SERVICE_NAME: "first-name", REDIS_PORT: "6380" });
  assertEquals(devReads(text, {}), deno);
  assertEquals(parseEnvFile(text).vars.SERVICE_NAME, "first-name");
});

Deno.test(".env.example reads the same in dev as in start", async () => {
  const text = await Deno.readTextFile(`${REPO_ROOT}/.env.example`);
  assertEquals(parseEnvFile(text).problems, []);
  assertEquals(devReads(text, {}), await denoReads(text, {}));
});

Deno.test("parseEnvFile() reports a line it cannot read, without its value", () => {
  const { vars, problems } = parseEnvFile('GOOD=1\nnot a variable\nOPEN="secret-value\n');
  assertEquals(vars, { GOOD: "1" });
  assertEquals(problems, [
    "line 2: expected KEY=VALUE",
    "line 3: missing closing quote for OPEN",
  ]);
});

Deno.test("dev runs the service with the start task's permission flags, and compile with the same", () => {
  const flags = startPermissionFlags();
  assertEquals(flags, permissionFlags(denoJson.tasks.start));
  assertEquals(permissionFlags(denoJson.tasks.compile), flags, "compile task (Dockerfile)");
  for (const f of flags) {
    if (!/^--(allow-(net|env|read)(=.*)?|no-prompt)$/.test(f)) {
      throw new Error(`unexpected permission flag ${f} in the start task`);
    }
  }
  assertThrows(() => permissionFlags("deno run -A main.ts"));
  assertThrows(() => permissionFlags("deno run --allow-all main.ts"));
  assertEquals(permissionFlags("deno run --allow-net=a:1 --env-file=.env --no-prompt x.ts"), [
    "--allow-net=a:1",
    "--no-prompt",
  ]);
});
