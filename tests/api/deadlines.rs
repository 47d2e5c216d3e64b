//! Promises and routes over a large network stop when their caller's deadline passes, or the
//! server's own maximum work time, answering DEADLINE_EXCEEDED having changed nothing.
//!
//! A tonic client gives up at its own deadline (answering itself CANCELLED), before the
//! server can answer: the caller's deadline is sent by hand here, so that the server's answer
//! is what the test sees.

use std::time::Duration;

use promised::config::ServeArgs;
use promised::domain::Day;
use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use promised::grpc::pb::SupplyType::InTransit;
use tonic::{Code, Request};

use crate::helpers::*;
use crate::raw::{framed, RawConnection};

const NODES: usize = 50;
const LINES: usize = 1_000;

/// Longer than any answer takes unless the work runs on: a call past it is hanging.
const HANGING: Duration = Duration::from_secs(1);

fn node_id(n: usize) -> String {
    format!("N{n:02}")
}

/// Fifty DCs spread over the east coast, each SKU of the cart on hand at three of them and in
/// transit to a fourth on a day of its own: no node ships much of the cart, the search over
/// which nodes do has a great many branches, and the plans by each delivery day are many.
async fn large_network(app: &mut TestApp) {
    let nodes = (0..NODES)
        .map(|n| {
            let mut node = node(&node_id(n), pb::NodeKind::Dc, "America/New_York", &[]);
            (node.lat, node.lon) = (30.0 + n as f64 * 0.3, -80.0 + (n % 7) as f64 * 0.5);
            node
        })
        .collect();
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes })
        .await
        .expect("nodes");
    let ids: Vec<String> = (0..NODES).map(node_id).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    wms_for(app, "WMS-LARGE", &ids).await;
    let levels = pb::UpsertServiceLevelsRequest {
        service_levels: vec![ground(0.01)],
    };
    app.admin
        .upsert_service_levels(levels)
        .await
        .expect("levels");
    let today = Day::parse("2026-03-02").expect("a date");
    let mut updates = Vec::new();
    for line in 0..LINES {
        let sku = format!("SKU-{line}");
        let first = line * 7 % NODES;
        for n in [first, first + 1 + line % 5, first + 11 + line % 3] {
            updates.push(set_on_hand(&sku, ids[n % NODES], 5, START_MS));
        }
        let eta = today.plus(1 + (line % 90) as i32).to_string();
        let asn = format!("ASN-{line}");
        let at = ids[(first + 25) % NODES];
        updates.push(set_receipt(&sku, at, InTransit, &asn, &eta, 5));
    }
    let ack = app.apply("WMS-LARGE", 1, updates).await;
    assert_eq!(
        ack.applied as usize,
        LINES * 4,
        "{:?}",
        ack.rejections.first()
    );
}

fn cart() -> Vec<pb::PromiseLine> {
    (0..LINES)
        .map(|line| pb::PromiseLine {
            sku: format!("SKU-{line}"),
            quantity: 1,
        })
        .collect()
}

fn destination() -> Option<pb::Destination> {
    Some(pb::Destination {
        lat: 40.75,
        lon: -73.99,
        ..Default::default()
    })
}

/// The whole cart, to route and hold, searching as long as it takes.
fn order() -> pb::RouteRequest {
    pb::RouteRequest {
        order_id: "O-LARGE".into(),
        lines: cart(),
        destination: destination(),
        service_level: "GROUND".into(),
        constraints: Some(pb::RouteConstraints::default()),
        alternatives: 5,
        reserve: true,
        reservation_id: "hold-large".into(),
        ttl_seconds: 600,
        search_budget: u64::MAX,
        ..Default::default()
    }
}

/// The whole cart, to promise and hold in at most two packages, which cannot ship it: every
/// delivery day is tried.
fn promise() -> pb::PromiseRequest {
    pb::PromiseRequest {
        lines: cart(),
        destination: destination(),
        service_levels: vec!["GROUND".into()],
        allow_split: true,
        max_packages: 2,
        reserve: true,
        reservation_id: "hold-large".into(),
        ttl_seconds: 600,
        ..Default::default()
    }
}

/// Calls `method` with `message` and a deadline 50 ms away; the status the server answers.
async fn call_with_deadline(app: &TestApp, method: &str, message: &impl prost::Message) -> Code {
    let connection = RawConnection::open(app.grpc_addr).await;
    let mut call = connection.call(method, &[("grpc-timeout", "50m")]).await;
    call.send(framed(message), true);
    tokio::time::timeout(HANGING, call.code())
        .await
        .expect("answered, not hanging")
}

/// Asserts that everything a client can see is as it was, and that nothing is held.
async fn assert_nothing_changed(app: &mut TestApp, before: &str) {
    assert_eq!(fingerprint(app, &[], |_| {}).await, before);
    let get = pb::GetReservationRequest {
        reservation_id: "hold-large".into(),
    };
    let held = ReservationsClient::new(app.channel.clone()).get(get).await;
    assert_eq!(held.expect_err("nothing held").code(), Code::NotFound);
}

#[tokio::test]
async fn a_route_stops_at_the_callers_deadline_and_holds_nothing() {
    let mut app = spawn_app().await;
    large_network(&mut app).await;
    let before = fingerprint(&mut app, &[], |_| {}).await;
    let code = call_with_deadline(&app, "/promised.v1.Routing/RouteOrder", &order()).await;
    assert_eq!(code, Code::DeadlineExceeded);
    assert_nothing_changed(&mut app, &before).await;
}

#[tokio::test]
async fn a_promise_stops_at_the_callers_deadline_and_holds_nothing() {
    let mut app = spawn_app().await;
    large_network(&mut app).await;
    let before = fingerprint(&mut app, &[], |_| {}).await;
    let code = call_with_deadline(&app, "/promised.v1.Promising/PromiseOrder", &promise()).await;
    assert_eq!(code, Code::DeadlineExceeded);
    assert_nothing_changed(&mut app, &before).await;
}

#[tokio::test]
async fn without_a_caller_deadline_the_servers_maximum_work_time_stops_the_work() {
    let args = ServeArgs {
        max_work_ms: Some("50".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    large_network(&mut app).await;
    let before = fingerprint(&mut app, &[], |_| {}).await;
    let mut routing = RoutingClient::new(app.channel.clone());
    let call = routing.route_order(Request::new(order()));
    let answer = tokio::time::timeout(HANGING, call).await;
    let status = answer.expect("answered, not hanging").expect_err("stopped");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_nothing_changed(&mut app, &before).await;
    // A small order on the same server is answered in full.
    let small = pb::RouteRequest {
        lines: cart().into_iter().take(2).collect(),
        reserve: false,
        search_budget: 0,
        ..order()
    };
    let routed = routing.route_order(small).await.expect("routed");
    assert!(routed.into_inner().plan.is_some(), "a plan");
}
