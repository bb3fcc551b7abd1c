// Development runner behind `deno task dev`: runs main.ts with `--watch`, loading `.env` (or else
// `.env.example`), and, when no Redis answers at REDIS_HOST:REDIS_PORT and `redis-server` is on
// PATH, starts a throwaway redis-server (no persistence) and points the service at it.
//
// The service runs with the permission flags of the `start` task (scripts/permissions.ts). The env
// file is read as Deno's own `--env-file` of `deno task start` reads it: variables already set in
// the environment win over the file, and a variable set twice in the file keeps its first value.
// SIGINT, SIGTERM and SIGHUP stop the watched service; the throwaway Redis is stopped when it has
// exited, and this script exits with its exit code.
// Graceful shutdown is not observable here (the watcher does not wait for it): use
// `deno task start` for that.

import { startPermissionFlags } from "./permissions.ts";

/** Project root (the directory holding deno.json and main.ts). */
const ROOT = new URL("../", import.meta.url);

/** How long probing the configured Redis (TCP connection, then PING) may take, in ms. */
const PROBE_TIMEOUT_MS = 1_000;

/** How long a throwaway redis-server may take to accept connections, in ms. */
const REDIS_START_TIMEOUT_MS = 10_000;

/** How long a throwaway redis-server may take to stop after SIGTERM before SIGKILL, in ms. */
const REDIS_STOP_TIMEOUT_MS = 5_000;

/** `deno run` arguments of the service: the permissions of the `start` task, with `--watch`. */
const SERVICE_ARGS = ["run", "--watch", ...startPermissionFlags(), "main.ts"];

/** Variables of the real Redis connection that do not apply to a throwaway local server. */
const REMOTE_ONLY_VARS = [
  "REDIS_USER",
  "REDIS_PW",
  "REDIS_TLS_ENABLED",
  "REDIS_TLS_CA",
  "REDIS_TLS_CERT",
  "REDIS_TLS_KEY",
];

/**
 * Signals forwarded to the service, each with the signal sent. Deno's file watcher stops only on
 * SIGINT (it then passes SIGINT and SIGTERM to the program and exits with code 0 at once); a
 * SIGTERM would reach the program but leave the watcher waiting for file changes.
 */
const FORWARDED_SIGNALS: ReadonlyArray<readonly [Deno.Signal, Deno.Signal]> =
  Deno.build.os === "windows" ? [["SIGINT", "SIGINT"]] : [
    ["SIGINT", "SIGINT"],
    ["SIGTERM", "SIGINT"],
    ["SIGHUP", "SIGINT"],
  ];

function log(message: string): void {
  console.error(`dev: ${message}`);
}

/** Result of {@linkcode parseEnvFile}. */
export interface ParsedEnvFile {
  /** Variables of the file; a variable set twice keeps its first value, as under `--env-file`. */
  vars: Record<string, string>;
  /** One message per line that could not be parsed (line number and reason, never the value). */
  problems: string[];
}

/**
 * `text` with `$NAME` and `${NAME}` replaced by `lookup(NAME)` (empty when unknown; a `$`
 * without a name is dropped), `\$` by a literal `$`, and, when `newlines`, `\n` by a line
 * break. Any other backslash is kept as it is.
 */
function substitute(
  text: string,
  lookup: (name: string) => string | undefined,
  newlines: boolean,
): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\\" && text[i + 1] === "$") {
      out += "$";
      i++;
    } else if (ch === "\\" && newlines && text[i + 1] === "n") {
      out += "\n";
      i++;
    } else if (ch === "$") {
      let name: string;
      if (text[i + 1] === "{") {
        const close = text.indexOf("}", i + 2);
        name = text.slice(i + 2, close === -1 ? text.length : close);
        i = close === -1 ? text.length : close;
      } else {
        name = /^[A-Za-z0-9_]*/.exec(text.slice(i + 1))![0];
        i += name.length;
      }
      out += name === "" ? "" : lookup(name) ?? "";
    } else {
      out += ch;
    }
  }
  return out;
}

/**
 * Parses the text of an env file the way Deno's `--env-file` (used by `deno task start`) does,
 * so that `deno task dev` gives every variable the same value: `KEY=VALUE` lines, optionally
 * prefixed by `export `; blank lines and lines starting with `#` are skipped. A variable set
 * twice keeps its first value. Unquoted values end at a `#` and are trimmed; single-quoted
 * values are literal; double-quoted values turn `\n` into a line break. The value of a quoted
 * one runs to the last quote of its kind on the line where it closes, and may span lines.
 * Unquoted and double-quoted values expand `$NAME` and `${NAME}`: from `env` first (the
 * process's environment), else from the lines above (their latest value), else empty; `\$`
 * is a literal `$`. Tested against Deno in tests/unit/env_file_test.ts.
 */
