/**
 * The chaos soak (issue 8, part 3), black-box against the spawned service: one `redis-server`
 * with an append-only file fsynced on every write, two service instances (same group, different
 * `CONSUMER_NAME`, `ROUTES='*=>out'`, short `CLAIM_IDLE_MS`) each kept running by a supervisor, a
 * producer at a fixed rate with a few % of poison entries, and faults at random intervals from a
 * seeded generator (see `faults.ts`). At the end: stop the producer, wait until the group has
 * nothing pending and no lag, then count where every entry went (see `tally.ts`).
 *
 * `runSoak` is what `deno task chaos` (`chaos/main.ts`) and `tests/e2e/chaos_test.ts` run. It
 * stops everything it started before it returns or throws.
 *
 * @module
 */

import { Cleanup } from "../tests/support/cleanup.ts";
import { type RedisServer, startRedis } from "../tests/support/redis_server.ts";
import {
  checkedLag,
  groupInfo,
  isDrained,
  pendingEntries,
  readStream,
} from "../tests/support/streams.ts";
import { type SupervisedExit, superviseService } from "../tests/support/supervisor.ts";
import { sleep, waitFor } from "../tests/support/wait.ts";
import {
  FAULT_KINDS,
  type FaultKind,
  type FaultRecord,
  type FaultTargets,
  inject,
  measureRecovery,
  within,
} from "./faults.ts";
import { Producer } from "./producer.ts";
import { Rng } from "./rng.ts";
import { problems, type Tally, tally, warnings } from "./tally.ts";

/** Source stream, consumer group and route target of the soak. */
export const STREAM = "event-stream";
export const GROUP = "chaos";
export const OUT = "out";
/** The dead-letter stream (the service's default for {@linkcode STREAM}). */
export const DLQ = `${STREAM}:dlq`;

/** Options of {@linkcode runSoak}. */
export interface SoakOptions {
  /** How long the producer runs and faults are injected, in seconds (extended until every kind of fault happened once). */
  seconds: number;
  /** Entries per second. */
  rate: number;
  /** Seed of the fault schedule, the entry mix and the instance names. */
  seed: number;
  /** Share of poison entries, 0..1. */
  poisonRatio: number;
  /** Mix in entries over the service's limits (more than 1,000 fields, over 1 MB). */
  hostile: boolean;
  /** Deadline for the group to drain after the producer stopped, in ms. */
  drainTimeoutMs: number;
  /** `CLAIM_IDLE_MS` of the instances. */
  claimIdleMs: number;
  /** `CONNECTION_TIMEOUT` of the instances (Redis is paused for this + 3 s). */
  connectionTimeoutMs: number;
  /** Pause between the recovery from one fault and the next fault: [min, max] ms. */
  gapMs: [number, number];
  /** Stops the soak early (then the group is not waited for). Default: none. */
  signal?: AbortSignal;
  /** Receives progress lines. Default: none. */
  log?: (line: string) => void;
}

/** What {@linkcode runSoak} found. */
export interface SoakResult {
  options: Omit<SoakOptions, "signal" | "log">;
  tally: Tally;
  faults: FaultRecord[];
  /** Why the soak failed (empty: passed). */
  problems: string[];
  /** Worth a look, not failures. */
  warnings: string[];
  passed: boolean;
  /** How long the producer ran, in ms. */
  producedMs: number;
  /** From the producer's stop until the group drained, in ms (null: not within the deadline). */
  drainMs: number | null;
  /** Producer ticks skipped because too many XADDs waited for a reply. */
  skipped: number;
  /** Failed XADDs by reason (first words of the error). */
  xaddFailures: Record<string, number>;
  /** Instance exits nobody asked for. */
  unexpectedExits: SupervisedExit[];
  /** Exit codes of the instances' final SIGTERM (0 is a clean shutdown). */
  finalExitCodes: number[];
}

