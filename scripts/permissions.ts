// The permission flags of the service, read from the `start` task of deno.json: the one place
// they are written. `deno task dev` (scripts/dev.ts) and the end-to-end tests
// (tests/support/service.ts) run main.ts with exactly these flags; a test checks that the
// `compile` task (the Dockerfile's binary) uses the same ones.

import denoJson from "../deno.json" with { type: "json" };

/** Flags of a `deno run` / `deno compile` command line that grant or deny permissions. */
const PERMISSION_FLAG_RE = /^--(allow|deny)-[a-z-]+(=.*)?$|^--no-prompt$/;

/**
 * The permission flags (`--allow-*`, `--deny-*`, `--no-prompt`) of a task's command line, in
 * order. Throws when the command line grants everything (`-A`, `--allow-all`).
 */
export function permissionFlags(commandLine: string): string[] {
  const words = commandLine.trim().split(/\s+/);
  if (words.some((w) => w === "-A" || w === "--allow-all")) {
    throw new Error(`"${commandLine}" grants every permission; list them instead`);
  }
  return words.filter((w) => PERMISSION_FLAG_RE.test(w));
}

/** The permission flags of deno.json's `start` task. */
export function startPermissionFlags(): string[] {
  return permissionFlags(denoJson.tasks.start);
}
