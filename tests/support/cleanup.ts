/**
 * Collects teardown steps during a test and runs them in reverse order, even when one fails,
 * so that every started process and open client is released whatever the test did.
 *
 * ```ts
 * await using cleanup = new Cleanup();
 * const redis = cleanup.use(await startRedis());
 * const svc = cleanup.use(await startService({ env: redis.env() }));
 * ```
 *
 * @module
 */

/** A teardown step: may be sync or async. */
export type CleanupFn = () => unknown;

/** Teardown steps run last-in, first-out by `run()` or by `await using`. */
export class Cleanup implements AsyncDisposable {
  #steps: CleanupFn[] = [];

  /** Adds a step; steps run in reverse order of addition. */
  add(fn: CleanupFn): void {
    this.#steps.push(fn);
  }

  /** Adds the disposal (`Symbol.asyncDispose`, else `Symbol.dispose`) of `resource`; returns it. */
  use<T extends AsyncDisposable | Disposable>(resource: T): T {
    this.add(() =>
      Symbol.asyncDispose in resource
        ? resource[Symbol.asyncDispose]()
        : (resource as Disposable)[Symbol.dispose]()
    );
    return resource;
  }

  /**
   * Runs every step in reverse order, awaiting each; a failing step does not stop the others.
   * Resolves to the errors thrown (empty when all went well). Steps run once: `run()` again is a
   * no-op unless new steps were added.
   */
  async run(): Promise<unknown[]> {
    const errors: unknown[] = [];
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      try {
        await step();
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }

  /**
   * Runs the steps (see {@linkcode Cleanup.run}), for `await using`; failures are printed to
   * stderr, not thrown, so they never hide the test's own error.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const err of await this.run()) console.error("Cleanup step failed:", err);
  }
}