/** Runs the soak described in the module documentation and returns its findings. */
export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => {});
  const started = Date.now();
  const at = () => ((Date.now() - started) / 1000).toFixed(1).padStart(6) + "s";
  const say = (line: string) => log(`[chaos ${at()}] ${line}`);
  const rng = new Rng(opts.seed);
  const scheduleRng = rng.fork();
  const entryRng = rng.fork();
  const nameRng = rng.fork();

  await using cleanup = new Cleanup();
  // appendfsync always: an XADD or settle Redis acknowledged is on disk before the reply, so a
  // SIGKILL of Redis loses nothing anybody was told about (see tests/e2e/fault_test.ts).
  const redis = cleanup.use(
    await startRedis({ appendonly: true, args: ["--appendfsync", "always"] }),
  );
  const monitor = await redis.client({ name: "chaos-monitor" });
  const producerClient = await redis.client({ name: "chaos-producer" });
  say(`redis-server on port ${redis.port} (pid ${redis.pid}), dir ${redis.dir}`);

  const instances = ["a", "b"].map((letter) =>
    cleanup.use(superviseService({
      env: (spawn) => {
        // A replacement keeps its name (a StatefulSet) or gets a new one (a Deployment).
        const name = spawn === 0 || nameRng.next() < 0.5
          ? `chaos-${letter}`
          : `chaos-${letter}-${spawn}`;
        return instanceEnv(redis, name, opts);
      },
    }))
  );
  await Promise.all(instances.map((i) => i.waitReady(60_000)));
  say(
    `instances ready: ${
      instances.map((i) => `${i.env.CONSUMER_NAME} (pid ${i.current.pid})`).join(", ")
    }`,
  );

  const producer = new Producer({
    client: producerClient,
    stream: STREAM,
    rate: opts.rate,
    poisonRatio: opts.poisonRatio,
    hostile: opts.hostile,
    rng: entryRng,
    run: `chaos-${opts.seed}`,
  });
  const targets: FaultTargets = {
    redis,
    monitor,
    instances,
    stream: STREAM,
    group: GROUP,
    out: OUT,
    claimIdleMs: opts.claimIdleMs,
    connectionTimeoutMs: opts.connectionTimeoutMs,
    retriedIds: producer.retriedIds,
  };

  const producedFrom = Date.now();
  producer.start();
  cleanup.add(() => producer.stop(0)); // When a step below throws (a no-op after the stop below).
  say(`producing ${opts.rate}/s for ${opts.seconds} s (seed ${opts.seed})`);
  const faults = await injectFaults(opts, targets, scheduleRng, producedFrom, say, producer);
  await producer.stop();
  const producedMs = Date.now() - producedFrom;
  say(
    `producer stopped: ${producer.produced.length} XADDs, ${producer.acknowledged} acknowledged, ` +
      `${producer.inFlight} without reply, ${producer.skipped} ticks skipped`,
  );

  const drainFrom = Date.now();
  let drainMs: number | null = null;
  if (!opts.signal?.aborted) {
    try {
      await waitFor(() => within(isDrained(monitor, STREAM, GROUP), 2_000), {
        timeoutMs: opts.drainTimeoutMs,
        intervalMs: 200,
        message: "the group to drain (pending 0, lag 0)",
        signal: opts.signal,
      });
      drainMs = Date.now() - drainFrom;
      say(`group drained in ${drainMs} ms`);
    } catch (err) {
      say(`group not drained: ${err instanceof Error ? err.message : err}`);
    }
  }

  const group = await groupInfo(monitor, STREAM, GROUP);
  const pendingIds = new Set(
    group === undefined || group.pending === 0
      ? []
      : (await pendingEntries(monitor, STREAM, GROUP, group.pending)).map((p) => p.id),
  );
  const result = tally({
    pendingIds,
    lastDeliveredId: group?.lastDeliveredId,
    produced: producer.produced,
    source: await readStream(monitor, STREAM),
    out: await readStream(monitor, OUT),
    dlq: await readStream(monitor, DLQ),
    pending: group?.pending ?? 0,
    lag: group ? await checkedLag(monitor, STREAM, group) : null,
  });

  const finalExitCodes: number[] = [];
  for (const inst of instances) finalExitCodes.push((await inst.stop()).code);
  const unexpectedExits = instances.flatMap((i) => i.unexpectedExits);
  const found = problems(result);
  const notes = warnings(result);
  for (const exit of unexpectedExits) {
    notes.push(
      `instance pid ${exit.pid} exited by itself (${
        exit.status.signal ?? `code ${exit.status.code}`
      }); last output:\n${exit.outputTail}`,
    );
  }
  if (finalExitCodes.some((c) => c !== 0)) {
    notes.push(`instances' exit codes after SIGTERM: ${finalExitCodes.join(", ")}`);
  }
  const { signal: _signal, log: _log, ...options } = opts;
  return {
    options,
    tally: result,
    faults,
    problems: found,
    warnings: notes,
    passed: found.length === 0,
    producedMs,
    drainMs,
    skipped: producer.skipped,
    xaddFailures: Object.fromEntries(producer.failures),
    unexpectedExits,
    finalExitCodes,
  };
}

