/**
 * Starts a throwaway `redis-server` for tests: on a free port (never 6379), bound to 127.0.0.1,
 * with its data and log in a temporary directory. The returned {@linkcode RedisServer} can hand
 * out connected node-redis clients, and can be stopped, killed, restarted, paused and resumed to
 * exercise failures. Every process it starts is stopped by `stop()` (also via `await using`).
 *
 * @module
 */

import { createClient, type RedisClientType } from "@redis/client";
import { freePort, waitFor } from "./wait.ts";

/**
 * A connected node-redis v5 client speaking RESP2 without modules, scripts or type mapping
 * (the type `createClient({ RESP: 2 })` returns). `ReturnType<typeof createClient>` would give the
 * generic constraints (RESP 2 | 3), hence the explicit defaults of `RedisClientType`.
 */
export type RedisClient = RedisClientType;

/** Options of {@linkcode startRedis}. */
export interface StartRedisOptions {
  /** Port to listen on. Default: a free port; when it turns out to be taken, another one. */
  port?: number;
  /** Extra `redis-server` arguments, appended last (they win), e.g. `["--requirepass", "pw"]`. */
  args?: string[];
  /** Data directory; kept on `stop()`. Default: a new temporary directory, removed on `stop()`. */
  dir?: string;
  /** Start with `--appendonly yes`, so that data survives `kill()` + `restart()`. Default: false. */
  appendonly?: boolean;
  /** Deadline for the server to answer `PING`, in milliseconds. Default: 10000. */
  startTimeoutMs?: number;
}

/** Options of {@linkcode RedisServer.client}. */
export interface RedisTestClientOptions {
  /** Client name (`CLIENT SETNAME`). Default: none. */
  name?: string;
  /** Database number. Default: 0. */
  database?: number;
  /** ACL user name. Default: none. */
  username?: string;
  /** Password (AUTH). Default: none. */
  password?: string;
  /** Reconnect after the connection was lost (every 50–500 ms). Default: true. */
  reconnect?: boolean;
  /** Deadline for the first connection, in milliseconds. Default: 10000. */
  connectTimeoutMs?: number;
}

const HOST = "127.0.0.1";
const LOG_FILE = "redis-server.log";
const STOP_GRACE_MS = 5_000;
const DRAIN_GRACE_MS = 2_000;
const PORT_ATTEMPTS = 5;

/** One `redis-server` process and what is needed to wait for its end. */
interface Launched {
  child: Deno.ChildProcess;
  /** Resolves once the process exited and its output reached the log file. */
  done: Promise<Deno.CommandStatus>;
  exited: boolean;
}

/**
 * A running (or stopped) `redis-server` started by {@linkcode startRedis}. Use `stop()` in a
 * `finally` block, or `await using redis = await startRedis()`.
 */
export class RedisServer implements AsyncDisposable {
  /** Address the server binds to: always "127.0.0.1". */
  readonly host: string = HOST;
  /** Data directory (also holds the log file `redis-server.log`). */
  readonly dir: string;
  /** Path of the file that receives the server's stdout and stderr, across restarts. */
  readonly logPath: string;

  #port: number;
  readonly #args: string[];
  readonly #ownsDir: boolean;
  readonly #startTimeoutMs: number;
  readonly #clients = new Set<RedisClient>();
  #proc: Launched | undefined;
  #paused = false;
  #stopped = false;

  private constructor(
    opts: { port: number; dir: string; ownsDir: boolean; args: string[]; startTimeoutMs: number },
  ) {
    this.#port = opts.port;
    this.dir = opts.dir;
    this.#ownsDir = opts.ownsDir;
    this.#args = opts.args;
    this.#startTimeoutMs = opts.startTimeoutMs;
    this.logPath = `${opts.dir}/${LOG_FILE}`;
  }

  /** TCP port the server listens on (the same across `restart()`). */
  get port(): number {
    return this.#port;
  }

