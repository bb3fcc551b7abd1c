/**
 * The fresh-machine start (README, "Quick start"), as far as a CI run can take it: the setup step
 * of `scripts/bootstrap.sh` run in a scratch HOME with a PATH that has Node.js and npm but neither
 * `deno` nor `redis-server`. It must install Deno 2.9.6 through npm (into that HOME's npm prefix,
 * for real) and ask apt-get for redis-server and openssl (apt-get is a stand-in here that records
 * the call and links the machine's binaries, since packages cannot be removed from this machine).
 * A second run finds everything and installs nothing.
 *
 * @module
 */

import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { REPO_ROOT } from "../support/service.ts";

/** Tools the script and npm use, linked into the scratch PATH (deno and redis-server are not). */
const TOOLS = [
  "bash",
  "sh",
  "env",
  "node",
  "npm",
  "sed",
  "grep",
  "id",
  "dirname",
  "head",
  "cut",
  "cat",
  "mkdir",
  "rm",
  "ln",
  "uname",
  "tr",
  "chmod",
  "cp",
  "mv",
  "tar",
  "gzip",
  "ls",
];

async function which(tool: string): Promise<string | undefined> {
  const out = await new Deno.Command("bash", { args: ["-c", `command -v ${tool}`] }).output();
  const path = new TextDecoder().decode(out.stdout).trim();
  return out.success && path.startsWith("/") ? path : undefined;
}

const HAS_NPM = (await which("npm")) !== undefined;

Deno.test({
  name: "scripts/bootstrap.sh install installs Deno through npm and redis-server through apt-get",
  ignore: !HAS_NPM,
  async fn() {
    await using cleanup = new Cleanup();
    const scratch = await Deno.makeTempDir({ prefix: "bootstrap-" });
    cleanup.add(() => Deno.remove(scratch, { recursive: true }));
    const bin = `${scratch}/bin`;
    const home = `${scratch}/home`;
    await Deno.mkdir(bin);
    await Deno.mkdir(home);
    for (const tool of TOOLS) {
      const path = await which(tool);
      if (path) await Deno.symlink(path, `${bin}/${tool}`);
    }
    const redisServer = await which("redis-server");
    const openssl = await which("openssl");
    assert(redisServer && openssl, "the machine has redis-server and openssl");
    const aptLog = `${scratch}/apt.log`;
    await Deno.writeTextFile(
      `${bin}/apt-get`,
      `#!/usr/bin/env bash
echo "apt-get $*" >> ${aptLog}
if [[ "$1" == install ]]; then
  for a in "$@"; do
    case "$a" in
      redis-server) ln -sf ${redisServer} ${bin}/redis-server ;;
      openssl) ln -sf ${openssl} ${bin}/openssl ;;
    esac
  done
fi
`,
    );
    await Deno.chmod(`${bin}/apt-get`, 0o755);
    // The machine's environment (proxies, CA bundles npm may need) with a scratch HOME and PATH.
    const env = {
      ...Deno.env.toObject(),
      PATH: bin,
      HOME: home,
      NPM_CONFIG_PREFIX: `${home}/.npm-global`,
      NPM_CONFIG_CACHE: `${home}/.npm`,
    };
    const run = async () => {
      const out = await new Deno.Command("bash", {
        args: [`${REPO_ROOT}/scripts/bootstrap.sh`, "install"],
        env,
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { code: out.code, text };
    };
    const first = await run();
    assertEquals(first.code, 0, first.text);
    assertStringIncludes(first.text, "installing deno@2.9.6 with npm");
    assertStringIncludes(first.text, "bootstrap: deno 2.9.6");
    const version = await new Deno.Command(`${home}/.npm-global/bin/deno`, { args: ["--version"] })
      .output();
    assertStringIncludes(new TextDecoder().decode(version.stdout), "deno 2.9.6");
    assertEquals(
      (await Deno.readTextFile(aptLog)).trim().split("\n"),
      ["apt-get update", "apt-get install -y --no-install-recommends redis-server openssl"],
    );

    // Everything is there now (deno in the npm prefix, which the script puts on PATH itself).
    await Deno.writeTextFile(aptLog, "");
    env.PATH = `${home}/.npm-global/bin:${bin}`;
    const second = await run();
    assertEquals(second.code, 0, second.text);
    assert(!second.text.includes("installing"), second.text);
    assertEquals(await Deno.readTextFile(aptLog), "", "apt-get not called again");
  },
});

Deno.test("scripts/bootstrap.sh without a known command prints its usage and exits 64", async () => {
  const out = await new Deno.Command("bash", {
    args: [`${REPO_ROOT}/scripts/bootstrap.sh`, "nonsense"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 64);
  assertStringIncludes(new TextDecoder().decode(out.stderr), "usage: bash scripts/bootstrap.sh");
});