export function parseEnvFile(
  text: string,
  env: Readonly<Record<string, string>> = {},
): ParsedEnvFile {
  const vars: Record<string, string> = {};
  const latest: Record<string, string> = {};
  const problems: string[] = [];
  const lookup = (name: string) => env[name] ?? latest[name];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) {
      problems.push(`line ${lineNo}: expected KEY=VALUE`);
      continue;
    }
    const [, key, rest] = match;
    const quote = rest[0];
    let value: string;
    if (quote !== '"' && quote !== "'") {
      value = substitute(rest.replace(/#.*$/, "").trim(), lookup, false);
    } else {
      // Quoted: up to the last quote of the line where it closes.
      let body = rest.slice(1);
      let close = body.lastIndexOf(quote);
      while (close === -1 && i + 1 < lines.length) {
        body += "\n" + lines[++i];
        close = body.lastIndexOf(quote);
      }
      if (close === -1) {
        problems.push(`line ${lineNo}: missing closing quote for ${key}`);
        continue;
      }
      const raw = body.slice(0, close);
      value = quote === "'" ? raw : substitute(raw, lookup, true);
    }
    latest[key] = value;
    if (!(key in vars)) vars[key] = value;
  }
  return { vars, problems };
}

/** Reads `.env`, or else `.env.example`, from the project root; `env` serves its `$NAME`s. */
async function loadEnvFile(
  env: Readonly<Record<string, string>>,
): Promise<{ name: string; vars: Record<string, string> } | null> {
  for (const name of [".env", ".env.example"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(new URL(name, ROOT));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const { vars, problems } = parseEnvFile(text, env);
    for (const problem of problems) log(`${name}: ${problem} (line ignored)`);
    return { name, vars };
  }
  return null;
}

/** Resolves to `fallback` after `ms` unless cancelled with the returned function. */
function timeout<T>(ms: number, fallback: T): [Promise<T>, () => void] {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  return [promise, () => clearTimeout(timer)];
}

/**
 * Whether a Redis server answers at `hostname:port` within `timeoutMs`: a TCP connection, then,
 * unless `tls`, a `PING` answered in RESP (`+PONG`, or an error such as `-NOAUTH`), so that some
 * other program on that port (or a proxy accepting every connection) does not count as Redis.
 */
async function redisAnswers(
  hostname: string,
  port: number,
  timeoutMs: number,
  tls = false,
): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  const probe = async (): Promise<boolean> => {
    conn = await Deno.connect({ hostname, port });
    if (tls) return true;
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(64);
    const read = await conn.read(buffer);
    const reply = read === null ? "" : new TextDecoder().decode(buffer.subarray(0, read));
    return reply.startsWith("+") || reply.startsWith("-");
  };
  const [timedOut, cancel] = timeout(timeoutMs, false);
  try {
    return await Promise.race([probe().catch(() => false), timedOut]);
  } finally {
    cancel();
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }
}

