/**
 * `deno task chaos`: the chaos soak of `soak.ts` from the command line. Prints progress, then the
 * report (`report.ts`), and exits 1 when anything was lost or duplicated (0 otherwise).
 *
 * Flags: --minutes N (1; fractions allowed), --rate N entries/s (200), --seed N (random; printed,
 * so a run can be replayed), --poison RATIO (0.03), --gentle (leaves out the hostile poison:
 * entries over the service's limits, mixed in by default), --drain-timeout S (120), --claim-idle-ms MS (2000), --connection-timeout-ms
 * MS (3000).
 *
 * @module
 */

import { parseFlags } from "../bench/support.ts";
import { formatReport } from "./report.ts";
import { randomSeed } from "./rng.ts";
import { runSoak, type SoakOptions } from "./soak.ts";

const USAGE =
  `Usage: deno task chaos [--minutes N] [--rate N] [--seed N] [--poison RATIO] [--gentle]
                       [--drain-timeout S] [--claim-idle-ms MS] [--connection-timeout-ms MS]`;

/**
 * The soak's options from command-line `args` (see the module documentation for the flags and
 * their defaults); `help` is true when `--help` was given. Throws on an unknown or bad flag.
 */
export function parseChaosArgs(
  args: readonly string[],
): Omit<SoakOptions, "signal" | "log"> & { help: boolean } {
  const flags = parseFlags(args, {
    minutes: 1,
    rate: 200,
    seed: "",
    poison: 0.03,
    gentle: false,
    "drain-timeout": 120,
    "claim-idle-ms": 2_000,
    "connection-timeout-ms": 3_000,
    help: false,
  });
  if (!/^\d*$/.test(flags.seed)) throw new Error(`--seed must be an integer >= 0`);
  if (!(flags.rate > 0)) throw new Error(`--rate must be above 0`);
  if (!(flags.minutes > 0)) throw new Error(`--minutes must be above 0`);
  if (flags.poison > 1) throw new Error(`--poison must be between 0 and 1`);
  return {
    seconds: flags.minutes * 60,
    rate: flags.rate,
    seed: flags.seed === "" ? randomSeed() : Number(flags.seed) >>> 0,
    poisonRatio: flags.poison,
    hostile: !flags.gentle,
    drainTimeoutMs: flags["drain-timeout"] * 1000,
    claimIdleMs: flags["claim-idle-ms"],
    connectionTimeoutMs: flags["connection-timeout-ms"],
    gapMs: [1_000, 5_000],
    help: flags.help,
  };
}

if (import.meta.main) {
  let parsed: ReturnType<typeof parseChaosArgs>;
  try {
    parsed = parseChaosArgs(Deno.args);
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : err}\n${USAGE}`);
    Deno.exit(2);
  }
  const { help, ...options } = parsed;
  if (help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  console.log(
    `chaos soak, seed ${options.seed} (replay: deno task chaos --seed ${options.seed} ` +
      `--minutes ${options.seconds / 60} --rate ${options.rate})`,
  );
  // Ctrl-C ends the soak early; everything started is still stopped.
  const abort = new AbortController();
  const onSignal = () => {
    console.log("interrupted: stopping the soak");
    abort.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const result = await runSoak({ ...options, signal: abort.signal, log: console.log });
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  console.log(`\n${formatReport(result)}`);
  Deno.exit(result.passed && !abort.signal.aborted ? 0 : 1);
}
