"""A checkout: promise a cart, hold what was promised, and commit the hold into an order.

    python examples/python/checkout.py          # against the demo on localhost:50051

Each step prints what the service answered; any answer the flow does not expect stops it
with a non-zero exit.
"""

import uuid

from promised_client import DESTINATION, channel, check, sku_in_stock, stubs

promising, promising_grpc = stubs("promising")
reservations, reservations_grpc = stubs("reservations")


def main():
    chan = channel()
    sku, _ = sku_in_stock(chan, quantity=2)
    cart = [promising.PromiseLine(sku=sku, quantity=2)]

    # 1. When can the cart arrive, by ground, and from where?
    promise = promising_grpc.PromisingStub(chan).PromiseOrder(
        promising.PromiseRequest(
            lines=cart,
            destination=promising.Destination(**DESTINATION),
            service_levels=["GROUND"],
        ),
        timeout=5,
    )
    option = promise.options[0]
    check(option.feasible, f"the cart cannot be promised: {option.reason}")
    print(f"promise: {sku} x2 delivered {option.delivery_date} by GROUND, cost {option.cost:.2f}")

    # 2. Hold exactly what was promised, at the nodes it ships from. The reservation id is the
    #    idempotency key: a retry after a timeout answers the same hold.
    reservation_id = f"checkout-{uuid.uuid4()}"
    lines = [
        reservations.ReservationLine(sku=line.sku, node_id=shipment.node_id, quantity=line.quantity)
        for shipment in option.shipments
        for line in shipment.lines
    ]
    request = reservations.ReserveRequest(reservation_id=reservation_id, lines=lines, ttl_seconds=900)
    client = reservations_grpc.ReservationsStub(chan)
    held = client.Reserve(request, timeout=5)
    check(held.state == reservations.RESERVATION_STATE_HELD, f"not held: {held}")
    retried = client.Reserve(request, timeout=5)
    check(retried == held, "a retried reserve answered a different hold")
    print(f"reserve: {reservation_id} held until {held.expires_at.ToJsonString()}")

    # 3. Payment went through: the hold becomes an allocation for the order.
    order_id = f"order-{uuid.uuid4()}"
    committed = client.Commit(
        reservations.CommitRequest(reservation_id=reservation_id, order_id=order_id), timeout=5
    )
    check(committed.state == reservations.RESERVATION_STATE_COMMITTED, f"not committed: {committed}")
    where = ", ".join(
        f"{a.node_id} x{a.quantity}" for line in committed.lines for a in line.allocations
    )
    print(f"commit: {order_id} allocated at {where}")


if __name__ == "__main__":
    main()
