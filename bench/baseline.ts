/**
 * The benchmark's reference: a minimal hand-written node-redis (RESP2) consumer loop, run as its
 * own process by bench/main.ts. XREADGROUP COUNT n BLOCK (bench/main.ts passes 1000, as the
 * outside harness of the performance issue does), a no-op handler per entry, then one
 * XACK for the whole batch; with `--forward <stream>` the XACK and one XADD per entry to that
 * stream go in one MULTI/EXEC (what the service does with ROUTES, minus everything else).
 *
 * Usage: deno run --allow-net --allow-env bench/baseline.ts --port P --stream S --group G
 *   [--consumer C] [--forward T] [--count 100] [--block 2000]
 * Prints "READY" once the group exists; runs until SIGTERM/SIGINT.
 *
 * @module
 */

import { createClient } from "@redis/client";
import { parseFlags } from "./support.ts";

type RawEntry = [string, string[]];
type ReadReply = [string, RawEntry[]][] | null;

/** The no-op handler: gets each entry as a message object, as a typical handler would. */
function handle(_id: string, _message: Record<string, string>): void {}

function toRecord(flat: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

async function main(): Promise<void> {
  const flags = parseFlags(Deno.args, {
    host: "127.0.0.1",
    port: 0,
    stream: "",
    group: "",
    consumer: "baseline-1",
    forward: "",
    count: 100,
    block: 2000,
  });
  if (!flags.port || !flags.stream || !flags.group) {
    throw new Error("--port, --stream and --group are required");
  }
  const client = createClient({ RESP: 2, socket: { host: flags.host, port: flags.port } });
  client.on("error", (err: unknown) => console.error(`redis error: ${err}`));
  await client.connect();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => {
      client.destroy();
      Deno.exit(0);
    });
  }
  try {
    await client.sendCommand(["XGROUP", "CREATE", flags.stream, flags.group, "0", "MKSTREAM"]);
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith("BUSYGROUP"))) throw err;
  }
  console.log("READY");

  const read = [
    "XREADGROUP",
    "GROUP",
    flags.group,
    flags.consumer,
    "COUNT",
    String(flags.count),
    "BLOCK",
    String(flags.block),
    "STREAMS",
    flags.stream,
    ">",
  ];
  while (true) {
    const reply = await client.sendCommand(read) as ReadReply;
    if (!reply) continue;
    const entries = reply[0][1];
    if (entries.length === 0) continue;
    const ids: string[] = [];
    for (const [id, flat] of entries) {
      handle(id, toRecord(flat));
      ids.push(id);
    }
    if (flags.forward) {
      const multi = client.multi().addCommand(["XACK", flags.stream, flags.group, ...ids]);
      for (const [, flat] of entries) multi.addCommand(["XADD", flags.forward, "*", ...flat]);
      await multi.exec();
    } else {
      await client.sendCommand(["XACK", flags.stream, flags.group, ...ids]);
    }
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (err) {
    console.error(`baseline failed: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
