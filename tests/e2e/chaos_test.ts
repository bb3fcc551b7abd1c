/**
 * The 60-second chaos soak (`deno task chaos` with its defaults, through the same module): two
 * spawned instances with ROUTES, a producer at 200 entries/s with poison mixed in, SIGKILLs of
 * instances, Redis SIGKILLed and restarted on its append-only file, Redis and an instance frozen
 * with SIGSTOP. Fails on any entry lost or written twice, on poison forwarded, and on a group that
 * does not drain. Set CHAOS_SEED to replay a run (the seed is printed).
 *
 * @module
 */

import { parseChaosArgs } from "../../chaos/main.ts";
import { FAULT_KINDS } from "../../chaos/faults.ts";
import { formatReport } from "../../chaos/report.ts";
import { runSoak } from "../../chaos/soak.ts";
import { assert, assertEquals } from "../support/assert.ts";

Deno.test("chaos soak (60 s): nothing lost, nothing duplicated through kills, restarts and pauses", async () => {
  const seed = Deno.env.get("CHAOS_SEED");
  const { help: _help, ...options } = parseChaosArgs(seed ? ["--seed", seed] : []);
  assertEquals(options.seconds, 60, "the default soak of `deno task chaos` lasts 60 s");
  console.log(`chaos soak, seed ${options.seed} (replay: CHAOS_SEED=${options.seed})`);
  const result = await runSoak({ ...options, log: console.log });
  console.log(formatReport(result));

  assertEquals(result.problems, [], `seed ${options.seed}: ${result.problems.join("; ")}`);
  // Proof that the soak had teeth: every kind of fault happened, and entries of every kind were
  // produced, handled and dead-lettered.
  assertEquals(
    [...new Set(result.faults.map((f) => f.kind))].sort(),
    [...FAULT_KINDS].sort(),
    "every kind of fault was injected",
  );
  const t = result.tally;
  assert(t.acknowledged >= 1_000, `only ${t.acknowledged} XADDs acknowledged`);
  assert(t.expectedPoison > 0, "poison entries were produced");
  assertEquals(t.poisonDeadLettered, t.expectedPoison, "every poison entry was dead-lettered");
  assertEquals(t.distinct + t.deadLettered, t.expected, "every entry forwarded or dead-lettered");
});
