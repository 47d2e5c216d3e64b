//! Spawns the real service on loopback (port 0) with a manual clock, and gives typed clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use promised::app::App;
use promised::checkpoint::Durability;
use promised::clock::ManualClock;
use promised::config::{Config, ServeArgs};
use promised::engine::Engine;
use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::supply_client::SupplyClient;
use promised::server::Application;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Monday 2026-03-02 15:00 UTC (10:00 in New York, 07:00 in Los Angeles).
pub const START_MS: i64 = 1_772_463_600_000;

pub struct TestApp {
    pub grpc_addr: SocketAddr,
    /// The HTTP/JSON edge.
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub clock: ManualClock,
    /// The application service the edges call, and beneath it the core and the store.
    pub service: App,
    pub engine: Engine,
    pub durability: Durability,
    pub admin: AdminClient<Channel>,
    pub supply: SupplyClient<Channel>,
    pub availability: AvailabilityClient<Channel>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Stops the service and waits for it to finish draining.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The service with the test network (see [`load_test_network`]) and default limits.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(ServeArgs::default()).await
}

/// The service with the test network and the given flags (addresses are always loopback:0;
/// without a credentials file, authentication is off), reached in plaintext.
pub async fn spawn_app_with(args: ServeArgs) -> TestApp {
    spawn_app_via(args, |addr| {
        Endpoint::from_shared(format!("http://{addr}")).expect("valid uri")
    })
    .await
}

/// The service with the test network and the given flags, its clients connected through
/// `endpoint` (TLS, a client certificate) so that they can set the network up.
pub async fn spawn_app_via(
    args: ServeArgs,
    endpoint: impl FnOnce(SocketAddr) -> Endpoint,
) -> TestApp {
    let args = ServeArgs {
        grpc_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        shutdown_grace_secs: Some("5".into()),
        insecure_no_auth: args.credentials.is_none(),
        ..args
    };
    let config = Config::resolve(&args, &HashMap::new()).expect("test config is valid");
    let clock = ManualClock::new(START_MS);
    let app = Application::build(config, Arc::new(clock.clone()))
        .await
        .expect("service builds");
    let grpc_addr = app.grpc_addr();
    let http_addr = app.http_addr();
    let metrics_addr = app.metrics_addr();
    let service = app.app().clone();
    let engine = app.engine().clone();
    let durability = app.durability().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let channel = endpoint(grpc_addr)
        .connect()
        .await
        .expect("service accepts connections");
    let mut app = TestApp {
        grpc_addr,
        http_addr,
        metrics_addr,
        clock,
        service,
        engine,
        durability,
        admin: AdminClient::new(channel.clone()),
        supply: SupplyClient::new(channel.clone()),
        availability: AvailabilityClient::new(channel.clone()),
        channel,
        stop: Some(stop),
        serving: Some(serving),
    };
    load_test_network(&mut app.admin).await;
    app
}

pub fn node(id: &str, kind: pb::NodeKind, time_zone: &str, groups: &[&str]) -> pb::Node {
    pb::Node {
        id: id.into(),
        kind: kind.into(),
        lat: 40.0,
        lon: -75.0,
        postal_code: "00000".into(),
        country: "US".into(),
        time_zone: time_zone.into(),
        priority: 1,
        group_ids: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

pub fn source(
    id: &str,
    kind: pb::SourceKind,
    nodes: &[&str],
    types: &[pb::SupplyType],
    stale_after_seconds: u32,
) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: kind.into(),
        owned_node_ids: nodes.iter().map(|n| n.to_string()).collect(),
        owned_supply_types: types.iter().map(|t| (*t).into()).collect(),
        stale_after_seconds,
    }
}

/// Three nodes in three time zones; WMS-EAST owns on-hand and in-transit at DC-EAST, WMS-WEST
/// on-hand at DC-WEST, POS on-hand at STORE-CHI, and ERP on-order everywhere.
pub async fn load_test_network(admin: &mut AdminClient<Channel>) {
    let groups = ["EAST", "WEST", "ALL-DCS"].map(|id| pb::NodeGroup {
        id: id.into(),
        description: String::new(),
    });
    admin
        .upsert_groups(pb::UpsertGroupsRequest {
            groups: groups.to_vec(),
        })
        .await
        .expect("groups");
    let nodes = vec![
        node(
            "DC-EAST",
            pb::NodeKind::Dc,
            "America/New_York",
            &["EAST", "ALL-DCS"],
        ),
        node(
            "DC-WEST",
            pb::NodeKind::Dc,
            "America/Los_Angeles",
            &["WEST", "ALL-DCS"],
        ),
        node(
            "STORE-CHI",
            pb::NodeKind::Store,
            "America/Chicago",
            &["EAST"],
        ),
    ];
    admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes })
        .await
        .expect("nodes");
    use pb::SupplyType::{InTransit, OnHand, OnOrder};
    let sources = vec![
        source(
            "WMS-EAST",
            pb::SourceKind::Wms,
            &["DC-EAST"],
            &[OnHand, InTransit],
            300,
        ),
        source(
            "WMS-WEST",
            pb::SourceKind::Wms,
            &["DC-WEST"],
            &[OnHand],
            300,
        ),
        source("POS", pb::SourceKind::Pos, &["STORE-CHI"], &[OnHand], 120),
        source("ERP", pb::SourceKind::Erp, &[], &[OnOrder], 0),
    ];
    admin
        .upsert_sources(pb::UpsertSourcesRequest { sources })
        .await
        .expect("sources");
}

