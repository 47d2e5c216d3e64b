//! Retried holding calls: a promise or route that holds its plan, sent again with the same
//! reservation id and the same request (what an OMS does after a timeout), answers the same
//! plan and reservation, even when the stock would not cover a second copy; also after a
//! restart, from the final snapshot or (after a kill -9) from the journal. The same id with a
//! different request is refused as `Reserve` refuses it.

use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::routing_client::RoutingClient;
use promised::grpc::pb::supply_client::SupplyClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::binary::Binary;
use crate::durability::durable;
use crate::helpers::*;
use crate::redis::RedisServer;

/// NYC, CHI and DEN; X at DEN and NYC, Y at CHI and NYC, one of each. To (38.0, -90.0) the
/// cheapest plan ships both from NYC, one package; the next is DEN and CHI, two.
pub async fn three_cities(channel: &Channel) {
    let place = |id: &str, zone: &str, (lat, lon): (f64, f64)| pb::Node {
        lat,
        lon,
        ..node(id, pb::NodeKind::Dc, zone, &[])
    };
    let nodes = vec![
        place("NYC", "America/New_York", (40.71, -74.01)),
        place("CHI", "America/Chicago", (41.88, -87.63)),
        place("DEN", "America/Denver", (39.74, -104.99)),
    ];
    let mut admin = AdminClient::new(channel.clone());
    admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes })
        .await
        .expect("nodes");
    let wms = source(
        "WMS-R",
        pb::SourceKind::Wms,
        &["NYC", "CHI", "DEN"],
        &[pb::SupplyType::OnHand],
        0,
    );
    admin
        .upsert_sources(pb::UpsertSourcesRequest { sources: vec![wms] })
        .await
        .expect("source");
    let levels = pb::UpsertServiceLevelsRequest {
        service_levels: vec![ground(0.01)],
    };
    admin.upsert_service_levels(levels).await.expect("levels");
    let stock = [("X", "DEN"), ("X", "NYC"), ("Y", "CHI"), ("Y", "NYC")]
        .map(|(sku, node)| set_on_hand(sku, node, 1, START_MS));
    SupplyClient::new(channel.clone())
        .apply_batch(batch("WMS-R", 1, stock.to_vec()))
        .await
        .expect("stock");
}

fn lines(skus: &[&str]) -> Vec<pb::PromiseLine> {
    let line = |sku: &&str| pb::PromiseLine {
        sku: (*sku).into(),
        quantity: 1,
    };
    skus.iter().map(line).collect()
}

fn destination() -> Option<pb::Destination> {
    Some(pb::Destination {
        lat: 38.0,
        lon: -90.0,
        ..Default::default()
    })
}

/// X1 + Y1 routed and held under `r1`.
pub fn route_r1(skus: &[&str]) -> pb::RouteRequest {
    pb::RouteRequest {
        order_id: "ORDER-R1".into(),
        lines: lines(skus),
        destination: destination(),
        service_level: "GROUND".into(),
        alternatives: 2,
        reserve: true,
        reservation_id: "r1".into(),
        ttl_seconds: 600,
        ..Default::default()
    }
}

/// X1 + Y1 promised (split allowed) and held under `p1`.
fn promise_p1(skus: &[&str]) -> pb::PromiseRequest {
    pb::PromiseRequest {
        lines: lines(skus),
        destination: destination(),
        service_levels: vec!["GROUND".into()],
        allow_split: true,
        reserve: true,
        reservation_id: "p1".into(),
        ttl_seconds: 600,
        ..Default::default()
    }
}

async fn route(channel: &Channel, request: pb::RouteRequest) -> pb::RouteResponse {
    RoutingClient::new(channel.clone())
        .route_order(request)
        .await
        .expect("routed and held")
        .into_inner()
}

async fn promise(channel: &Channel, request: pb::PromiseRequest) -> pb::PromiseResponse {
    PromisingClient::new(channel.clone())
        .promise_order(request)
        .await
        .expect("promised and held")
        .into_inner()
}

fn sorted<'a>(nodes: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut nodes: Vec<&str> = nodes.map(String::as_str).collect();
    nodes.sort_unstable();
    nodes
}