/**
 * Injects faults until `opts.seconds` passed since `from` and every kind happened at least once
 * (kinds come in shuffled rounds), each after a random gap, measuring the recovery of each.
 */
async function injectFaults(
  opts: SoakOptions,
  targets: FaultTargets,
  rng: Rng,
  from: number,
  say: (line: string) => void,
  producer: Producer,
): Promise<FaultRecord[]> {
  const records: FaultRecord[] = [];
  const seen = new Set<FaultKind>();
  let round: FaultKind[] = [];
  const endAt = from + opts.seconds * 1000;
  while (!opts.signal?.aborted) {
    const allSeen = seen.size === FAULT_KINDS.length;
    const gap = rng.int(opts.gapMs[0], opts.gapMs[1]);
    if (allSeen && Date.now() + gap >= endAt) {
      await sleep(Math.max(0, endAt - Date.now()), opts.signal);
      break;
    }
    await sleep(gap, opts.signal);
    if (opts.signal?.aborted) break;
    if (round.length === 0) round = rng.shuffle(FAULT_KINDS);
    const kind = round.shift()!;
    say(`fault: ${kind} (${producer.acknowledged} XADDs acknowledged so far)`);
    const injected = await inject(kind, targets, rng);
    const recovery = await measureRecovery(targets, injected.endedAt);
    const record: FaultRecord = {
      kind,
      target: injected.target,
      atMs: injected.startedAt - from,
      heldMs: injected.endedAt - injected.startedAt,
      noticedMs: injected.noticedMs,
      ...recovery,
    };
    records.push(record);
    seen.add(kind);
    say(
      `  ${kind} ${record.target}: held ${record.heldMs} ms, noticed ${ms(record.noticedMs)}, ` +
        `ready ${ms(record.readyMs)}, resumed ${ms(record.resumedMs)}, ` +
        `caught up ${ms(record.caughtUpMs)}`,
    );
  }
  return records;
}

function ms(value: number | null): string {
  return value === null ? "-" : `${value} ms`;
}

/** The environment of an instance named `name`. */
function instanceEnv(
  redis: RedisServer,
  name: string,
  opts: SoakOptions,
): Record<string, string> {
  return {
    ...redis.env(),
    SERVICE_NAME: "chaos-svc",
    STREAM,
    CONSUMER_GROUP: GROUP,
    CONSUMER_NAME: name,
    STREAM_START_ID: "0",
    ROUTES: `*=>${OUT}`,
    CLAIM_IDLE_MS: String(opts.claimIdleMs),
    CONNECTION_TIMEOUT: String(opts.connectionTimeoutMs),
    DIAGNOSTIC_EVENTS: "true",
    LOG_LEVEL: "INFO",
    // A replacement started while Redis is away keeps trying instead of exiting.
    MAX_RETRY_ATTEMPTS: "30",
    RETRY_DELAYS: "500,1000,2000",
  };
}
