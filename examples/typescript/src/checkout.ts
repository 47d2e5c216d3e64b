// A checkout: promise a cart, hold what was promised, and commit the hold into an order.
//
//     npm run build && npm run checkout        # against the demo on localhost:50051
//
// Each step prints what the service answered; any answer the flow does not expect stops it
// with a non-zero exit.

import { randomUUID } from "node:crypto";
import { DESTINATION, check, clients, skuInStock } from "./client";

async function main() {
  const c = clients();
  const sku = await skuInStock(c, 2);

  // 1. When can the cart arrive, by ground, and from where?
  const promise = await c.promiseOrder({
    lines: [{ sku, quantity: 2 }],
    destination: DESTINATION,
    serviceLevels: ["GROUND"],
  });
  const option = promise.options[0];
  check(option?.feasible === true, `the cart cannot be promised: ${option?.reason}`);
  console.log(`promise: ${sku} x2 delivered ${option.deliveryDate} by GROUND, cost ${option.cost.toFixed(2)}`);

  // 2. Hold exactly what was promised, at the nodes it ships from. The reservation id is the
  //    idempotency key: a retry after a timeout answers the same hold.
  const reservationId = `checkout-${randomUUID()}`;
  const lines = option.shipments.flatMap((s) =>
    s.lines.map((l) => ({ sku: l.sku, nodeId: s.nodeId, quantity: l.quantity })),
  );
    const request = { reservationId, lines, ttlSeconds: 900 };
  const held = await c.reserve(request);
  check(held.state === "RESERVATION_STATE_HELD", `not held: ${JSON.stringify(held)}`);
  const retried = await c.reserve(request);
  check(JSON.stringify(retried) === JSON.stringify(held), "a retried reserve answered a different hold");
  console.log(`reserve: ${reservationId} held until ${new Date(Number(held.expiresAt?.seconds) * 1000).toISOString()}`);

  // 3. Payment went through: the hold becomes an allocation for the order.
  const orderId = `order-${randomUUID()}`;
  const committed = await c.commit({ reservationId, orderId });
  check(committed.state === "RESERVATION_STATE_COMMITTED", `not committed: ${JSON.stringify(committed)}`);
  const where = committed.lines.flatMap((l) => l.allocations.map((a) => `${a.nodeId} x${a.quantity}`));
  console.log(`commit: ${orderId} allocated at ${where.join(", ")}`);
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
