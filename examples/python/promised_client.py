"""What both flows share: stubs generated from the service's protos, a channel, and the
lookups a client makes before it promises or routes (a SKU with stock at a DC or 3PL
warehouse, a source's next batch sequence).

The stubs are generated at first use into `generated/` (not committed) with grpcio-tools,
from `proto/` at the root of the repository, so they always match the service.
"""

import importlib
import os
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "proto")
GENERATED = os.path.join(HERE, "generated")
PROTOS = ["admin", "availability", "network", "promising", "reservations", "routing", "supply"]

# A destination the demo network serves: St. Louis, MO.
DESTINATION = {"lat": 38.63, "lon": -90.2}


def generate_stubs():
    """Runs protoc (from grpcio-tools) over the service's protos unless already done."""
    marker = os.path.join(GENERATED, "promised", "v1", "routing_pb2_grpc.py")
    if not os.path.exists(marker):
        from grpc_tools import protoc

        os.makedirs(GENERATED, exist_ok=True)
        files = [os.path.join(PROTO_ROOT, "promised", "v1", f"{p}.proto") for p in PROTOS]
        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        code = protoc.main(
            ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={GENERATED}",
             f"--grpc_python_out={GENERATED}", *files]
        )
        if code != 0:
            sys.exit(f"protoc failed ({code})")
    if GENERATED not in sys.path:
        sys.path.insert(0, GENERATED)


def stubs(name):
    """The `(messages, services)` modules of `promised/v1/<name>.proto`."""
    generate_stubs()
    return (
        importlib.import_module(f"promised.v1.{name}_pb2"),
        importlib.import_module(f"promised.v1.{name}_pb2_grpc"),
    )


def channel():
    """A channel to the service at $PROMISED_ADDR (default localhost:50051), without TLS as
    the demo serves; with credentials, use grpc.secure_channel and a bearer token."""
    return grpc.insecure_channel(os.environ.get("PROMISED_ADDR", "localhost:50051"))


def sku_in_stock(chan, quantity, wait_secs=60.0):
    """A SKU of the demo catalogue with at least `quantity` available at one DC or 3PL
    warehouse, and that node; waits for the demo's catalogue to load."""
    availability, availability_grpc = stubs("availability")
    client = availability_grpc.AvailabilityStub(chan)
    skus = [f"SKU-{i:06d}" for i in range(200)]
    deadline = time.monotonic() + wait_secs
    while True:
        answer = client.GetAvailability(availability.AvailabilityRequest(skus=skus), timeout=5)
        for item in answer.items:
            for node in item.nodes:
                if not node.node_id.startswith("STORE-") and node.atp >= quantity:
                    return item.sku, node.node_id
        if time.monotonic() > deadline:
            sys.exit(f"no SKU with {quantity} available after {wait_secs:.0f} s")
        time.sleep(0.5)


def ship(chan, source_id, order_id, sku, node_id, quantity):
    """Confirms a shipment as the warehouse's feed would: a SHIP update in the source's next
    batch. The demo's own feed sends as the same source, so a batch that loses the race for a
    sequence number comes back `duplicate` and is sent again under the next one."""
    admin, admin_grpc = stubs("admin")
    network, _ = stubs("network")
    supply, supply_grpc = stubs("supply")
    update = supply.SupplyUpdate(
        sku=sku,
        node_id=node_id,
        supply_type=network.SUPPLY_TYPE_ON_HAND,
        op=supply.UPDATE_OP_SHIP,
        quantity=quantity,
        order_id=order_id,
    )
    for _ in range(10):
        stats = admin_grpc.AdminStub(chan).GetStats(admin.GetStatsRequest(), timeout=5)
        last = next(s.last_seq for s in stats.source_stats if s.source_id == source_id)
        batch = supply.SupplyBatch(source_id=source_id, seq=last + 1, updates=[update])
        ack = supply_grpc.SupplyStub(chan).ApplyBatch(batch, timeout=5)
        if not ack.duplicate:
            if ack.applied != 1:
                sys.exit(f"the shipment was not applied: {ack}")
            return ack
    sys.exit("the shipment lost the race for a sequence number ten times")


def check(condition, what):
    """Stops the flow, non-zero, when an answer is not what the flow expects."""
    if not condition:
        sys.exit(f"unexpected: {what}")
