//! Every mutating RPC, each with a request that changes something when it is let through, so
//! that a test can send them all: while Redis is down (each refused, nothing changed), or to
//! a service that takes them (each leaves its audit entry).

use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use promised::grpc::pb::supply_client::SupplyClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::helpers::{adjust_on_hand, batch, ground, set_on_hand, source, TestApp, START_MS};
use crate::reservations::{line, reserve_request};

/// A mutating call; the feed calls and the holding calls named for what they send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutating {
    UpsertNodes,
    UpsertGroups,
    UpsertSources,
    UpsertServiceLevels,
    UpsertPostalCodes,
    UpsertMappings,
    UpsertItems,
    SetSafetyStock,
    /// `CheckInvariants` with `repair`.
    Repair,
    ApplyBatch,
    Reserve,
    Update,
    Extend,
    Release,
    Commit,
    /// `PromiseOrder` with `reserve`.
    PromiseAndReserve,
    /// `RouteOrder` with `reserve`.
    RouteAndReserve,
    /// `RouteOrders` with an order that reserves.
    WaveAndReserve,
    /// `CommitSync`, after the `BeginSync` and `SyncPart` it commits (which journal nothing).
    CommitSync,
    StreamUpdates,
}

/// Every mutating RPC, in an order in which each succeeds after [`prepare`] (the reservation
/// calls act on the holds it made).
pub const MUTATING: [Mutating; 20] = [
    Mutating::UpsertNodes,
    Mutating::UpsertGroups,
    Mutating::UpsertSources,
    Mutating::UpsertServiceLevels,
    Mutating::UpsertPostalCodes,
    Mutating::UpsertMappings,
    Mutating::UpsertItems,
    Mutating::SetSafetyStock,
    Mutating::Repair,
    Mutating::ApplyBatch,
    Mutating::Reserve,
    Mutating::Update,
    Mutating::Extend,
    Mutating::Release,
    Mutating::Commit,
    Mutating::PromiseAndReserve,
    Mutating::RouteAndReserve,
    Mutating::WaveAndReserve,
    Mutating::CommitSync,
    Mutating::StreamUpdates,
];

impl Mutating {
    /// The operation the audit trail records for it.
    pub fn action(self) -> &'static str {
        use Mutating::*;
        match self {
            UpsertNodes => "upsert_nodes",
            UpsertGroups => "upsert_groups",
            UpsertSources => "upsert_sources",
            UpsertServiceLevels => "upsert_service_levels",
            UpsertPostalCodes => "upsert_postal_codes",
            UpsertMappings => "upsert_mappings",
            UpsertItems => "upsert_items",
            SetSafetyStock => "set_safety_stock",
            Repair => "repair",
            ApplyBatch | StreamUpdates => "apply_batch",
            Reserve => "reserve",
            Update => "update_reservation",
            Extend => "extend",
            Release => "release",
            Commit => "commit",
            PromiseAndReserve => "promise",
            RouteAndReserve => "route_and_reserve",
            WaveAndReserve => "route_wave_and_reserve",
            CommitSync => "commit_sync",
        }
    }
}

/// WMS-EAST's first batch (10 of SKU-1 on hand at DC-EAST), and the holds the reservation
/// calls act on: `held` (2) and `ordered` (3).
pub async fn prepare(app: &mut TestApp) {
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    for (id, quantity) in [("held", 2), ("ordered", 3)] {
        let hold = reserve_request(id, vec![line("SKU-1", "DC-EAST", quantity)]);
        reservations.reserve(hold).await.expect("held");
    }
}

/// `message` under the request id `request_id`.
fn ask<T>(message: T, request_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    let id = MetadataValue::try_from(request_id).expect("a printable request id");
    request.metadata_mut().insert("x-request-id", id);
    request
}

