/**
 * Keeps one service instance running for fault tests and the chaos soak (`chaos/`), as a process
 * supervisor (the kubelet, systemd) would: starts `main.ts`, starts it again whenever its process
 * ends (a SIGKILL by the test, or a crash, which is recorded as unexpected), and lets the caller
 * kill, pause and resume the current process. `stop()` ends the supervision and the process.
 *
 * ```ts
 * await using cleanup = new Cleanup();
 * const a = cleanup.use(superviseService({ env: (n) => ({ ...redis.env(), CONSUMER_NAME: `a-${n}` }) }));
 * await a.waitReady();
 * await a.kill(); // a new process (spawn 1) starts at once
 * await a.waitReady();
 * ```
 *
 * @module
 */

import { type ExitStatus, REPO_ROOT, serviceEnv, ServiceProcess } from "./service.ts";
import { freePort, sleep } from "./wait.ts";

/** Options of {@linkcode superviseService}. */
export interface SuperviseOptions {
  /** The environment of spawn `n` (0 for the first process, 1 for its replacement, …). */
  env: (spawn: number) => Record<string, string>;
  /**
   * Pause before replacing a process that ended unexpectedly (not through `kill()`), so that a
   * crash loop does not spin. Default: 1000 ms. A process ended by `kill()` is replaced at once.
   */
  crashRestartDelayMs?: number;
}

/** How one supervised process ended. */
export interface SupervisedExit {
  /** Spawn number of the process (see {@linkcode SuperviseOptions.env}). */
  spawn: number;
  /** Process id. */
  pid: number;
  /** Exit status. */
  status: ExitStatus;
  /** True when the process was ended by `kill()` or `stop()`, false when it ended by itself. */
  expected: boolean;
  /** When it was seen to end (epoch ms). */
  at: number;
  /** Its last output lines (at most 40), for diagnosing an unexpected exit. */
  outputTail: string;
}

/** One service instance kept running by {@linkcode superviseService}. */
export class SupervisedService implements AsyncDisposable {
  /** Processes that ended so far, oldest first. */
  readonly exits: SupervisedExit[] = [];

  readonly #env: (spawn: number) => Record<string, string>;
  readonly #crashDelayMs: number;
  readonly #stopping = new AbortController();
  #current: ServiceProcess;
  #spawn = 0;
  #env0: Record<string, string>;
  #expectExit = false;
  readonly #loop: Promise<void>;

  /** Use {@linkcode superviseService}. */
  constructor(opts: SuperviseOptions) {
    this.#env = opts.env;
    this.#crashDelayMs = opts.crashRestartDelayMs ?? 1_000;
    this.#env0 = this.#env(0);
    this.#current = this.#start(this.#env0);
    this.#loop = this.#supervise();
  }

  /** The current process (replaced after every exit). */
  get current(): ServiceProcess {
    return this.#current;
  }

  /** Spawn number of the current process. */
  get spawn(): number {
    return this.#spawn;
  }

  /** The environment the current process was started with. */
  get env(): Record<string, string> {
    return this.#env0;
  }

  /** Exits that nobody asked for (crashes, exits by the service itself). */
  get unexpectedExits(): SupervisedExit[] {
    return this.exits.filter((e) => !e.expected);
  }

  /**
   * Waits until the current process (whichever it is when polled: a replacement counts) answers
   * `GET /health/ready` with 200. Rejects after `timeoutMs` (default 20000).
   */
  async waitReady(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const svc = this.#current;
      try {
        await svc.waitReady(Math.max(0, deadline - Date.now()));
        return;
      } catch (err) {
        // The process ended while we waited: wait for its replacement instead.
        if (svc.status !== undefined && Date.now() < deadline && !this.#stopping.signal.aborted) {
          await sleep(50);
          continue;
        }
        throw err;
      }
    }
  }

  /** True when the current process answers `GET /health/ready` with 200 within `timeoutMs`. */
  async isReady(timeoutMs = 1_000): Promise<boolean> {
    try {
      return (await this.#current.request("/health/ready", { timeoutMs })).status === 200;
    } catch {
      return false;
    }
  }

  /**
   * SIGKILLs the current process and resolves with its status once it ended; its replacement
   * is being started by then (not yet ready: see {@linkcode SupervisedService.waitReady}).
   */
  async kill(): Promise<ExitStatus> {
    const svc = this.#current;
    this.#expectExit = true;
    const status = await svc.kill();
    // Let the supervising loop record the exit and start the replacement.
    while (this.#current === svc && !this.#stopping.signal.aborted) await sleep(5);
    return status;
  }

  /** Freezes the current process with SIGSTOP. */
  pause(): void {
    this.#current.pause();
  }

  /** Resumes the current process with SIGCONT (no-op when it is not paused). */
  resume(): void {
    this.#current.resume();
  }

  /**
   * Ends the supervision, then stops the current process (SIGCONT if paused, SIGTERM, SIGKILL
   * after `killAfterMs`, default 40000) and resolves with its exit status. Safe to call twice.
   */
  async stop(killAfterMs = 40_000): Promise<ExitStatus> {
    this.#stopping.abort();
    this.#expectExit = true;
    const status = await this.#current.stop(killAfterMs);
    await this.#loop;
    return status;
  }

  /** Same as {@linkcode SupervisedService.stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Spawns a process as `startService({ env, waitReady: false })` would, synchronously. */
  #start(env: Record<string, string>): ServiceProcess {
    const port = env.SERVICE_PORT !== undefined ? Number(env.SERVICE_PORT) : freePort();
    return new ServiceProcess(serviceEnv(env, port), port, REPO_ROOT);
  }

  async #supervise(): Promise<void> {
    while (true) {
      const svc = this.#current;
      const status = await svc.exited;
      const expected = this.#expectExit;
      this.#expectExit = false;
      this.exits.push({
        spawn: this.#spawn,
        pid: svc.pid,
        status,
        expected,
        at: Date.now(),
        outputTail: svc.output().split("\n").slice(-40).join("\n"),
      });
      if (this.#stopping.signal.aborted) return;
      if (!expected) await sleep(this.#crashDelayMs, this.#stopping.signal);
      if (this.#stopping.signal.aborted) return;
      this.#spawn++;
      this.#env0 = this.#env(this.#spawn);
      this.#current = this.#start(this.#env0);
    }
  }
}

/** Starts a service process under supervision (see {@linkcode SupervisedService}). */
export function superviseService(opts: SuperviseOptions): SupervisedService {
  return new SupervisedService(opts);
}