/** Whether `port` can be bound on the loopback interface right now. */
function isPortFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** A TCP port that is free on the loopback interface (chosen by the OS). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Full path of an executable found on PATH, or `undefined`. */
function findOnPath(command: string): string | undefined {
  const separator = Deno.build.os === "windows" ? ";" : ":";
  for (const dir of (Deno.env.get("PATH") ?? "").split(separator)) {
    if (dir === "") continue;
    const candidate = `${dir.replace(/\/+$/, "")}/${command}`;
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Command and arguments that run `argv` in a session of its own when `setsid` is available, so
 * that a Ctrl-C in the terminal reaches only this script, which forwards it once. Without
 * `setsid` the process shares the terminal's process group and may see a Ctrl-C twice.
 */
function detached(setsid: string | undefined, argv: string[]): [string, string[]] {
  return setsid ? [setsid, argv] : [argv[0], argv.slice(1)];
}

/** A redis-server started by this script. */
interface ThrowawayRedis {
  port: number;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its working directory. */
  stop(): Promise<void>;
}

/** Starts a redis-server without persistence on `port` and waits until it accepts connections. */
async function startThrowawayRedis(
  redisServer: string,
  port: number,
  setsid: string | undefined,
): Promise<ThrowawayRedis> {
  const dir = await Deno.makeTempDir({ prefix: "dev-redis-" });
  const [command, args] = detached(setsid, [
    redisServer,
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "-::1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
  ]);
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  // Keep the server's last output lines, shown only when it fails.
  const output: string[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
    let pending = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (pending + chunk).split("\n");
      pending = parts.pop() ?? "";
      output.push(...parts);
      if (output.length > 50) output.splice(0, output.length - 50);
    }
    if (pending !== "") output.push(pending);
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]).catch(() => {});

  let stopping = false;
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  void status.then(async (s) => {
    if (stopping) return;
    await drained;
    log(`throwaway redis-server exited unexpectedly (code ${s.code}); its last output:`);
    for (const line of output) console.error(`  ${line}`);
  });

  const stop = async (): Promise<void> => {
    stopping = true;
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      const [timedOut, cancel] = timeout(REDIS_STOP_TIMEOUT_MS, true);
      const killNeeded = await Promise.race([status.then(() => false), timedOut]);
      cancel();
      if (killNeeded) {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
        await status;
      }
    }
    await drained;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  const deadline = Date.now() + REDIS_START_TIMEOUT_MS;
  while (!exited && Date.now() < deadline) {
    if (await redisAnswers("127.0.0.1", port, 500)) return { port, stop };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!exited) {
    log(`throwaway redis-server did not accept connections on port ${port} in time`);
  }
  await stop();
  throw new Error(`could not start a throwaway redis-server on port ${port}`);
}

async function main(): Promise<number> {
  // Signals are taken over from the start: before the service runs, one stops this script (and
  // the throwaway Redis, if it is starting); afterwards they are forwarded to the service.
  const state: { child?: Deno.ChildProcess; interrupted: boolean } = { interrupted: false };
  const listeners = FORWARDED_SIGNALS.map(([received, sent]) => {
    const listener = (): void => {
      if (!state.child) {
        state.interrupted = true;
        return;
      }
      try {
        state.child.kill(sent);
      } catch {
        // the service has already exited
      }
    };
    Deno.addSignalListener(received, listener);
    return [received, listener] as const;
  });

  const processEnv = Deno.env.toObject();
  const envFile = await loadEnvFile(processEnv);
  if (envFile) log(`loaded ${envFile.name}`);
  else log("no .env or .env.example found; using the environment only");

  // The env file fills in what the environment does not already set.
  const env: Record<string, string> = { ...(envFile?.vars ?? {}), ...processEnv };

  const setsid = Deno.build.os === "linux" ? findOnPath("setsid") : undefined;
  let redis: ThrowawayRedis | undefined;

  const host = env.REDIS_HOST?.trim() ?? "";
  const port = Number(env.REDIS_PORT);
  if (env.REDIS_SENTINELS) {
    log("REDIS_SENTINELS is set; not looking for a local Redis");
  } else if (host === "" || !Number.isInteger(port) || port < 1 || port > 65535) {
    log("REDIS_HOST / REDIS_PORT missing or invalid; the service will report it");
  } else if (
    !(await redisAnswers(
      host,
      port,
      PROBE_TIMEOUT_MS,
      env.REDIS_TLS_ENABLED?.toLowerCase() === "true",
    ))
  ) {
    const redisServer = findOnPath("redis-server");
    if (!redisServer) {
      log(`no Redis at ${host}:${port} and no redis-server on PATH; starting the service anyway`);
    } else {
      const localPort = isPortFree(port) ? port : freePort();
      redis = await startThrowawayRedis(redisServer, localPort, setsid);
      env.REDIS_HOST = "127.0.0.1";
      env.REDIS_PORT = String(localPort);
      const dropped = REMOTE_ONLY_VARS.filter((name) => name in env);
      for (const name of dropped) delete env[name];
      log(
        `no Redis at ${host}:${port}; started a throwaway redis-server on port ${localPort} ` +
          "(no persistence)" + (dropped.length ? `; not passing ${dropped.join(", ")}` : ""),
      );
    }
  }

  if (state.interrupted) {
    if (redis) await redis.stop();
    return 130;
  }

  const [command, args] = detached(setsid, [Deno.execPath(), ...SERVICE_ARGS]);
  const child = new Deno.Command(command, {
    args,
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  state.child = child;

  const status = await child.status;
  for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  if (redis) {
    await redis.stop();
    log(`stopped the throwaway redis-server on port ${redis.port}`);
  }
  return status.code;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    log(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
