// What both flows share: clients built from the service's protos (loaded at run time by
// @grpc/proto-loader, typed by the interfaces `npm run generate` writes into generated/) as
// promise-returning calls, and the lookups a client makes before it promises or routes.

import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

import type { ProtoGrpcType as Admin } from "../generated/admin";
import type { ProtoGrpcType as Availability } from "../generated/availability";
import type { ProtoGrpcType as Promising } from "../generated/promising";
import type { ProtoGrpcType as Reservations } from "../generated/reservations";
import type { ProtoGrpcType as Routing } from "../generated/routing";
import type { ProtoGrpcType as Supply } from "../generated/supply";
import type { AvailabilityRequest } from "../generated/promised/v1/AvailabilityRequest";
import type { AvailabilityResponse__Output } from "../generated/promised/v1/AvailabilityResponse";
import type { CommitRequest } from "../generated/promised/v1/CommitRequest";
import type { GetReservationRequest } from "../generated/promised/v1/GetReservationRequest";
import type { GetStatsRequest } from "../generated/promised/v1/GetStatsRequest";
import type { PromiseRequest } from "../generated/promised/v1/PromiseRequest";
import type { PromiseResponse__Output } from "../generated/promised/v1/PromiseResponse";
import type { Reservation__Output } from "../generated/promised/v1/Reservation";
import type { ReserveRequest } from "../generated/promised/v1/ReserveRequest";
import type { RouteRequest } from "../generated/promised/v1/RouteRequest";
import type { RouteResponse__Output } from "../generated/promised/v1/RouteResponse";
import type { Stats__Output } from "../generated/promised/v1/Stats";
import type { SupplyAck__Output } from "../generated/promised/v1/SupplyAck";
import type { SupplyBatch } from "../generated/promised/v1/SupplyBatch";

const PROTO_ROOT = path.join(__dirname, "..", "..", "..", "..", "proto");
const PROTOS = ["admin", "availability", "network", "promising", "reservations", "routing", "supply"];

// A destination the demo network serves: St. Louis, MO.
export const DESTINATION = { lat: 38.63, lon: -90.2 };

type Package = Admin & Availability & Promising & Reservations & Routing & Supply;

/** The calls the flows make, as promise-returning functions with a five-second deadline, to
 * the service at $PROMISED_ADDR (default localhost:50051), without TLS as the demo serves;
 * with credentials, use grpc.credentials.createSsl and a bearer token. */
export function clients() {
  const definition = protoLoader.loadSync(
    PROTOS.map((p) => `promised/v1/${p}.proto`),
    { includeDirs: [PROTO_ROOT], longs: String, enums: String, defaults: true, oneofs: true },
  );
  const v1 = (grpc.loadPackageDefinition(definition) as unknown as Package).promised.v1;
  const address = process.env.PROMISED_ADDR ?? "localhost:50051";
  const insecure = grpc.credentials.createInsecure();
  const admin = new v1.Admin(address, insecure);
  const availability = new v1.Availability(address, insecure);
  const promising = new v1.Promising(address, insecure);
  const reservations = new v1.Reservations(address, insecure);
  const routing = new v1.Routing(address, insecure);
  const supply = new v1.Supply(address, insecure);
  return {
    getStats: unary<GetStatsRequest, Stats__Output>(admin.getStats.bind(admin)),
    getAvailability: unary<AvailabilityRequest, AvailabilityResponse__Output>(
      availability.getAvailability.bind(availability),
    ),
    promiseOrder: unary<PromiseRequest, PromiseResponse__Output>(promising.promiseOrder.bind(promising)),
    reserve: unary<ReserveRequest, Reservation__Output>(reservations.reserve.bind(reservations)),
    commit: unary<CommitRequest, Reservation__Output>(reservations.commit.bind(reservations)),
    getReservation: unary<GetReservationRequest, Reservation__Output>(reservations.get.bind(reservations)),
    routeOrder: unary<RouteRequest, RouteResponse__Output>(routing.routeOrder.bind(routing)),
    applyBatch: unary<SupplyBatch, SupplyAck__Output>(supply.applyBatch.bind(supply)),
  };
}

export type Clients = ReturnType<typeof clients>;

/** A unary method as a function answering a promise, each call with a deadline of five
 * seconds. */
function unary<Req, Res>(
  method: (req: Req, options: grpc.CallOptions, done: grpc.requestCallback<Res>) => unknown,
): (request: Req) => Promise<Res> {
  return (request) =>
    new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + 5_000);
      method(request, { deadline }, (error, answer) =>
        error || answer === undefined ? reject(error ?? new Error("no answer")) : resolve(answer),
      );
    });
}

/** Stops the flow, non-zero, when an answer is not what the flow expects. */
export function check(condition: boolean, what: string): asserts condition {
  if (!condition) {
    console.error(`unexpected: ${what}`);
    process.exit(1);
  }
}

/** A SKU of the demo catalogue with at least `quantity` available at one DC or 3PL
 * warehouse; waits for the demo's catalogue to load. */
export async function skuInStock(c: Clients, quantity: number, waitMs = 60_000): Promise<string> {
  const skus = Array.from({ length: 200 }, (_, i) => `SKU-${String(i).padStart(6, "0")}`);
  const until = Date.now() + waitMs;
  for (;;) {
    const answer = await c.getAvailability({ skus });
    for (const item of answer.items) {
      if (item.nodes.some((n) => !n.nodeId.startsWith("STORE-") && Number(n.atp) >= quantity)) {
        return item.sku;
      }
    }
    check(Date.now() < until, `no SKU with ${quantity} available after ${waitMs / 1000} s`);
    await new Promise((wake) => setTimeout(wake, 500));
  }
}

/** Confirms a shipment as the warehouse's feed would: a SHIP update in the source's next
 * batch. The demo's own feed sends as the same source, so a batch that loses the race for a
 * sequence number comes back `duplicate` and is sent again under the next one. */
export async function ship(
  c: Clients,
  sourceId: string,
  orderId: string,
  line: { sku: string; nodeId: string; quantity: string },
): Promise<SupplyAck__Output> {
  const update = { ...line, supplyType: "SUPPLY_TYPE_ON_HAND", op: "UPDATE_OP_SHIP", orderId } as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const stats = await c.getStats({});
    const source = stats.sourceStats.find((s) => s.sourceId === sourceId);
    check(source !== undefined, `no source ${sourceId}`);
    const seq = (BigInt(source.lastSeq) + 1n).toString();
    const ack = await c.applyBatch({ sourceId, seq, updates: [update] });
    if (!ack.duplicate) {
      check(ack.applied === 1, `the shipment was not applied: ${JSON.stringify(ack)}`);
      return ack;
    }
  }
  check(false, "the shipment lost the race for a sequence number ten times");
}
