/**
 * Small helpers of the benchmark: command-line flags, the service's variables, percentiles,
 * per-process figures read from
 * /proc (peak RSS, CPU time), a child-process wrapper for the baseline consumer, and the table.
 *
 * @module
 */

/** Reads `--name value` / `--name=value` flags; unknown flags are an error. */
export function parseFlags<T extends Record<string, number | string | boolean>>(
  args: readonly string[],
  defaults: T,
): T {
  const out: Record<string, number | string | boolean> = { ...defaults };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) throw new Error(`Unexpected argument ${arg}`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!(name in defaults)) {
      throw new Error(`Unknown flag --${name}; known: ${Object.keys(defaults).join(", ")}`);
    }
    const kind = typeof defaults[name];
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (kind === "boolean") value = "true";
    else if (i + 1 < args.length) value = args[++i];
    else throw new Error(`Flag --${name} needs a value`);
    if (kind === "number") {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0`);
      out[name] = n;
    } else if (kind === "boolean") out[name] = value !== "false";
    else out[name] = value;
  }
  return out as T;
}

/**
 * The service's variables as the benches run it: it drains `stream` as `group` (consumer
 * `service-1`) from id 0 on the Redis of `redisEnv`, logging at WARN (as the outside harness
 * runs it), with `extra` on top.
 */
export function benchServiceEnv(
  redisEnv: Record<string, string>,
  stream: string,
  group: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...redisEnv,
    SERVICE_NAME: "bench-service",
    STREAM: stream,
    CONSUMER_GROUP: group,
    CONSUMER_NAME: "service-1",
    STREAM_START_ID: "0",
    LOG_LEVEL: "WARN",
    ...extra,
  };
}

/** The variables of a `KEY=VALUE,KEY=VALUE` flag value; `flag` names the flag in errors. */
export function envPairs(text: string, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(",").filter(Boolean)) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`${flag}: ${pair} is not KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** Nearest-rank percentile (`p` in 0..100) of unsorted `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

/** Peak resident set size (VmHWM) of `pid` in KiB, or NaN when unreadable. */
export function peakRssKiB(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux). */
const USER_HZ = 100;

/** User + system CPU time of `pid` (all its threads) in ms, or NaN when unreadable. */
export function cpuTimeMs(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command name (which may hold spaces) start after the last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / USER_HZ;
  } catch {
    return NaN;
  }
}

/** A child process whose output is read line by line (so the pipes never fill). */
export class Child implements AsyncDisposable {
  readonly lines: string[] = [];
  readonly exited: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  #done = false;

  constructor(
    cmd: string,
    args: string[],
    opts: { env?: Record<string, string>; cwd?: string } = {},
  ) {
    this.#child = new Deno.Command(cmd, {
      args,
      env: opts.env,
      cwd: opts.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pumps = Promise.all([this.#child.stdout, this.#child.stderr].map((s) => this.#read(s)));
    this.exited = this.#child.status.then(async (status) => {
      this.#done = true;
      await pumps;
      return status;
    });
  }

  get pid(): number {
    return this.#child.pid;
  }

  get running(): boolean {
    return !this.#done;
  }

  /** Waits for an output line containing `text`; rejects on exit or after `timeoutMs`. */
  async waitForLine(text: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.lines.some((l) => l.includes(text))) {
      if (this.#done) throw new Error(`Process exited before printing "${text}":\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`No "${text}" within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  tail(n = 30): string {
    return this.lines.slice(-n).join("\n");
  }

  /** SIGTERM, SIGKILL after `killAfterMs`; resolves once the process is gone. */
  async stop(killAfterMs = 5_000): Promise<void> {
    if (this.#done) return;
    kill(this.#child, "SIGTERM");
    const timer = setTimeout(() => kill(this.#child, "SIGKILL"), killAfterMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    try {
      for await (const chunk of stream) {
        rest += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = rest.indexOf("\n")) >= 0) {
          this.lines.push(rest.slice(0, nl));
          rest = rest.slice(nl + 1);
        }
      }
    } catch {
      // The process is gone.
    }
    if (rest) this.lines.push(rest);
  }
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

/** Renders rows as an aligned text table; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join(" | ");
  const sep = widths.map((w) => "-".repeat(w)).join("-|-");
  return [line(rows[0]), sep, ...rows.slice(1).map(line)].join("\n");
}

/** Formats a number with `digits` decimals and thousands separators; "n/a" for NaN. */
export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "n/a";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}
