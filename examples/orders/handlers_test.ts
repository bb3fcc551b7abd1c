/**
 * Unit tests of the orders example's handlers with the test kit (no Redis):
 * what each handler emits, logs and throws for one delivery.
 */
import { testHandler } from "../../mod.ts";
import { orderCreated, orderPaid } from "./handlers.ts";

function assertEquals(actual: unknown, expected: unknown, msg = "values are not equal"): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg}: ${a} !== ${e}`);
}

Deno.test("order.created logs the order's items and total, and emits nothing", async () => {
  const result = await testHandler(orderCreated, {
    aggregateId: "order-1",
    payload: { total: 30, lines: [{ sku: "a", quantity: 2 }, { sku: "b", quantity: 1 }] },
  });
  assertEquals(result.error, undefined);
  assertEquals(result.emitted, []);
  assertEquals(result.logs.map((l) => [l.level, l.properties]), [
    ["info", { id: "order-1", items: 3, total: 30 }],
  ]);
});

Deno.test("order.created with an order without lines is invalid (dead-lettered at once)", async () => {
  const result = await testHandler(orderCreated, { payload: { total: 30, lines: [] } });
  assertEquals(result.payloadInvalid, true);
  if (!result.error?.message.startsWith("payload invalid: lines:")) {
    throw new Error(`unexpected error ${result.error?.message}`);
  }
});

Deno.test("order.paid emits invoice.requested to invoices, caused by the payment", async () => {
  const result = await testHandler(orderPaid, {
    id: "1700000000000-0",
    aggregateId: "order-1",
    payload: { amount: 30, currency: "EUR" },
    headers: { correlationId: "corr-1" },
  });
  assertEquals(result.error, undefined);
  assertEquals(
    result.emitted.map((e) => [e.stream, e.event, e.aggregateId, e.payload, e.headers]),
    [
      [
        "invoices",
        "invoice.requested",
        "order-1",
        { orderId: "order-1", amount: 30, currency: "EUR" },
        { causationId: "1700000000000-0", correlationId: "corr-1" },
      ],
    ],
  );
});

Deno.test("order.paid with a currency of the wrong length is invalid", async () => {
  const result = await testHandler(orderPaid, { payload: { amount: 30, currency: "EURO" } });
  assertEquals(result.payloadInvalid, true);
  assertEquals(result.emitted, []);
});
