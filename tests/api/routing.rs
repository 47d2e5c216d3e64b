//! Routing, with costs checked by hand: GROUND costs 5 + 0.01/km per package, plus 0.5 per
//! priority point and 3 per extra package. To 10001: NYC ~5 km (5.05), NJ ~33 km (5.33), CHI
//! ~1,150 km (16.5), LAX ~3,940 km (44.4).

use promised::grpc::pb;
use promised::grpc::pb::routing_client::RoutingClient;
use promised::grpc::pb::SupplyType::InTransit;

use crate::helpers::*;

async fn routing_network(app: &mut TestApp) {
    let place =
        |id: &str, kind: pb::NodeKind, zone: &str, (lat, lon): (f64, f64), priority: i32| {
            let mut node = node(id, kind, zone, &[]);
            (node.lat, node.lon, node.priority) = (lat, lon, priority);
            node
        };
    let mut chi = place(
        "CHI",
        pb::NodeKind::Store,
        "America/Chicago",
        (41.88, -87.63),
        1,
    );
    chi.daily_capacity = 1;
    let nodes = vec![
        place(
            "NYC",
            pb::NodeKind::Dc,
            "America/New_York",
            (40.71, -74.01),
            1,
        ),
        place(
            "NJ",
            pb::NodeKind::Dc,
            "America/New_York",
            (40.52, -74.41),
            1,
        ),
        place(
            "LAX",
            pb::NodeKind::Dc,
            "America/Los_Angeles",
            (34.05, -118.24),
            1,
        ),
        chi,
    ];
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes })
        .await
        .expect("nodes");
    wms_for(app, "WMS-ROUTE", &["NYC", "NJ", "LAX", "CHI"]).await;
    let ground = ground(0.01);
    let levels = pb::UpsertServiceLevelsRequest {
        service_levels: vec![ground],
    };
    app.admin
        .upsert_service_levels(levels)
        .await
        .expect("levels");
}

pub(crate) async fn stocked(stock: &[(&str, &str, i64)]) -> TestApp {
    let mut app = spawn_app().await;
    routing_network(&mut app).await;
    let updates = stock
        .iter()
        .map(|(sku, node, q)| set_on_hand(sku, node, *q, START_MS))
        .collect();
    app.apply("WMS-ROUTE", 1, updates).await;
    app
}

pub(crate) fn order(id: &str, lines: &[(&str, i64)]) -> pb::RouteRequest {
    pb::RouteRequest {
        order_id: id.into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| pb::PromiseLine {
                sku: sku.to_string(),
                quantity: *quantity,
            })
            .collect(),
        destination: Some(pb::Destination {
            lat: 40.75,
            lon: -73.99,
            ..Default::default()
        }),
        service_level: "GROUND".into(),
        constraints: Some(pb::RouteConstraints::default()),
        ..Default::default()
    }
}

pub(crate) async fn route(app: &TestApp, request: pb::RouteRequest) -> pb::RouteResponse {
    RoutingClient::new(app.channel.clone())
        .route_order(request)
        .await
        .expect("routed")
        .into_inner()
}

/// The nodes of a plan, sorted.
pub(crate) fn nodes(response: &pb::RouteResponse) -> Vec<String> {
    let plan = response.plan.as_ref().expect("a plan");
    let mut nodes: Vec<String> = plan.shipments.iter().map(|s| s.node_id.clone()).collect();
    nodes.sort();
    nodes
}

pub(crate) fn reason<'a>(response: &'a pb::RouteResponse, node: &str) -> &'a str {
    let excluded = response.excluded.iter().find(|e| e.node_id == node);
    excluded.map_or("", |e| e.reason.as_str())
}

#[tokio::test]
async fn the_nearest_node_without_stock_is_passed_over_and_says_why() {
    let app = stocked(&[("A", "NJ", 5), ("A", "LAX", 5)]).await;
    let response = route(&app, order("O-1", &[("A", 2)])).await;
    assert_eq!(nodes(&response), ["NJ"]);
    let plan = response.plan.as_ref().expect("plan");
    assert!(plan.optimal);
    assert_eq!(reason(&response, "NYC"), "no stock for any line");
}