  /** Process id of the current `redis-server` process (changes on `restart()`). */
  get pid(): number {
    if (!this.#proc) throw new Error("Redis server was never started");
    return this.#proc.child.pid;
  }

  /** Whether the current process is still alive (paused counts as alive). */
  get running(): boolean {
    return this.#proc !== undefined && !this.#proc.exited;
  }

  /** Connection URL, `redis://127.0.0.1:<port>`. */
  get url(): string {
    return `redis://${HOST}:${this.#port}`;
  }

  /** `REDIS_HOST` and `REDIS_PORT` pointing at this server, to spread into a service's env. */
  env(): { REDIS_HOST: string; REDIS_PORT: string } {
    return { REDIS_HOST: HOST, REDIS_PORT: String(this.#port) };
  }

  /** The server's output so far (stdout and stderr of every process started on this dir). */
  async log(): Promise<string> {
    try {
      return await Deno.readTextFile(this.logPath);
    } catch {
      return "";
    }
  }

  /**
   * Returns a new connected RESP2 client, tracked and closed by `stop()`. Its `error` events are
   * swallowed (a killed server must not crash the test); by default it reconnects quickly.
   */
  async client(opts: RedisTestClientOptions = {}): Promise<RedisClient> {
    const { reconnect = true, connectTimeoutMs = 10_000 } = opts;
    const client: RedisClient = createClient({
      RESP: 2,
      name: opts.name,
      database: opts.database,
      username: opts.username,
      password: opts.password,
      socket: {
        host: HOST,
        port: this.#port,
        connectTimeout: Math.min(connectTimeoutMs, 5_000),
        reconnectStrategy: reconnect
          ? (retries: number) => Math.min(50 * 2 ** retries, 500)
          : false,
      },
    });
    client.on("error", () => {});
    this.#clients.add(client);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Redis client did not connect within ${connectTimeoutMs} ms`)),
            connectTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.#clients.delete(client);
      destroyQuietly(client);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /**
   * Closes the tracked clients, stops the server (SIGTERM, SIGKILL after 5 s), waits for it to
   * exit and removes the data directory when `startRedis` created it. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const client of this.#clients) destroyQuietly(client);
    this.#clients.clear();
    await this.#terminate("SIGTERM");
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Same as {@linkcode RedisServer.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Kills the server with SIGKILL and waits for it to exit; keeps the dir and the clients. */
  async kill(): Promise<void> {
    await this.#terminate("SIGKILL");
  }

  /**
   * Starts the server again on the same port and dir with the same arguments (stopping the
   * current process first with SIGTERM if it still runs), and waits until it answers `PING`.
   * Tracked clients reconnect by themselves.
   */
  async restart(): Promise<void> {
    if (this.#stopped) throw new Error("Cannot restart a Redis server after stop()");
    await this.#terminate("SIGTERM");
    await this.#launch("retry-if-taken");
  }

  /** Freezes the server with SIGSTOP: connections stay open, nothing answers. */
  pause(): Promise<void> {
    this.#signal("SIGSTOP");
    this.#paused = true;
    return Promise.resolve();
  }

  /** Resumes a server frozen by {@linkcode RedisServer.pause} with SIGCONT. */
  resume(): Promise<void> {
    this.#signal("SIGCONT");
    this.#paused = false;
    return Promise.resolve();
  }

  /** Same as {@linkcode startRedis}. */
  static async start(opts: StartRedisOptions = {}): Promise<RedisServer> {
    if (opts.port === 6379) throw new RangeError("Tests must never use port 6379");
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "rss-test-" });
    const server = new RedisServer({
      port: opts.port ?? freePort(),
      dir,
      ownsDir,
      args: ["--appendonly", opts.appendonly ? "yes" : "no", ...(opts.args ?? [])],
      startTimeoutMs: opts.startTimeoutMs ?? 10_000,
    });
    try {
      await server.#launch(opts.port === undefined ? "any-port" : "fail-if-taken");
    } catch (err) {
      if (ownsDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
    return server;
  }

  /**
   * Starts `redis-server` and waits until it answers. When the port turns out to be taken:
   * "any-port" tries other free ports, "retry-if-taken" (a restart) tries the same port again
   * until the deadline, "fail-if-taken" gives up.
   */
  async #launch(whenTaken: "any-port" | "retry-if-taken" | "fail-if-taken"): Promise<void> {
    const deadline = Date.now() + this.#startTimeoutMs;
    for (let attempt = 1;; attempt++) {
      const outcome = await this.#launchOnce(deadline);
      if (outcome === "ready") return;
      const log = await this.log();
      const portTaken = /address already in use/i.test(log.slice(outcome.logOffset));
      if (portTaken && whenTaken === "any-port" && attempt < PORT_ATTEMPTS) {
        this.#port = freePort();
        continue;
      }
      if (portTaken && whenTaken === "retry-if-taken" && Date.now() < deadline) {
        // A restart on the same port: the old socket may linger briefly; try until the deadline.
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      throw new Error(
        `redis-server did not start on port ${this.#port}: ${outcome.reason}\n` +
          `--- ${this.logPath} ---\n${tail(log.slice(outcome.logOffset))}`,
      );
    }
  }

  async #launchOnce(deadline: number): Promise<"ready" | { reason: string; logOffset: number }> {
    const logOffset = (await Deno.stat(this.logPath).catch(() => ({ size: 0 }))).size;
    const args = [
      "--port",
      String(this.#port),
      "--bind",
      HOST,
      "--dir",
      this.dir,
      "--save",
      "",
      "--daemonize",
      "no",
      "--protected-mode",
      "no",
      ...this.#args,
    ];
    const file = await Deno.open(this.logPath, { create: true, append: true });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("redis-server", {
        args,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      file.close();
      throw new Error(`Could not spawn redis-server (is it on PATH?): ${err}`, { cause: err });
    }
    const proc = track(child, file);
    this.#proc = proc;
    this.#paused = false;

    const exitedEarly = new AbortController();
    proc.done.then((status) => exitedEarly.abort(new ExitedError(status)));
    try {
      await waitFor(() => probeRedis(this.#port, { expectPid: child.pid }), {
        timeoutMs: Math.max(0, deadline - Date.now()),
        intervalMs: 20,
        message: `redis-server to answer PING on port ${this.#port}`,
        signal: exitedEarly.signal,
      });
      return "ready";
    } catch (err) {
      if (!(err instanceof ExitedError)) await this.#terminate("SIGKILL");
      const status = await proc.done;
      const reason = err instanceof ExitedError
        ? `it exited with code ${status.code}${status.signal ? ` (${status.signal})` : ""}`
        : String(err instanceof Error ? err.message : err);
      return { reason, logOffset };
    }
  }

  #signal(signal: Deno.Signal): void {
    if (!this.#proc || this.#proc.exited) throw new Error("Redis server is not running");
    this.#proc.child.kill(signal);
  }

  /** Sends `signal` (SIGKILL after 5 s if still alive) and waits for the exit; idempotent. */
  async #terminate(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    if (!proc.exited) {
      if (this.#paused && signal !== "SIGKILL") killQuietly(proc.child, "SIGCONT");
      killQuietly(proc.child, signal);
    }
    const timer = setTimeout(() => killQuietly(proc.child, "SIGKILL"), STOP_GRACE_MS);
    try {
      await proc.done;
    } finally {
      clearTimeout(timer);
      this.#paused = false;
    }
  }
}

/**
 * Starts a `redis-server` (see {@linkcode StartRedisOptions} for the defaults) with
 * `--port P --bind 127.0.0.1 --dir D --save "" --appendonly yes|no --daemonize no
 * --protected-mode no` plus `args`, and resolves once it answers `PING` (so data loaded from an
 * AOF is there). Rejects with the server's log when it does not start before the deadline.
 */
export function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  return RedisServer.start(opts);
}

/** Options of {@linkcode probeRedis}. */
export interface ProbeRedisOptions {
  /** Host to connect to. Default: "127.0.0.1". */
  host?: string;
  /** Only count the server as up when `INFO server` reports this process id. Default: any. */
  expectPid?: number;
  /** Give up on one probe after this many milliseconds. Default: 1000. */
  timeoutMs?: number;
}

/**
 * Resolves to true when a Redis server on `port` answers `PING` with `+PONG` (or refuses it for
 * lack of authentication, which also means it is up and done loading), false otherwise (refused
 * connection, `-LOADING`, silence of a paused server, another process). Uses a raw TCP socket.
 */
export async function probeRedis(port: number, opts: ProbeRedisOptions = {}): Promise<boolean> {
  const { host = HOST, expectPid, timeoutMs = 1_000 } = opts;
  let conn: Deno.TcpConn | undefined;
  const timer = setTimeout(() => {
    try {
      conn?.close();
    } catch { /* already closed */ }
    conn = undefined;
  }, timeoutMs);
  try {
    conn = await Deno.connect({ hostname: host, port });
    const request = new TextEncoder().encode("PING\r\nINFO server\r\n");
    for (let n = 0; n < request.length;) n += await conn.write(request.subarray(n));
    const replies = await readReplies(conn, 2);
    if (!replies) return false;
    const [ping, info] = replies;
    if (/^-NOAUTH|^-WRONGPASS|^-NOPERM/.test(ping)) return true;
    if (ping !== "+PONG") return false;
    if (expectPid === undefined) return true;
    const pid = /process_id:(\d+)/.exec(info)?.[1];
    return pid === String(expectPid);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* already closed */ }
  }
}

/** Reads `count` RESP2 replies (simple strings, errors, integers or bulk strings) as text. */
async function readReplies(conn: Deno.Conn, count: number): Promise<string[] | undefined> {
  const decoder = new TextDecoder();
  let buf = new Uint8Array(0);
  const replies: string[] = [];
  const chunk = new Uint8Array(16 * 1024);
  while (replies.length < count) {
    const parsed = parseReply(buf);
    if (parsed) {
      replies.push(decoder.decode(parsed.value));
      buf = buf.subarray(parsed.length);
      continue;
    }
    const n = await conn.read(chunk);
    if (n === null) return undefined;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  }
  return replies;
}

function parseReply(buf: Uint8Array): { value: Uint8Array; length: number } | undefined {
  const eol = indexOfCrlf(buf, 0);
  if (eol < 0) return undefined;
  if (buf[0] !== 0x24 /* $ */) return { value: buf.subarray(0, eol), length: eol + 2 };
  const size = Number(new TextDecoder().decode(buf.subarray(1, eol)));
  if (size < 0) return { value: new Uint8Array(0), length: eol + 2 };
  const end = eol + 2 + size;
  if (buf.length < end + 2) return undefined;
  return { value: buf.subarray(eol + 2, end), length: end + 2 };
}

function indexOfCrlf(buf: Uint8Array, from: number): number {
  for (let i = from; i + 1 < buf.length; i++) {
    if (buf[i] === 0x0d && buf[i + 1] === 0x0a) return i;
  }
  return -1;
}

class ExitedError extends Error {
  constructor(readonly status: Deno.CommandStatus) {
    super(`redis-server exited with code ${status.code}`);
  }
}

/** Follows a child: copies its output into `file`, closes the file once the child is gone. */
function track(child: Deno.ChildProcess, file: Deno.FsFile): Launched {
  const readers = [child.stdout.getReader(), child.stderr.getReader()];
  const pumps = Promise.all(readers.map((reader) => copyTo(reader, file)));
  const proc: Launched = {
    child,
    exited: false,
    done: child.status.then(async (status) => {
      proc.exited = true;
      // A forked child (AOF rewrite) may keep the pipes open: do not wait for it forever.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), DRAIN_GRACE_MS));
      if (await Promise.race([pumps, late]) === "late") {
        await Promise.all(readers.map((r) => r.cancel().catch(() => {})));
        await pumps;
      }
      clearTimeout(timer);
      file.close();
      return status;
    }),
  };
  return proc;
}

async function copyTo(reader: ReadableStreamDefaultReader<Uint8Array>, file: Deno.FsFile) {
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      for (let n = 0; n < value.length;) n += await file.write(value.subarray(n));
    }
  } catch {
    // Cancelled, or the log file is gone: the output is only a diagnostic aid.
  }
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

function destroyQuietly(client: RedisClient): void {
  try {
    if (client.isOpen) client.destroy();
  } catch {
    // Already closed.
  }
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
