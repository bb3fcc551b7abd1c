/**
 * Runs the service (`main.ts`) as a child process for black-box tests: with a clean environment,
 * on a free HTTP port, its stdout and stderr read line by line as they come (so the pipes never
 * fill), and helpers to wait for a log line or for readiness, to call its HTTP API, to send
 * signals, to stop it and to wait for it to exit by itself. `runService` runs it to completion
 * (configuration-error tests).
 *
 * @module
 */

import type { RedisServer } from "./redis_server.ts";
import { startPermissionFlags } from "../../scripts/permissions.ts";
import { freePort, waitFor } from "./wait.ts";

/** Absolute path of the repository root (this file is `<root>/tests/support/service.ts`). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../..", import.meta.url).pathname)
  .replace(/\/$/, "");

/** The permission flags of deno.json's `start` task: the service runs with exactly those. */
const DENO_FLAGS = startPermissionFlags();
const DRAIN_GRACE_MS = 2_000;

/** How a process ended. */
export interface ExitStatus {
  /** Exit code (128 + n when killed by signal n). */
  code: number;
  /** The signal that killed it, e.g. "SIGKILL", or null when it exited by itself. */
  signal: string | null;
}

/** Options of {@linkcode startService}. */
export interface StartServiceOptions {
  /** Variables for the service; they override the defaults (see {@linkcode serviceEnv}). */
  env: Record<string, string>;
  /** HTTP port (`SERVICE_PORT`). Default: `env.SERVICE_PORT` if set, else a free port. */
  port?: number;
  /** Working directory of the process. Default: the repository root. */
  cwd?: string;
  /** Resolve only once `GET /health/ready` answers 200. Default: true. */
  waitReady?: boolean;
  /** Deadline for readiness, in milliseconds. Default: 20000. */
  readyTimeoutMs?: number;
  /**
   * The program to run instead of the repository's `main.ts` (e.g. a program of another
   * project that imports `mod.ts`); it runs without the repository's deno.json.
   */
  program?: string;
}

/** A consumed HTTP response, as returned by {@linkcode ServiceProcess.request}. */
export interface ServiceResponse {
  /** HTTP status. */
  status: number;
  /** Response headers. */
  headers: Headers;
  /** Body as text. */
  text: string;
  /** Body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

/**
 * The environment a service process gets: only `PATH`, `HOME` and `DENO_DIR` (when set) from
 * this process, plus `NO_COLOR=1`, `DENO_NO_UPDATE_CHECK=1`, `LOG_LEVEL=DEBUG`, and
 * `SERVICE_PORT` = `port` when given; `env` overrides all of them.
 */
export function serviceEnv(env: Record<string, string>, port?: number): Record<string, string> {
  const base: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    LOG_LEVEL: "DEBUG",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) base.DENO_DIR = denoDir;
  if (port !== undefined) base.SERVICE_PORT = String(port);
  return { ...base, ...env };
}

/**
 * The variables of a service for the test Redis `redis`: its address, `SERVICE_NAME`,
 * `CONSUMER_NAME` and `LOG_LEVEL=INFO` (so a long drain does not log one line per entry), then
 * `extra` on top. Pass the result as `env` of {@linkcode startService}.
 */
export function serviceEnvFor(
  redis: RedisServer,
  name: string,
  consumer: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...redis.env(),
    SERVICE_NAME: name,
    CONSUMER_NAME: consumer,
    LOG_LEVEL: "INFO",
    ...extra,
  };
}

function serviceCommand(env: Record<string, string>, cwd: string, program?: string): Deno.Command {
  const target = program
    ? ["--no-config", program]
    : ["--config", `${REPO_ROOT}/deno.json`, `${REPO_ROOT}/main.ts`];
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...DENO_FLAGS, ...target],
    cwd,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * A running service process started by {@linkcode startService}. Stop it in a `finally` block
 * (or `await using svc = await startService(...)`); `stop()` is safe after it exited.
 */
export class ServiceProcess implements AsyncDisposable {
  /** HTTP port the service was told to listen on (`SERVICE_PORT`). */
  readonly port: number;
  /** `http://127.0.0.1:<port>`. */
  readonly baseUrl: string;
  /** Lines written to stdout so far (without line endings). */
  readonly lines: string[] = [];
  /** Lines written to stderr so far. */
  readonly errLines: string[] = [];
  /** Resolves with the exit status once the process ended and its output was read to the end. */
  readonly exited: Promise<ExitStatus>;

  readonly #child: Deno.ChildProcess;
  /** Lines of stdout and stderr in arrival order. */
  readonly #all: string[] = [];
  readonly #exitSignal = new AbortController();
  #status: ExitStatus | undefined;
  #paused = false;