/// The route r1 holds NYC; the promise p1 then holds DEN and CHI: nothing of X or Y is left,
/// so neither could be held a second time.
async fn hold_both(channel: &Channel) -> (pb::RouteResponse, pb::PromiseResponse) {
    let routed = route(channel, route_r1(&["X", "Y"])).await;
    let plan = routed.plan.as_ref().expect("a plan");
    assert_eq!(sorted(plan.shipments.iter().map(|s| &s.node_id)), ["NYC"]);
    assert_eq!(routed.reservation.as_ref().map(|r| r.lines.len()), Some(2));
    let promised = promise(channel, promise_p1(&["X", "Y"])).await;
    assert_eq!(
        sorted(promised.options[0].shipments.iter().map(|s| &s.node_id)),
        ["CHI", "DEN"]
    );
    (routed, promised)
}

/// Both calls again, identical: the same answers; with other lines under the same ids:
/// refused, as `Reserve` refuses a different request under a taken id.
async fn assert_retries_answer_the_same(
    channel: &Channel,
    (routed, promised): &(pb::RouteResponse, pb::PromiseResponse),
) {
    assert_eq!(&route(channel, route_r1(&["X", "Y"])).await, routed);
    assert_eq!(&promise(channel, promise_p1(&["X", "Y"])).await, promised);
    let other_route = RoutingClient::new(channel.clone())
        .route_order(route_r1(&["X"]))
        .await
        .expect_err("r1 is taken by another request");
    assert_eq!(other_route.code(), Code::AlreadyExists, "{other_route:?}");
    let other_promise = PromisingClient::new(channel.clone())
        .promise_order(promise_p1(&["Y"]))
        .await
        .expect_err("p1 is taken by another request");
    assert_eq!(
        other_promise.code(),
        Code::AlreadyExists,
        "{other_promise:?}"
    );
    // Bad input under a taken id is still bad input.
    let teleport = pb::RouteRequest {
        service_level: "TELEPORT".into(),
        ..route_r1(&["X", "Y"])
    };
    let bad = RoutingClient::new(channel.clone())
        .route_order(teleport)
        .await
        .expect_err("no such service level");
    assert_bad_field(&bad, "service_level");
}

#[tokio::test]
async fn a_retried_hold_answers_the_same_plan_and_reservation_also_after_a_restart() {
    let redis = RedisServer::start();
    let app = spawn_app_with(durable(&redis, "retries")).await;
    three_cities(&app.channel).await;
    let held = hold_both(&app.channel).await;
    assert_retries_answer_the_same(&app.channel, &held).await;
    let mut app = app;
    let reserved = |item: &pb::ItemAvailability| {
        let nodes = ["NYC", "CHI", "DEN"];
        nodes.map(|n| node_view(item, n).reserved)
    };
    assert_eq!(reserved(&app.item("X").await), [1, 0, 1], "held once");
    assert_eq!(reserved(&app.item("Y").await), [1, 1, 0], "held once");
    app.shutdown().await;

    // The final snapshot holds both reservations with their answers.
    let app = spawn_app_with(durable(&redis, "retries")).await;
    assert_retries_answer_the_same(&app.channel, &held).await;
}

#[tokio::test]
async fn a_retried_hold_answers_the_same_after_a_kill_from_the_journal() {
    let redis = RedisServer::start();
    let redis_url = redis.url();
    // No snapshot before the kill: the restart replays the journal.
    let args = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        "retries-killed",
        "--snapshot-interval-secs",
        "3600",
        "--snapshot-after-effects",
        "1000000",
        "--log",
        "error",
    ];
    let service = Binary::start(&args).await;
    three_cities(&service.channel).await;
    let held = hold_both(&service.channel).await;
    service.kill();
    let service = Binary::start(&args).await;
    assert_retries_answer_the_same(&service.channel, &held).await;
}

#[tokio::test]
async fn a_wave_holds_nothing_so_sending_it_again_answers_the_same() {
    let app = spawn_app().await;
    three_cities(&app.channel).await;
    let order = pb::RouteRequest {
        reserve: false,
        reservation_id: String::new(),
        ..route_r1(&["X", "Y"])
    };
    let wave = pb::RouteOrdersRequest {
        orders: vec![order.clone(), order],
    };
    let mut routing = RoutingClient::new(app.channel.clone());
    let first = routing.route_orders(wave.clone()).await.expect("routed");
    let again = routing.route_orders(wave).await.expect("routed");
    assert_eq!(first.into_inner(), again.into_inner());
}
