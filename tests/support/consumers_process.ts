/**
 * Drives `consumers_fixture.ts` as a child process for the fan-out tests: starts it with a clean
 * environment, collects its output lines, waits for a line of its protocol, sends the start
 * signal on stdin and stops it with SIGTERM.
 *
 * @module
 */

import { waitFor } from "./wait.ts";

/** A running `consumers_fixture.ts` process (see there for its protocol). */
export class ConsumersProcess implements AsyncDisposable {
  /** Its stdout and stderr lines so far, interleaved as they came. */
  readonly lines: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>;
  readonly #exitSignal = new AbortController();
  /** Resolves once the process exited and its output was read. */
  readonly exited: Promise<Deno.CommandStatus>;

  /** Spawns the fixture with only `PATH`, `HOME`, `DENO_DIR` of this process and `env`. */
  constructor(env: Record<string, string>) {
    const base: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      NO_COLOR: "1",
      DENO_NO_UPDATE_CHECK: "1",
    };
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir) base.DENO_DIR = denoDir;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-sys",
        "--config",
        new URL("../../deno.json", import.meta.url).pathname,
        new URL("./consumers_fixture.ts", import.meta.url).pathname,
      ],
      clearEnv: true,
      env: { ...base, ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = Promise.all([this.#child.stdout, this.#child.stderr].map(async (stream) => {
      const decoder = new TextDecoderStream();
      let rest = "";
      for await (const text of stream.pipeThrough(decoder)) {
        rest += text;
        const parts = rest.split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
      if (rest) this.lines.push(rest);
    })).then(() => {});
    this.exited = this.#child.status.then(async (status) => {
      await this.#pumps;
      this.#exitSignal.abort(new Error(`consumers fixture exited with ${status.code}`));
      return status;
    });
  }

  /** Waits for the output line `line`; rejects (with the output) at the deadline or its exit. */
  async waitForLine(line: string, timeoutMs: number): Promise<void> {
    try {
      await waitFor(() => this.lines.includes(line), {
        timeoutMs,
        message: `"${line}" from the consumers fixture`,
        signal: this.#exitSignal.signal,
      });
    } catch (err) {
      throw new Error(`${err}\n--- fixture output ---\n${this.lines.join("\n")}`);
    }
  }

  /** Lets the consumers start (the fixture waits for one line on stdin). */
  async go(): Promise<void> {
    const writer = this.#child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
  }

  /** SIGTERM (SIGKILL after 15 s); resolves with the exit code. */
  async stop(): Promise<number> {
    const kill = (sig: Deno.Signal) => {
      try {
        this.#child.kill(sig);
      } catch { /* already gone */ }
    };
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 15_000);
    try {
      return (await this.exited).code;
    } finally {
      clearTimeout(timer);
      await this.#child.stdin.close().catch(() => {});
    }
  }

  /** SIGKILL: the process dies at once, whatever it was doing; resolves with the exit code. */
  async kill(): Promise<number> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
    try {
      return (await this.exited).code;
    } finally {
      await this.#child.stdin.close().catch(() => {});
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