#[tokio::test]
async fn splitting_wins_when_cheaper_and_ship_complete_when_packages_cost_more() {
    let app = stocked(&[
        ("A", "NYC", 5),
        ("B", "NJ", 5),
        ("A", "LAX", 5),
        ("B", "LAX", 5),
    ])
    .await;
    let split = route(&app, order("O-1", &[("A", 1), ("B", 1)])).await;
    assert_eq!(nodes(&split), ["NJ", "NYC"]);
    let plan = split.plan.as_ref().expect("plan");
    let breakdown = plan.cost_breakdown.expect("breakdown");
    assert!(
        (breakdown.packages - 3.0).abs() < 1e-9,
        "one extra package: {breakdown:?}"
    );
    assert!((plan.total_cost - 14.4).abs() < 0.1, "{plan:?}");

    let mut complete = order("O-2", &[("A", 1), ("B", 1)]);
    complete.constraints = Some(pb::RouteConstraints {
        ship_complete: true,
        ..Default::default()
    });
    assert_eq!(nodes(&route(&app, complete).await), ["LAX"]);

    let mut dear_packages = order("O-3", &[("A", 1), ("B", 1)]);
    dear_packages.weights = Some(pb::ObjectiveWeights {
        package_penalty: Some(100.0),
        ..Default::default()
    });
    assert_eq!(nodes(&route(&app, dear_packages).await), ["LAX"]);
}

#[tokio::test]
async fn a_full_node_is_skipped_once_its_capacity_is_committed() {
    let app = stocked(&[("D", "CHI", 5), ("D", "LAX", 5)]).await;
    let mut first = order("O-1", &[("D", 1)]);
    (first.reserve, first.reservation_id) = (true, "R-1".into());
    let routed = route(&app, first).await;
    assert_eq!(nodes(&routed), ["CHI"]);
    let mut reservations =
        promised::grpc::pb::reservations_client::ReservationsClient::new(app.channel.clone());
    let commit = pb::CommitRequest {
        reservation_id: "R-1".into(),
        order_id: "O-1".into(),
    };
    reservations.commit(commit).await.expect("committed");
    let second = route(&app, order("O-2", &[("D", 1)])).await;
    assert_eq!(nodes(&second), ["LAX"]);
    assert_eq!(reason(&second, "CHI"), "over capacity for its ship date");
}

#[tokio::test]
async fn deliver_by_rules_out_the_cheap_but_slow_node() {
    let mut app = stocked(&[("B", "NYC", 5)]).await;
    app.apply(
        "WMS-ROUTE",
        2,
        vec![set_receipt("B", "NJ", InTransit, "ASN-1", "2026-03-05", 5)],
    )
    .await;
    let mut expensive_nyc = node("NYC", pb::NodeKind::Dc, "America/New_York", &[]);
    (expensive_nyc.lat, expensive_nyc.lon, expensive_nyc.priority) = (40.71, -74.01, 9);
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest {
            nodes: vec![expensive_nyc],
        })
        .await
        .expect("node");
    assert_eq!(
        nodes(&route(&app, order("O-1", &[("B", 1)])).await),
        ["NJ"],
        "NJ is cheaper, ready on the 5th"
    );
    let mut urgent = order("O-2", &[("B", 1)]);
    urgent.constraints = Some(pb::RouteConstraints {
        deliver_by: "2026-03-04".into(),
        ..Default::default()
    });
    let response = route(&app, urgent).await;
    assert_eq!(nodes(&response), ["NYC"]);
    assert_eq!(reason(&response, "NJ"), "too slow for deliver_by");
}

