/**
 * The handlers of the orders example: `order.created` with a typed payload
 * (a zod schema: a malformed order is dead-lettered at once), and
 * `order.paid`, which emits `invoice.requested` exactly once per payment:
 * the emitted entry is written with the acknowledgement of `order.paid`.
 */
import { defineHandler, z } from "../../mod.ts";

/** An order line. */
const Line = z.object({ sku: z.string().min(1), quantity: z.number().int().positive() });

/** `order.created`: validates the order and logs its total. */
export const orderCreated = defineHandler({
  event: "order.created",
  payload: z.object({ total: z.number().nonnegative(), lines: z.array(Line).min(1) }),
  timeoutMs: 5_000,
  handle(event, ctx) {
    // event.payload is typed: { total: number; lines: { sku: string; quantity: number }[] }
    const items = event.payload.lines.reduce((n, l) => n + l.quantity, 0);
    ctx.logger.info("Order {id}: {items} items, total {total}", {
      id: event.aggregateId,
      items,
      total: event.payload.total,
    });
  },
});

/** `order.paid`: asks for an invoice, to the `invoices` stream. */
export const orderPaid = defineHandler({
  event: "order.paid",
  payload: z.object({ amount: z.number().positive(), currency: z.string().length(3) }),
  concurrency: 4,
  async handle(event, ctx) {
    await ctx.publish({
      stream: "invoices",
      event: "invoice.requested",
      payload: {
        orderId: event.aggregateId,
        amount: event.payload.amount,
        currency: event.payload.currency,
      },
    });
  },
});

/** Every handler of the example. */
export const handlers = [orderCreated, orderPaid];
