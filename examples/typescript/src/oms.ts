// An order management system's flow: route an order and hold the plan in one call, commit
// the hold into the order, then confirm the shipment as the warehouse's feed would.
//
//     npm run build && npm run oms             # against the demo on localhost:50051
//
// Each step prints what the service answered; any answer the flow does not expect stops it
// with a non-zero exit.

import { randomUUID } from "node:crypto";
import { DESTINATION, check, clients, ship, skuInStock } from "./client";

// The demo's WMS owns on-hand at its DCs (a 3PL warehouse may have a source of its own), so
// orders routed to DCs are confirmed by the WMS feed.
const WAREHOUSE_SOURCE = "WMS";

async function main() {
  const c = clients();
  const sku = await skuInStock(c, 3);
  const orderId = `order-${randomUUID()}`;
  const reservationId = `oms-${orderId}`;

  // 1. The cheapest plan from the DCs, held in the same call.
  const routed = await c.routeOrder({
    orderId,
    lines: [{ sku, quantity: 3 }],
    destination: DESTINATION,
    serviceLevel: "GROUND",
    constraints: { allowedNodeKinds: ["NODE_KIND_DC"] },
    alternatives: 2,
    reserve: true,
    reservationId,
    ttlSeconds: 900,
  });
  check(routed.plan !== null, `no plan: ${JSON.stringify(routed.excluded)}`);
  const from = routed.plan.shipments.map((s) => `${s.nodeId} (${s.deliveryDate})`).join(", ");
  console.log(`route: ${orderId} ships from ${from}, total cost ${routed.plan.totalCost.toFixed(2)}`);
  check(routed.reservation?.state === "RESERVATION_STATE_HELD", "the plan is not held");

  // 2. The order is released to the warehouse: the hold becomes its allocation.
  const committed = await c.commit({ reservationId, orderId });
  check(committed.state === "RESERVATION_STATE_COMMITTED", `not committed: ${JSON.stringify(committed)}`);
  const allocations = committed.lines.flatMap((l) =>
    l.allocations.map((a) => ({ sku: l.sku, nodeId: a.nodeId, quantity: a.quantity })),
  );
  console.log(`commit: ${orderId} allocated ${JSON.stringify(allocations)}`);

  // 3. The warehouse ships: each allocation is confirmed through the feed, which takes it
  //    off the allocation and off on-hand at once.
  for (const allocation of allocations) {
    await ship(c, WAREHOUSE_SOURCE, orderId, allocation);
  }
  const shipped = await c.getReservation({ reservationId });
  check(shipped.state === "RESERVATION_STATE_SHIPPED", `not shipped: ${JSON.stringify(shipped)}`);
  console.log(`ship: ${orderId} shipped, reservation ${shipped.reservationId} is SHIPPED`);
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
