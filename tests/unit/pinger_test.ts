/**
 * Unit tests of src/redis/pinger.ts: the forced-reconnect policy (failures in
 * a row on an open connection force a reconnect; a success resets the count;
 * no PING while disconnected). The connection is a scripted stand-in for the
 * connection manager's surface; Redis itself is exercised by the e2e outage tests.
 */
import type { ConnectionState } from "../../src/redis/connection.ts";
import { Pinger, type PingTarget, pingTiming } from "../../src/redis/pinger.ts";
import { assertEquals } from "../support/assert.ts";

class ScriptedTarget implements PingTarget {
  connected = true;
  outcomes: boolean[] = [];
  pings = 0;
  reconnects: string[] = [];
  ping(_timeoutMs: number): Promise<number> {
    this.pings++;
    return this.outcomes.shift() === false
      ? Promise.reject(new Error("Timed out after 1000 ms"))
      : Promise.resolve(1);
  }
  forceReconnect(reason: string): void {
    this.reconnects.push(reason);
  }
  onStateChange(_listener: (state: ConnectionState) => void): () => void {
    return () => {};
  }
}

Deno.test("Pinger.pingOnce() forces a reconnect after two failures in a row, not one", async () => {
  const target = new ScriptedTarget();
  const pinger = new Pinger({ connection: target });
  target.outcomes = [false, true, false, false];
  await pinger.pingOnce();
  await pinger.pingOnce(); // a success resets the count
  await pinger.pingOnce();
  assertEquals(target.reconnects, []);
  await pinger.pingOnce();
  assertEquals(target.reconnects, ["PING failed: Timed out after 1000 ms"]);
});

Deno.test("Pinger.pingOnce() does not PING while disconnected", async () => {
  const target = new ScriptedTarget();
  target.connected = false;
  await new Pinger({ connection: target, failuresBeforeReconnect: 1 }).pingOnce();
  assertEquals(target.pings, 0);
});

Deno.test("pingTiming() notices a hung Redis within CONNECTION_TIMEOUT + 2 s", () => {
  assertEquals(pingTiming(10_000), { intervalMs: 5000, timeoutMs: 1000 });
  assertEquals(pingTiming(500), { intervalMs: 1500, timeoutMs: 500 });
  for (const ct of [1, 100, 500, 1000, 2000, 3000, 10_000, 600_000]) {
    const { intervalMs, timeoutMs } = pingTiming(ct);
    assertEquals(intervalMs + timeoutMs <= ct + 2000, true, `CONNECTION_TIMEOUT=${ct}`);
    assertEquals(intervalMs > 0 && timeoutMs > 0 && timeoutMs <= 1000, true, `${ct}`);
  }
});
