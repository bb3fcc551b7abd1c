/**
 * Redis CPU of the SETTLE script per forwarded entry, and where it goes: runs the script on
 * batches of 100 fresh entries (200-byte payload), each op a ROUTES copy to one target, and
 * prints `usec_per_call / 100` of EVALSHA (INFO commandstats) for the whole script and for
 * the script cut short after each of its phases (the arguments alone, the ops parsed, the
 * XRANGE, each entry's XACK and copies).
 * Not part of `deno task bench`; run with `deno run --allow-all bench/settle_script.ts
 * [--rounds 100] [--given-headers]` (the copies' new headers sent, not made by the script).
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { startRedis } from "../tests/support/redis_server.ts";
import { entryFields } from "./load.ts";
import { encodeSettle, ForwardCopy } from "../src/stream/consumer/settle_codec.ts";
import { SETTLE } from "../src/stream/consumer/settle_script.ts";
import { LuaScript } from "../src/stream/scripts.ts";
import { parseFlags } from "./support.ts";

const flags = parseFlags(Deno.args, { rounds: 100, "given-headers": false });
const shared = new ForwardCopy(["out"]);
const BATCH = 100;

/** The script returning early at the line that starts with `marker` (after running `first`). */
function cutAt(marker: string, first = ""): string {
  if (!SETTLE.source.includes(marker)) throw new Error(`SETTLE has no "${marker}"`);
  return SETTLE.source.replace(marker, `${first}if true then return {} end\n${marker}`);
}

const variants: [string, string][] = [
  ["args only", cutAt("local ops = {}")],
  ["ops parsed", cutAt("-- 1. The other ops' entries pending")],
  ["+ XRANGE (the ids from its rows)", cutAt("local acks, nacks, nres")],
  ["+ per entry XACK, copies written (XADD)", cutAt("-- 4. The other ops")],
  ["whole script (+ checkpoint)", SETTLE.source],
];

await using cleanup = new Cleanup();
const redis = cleanup.use(await startRedis());
const c = await redis.client();
for (const [name, source] of variants) {
  const script = new LuaScript(source);
  await c.sendCommand(["FLUSHALL"]);
  await c.sendCommand(["XGROUP", "CREATE", "t", "g", "0", "MKSTREAM"]);
  await c.sendCommand(["CONFIG", "RESETSTAT"]);
  let seq = 0;
  for (let round = 0; round < flags.rounds; round++) {
    const multi = c.multi();
    for (let i = 0; i < BATCH; i++) {
      const fields = entryFields(seq++, 1000, undefined, 200);
      multi.addCommand(["XADD", "t", "*", ...Object.entries(fields).flat()]);
    }
    await multi.exec();
    const reply = await c.sendCommand([
      "XREADGROUP",
      "GROUP",
      "g",
      "manual",
      "COUNT",
      String(BATCH),
      "STREAMS",
      "t",
      ">",
    ]) as [string, [string, string[]][]][];
    // As the service forwards these entries (their headers field is the JSON of its parse):
    // the script makes the copies' headers; `--given-headers` sends them instead.
    const ops = reply[0][1].map(([id]) => ({
      id,
      copy: flags["given-headers"]
        ? new ForwardCopy(["out"], `{"correlationId":"c","sourceStream":"t","sourceId":"${id}"}`)
        : shared,
    }));
    const { keys, args } = encodeSettle({
      stream: "t",
      checkpointKey: "t:checkpoint:g",
      group: "g",
      consumer: "manual",
      now: new Date().toISOString(),
      dedupTtlS: 60,
    }, ops);
    // The test client is a node-redis client like the service's; only its type differs.
    await script.run(c as unknown as Parameters<LuaScript["run"]>[0], keys, args);
  }
  const info = String(await c.sendCommand(["INFO", "commandstats"]));
  const row = info.split("\n").find((l) => l.startsWith("cmdstat_evalsha:")) ?? "";
  const usec = Number(/usec_per_call=([\d.]+)/.exec(row)?.[1]);
  console.log(`${name.padEnd(42)} ${(usec / BATCH).toFixed(2)} µs of Redis CPU per entry`);
}