/// Sends `call` over `channel` under `request_id`; the feed calls send WMS-EAST's batches 3
/// (`ApplyBatch`) and 4 (`StreamUpdates`), adding 5 of SKU-1 at DC-EAST each.
pub async fn send(call: Mutating, channel: &Channel, request_id: &str) -> Result<(), Status> {
    let id = request_id;
    let mut admin = AdminClient::new(channel.clone());
    let mut reservations = ReservationsClient::new(channel.clone());
    let mut supply = SupplyClient::new(channel.clone());
    let feed = |seq| batch("WMS-EAST", seq, vec![adjust_on_hand("SKU-1", "DC-EAST", 5)]);
    match call {
        Mutating::UpsertNodes => {
            let node = crate::helpers::node("DC-NEW", pb::NodeKind::Dc, "America/Chicago", &[]);
            let nodes = pb::UpsertNodesRequest { nodes: vec![node] };
            drop(admin.upsert_nodes(ask(nodes, id)).await?);
        }
        Mutating::UpsertGroups => {
            let group = pb::NodeGroup {
                id: "NEW".into(),
                ..Default::default()
            };
            let groups = pb::UpsertGroupsRequest {
                groups: vec![group],
            };
            drop(admin.upsert_groups(ask(groups, id)).await?);
        }
        Mutating::UpsertSources => {
            let kind = pb::SourceKind::Wms;
            let new = source("NEW", kind, &[], &[pb::SupplyType::OnHand], 0);
            let sources = pb::UpsertSourcesRequest { sources: vec![new] };
            drop(admin.upsert_sources(ask(sources, id)).await?);
        }
        Mutating::UpsertServiceLevels => {
            let levels = pb::UpsertServiceLevelsRequest {
                service_levels: vec![ground(0.02)],
            };
            drop(admin.upsert_service_levels(ask(levels, id)).await?);
        }
        Mutating::UpsertPostalCodes => {
            let code = pb::PostalCode {
                postal_code: "10001".into(),
                country: "US".into(),
                lat: 40.7,
                lon: -74.0,
            };
            let codes = pb::UpsertPostalCodesRequest {
                postal_codes: vec![code],
            };
            drop(admin.upsert_postal_codes(ask(codes, id)).await?);
        }
        Mutating::SetSafetyStock => {
            let entry = pb::SafetyStockEntry {
                sku: "SKU-1".into(),
                node_id: "DC-EAST".into(),
                quantity: 4,
            };
            let entries = pb::SetSafetyStockRequest {
                entries: vec![entry],
            };
            drop(admin.set_safety_stock(ask(entries, id)).await?);
        }
        Mutating::Repair => {
            let repair = pb::CheckInvariantsRequest { repair: true };
            drop(admin.check_invariants(ask(repair, id)).await?);
        }
        Mutating::ApplyBatch => drop(supply.apply_batch(ask(feed(3), id)).await?),
        Mutating::Reserve => {
            let new = reserve_request("new", vec![line("SKU-1", "DC-EAST", 1)]);
            drop(reservations.reserve(ask(new, id)).await?);
        }
        Mutating::Update => {
            let fewer = reserve_request("held", vec![line("SKU-1", "DC-EAST", 1)]);
            drop(reservations.update(ask(fewer, id)).await?);
        }
        Mutating::Extend => {
            let extend = pb::ExtendRequest {
                reservation_id: "held".into(),
                ttl_seconds: 900,
            };
            drop(reservations.extend(ask(extend, id)).await?);
        }
        Mutating::Release => {
            let release = pb::ReleaseRequest {
                reservation_id: "held".into(),
            };
            drop(reservations.release(ask(release, id)).await?);
        }
        Mutating::Commit => {
            let commit = pb::CommitRequest {
                reservation_id: "ordered".into(),
                order_id: "ORDER-1".into(),
            };
            drop(reservations.commit(ask(commit, id)).await?);
        }
        Mutating::UpsertMappings => {
            // POS's codes: WMS-EAST's feed calls below keep sending SKU ids.
            let mapping = pb::SourceMapping {
                source_id: "POS".into(),
                items: vec![pb::ItemCode {
                    code: "POS-0001".into(),
                    sku: "SKU-1".into(),
                }],
                ..Default::default()
            };
            let mappings = pb::UpsertMappingsRequest {
                mappings: vec![mapping],
            };
            drop(admin.upsert_mappings(ask(mappings, id)).await?);
        }
        Mutating::UpsertItems => {
            let item = pb::Item {
                sku: "SKU-1".into(),
                weight: 1.5,
                ..Default::default()
            };
            let items = pb::UpsertItemsRequest { items: vec![item] };
            drop(admin.upsert_items(ask(items, id)).await?);
        }
        Mutating::PromiseAndReserve | Mutating::RouteAndReserve | Mutating::WaveAndReserve => {
            hold_plan(call, channel, id).await?;
        }
        Mutating::CommitSync => full_sync(&mut supply, id).await?,
        Mutating::StreamUpdates => {
            let batches = tokio_stream::iter(vec![feed(4)]);
            let mut acks = supply.stream_updates(ask(batches, id)).await?.into_inner();
            acks.message()
                .await?
                .ok_or_else(|| Status::internal("the stream ended without an ack"))?;
        }
    }
    Ok(())
}

