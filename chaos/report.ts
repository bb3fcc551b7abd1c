/**
 * Renders a chaos soak's findings (see `soak.ts`) as text: the faults with their recovery times,
 * the counts of where entries went, then the verdict.
 *
 * @module
 */

import { fmt, table } from "../bench/support.ts";
import type { SoakResult } from "./soak.ts";

/** The report of `result`, ready to print. */
export function formatReport(result: SoakResult): string {
  const t = result.tally;
  const o = result.options;
  const ms = (v: number | null) => v === null ? "-" : fmt(v);
  const faults = table([
    [
      "#",
      "fault",
      "target",
      "at s",
      "held ms",
      "noticed ms",
      "ready ms",
      "resumed ms",
      "caught up ms",
    ],
    ...result.faults.map((f, i) => [
      String(i + 1),
      f.kind,
      f.target,
      fmt(f.atMs / 1000, 1),
      fmt(f.heldMs),
      ms(f.noticedMs),
      ms(f.readyMs),
      ms(f.resumedMs),
      ms(f.caughtUpMs),
    ]),
  ]);
  const counts = table([
    ["count", "value"],
    ["acknowledged XADDs", fmt(t.acknowledged)],
    ["unknown XADDs (no reply)", fmt(t.unknown)],
    ["  of which in the source stream", fmt(t.unknownLanded)],
    ["rejected XADDs (error reply)", fmt(t.rejected)],
    ["acknowledged, absent from source", fmt(t.ackedNotInSource)],
    ["expected (of which poison)", `${fmt(t.expected)} (${fmt(t.expectedPoison)})`],
    ["copies in out", fmt(t.copies)],
    ["distinct sourceIds in out", fmt(t.distinct)],
    ["duplicates", fmt(t.duplicates)],
    ["missing", fmt(t.missing)],
    ["still pending or unread", fmt(t.unsettled)],
    ["dead-lettered", fmt(t.deadLettered)],
    ["  poison dead-lettered", fmt(t.poisonDeadLettered)],
    ["  well-formed dead-lettered", fmt(t.goodDeadLettered)],
    ["poison forwarded", fmt(t.poisonForwarded)],
    ["pending at end", fmt(t.pending)],
    ["lag at end", t.lag === null ? "unknown" : fmt(t.lag)],
    ["producer ticks skipped", fmt(result.skipped)],
    ["unexpected instance exits", fmt(result.unexpectedExits.length)],
  ]);
  const lines = [
    `chaos soak: seed ${o.seed}, ${fmt(o.rate)}/s for ${fmt(result.producedMs / 1000, 1)} s, ` +
    `poison ${fmt(o.poisonRatio * 100, 1)} %${o.hostile ? ", hostile entries" : ""}, ` +
    `CLAIM_IDLE_MS ${o.claimIdleMs}, CONNECTION_TIMEOUT ${o.connectionTimeoutMs}`,
    "",
    faults,
    "",
    counts,
    "",
    `drained ${
      result.drainMs === null ? "NOT within the deadline" : `in ${fmt(result.drainMs)} ms`
    }`,
  ];
  const failures = Object.entries(result.xaddFailures);
  if (failures.length > 0) {
    lines.push(`failed XADDs by reason: ${failures.map(([r, n]) => `${r}… ${n}`).join("; ")}`);
  }
  for (const w of result.warnings) lines.push(`warning: ${w}`);
  if (result.passed) lines.push("PASS: nothing lost, nothing duplicated");
  else for (const p of result.problems) lines.push(`FAIL: ${p}`);
  return lines.join("\n");
}