pub fn as_of(ms: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// An on-hand SET as of `at_ms`.
pub fn set_on_hand(sku: &str, node: &str, quantity: i64, at_ms: i64) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        sku: sku.into(),
        node_id: node.into(),
        supply_type: pb::SupplyType::OnHand.into(),
        op: pb::UpdateOp::Set.into(),
        quantity,
        as_of: as_of(at_ms),
        ..Default::default()
    }
}

pub fn adjust_on_hand(sku: &str, node: &str, delta: i64) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        sku: sku.into(),
        node_id: node.into(),
        supply_type: pb::SupplyType::OnHand.into(),
        op: pb::UpdateOp::Adjust.into(),
        quantity: delta,
        ..Default::default()
    }
}

/// A dated receipt SET.
pub fn set_receipt(
    sku: &str,
    node: &str,
    supply_type: pb::SupplyType,
    reference: &str,
    eta: &str,
    quantity: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        sku: sku.into(),
        node_id: node.into(),
        supply_type: supply_type.into(),
        op: pb::UpdateOp::Set.into(),
        quantity,
        reference: reference.into(),
        eta: eta.into(),
        as_of: as_of(START_MS),
        order_id: String::new(),
    }
}

pub fn batch(source_id: &str, seq: u64, updates: Vec<pb::SupplyUpdate>) -> pb::SupplyBatch {
    pb::SupplyBatch {
        source_id: source_id.into(),
        seq,
        updates,
    }
}

impl TestApp {
    pub async fn apply(
        &mut self,
        source_id: &str,
        seq: u64,
        updates: Vec<pb::SupplyUpdate>,
    ) -> pb::SupplyAck {
        self.supply
            .apply_batch(batch(source_id, seq, updates))
            .await
            .expect("batch accepted")
            .into_inner()
    }

    pub async fn availability(
        &mut self,
        request: pb::AvailabilityRequest,
    ) -> pb::AvailabilityResponse {
        self.availability
            .get_availability(request)
            .await
            .expect("availability answered")
            .into_inner()
    }

    /// Availability of one SKU at every node, today.
    pub async fn item(&mut self, sku: &str) -> pb::ItemAvailability {
        let request = pb::AvailabilityRequest {
            skus: vec![sku.into()],
            ..Default::default()
        };
        self.availability(request).await.items.remove(0)
    }

    pub async fn stats(&mut self) -> pb::Stats {
        self.admin
            .get_stats(pb::GetStatsRequest {})
            .await
            .expect("stats")
            .into_inner()
    }
}

pub fn node_atp(item: &pb::ItemAvailability, node_id: &str) -> i64 {
    node_view(item, node_id).atp
}

pub fn node_view<'a>(item: &'a pb::ItemAvailability, node_id: &str) -> &'a pb::NodeAvailability {
    item.nodes
        .iter()
        .find(|n| n.node_id == node_id)
        .unwrap_or_else(|| panic!("{node_id} missing from {item:?}"))
}

/// Asserts an INVALID_ARGUMENT whose BadRequest details name `field`.
pub fn assert_bad_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad_request = details
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest details in {status:?}"));
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(fields.contains(&field), "{field} not among {fields:?}");
}

pub fn band(max_km: f64, days: u32) -> pb::TransitBand {
    pb::TransitBand { max_km, days }
}

/// GROUND: 1 business day within 500 km, 3 within 1,500, 5 within 6,000; 5 per package plus
/// `cost_per_km`.
pub fn ground(cost_per_km: f64) -> pb::ServiceLevel {
    pb::ServiceLevel {
        name: "GROUND".into(),
        transit: vec![band(500.0, 1), band(1_500.0, 3), band(6_000.0, 5)],
        base_cost: 5.0,
        cost_per_km,
        ..Default::default()
    }
}

/// Registers a WMS owning on-hand and in-transit at `nodes`, never stale.
pub async fn wms_for(app: &mut TestApp, id: &str, nodes: &[&str]) {
    use pb::SupplyType::{InTransit, OnHand};
    let wms = source(id, pb::SourceKind::Wms, nodes, &[OnHand, InTransit], 0);
    app.admin
        .upsert_sources(pb::UpsertSourcesRequest { sources: vec![wms] })
        .await
        .expect("source");
}

/// What a client can see of SKU-1, of the reservations `ids` and of the stats, as text to
/// compare before and after; `mask` first clears the stats fields a test expects to change.
pub async fn fingerprint(
    app: &mut TestApp,
    ids: &[&str],
    mask: impl FnOnce(&mut pb::Stats),
) -> String {
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let item = app.item("SKU-1").await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let mut held = Vec::new();
    for id in ids {
        let get = pb::GetReservationRequest {
            reservation_id: (*id).into(),
        };
        held.push(reservations.get(get).await.expect("known").into_inner());
    }
    let mut stats = app.stats().await;
    mask(&mut stats);
    format!("{item:?}\n{held:?}\n{stats:?}")
}
