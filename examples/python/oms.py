"""An order management system's flow: route an order and hold the plan in one call, commit
the hold into the order, then confirm the shipment as the warehouse's feed would.

    python examples/python/oms.py               # against the demo on localhost:50051

Each step prints what the service answered; any answer the flow does not expect stops it
with a non-zero exit.
"""

import uuid

from promised_client import DESTINATION, channel, check, ship, sku_in_stock, stubs

network, _ = stubs("network")
promising, _ = stubs("promising")
reservations, reservations_grpc = stubs("reservations")
routing, routing_grpc = stubs("routing")

# The demo's WMS owns on-hand at its DCs (a 3PL warehouse may have a source of its own), so
# orders routed to DCs are confirmed by the WMS feed.
WAREHOUSE_SOURCE = "WMS"


def main():
    chan = channel()
    sku, _ = sku_in_stock(chan, quantity=3)
    order_id = f"order-{uuid.uuid4()}"
    reservation_id = f"oms-{order_id}"

    # 1. The cheapest plan from the DCs, held in the same call.
    request = routing.RouteRequest(
        order_id=order_id,
        lines=[promising.PromiseLine(sku=sku, quantity=3)],
        destination=promising.Destination(**DESTINATION),
        service_level="GROUND",
        constraints=routing.RouteConstraints(
            allowed_node_kinds=[network.NODE_KIND_DC]
        ),
        alternatives=2,
        reserve=True,
        reservation_id=reservation_id,
        ttl_seconds=900,
    )
    routed = routing_grpc.RoutingStub(chan).RouteOrder(request, timeout=5)
    check(routed.HasField("plan"), f"no plan: {routed.excluded}")
    shipments = ", ".join(f"{s.node_id} ({s.delivery_date})" for s in routed.plan.shipments)
    print(f"route: {order_id} ships from {shipments}, total cost {routed.plan.total_cost:.2f}")
    check(routed.reservation.state == reservations.RESERVATION_STATE_HELD, "the plan is not held")

    # 2. The order is released to the warehouse: the hold becomes its allocation.
    client = reservations_grpc.ReservationsStub(chan)
    committed = client.Commit(
        reservations.CommitRequest(reservation_id=reservation_id, order_id=order_id), timeout=5
    )
    check(committed.state == reservations.RESERVATION_STATE_COMMITTED, f"not committed: {committed}")
    allocations = [(line.sku, a.node_id, a.quantity) for line in committed.lines for a in line.allocations]
    print(f"commit: {order_id} allocated {allocations}")

    # 3. The warehouse ships: each allocation is confirmed through the feed, which takes it
    #    off the allocation and off on-hand at once.
    for item, node_id, quantity in allocations:
        ship(chan, WAREHOUSE_SOURCE, order_id, item, node_id, quantity)
    shipped = client.Get(reservations.GetReservationRequest(reservation_id=reservation_id), timeout=5)
    check(shipped.state == reservations.RESERVATION_STATE_SHIPPED, f"not shipped: {shipped}")
    print(f"ship: {order_id} shipped, reservation {shipped.reservation_id} is SHIPPED")


if __name__ == "__main__":
    main()