  /** Use {@linkcode startService}; the constructor spawns the process and does not wait. */
  constructor(env: Record<string, string>, port: number, cwd: string, program?: string) {
    this.port = port;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.#child = serviceCommand(env, cwd, program).spawn();
    const readers = [this.#child.stdout.getReader(), this.#child.stderr.getReader()];
    const pumps = Promise.all([
      readLines(readers[0], (line) => this.#push(line, this.lines)),
      readLines(readers[1], (line) => this.#push(line, this.errLines)),
    ]);
    this.exited = this.#child.status.then(async (s) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), DRAIN_GRACE_MS));
      if (await Promise.race([pumps, late]) === "late") {
        await Promise.all(readers.map((r) => r.cancel().catch(() => {})));
        await pumps;
      }
      clearTimeout(timer);
      const status = { code: s.code, signal: s.signal ?? null };
      this.#status = status;
      this.#exitSignal.abort(new Error(`Service exited (${describeStatus(status)})`));
      return status;
    });
  }

  /** Process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** The exit status once the process ended and its output was read, else undefined. */
  get status(): ExitStatus | undefined {
    return this.#status;
  }

  /** Number of output lines (stdout and stderr) so far; a mark for `waitForLine(…, since)`. */
  mark(): number {
    return this.#all.length;
  }

  /** All stdout and stderr lines so far, in arrival order, joined with "\n". */
  output(): string {
    return this.#all.join("\n");
  }

  /**
   * Waits until a line of stdout or stderr (from index `since` of the combined output, default 0)
   * matches `pattern` (a RegExp, or a string to find in the line), and returns that line.
   * Rejects with the output when the deadline passes (default 10000 ms) or the process exits.
   */
  async waitForLine(pattern: RegExp | string, timeoutMs = 10_000, since = 0): Promise<string> {
    const matches = typeof pattern === "string"
      ? (line: string) => line.includes(pattern)
      : (line: string) => new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, "")).test(line);
    let next = since;
    try {
      return await waitFor(() => {
        for (; next < this.#all.length; next++) {
          if (matches(this.#all[next])) return this.#all[next];
        }
        return undefined;
      }, {
        timeoutMs,
        message: `a service output line matching ${String(pattern)}`,
        signal: this.#exitSignal.signal,
      });
    } catch (err) {
      throw this.#withOutput(err);
    }
  }

  /**
   * Polls `GET /health/ready` until it answers 200. Rejects with the output when the deadline
   * passes (default 20000 ms) or as soon as the process exits.
   */
  async waitReady(timeoutMs = 20_000): Promise<void> {
    let last = "no answer yet";
    try {
      await waitFor(async () => {
        try {
          const res = await this.request("/health/ready", { timeoutMs: 1_000 });
          last = `${res.status} ${res.text.slice(0, 200)}`;
          return res.status === 200;
        } catch (err) {
          last = err instanceof Error ? err.message : String(err);
          return false;
        }
      }, {
        timeoutMs,
        intervalMs: 50,
        message: `GET /health/ready to answer 200 on port ${this.port}`,
        signal: this.#exitSignal.signal,
      });
    } catch (err) {
      throw this.#withOutput(err, `last answer: ${last}`);
    }
  }

  /** `fetch(baseUrl + path, init)`. The caller must consume or cancel the body. */
  fetch(path: string, init?: RequestInit): Promise<Response> {
    return fetch(new URL(path, this.baseUrl), init);
  }

  /**
   * Fetches `path` and reads the whole body (nothing left to leak). `timeoutMs` (default 10000)
   * aborts the request.
   */
  async request(
    path: string,
    init: RequestInit & { timeoutMs?: number } = {},
  ): Promise<ServiceResponse> {
    const { timeoutMs = 10_000, ...rest } = init;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`Request to ${path} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    rest.signal?.addEventListener("abort", () => controller.abort(rest.signal?.reason));
    try {
      const res = await this.fetch(path, { ...rest, signal: controller.signal });
      const text = await res.text();
      let json: unknown = undefined;
      try {
        json = JSON.parse(text);
      } catch { /* not JSON */ }
      return { status: res.status, headers: res.headers, text, json };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `sig` to the process. Throws when it already exited. */
  signal(sig: Deno.Signal): void {
    try {
      this.#child.kill(sig);
    } catch (err) {
      throw new Error(`Could not send ${sig} to the service (pid ${this.pid}): ${err}`);
    }
  }

  /** Whether the process is frozen by {@linkcode ServiceProcess.pause}. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Freezes the process with SIGSTOP (a GC pause or CPU starvation taken to the extreme): its
   * sockets stay open, nothing runs. `stop()` resumes it first.
   */
  pause(): void {
    this.signal("SIGSTOP");
    this.#paused = true;
  }

  /** Resumes a process frozen by {@linkcode ServiceProcess.pause} with SIGCONT. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    killQuietly(this.#child, "SIGCONT");
  }

  /** Kills the process with SIGKILL (unless it already ended) and resolves with its status. */
  kill(): Promise<ExitStatus> {
    killQuietly(this.#child, "SIGKILL");
    this.#paused = false;
    return this.exited;
  }

  /**
   * Sends SIGTERM, waits for the exit, and sends SIGKILL if it is still alive after `killAfterMs`
   * (default 40000). Resolves with the exit status; safe to call after the process exited.
   */
  async stop(killAfterMs = 40_000): Promise<ExitStatus> {
    if (this.#status) return this.#status;
    killQuietly(this.#child, "SIGTERM");
    this.resume(); // A frozen process only sees the SIGTERM once it runs again.
    const timer = setTimeout(() => killQuietly(this.#child, "SIGKILL"), killAfterMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Same as {@linkcode ServiceProcess.stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #push(line: string, into: string[]): void {
    into.push(line);
    this.#all.push(line);
  }

  #outputBlock(): string {
    const lines = this.#all.slice(-200);
    const skipped = this.#all.length - lines.length;
    const head = skipped > 0
      ? `--- service output (last 200 of ${this.#all.length} lines) ---`
      : "--- service output ---";
    return `${head}\n${lines.join("\n")}\n--- end of output ---`;
  }

  #withOutput(err: unknown, extra?: string): Error {
    const message = err instanceof Error ? err.message : String(err);
    const note = extra ? `; ${extra}` : "";
    return new Error(`${message}${note}\n${this.#outputBlock()}`, { cause: err });
  }
}

/**
 * Starts `deno run <the start task's permission flags> main.ts` from the repository root with
 * `clearEnv` and {@linkcode serviceEnv}, and (unless `waitReady: false`) resolves once
 * `GET /health/ready` answers 200. When readiness fails, kills the process and rejects with its
 * output.
 */
export async function startService(opts: StartServiceOptions): Promise<ServiceProcess> {
  const { waitReady = true, readyTimeoutMs = 20_000, cwd = REPO_ROOT } = opts;
  const port = opts.port ??
    (opts.env.SERVICE_PORT !== undefined ? Number(opts.env.SERVICE_PORT) : freePort());
  const env = serviceEnv(opts.env, port); // env.SERVICE_PORT, when set, wins over `port`...
  if (opts.port !== undefined) env.SERVICE_PORT = String(opts.port); // ...unless opts.port is set.
  const svc = new ServiceProcess(env, port, cwd, opts.program);
  if (waitReady) {
    try {
      await svc.waitReady(readyTimeoutMs);
    } catch (err) {
      await svc.kill();
      throw err;
    }
  }
  return svc;
}

/** What {@linkcode runService} returns. */
export interface ServiceRun extends ExitStatus {
  /** Everything written to stdout. */
  stdout: string;
  /** Everything written to stderr. */
  stderr: string;
}

/**
 * Runs `main.ts` (as {@linkcode startService} does, with a free `SERVICE_PORT` unless `env` sets
 * one) until it exits, for tests that expect it to stop by itself (exit 78 on bad configuration,
 * 1 when Redis is unreachable). Kills it and rejects with its output after `timeoutMs`
 * (default 20000).
 */
export async function runService(
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<ServiceRun> {
  const child = serviceCommand(serviceEnv(env, freePort()), REPO_ROOT)
    .spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killQuietly(child, "SIGKILL");
  }, timeoutMs);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    const run: ServiceRun = {
      code: out.code,
      signal: out.signal ?? null,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
    if (timedOut) {
      throw new Error(
        `Service did not exit within ${timeoutMs} ms (killed)\n--- stdout ---\n${run.stdout}\n` +
          `--- stderr ---\n${run.stderr}\n--- end ---`,
      );
    }
    return run;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The exit status of `svc` once it exited by itself, or a rejection (with its output) when it is
 * still running after `timeoutMs` (default 40000): a hung shutdown fails the test, not the run.
 */
export async function exitWithin(svc: ServiceProcess, timeoutMs = 40_000): Promise<ExitStatus> {
  try {
    return await waitFor(() => svc.status, {
      timeoutMs,
      intervalMs: 20,
      message: `service pid ${svc.pid} to exit`,
    });
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : err}\n${svc.output()}`, { cause: err });
  }
}

/** Matches what a stack trace line looks like (`at fn (file.ts:12:3)`), for leak checks. */
export const STACK_TRACE_RE = /\bat\s+\S*.*\.(ts|js|mjs):\d+/;

/**
 * Parses the JSON log lines of `output` (a string with one line per entry, or an array of
 * lines) into objects, skipping lines that are not JSON objects.
 */
export function jsonLines(output: string | readonly string[]): Record<string, unknown>[] {
  const lines = typeof output === "string" ? output.split("\n") : output;
  const entries: Record<string, unknown>[] = [];
  for (const line of lines) {
    const trimmed = line.trim();
    if (!trimmed.startsWith("{")) continue;
    try {
      const value: unknown = JSON.parse(trimmed);
      if (value !== null && typeof value === "object" && !Array.isArray(value)) {
        entries.push(value as Record<string, unknown>);
      }
    } catch { /* not JSON */ }
  }
  return entries;
}

/** Calls `onLine` for every line of `reader` (without "\n" or "\r\n"), the last one included. */
async function readLines(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        onLine(rest.slice(0, nl).replace(/\r$/, ""));
        rest = rest.slice(nl + 1);
      }
    }
  } catch {
    // Cancelled after the process ended: keep what was read.
  }
  rest += decoder.decode();
  if (rest.length > 0) onLine(rest.replace(/\r$/, ""));
}

function describeStatus(status: ExitStatus): string {
  return status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`;
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}