/// A promise or a route of 1 of SKU-1 to New York, holding its plan.
async fn hold_plan(call: Mutating, channel: &Channel, id: &str) -> Result<(), Status> {
    let lines = vec![pb::PromiseLine {
        sku: "SKU-1".into(),
        quantity: 1,
    }];
    let destination = Some(pb::Destination {
        lat: 40.7,
        lon: -74.0,
        ..Default::default()
    });
    if call == Mutating::PromiseAndReserve {
        let promise = pb::PromiseRequest {
            lines,
            destination,
            reserve: true,
            reservation_id: "promised".into(),
            ttl_seconds: 600,
            service_levels: vec!["GROUND".into()],
            ..Default::default()
        };
        let mut promising = PromisingClient::new(channel.clone());
        drop(promising.promise_order(ask(promise, id)).await?);
        return Ok(());
    }
    let waved = call == Mutating::WaveAndReserve;
    let route = pb::RouteRequest {
        order_id: if waved { "ORDER-3" } else { "ORDER-2" }.into(),
        lines,
        destination,
        service_level: "GROUND".into(),
        reserve: true,
        reservation_id: if waved { "waved" } else { "routed" }.into(),
        ttl_seconds: 600,
        ..Default::default()
    };
    let mut routing = RoutingClient::new(channel.clone());
    if waved {
        let wave = pb::RouteOrdersRequest {
            orders: vec![route],
        };
        drop(routing.route_orders(ask(wave, id)).await?);
    } else {
        drop(routing.route_order(ask(route, id)).await?);
    }
    Ok(())
}

/// WMS-EAST's full sync of on-hand at DC-EAST: 20 of SKU-1, newer than the batches before.
async fn full_sync(supply: &mut SupplyClient<Channel>, id: &str) -> Result<(), Status> {
    let (source_id, sync_id) = (String::from("WMS-EAST"), String::from("sync-1"));
    let begin = pb::BeginSyncRequest {
        source_id: source_id.clone(),
        sync_id: sync_id.clone(),
        supply_type: pb::SupplyType::OnHand.into(),
        node_ids: vec!["DC-EAST".into()],
        as_of: crate::helpers::as_of(START_MS + 1_000),
    };
    supply.begin_sync(ask(begin, id)).await?;
    let part = pb::SyncPartRequest {
        source_id: source_id.clone(),
        sync_id: sync_id.clone(),
        positions: vec![pb::SyncPosition {
            sku: "SKU-1".into(),
            node_id: "DC-EAST".into(),
            quantity: 20,
            ..Default::default()
        }],
    };
    supply.sync_part(ask(part, id)).await?;
    let commit = pb::CommitSyncRequest {
        source_id,
        sync_id,
        force: false,
    };
    drop(supply.commit_sync(ask(commit, id)).await?);
    Ok(())
}