#[tokio::test]
async fn every_ruled_out_node_is_explained() {
    let app = stocked(&[
        ("A", "NYC", 5),
        ("A", "NJ", 5),
        ("A", "CHI", 5),
        ("A", "LAX", 5),
    ])
    .await;
    let mut request = order("O-1", &[("A", 1)]);
    request.constraints = Some(pb::RouteConstraints {
        excluded_node_ids: vec!["NYC".into()],
        allowed_node_kinds: vec![pb::NodeKind::Dc.into()],
        ..Default::default()
    });
    request.alternatives = 5;
    let response = route(&app, request).await;
    assert_eq!(nodes(&response), ["NJ"]);
    assert_eq!(reason(&response, "NYC"), "excluded by the order");
    assert_eq!(reason(&response, "CHI"), "Store nodes are not allowed");
    let runners_up: Vec<&str> = response
        .alternatives
        .iter()
        .map(|p| p.shipments[0].node_id.as_str())
        .collect();
    assert_eq!(
        runners_up,
        ["LAX"],
        "ranked by cost, excluded nodes never appear"
    );
    // DC-EAST and the other test nodes have no stock.
    for node in ["DC-EAST", "DC-WEST"] {
        assert_eq!(reason(&response, node), "no stock for any line");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_route_and_reserve_never_over_reserves() {
    let app = stocked(&[("E", "NYC", 10), ("E", "NJ", 10)]).await;
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let mut client = RoutingClient::new(app.channel.clone());
            tokio::spawn(async move {
                let mut request = order(&format!("O-{i}"), &[("E", 1)]);
                (request.reserve, request.reservation_id) = (true, format!("R-{i}"));
                client.route_order(request).await.is_ok()
            })
        })
        .collect();
    let mut held = 0;
    for call in calls {
        held += i64::from(call.await.expect("task"));
    }
    assert_eq!(held, 20, "all 20 units and no more");
    let mut app = app;
    let item = app.item("E").await;
    let reserved: i64 = item.nodes.iter().map(|n| n.reserved).sum();
    assert_eq!((reserved, item.network_atp), (20, 0));
}

#[tokio::test]
async fn a_wave_routed_together_costs_less_than_one_by_one() {
    let app = stocked(&[("A", "NYC", 1), ("A", "LAX", 1), ("B", "NYC", 1)]).await;
    let wave = pb::RouteOrdersRequest {
        orders: vec![
            order("O-1", &[("A", 1)]),
            order("O-2", &[("A", 1), ("B", 1)]),
        ],
    };
    let response = RoutingClient::new(app.channel.clone())
        .route_orders(wave)
        .await
        .expect("routed")
        .into_inner();
    // One by one, O-1 takes NYC's A and O-2 ships in two packages, one from LAX; together,
    // O-2 ships complete from NYC and O-1 from LAX.
    assert!(
        response.total_cost < response.one_by_one_cost - 1.0,
        "{response:?}"
    );
    assert_eq!(nodes(&response.orders[1]), ["NYC"]);
    assert_eq!(nodes(&response.orders[0]), ["LAX"]);
}

#[tokio::test]
async fn a_search_cut_short_still_answers_and_says_it_is_not_proven() {
    let app = stocked(&[
        ("A", "NYC", 5),
        ("B", "NJ", 5),
        ("A", "LAX", 5),
        ("B", "LAX", 5),
        ("C", "CHI", 5),
    ])
    .await;
    let mut request = order("O-1", &[("A", 1), ("B", 1), ("C", 1)]);
    request.search_budget = 1;
    let response = route(&app, request).await;
    let plan = response.plan.as_ref().expect("the greedy plan");
    assert!(!plan.optimal);
    assert!(plan.lower_bound <= plan.total_cost, "{plan:?}");
    let full = route(&app, order("O-2", &[("A", 1), ("B", 1), ("C", 1)])).await;
    let proven = full.plan.expect("plan");
    assert!(
        proven.optimal && (proven.lower_bound - proven.total_cost).abs() < 1e-9,
        "{proven:?}"
    );
}
