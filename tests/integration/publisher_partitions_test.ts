/**
 * The publisher with STREAM_PARTITIONS above 1 (src/stream/publisher.ts) against a real
 * `redis-server`: an event for stream S lands in the partition key `{S:i}` with
 * i = FNV-1a(aggregateId) mod N, the answer names that key, and S itself stays empty.
 *
 * @module
 */

import { assertEquals } from "../support/assert.ts";
import { Cleanup } from "../support/cleanup.ts";
import { startRedis } from "../support/redis_server.ts";
import { readStream } from "../support/streams.ts";
import { testConfig } from "../support/in_process_consumer.ts";
import { ConnectionManager } from "../../src/redis/connection.ts";
import { fnv1a32 } from "../../src/stream/keys.ts";
import { Publisher } from "../../src/stream/publisher.ts";

Deno.test("Publisher with partitions writes to {S:FNV-1a(aggregateId) mod N}", async () => {
  await using cleanup = new Cleanup();
  const redis = cleanup.use(await startRedis());
  const client = await redis.client();
  const connection = new ConnectionManager({ redis: testConfig(redis).redis, clientName: "t" });
  cleanup.add(() => connection.close());
  await connection.connect();
  const publisher = new Publisher({ connection, serviceName: "pub-svc", partitions: 8 });

  // FNV-1a("foobar") = 0xbf9cf968, mod 8 = 0; FNV-1a("a") = 0xe40c292c, mod 8 = 4.
  const expected: Record<string, string> = { foobar: "{orders:0}", a: "{orders:4}" };
  for (let i = 0; i < 20; i++) expected[`order-${i}`] = `{orders:${fnv1a32(`order-${i}`) % 8}}`;
  for (const [aggregateId, key] of Object.entries(expected)) {
    const result = await publisher.publish({
      stream: "orders",
      event: "order.created",
      aggregateId,
      payload: {},
      correlationId: `c-${aggregateId}`,
    });
    assertEquals(result.stream, key, aggregateId);
    const entries = await readStream(client, key);
    assertEquals(entries.at(-1)?.id, result.id);
    assertEquals(entries.at(-1)?.fields.aggregateId, aggregateId);
  }
  assertEquals(await client.exists("orders"), 0);

  // With an Idempotency-Key too.
  const once = await publisher.publish({
    stream: "orders",
    event: "e",
    aggregateId: "a",
    payload: {},
    correlationId: "c",
    idempotencyKey: "k-1",
  });
  assertEquals(once.stream, "{orders:4}");
  const again = await publisher.publish({
    stream: "orders",
    event: "e",
    aggregateId: "a",
    payload: {},
    correlationId: "c",
    idempotencyKey: "k-1",
  });
  assertEquals([again.id, again.published], [once.id, false]);

  // One partition: the stream itself.
  const plain = new Publisher({ connection, serviceName: "pub-svc", partitions: 1 });
  const result = await plain.publish({
    stream: "orders",
    event: "e",
    aggregateId: "a",
    payload: {},
    correlationId: "c",
  });
  assertEquals(result.stream, "orders");
});
