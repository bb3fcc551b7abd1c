/**
 * Waiting helpers for tests: poll a condition with a deadline instead of sleeping "long enough",
 * sleep cancellably, a gate that a test opens when it wants (for handlers to await instead of
 * sleeping), and pick a free TCP port (never 6379, the port of a developer's own Redis).
 *
 * @module
 */

/** Options of {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds. Default: 10000. */
  timeoutMs?: number;
  /** Pause between two probes, in milliseconds. Default: 25. */
  intervalMs?: number;
  /** What is being waited for; starts the timeout error message. Default: "condition". */
  message?: string;
  /**
   * Stops waiting early: a probe still running when it aborts is abandoned; otherwise the probe
   * runs one last time and, when still falsy, `waitFor` rejects with the signal's reason.
   * Default: none.
   */
  signal?: AbortSignal;
}

/** `T` without its falsy members (what {@linkcode waitFor} can resolve to). */
export type Truthy<T> = Exclude<T, false | 0 | 0n | "" | null | undefined>;

/**
 * Calls `probe` until it returns (or resolves to) a truthy value, and returns that value.
 * A probe that throws counts as "not yet". On the deadline, rejects with an `Error` naming
 * `message`, the time waited, and the last probe error or the last value. A probe that hangs
 * is cut off by the deadline too.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  opts: WaitForOptions = {},
): Promise<Truthy<T>> {
  const { timeoutMs = 10_000, intervalMs = 25, message = "condition", signal } = opts;
  if (!(timeoutMs >= 0)) throw new RangeError(`timeoutMs must be >= 0, got ${timeoutMs}`);
  const started = Date.now();
  const deadline = started + timeoutMs;
  let lastError: unknown = undefined;
  let threw = false;
  let lastValue: T | undefined = undefined;
  let attempts = 0;
  let hung = false;

  while (true) {
    const aborted = signal?.aborted ?? false;
    attempts++;
    try {
      // Once aborted, the last probe is not cut short by the signal (only by the deadline).
      const value = await withDeadline(probe, deadline, aborted ? undefined : signal);
      if (value) return value as Truthy<T>;
      threw = false;
      lastValue = value;
    } catch (err) {
      if (err === DEADLINE) {
        hung = true;
        break;
      }
      if (err === ABORTED) throw abortReason(signal, message);
      threw = true;
      lastError = err;
    }
    if (aborted) throw abortReason(signal, message);
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())), signal);
  }

  const waited = Date.now() - started;
  const last = hung
    ? "the last probe was still running at the deadline"
    : threw
    ? `last probe error: ${errorText(lastError)}`
    : `last value: ${Deno.inspect(lastValue, { colors: false, depth: 4 })}`;
  throw new Error(
    `Timed out waiting for ${message} after ${waited} ms (${attempts} attempts); ${last}`,
    threw ? { cause: lastError } : undefined,
  );
}

const DEADLINE = Symbol("deadline");
const ABORTED = Symbol("aborted");

/**
 * Runs `probe`, rejecting with {@linkcode DEADLINE} if it is still pending at `deadline`, or with
 * {@linkcode ABORTED} if `signal` aborts first.
 */
async function withDeadline<T>(
  probe: () => T | Promise<T>,
  deadline: number,
  signal: AbortSignal | undefined,
): Promise<T> {
  const pending = Promise.resolve().then(probe);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const cutOff = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(DEADLINE), Math.max(0, deadline - Date.now()));
    onAbort = () => reject(ABORTED);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([pending, cutOff]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
    pending.catch(() => {}); // A probe that was cut off must not reject unhandled.
  }
}

function abortReason(signal: AbortSignal | undefined, message: string): unknown {
  const reason: unknown = signal?.reason;
  return reason ?? new Error(`Stopped waiting for ${message}: aborted`);
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

/**
 * Resolves after `ms` milliseconds, or as soon as `signal` aborts (it never rejects).
 * Meant for pacing loops, not for waiting on a condition: use {@linkcode waitFor} for that.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Ports this process handed out recently; not handed out again so parallel starts don't clash. */
const recentPorts: number[] = [];
const RECENT_LIMIT = 256;
const REDIS_DEFAULT_PORT = 6379;

/**
 * Returns a TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read, close).
 * Never returns 6379, nor a port this process returned among its last 256 answers.
 */
export function freePort(): number {
  for (let i = 0; i < 100; i++) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    listener.close();
    if (port === REDIS_DEFAULT_PORT || recentPorts.includes(port)) continue;
    recentPorts.push(port);
    if (recentPorts.length > RECENT_LIMIT) recentPorts.shift();
    return port;
  }
  throw new Error("Could not find a free port in 100 attempts");
}

/** A gate: a promise the test opens when it wants (see {@linkcode gate}). */
export interface Gate {
  /** Resolves once {@linkcode Gate.open} was called. */
  promise: Promise<void>;
  /** Opens the gate (idempotent). */
  open: () => void;
}

/**
 * A gate for handlers to await, so that a test decides when they finish instead of racing a
 * sleep against a budget: the handler awaits `promise`, the test calls `open()`.
 */
export function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** `p`, or a rejection after `ms` ms naming `what` (`p`'s own later rejection is ignored). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    p.catch(() => {});
  }
}
