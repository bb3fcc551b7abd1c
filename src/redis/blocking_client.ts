/**
 * The blocking reader's own connection (single Redis and Sentinel): one socket, one command at a
 * time, RESP2 read by `resp.ts`. The consumer's XREADGROUP replies carry every entry it reads,
 * and node-redis spent more of the consumer's CPU decoding them than anything else (a `Buffer`
 * view and a string per field); here a reply is decoded in one call (bench/RESULTS.md, session 5).
 *
 * It is made and connected like a node-redis client of `client.ts` (TLS from the PEM files read
 * on every connect, AUTH with REDIS_USER / REDIS_PW, a CLIENT SETNAME), and offers the part of one
 * that `ConnectionManager` uses: `connect`, `sendCommand`, `close`/`destroy`, `isOpen`/`isReady`
 * and `error` listeners. Errors look like node-redis': an error reply is its `ErrorReply`, a lost
 * socket a `SocketClosedUnexpectedlyError`, a command on a closed client a `ClientClosedError`
 * (all sorted by `classifyError`). Each command keeps its deadline (`sendCommand`); after a
 * missed one the connection is given up and the manager replaces it.
 */
import { DeadlineError, withDeadline } from "../clock.ts";
import { type Config, readTlsFiles } from "../config.ts";
import type { Address } from "./client.ts";
import type { RawChunks } from "./raw_chunks.ts";
import { encodeCommand, ReplyReader } from "./resp.ts";
import { ErrorReply } from "npm:@redis/client@^5.12.1";

/** A connection error, named as node-redis names its own (see `classifyError`). */
function connectionError(name: string, message: string, cause?: unknown): Error {
  const err = new Error(message, cause === undefined ? undefined : { cause });
  err.name = name;
  return err;
}

/** One connection for blocking reads (see the module comment). */
export class BlockingClient {
  readonly #redis: Config["redis"];
  readonly #address: Address;
  readonly #name: string;
  #conn?: Deno.Conn;
  #reader = new ReplyReader();
  #open = false;
  #ready = false;
  /** The command in progress: commands run one after another. */
  #queue: Promise<unknown> = Promise.resolve();
  #listeners: ((err: unknown) => void)[] = [];

  constructor(redis: Config["redis"], address: Address, name: string) {
    this.#redis = redis;
    this.#address = address;
    this.#name = name.replace(/[^\x21-\x7e]/g, "_");
  }

  /** True from the socket's opening until it is closed. */
  get isOpen(): boolean {
    return this.#open;
  }

  /** True once connected and authenticated, until closed or the socket fails. */
  get isReady(): boolean {
    return this.#ready;
  }

  /** Adds a listener for the socket's failure (a command in progress also rejects). */
  on(_event: "error", listener: (err: unknown) => void): this {
    this.#listeners.push(listener);
    return this;
  }

  /** Opens the socket (within CONNECTION_TIMEOUT), authenticates and names the connection. */
  async connect(): Promise<void> {
    const r = this.#redis;
    const dial = this.#dial();
    try {
      this.#conn = await withDeadline(dial, r.connectTimeoutMs);
    } catch (err) {
      dial.then((c) => c.close(), () => {}); // one that opens after the deadline
      throw connectionError(
        "ConnectionTimeoutError",
        `Connecting to ${this.#address.host}:${this.#address.port}: ${(err as Error).message}`,
        err,
      );
    }
    this.#open = true;
    if (r.password !== undefined) {
      const auth = r.username ? ["AUTH", r.username, r.password] : ["AUTH", r.password];
      await this.#send(encodeCommand(auth));
    }
    await this.#send(encodeCommand(["CLIENT", "SETNAME", this.#name]));
    this.#ready = true;
  }

  /**
   * Sends `args` and resolves with the reply (an error reply rejects as `ErrorReply`). Commands
   * sent while one is in progress wait for it. It rejects with a `DeadlineError` when no reply
   * came within `options.timeout` ms (default CONNECTION_TIMEOUT) from this call: the connection
   * is then given up (closed, and the `error` listeners told), as its state is unknown.
   */
  sendCommand(
    args: string[],
    options?: { timeout?: number; chunks?: RawChunks },
  ): Promise<unknown> {
    return this.sendBytes(encodeCommand(args), options);
  }

  /**
   * `sendCommand` of a command encoded already (`bytes`, not changed until it is answered).
   * With `chunks`, an XREADGROUP reply's entries come with their bytes (`ReplyReader.take`).
   */
  sendBytes(
    bytes: Uint8Array,
    options?: { timeout?: number; chunks?: RawChunks },
  ): Promise<unknown> {
    if (!this.#ready) {
      return Promise.reject(connectionError("ClientClosedError", "The client is closed"));
    }
    const chunks = options?.chunks;
    const send = () => this.#send(bytes, chunks);
    const run = this.#queue.then(send, send);
    this.#queue = run.catch(() => {});
    return withDeadline(run, options?.timeout ?? this.#redis.connectTimeoutMs).catch(
      (err: unknown) => {
        if (err instanceof DeadlineError) this.#fail(err);
        throw err;
      },
    );
  }

  /** Closes the socket; a command in progress rejects. */
  close(): Promise<void> {
    this.destroy();
    return Promise.resolve();
  }

  /** Closes the socket at once (safe to call twice). */
  destroy(): void {
    this.#open = this.#ready = false;
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // Closed already.
    }
  }

  /** Gives the connection up once: closed, and the `error` listeners told why. */
  #fail(err: unknown): void {
    if (!this.#ready) return;
    this.destroy();
    for (const l of this.#listeners) l(err);
  }

  async #dial(): Promise<Deno.Conn> {
    const { host, port } = this.#address;
    if (!this.#redis.tls.enabled) {
      const conn = await Deno.connect({ hostname: host, port });
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
      return conn;
    }
    const pem = readTlsFiles(this.#redis.tls);
    return await Deno.connectTls({
      hostname: host,
      port,
      caCerts: pem.ca ? [pem.ca] : undefined,
      cert: pem.cert,
      key: pem.key,
    });
  }

  /** Writes a command's `bytes` and reads one reply. */
  async #send(bytes: Uint8Array, chunks?: RawChunks): Promise<unknown> {
    const conn = this.#conn;
    if (!conn) throw connectionError("ClientClosedError", "The client is closed");
    let reply: unknown;
    try {
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      while ((reply = this.#reader.take(chunks)) === undefined) {
        const n = await conn.read(this.#reader.space());
        if (n === null) throw new Error("the server closed the connection");
        this.#reader.wrote(n);
      }
    } catch (err) {
      const lost = connectionError(
        "SocketClosedUnexpectedlyError",
        `Socket closed unexpectedly: ${(err as Error).message}`,
        err,
      );
      this.#reader = new ReplyReader();
      this.#fail(lost);
      throw lost;
    }
    if (reply instanceof ErrorReply) throw reply;
    return reply;
  }
}
