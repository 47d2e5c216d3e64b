//! Delivery promises, with dates computed by hand: cutoffs, weekends, node and carrier
//! holidays, processing days, time zones, the DST change, future receipts, split shipments.

use promised::deadline::Deadline;
use promised::grpc::pb;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::SupplyType::InTransit;
use proptest::prelude::*;

use crate::helpers::*;

/// 2026-03-02 is a Monday; `utc(day, hour, minute)` is that March day's UTC instant.
fn utc(day: u32, hour: i64, minute: i64) -> i64 {
    let midnight = START_MS - 15 * 3_600_000;
    midnight + i64::from(day - 2) * 86_400_000 + hour * 3_600_000 + minute * 60_000
}

fn date(day: u32) -> String {
    format!("2026-03-{day:02}")
}

/// NYC ships MON-FRI, cutoff 14:00 New York time, same day; LAX ships MON-SAT, cutoff 12:00
/// Los Angeles time, after one processing day, closed on Wednesday 03-04. GROUND takes 1
/// business day within 500 km and 5 beyond 1,500; OVERNIGHT 1 day, but not on Friday 03-06.
async fn promise_network(app: &mut TestApp) {
    let mut nyc = node("NYC", pb::NodeKind::Dc, "America/New_York", &[]);
    (nyc.lat, nyc.lon, nyc.cutoff) = (40.71, -74.01, "14:00".into());
    let mut lax = node("LAX", pb::NodeKind::Dc, "America/Los_Angeles", &[]);
    (lax.lat, lax.lon, lax.cutoff, lax.processing_days) = (34.05, -118.24, "12:00".into(), 1);
    lax.open_days = ["MON", "TUE", "WED", "THU", "FRI", "SAT"]
        .map(String::from)
        .to_vec();
    lax.holidays = vec![date(4)];
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest {
            nodes: vec![nyc, lax],
        })
        .await
        .expect("nodes");
    wms_for(app, "WMS-PROMISE", &["NYC", "LAX"]).await;
    let ground = ground(0.001);
    let overnight = pb::ServiceLevel {
        name: "OVERNIGHT".into(),
        transit: vec![band(6_000.0, 1)],
        holidays: vec![date(6)],
        base_cost: 25.0,
        ..Default::default()
    };
    let levels = pb::UpsertServiceLevelsRequest {
        service_levels: vec![ground, overnight],
    };
    app.admin
        .upsert_service_levels(levels)
        .await
        .expect("levels");
    let code = |postal_code: &str, lat: f64, lon: f64| pb::PostalCode {
        postal_code: postal_code.into(),
        country: "US".into(),
        lat,
        lon,
    };
    let codes = vec![code("10001", 40.75, -73.99), code("90012", 34.06, -118.24)];
    app.admin
        .upsert_postal_codes(pb::UpsertPostalCodesRequest {
            postal_codes: codes,
        })
        .await
        .expect("codes");
}

async fn stocked(cases: &[(&str, &str, i64)]) -> TestApp {
    let mut app = spawn_app().await;
    promise_network(&mut app).await;
    let updates = cases
        .iter()
        .map(|(sku, node, q)| set_on_hand(sku, node, *q, START_MS))
        .collect();
    app.apply("WMS-PROMISE", 1, updates).await;
    app
}

fn ask(skus: &[(&str, i64)], postal_code: &str, now_ms: i64) -> pb::PromiseRequest {
    pb::PromiseRequest {
        lines: skus
            .iter()
            .map(|(sku, quantity)| pb::PromiseLine {
                sku: sku.to_string(),
                quantity: *quantity,
            })
            .collect(),
        destination: Some(pb::Destination {
            postal_code: postal_code.into(),
            ..Default::default()
        }),
        now: as_of(now_ms),
        ..Default::default()
    }
}

async fn promise(app: &TestApp, request: pb::PromiseRequest) -> pb::PromiseResponse {
    let mut client = PromisingClient::new(app.channel.clone());
    client
        .promise_order(request)
        .await
        .expect("promise")
        .into_inner()
}

/// (ship date, delivery date) of a service level's single shipment.
fn dates(response: &pb::PromiseResponse, level: &str) -> (String, String) {
    let option = response
        .options
        .iter()
        .find(|o| o.service_level == level)
        .expect("level answered");
    assert!(option.feasible, "{option:?}");
    assert_eq!(option.shipments.len(), 1, "{option:?}");
    (
        option.shipments[0].ship_date.clone(),
        option.delivery_date.clone(),
    )
}

#[tokio::test]
async fn delivery_dates_follow_cutoffs_calendars_and_carriers() {
    let app = stocked(&[("SKU-1", "NYC", 10)]).await;
    // (case, now, level, ship day, delivery day), to 10001 (5 km from NYC).
    let table = [
        (
            "Monday before the 14:00 cutoff",
            utc(2, 15, 0),
            "GROUND",
            2,
            3,
        ),
        ("Monday after the cutoff", utc(2, 19, 30), "GROUND", 3, 4),
        (
            "Friday morning: GROUND delivers Monday",
            utc(6, 15, 0),
            "GROUND",
            6,
            9,
        ),
        (
            "Friday morning: OVERNIGHT does not move on the 6th",
            utc(6, 15, 0),
            "OVERNIGHT",
            9,
            10,
        ),
        (
            "Friday afternoon ships Monday",
            utc(6, 20, 0),
            "GROUND",
            9,
            10,
        ),
        // DST starts Sunday 03-08: 18:30 UTC on Monday 03-09 is 14:30 EDT, after the cutoff
        // (it would be 13:30 with last week's offset).
        (
            "Monday after the DST change, after the cutoff",
            utc(9, 18, 30),
            "GROUND",
            10,
            11,
        ),
        (
            "Monday after the DST change, before the cutoff",
            utc(9, 17, 30),
            "GROUND",
            9,
            10,
        ),
    ];
    for (case, now, level, ship, delivery) in table {
        let response = promise(&app, ask(&[("SKU-1", 2)], "10001", now)).await;
        assert_eq!(
            dates(&response, level),
            (date(ship), date(delivery)),
            "{case}"
        );
    }
}

#[tokio::test]
async fn processing_days_node_holidays_and_local_time_zones() {
    let app = stocked(&[("SKU-1", "LAX", 10)]).await;
    // LAX to 90012: Tuesday 08:00 in Los Angeles, before its noon cutoff; one processing day
    // lands on Wednesday, a holiday there, so it ships Thursday and arrives Friday.
    let response = promise(&app, ask(&[("SKU-1", 1)], "90012", utc(3, 16, 0))).await;
    assert_eq!(dates(&response, "GROUND"), (date(5), date(6)));
    // 19:30 UTC Monday is 14:30 in New York (past its cutoff) but 11:30 in Los Angeles (before
    // its cutoff): LAX counts Monday, processes a day, ships Tuesday.
    let response = promise(&app, ask(&[("SKU-1", 1)], "90012", utc(2, 19, 30))).await;
    assert_eq!(dates(&response, "GROUND"), (date(3), date(4)));
}

#[tokio::test]
async fn future_receipts_give_a_later_date_not_a_no() {
    let mut app = stocked(&[("SKU-1", "NYC", 1)]).await;
    app.apply(
        "WMS-PROMISE",
        2,
        vec![set_receipt(
            "SKU-1",
            "NYC",
            InTransit,
            "ASN-9",
            &date(5),
            10,
        )],
    )
    .await;
    let response = promise(&app, ask(&[("SKU-1", 5)], "10001", utc(2, 15, 0))).await;
    assert_eq!(dates(&response, "GROUND"), (date(5), date(6)));
    let response = promise(&app, ask(&[("SKU-1", 50)], "10001", utc(2, 15, 0))).await;
    let ground = &response.options[0];
    assert!(
        !ground.feasible && ground.reason.contains("SKU-1"),
        "{ground:?}"
    );
}

#[tokio::test]
async fn a_cart_ships_complete_or_split_within_max_packages() {
    let app = stocked(&[
        ("A", "NYC", 5),
        ("B", "LAX", 5),
        ("C", "NYC", 5),
        ("C", "LAX", 5),
    ])
    .await;
    let cart = [("A", 1), ("B", 1)];
    let mut request = ask(&cart, "10001", utc(2, 15, 0));
    let complete = promise(&app, request.clone()).await;
    assert!(!complete.options[0].feasible, "no node has both");
    assert!(
        complete.options[0].reason.contains("allow_split"),
        "{:?}",
        complete.options[0]
    );
    request.allow_split = true;
    let split = promise(&app, request.clone()).await;
    let ground = &split.options[0];
    let nodes: Vec<&str> = ground
        .shipments
        .iter()
        .map(|s| s.node_id.as_str())
        .collect();
    assert!(
        nodes.contains(&"NYC") && nodes.contains(&"LAX"),
        "{ground:?}"
    );
    // LAX ships Tuesday (a processing day) and is 3,900 km away: 5 business days, Tuesday 10th.
    assert_eq!(ground.delivery_date, date(10));
    request.max_packages = 1;
    assert!(!promise(&app, request).await.options[0].feasible);

    // C is at both: shipping complete from NYC beats splitting.
    let mut request = ask(&[("A", 1), ("C", 1)], "10001", utc(2, 15, 0));
    request.allow_split = true;
    let ground = &promise(&app, request).await.options[0];
    assert_eq!(ground.shipments.len(), 1);
    assert_eq!(
        (
            ground.shipments[0].node_id.as_str(),
            ground.delivery_date.as_str()
        ),
        ("NYC", "2026-03-03")
    );
}

#[tokio::test]
async fn a_promise_can_be_held_as_planned() {
    let mut app = stocked(&[("SKU-1", "NYC", 3)]).await;
    let mut request = ask(&[("SKU-1", 2)], "10001", START_MS);
    (request.reserve, request.reservation_id) = (true, "checkout-1".into());
    request.service_levels = vec!["GROUND".into()];
    let response = promise(&app, request.clone()).await;
    let held = response.reservation.expect("held");
    assert_eq!(held.state(), pb::ReservationState::Held);
    assert_eq!(
        (
            held.lines[0].node_id.as_str(),
            held.lines[0].need_date.as_str()
        ),
        ("NYC", "2026-03-02")
    );
    let view = node_view(&app.item("SKU-1").await, "NYC").clone();
    assert_eq!((view.reserved, view.atp), (2, 1));
    request.service_levels.clear();
    let mut client = PromisingClient::new(app.channel.clone());
    let status = client
        .promise_order(request)
        .await
        .expect_err("one level only");
    assert_bad_field(&status, "service_levels");
}

#[tokio::test]
async fn bad_promise_requests_name_the_field() {
    let app = stocked(&[]).await;
    let mut client = PromisingClient::new(app.channel.clone());
    let unknown = ask(&[("SKU-1", 1)], "99999", START_MS);
    assert_bad_field(
        &client.promise_order(unknown).await.expect_err("unknown"),
        "destination.postal_code",
    );
    let mut level = ask(&[("SKU-1", 1)], "10001", START_MS);
    level.service_levels = vec!["TELEPORT".into()];
    assert_bad_field(
        &client.promise_order(level).await.expect_err("level"),
        "service_levels[0]",
    );
    let zero = ask(&[("SKU-1", 0)], "10001", START_MS);
    assert_bad_field(
        &client.promise_order(zero).await.expect_err("quantity"),
        "lines[0].quantity",
    );
}

/// Random stock and receipts at both nodes: the promise is never later than shipping the
/// whole cart from one node, each shipment is covered by ATP at its ship date, the shipments
/// ship exactly the cart (a line split over both nodes when it may) and add up to its cost.
#[test]
fn promises_are_sound_and_never_worse_than_one_node() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let app = runtime.block_on(stocked(&[]));
    let engine = app.engine.clone();
    let seq = std::sync::atomic::AtomicU64::new(1);
    let supply = prop::collection::vec((0..3usize, 0..2usize, 0..6i64, 0..8u32), 1..10);
    let config = proptest::test_runner::Config {
        cases: 48,
        ..Default::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(
        &(supply, 0..4i64, any::<bool>()),
        |(supply, hour, split)| {
            for (sku, node, on_hand, eta_day) in &supply {
                let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let (sku, node) = (["A", "B", "C"][*sku], ["NYC", "LAX"][*node]);
                let updates = vec![
                    set_on_hand(sku, node, *on_hand, START_MS + seq as i64),
                    set_receipt(sku, node, InTransit, "ASN", &date(3 + eta_day), 3),
                ];
                let batch = promised::domain::SupplyBatch::from(batch("WMS-PROMISE", seq, updates));
                // An in-memory engine: nothing to make durable.
                let _applied = engine.apply_batch(&batch).expect("applies");
            }
            let request = promised::promise::PromiseRequest {
                lines: vec![("A".into(), 4), ("B".into(), 1), ("C".into(), 2)],
                destination: promised::delivery::Destination {
                    coordinates: Some((40.75, -73.99)),
                    ..Default::default()
                },
                allow_split: split,
                now_ms: Some(utc(2, 12 + hour * 3, 0)),
                ..Default::default()
            };
            let never = Deadline::never();
            let promise = engine
                .promise(&request, &never)
                .expect("valid")
                .into_result();
            let whole = engine.promise(
                &promised::promise::PromiseRequest {
                    allow_split: false,
                    ..request.clone()
                },
                &never,
            );
            let whole = whole.expect("valid").into_result();
            for (option, complete) in promise.options.iter().zip(&whole.options) {
                if option.delivery_date.is_some() {
                    for (sku, quantity) in &request.lines {
                        let lines = option.shipments.iter().flat_map(|s| &s.lines);
                        let shipped: i64 = lines.filter(|l| &l.0 == sku).map(|l| l.1).sum();
                        prop_assert_eq!(shipped, *quantity, "{:?}", option);
                    }
                    let costs: f64 = option.shipments.iter().map(|s| s.cost.total()).sum();
                    prop_assert!((costs - option.cost).abs() < 1e-9, "{option:?}");
                }
                if let Some(complete) = complete.delivery_date {
                    prop_assert!(
                        option.delivery_date.is_some_and(|d| d <= complete),
                        "{option:?} vs {complete}"
                    );
                }
                for shipment in &option.shipments {
                    prop_assert!(shipment.ship_date <= shipment.delivery_date);
                    for (sku, quantity) in &shipment.lines {
                        let query = promised::query::AvailabilityQuery {
                            skus: vec![sku.clone()],
                            node_ids: vec![promise.network.node(shipment.node).id.clone()],
                            date: Some(shipment.ship_date),
                            ..Default::default()
                        };
                        let atp = engine.availability(&query).expect("query").items[0].nodes[0].atp;
                        prop_assert!(
                            atp >= *quantity,
                            "{sku} x{quantity} uncovered on {}: {atp}",
                            shipment.ship_date
                        );
                    }
                }
            }
            Ok(())
        },
    );
    outcome.expect("sound promises");
}

/// Under the default stale-feed policy a node whose feed has gone quiet beyond its limit
/// promises and routes nothing, and both answers say so.
#[tokio::test]
async fn a_node_with_a_stale_feed_is_skipped_by_promises_and_routes() {
    let mut app = stocked(&[("A", "NYC", 5), ("A", "LAX", 5)]).await;
    let counts = source(
        "NYC-COUNTS",
        pb::SourceKind::Wms,
        &["NYC"],
        &[pb::SupplyType::OnHand],
        60,
    );
    app.admin
        .upsert_sources(pb::UpsertSourcesRequest {
            sources: vec![counts],
        })
        .await
        .expect("source");
    app.clock.advance_ms(61_000);
    let now = START_MS + 61_000;
    let answer = promise(&app, ask(&[("A", 1)], "10001", now)).await;
    let skipped: Vec<&str> = answer.skipped.iter().map(|s| s.node_id.as_str()).collect();
    assert_eq!(skipped, ["NYC"], "{answer:?}");
    let ground = answer
        .options
        .iter()
        .find(|o| o.service_level == "GROUND")
        .expect("GROUND answered");
    let from: Vec<&str> = ground
        .shipments
        .iter()
        .map(|s| s.node_id.as_str())
        .collect();
    assert_eq!(from, ["LAX"], "the fresh node ships: {ground:?}");
    let mut routing = promised::grpc::pb::routing_client::RoutingClient::new(app.channel.clone());
    let order = pb::RouteRequest {
        order_id: "ORDER-1".into(),
        lines: vec![pb::PromiseLine {
            sku: "A".into(),
            quantity: 1,
        }],
        destination: Some(pb::Destination {
            postal_code: "10001".into(),
            ..Default::default()
        }),
        service_level: "GROUND".into(),
        now: as_of(now),
        ..Default::default()
    };
    let routed = routing
        .route_order(order)
        .await
        .expect("routed")
        .into_inner();
    let nyc = routed
        .excluded
        .iter()
        .find(|e| e.node_id == "NYC")
        .expect("NYC ruled out");
    assert_eq!(nyc.reason, "feed is stale beyond its limit");
    let plan = routed.plan.expect("a plan from LAX");
    assert!(
        plan.shipments.iter().all(|s| s.node_id == "LAX"),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_cart_that_may_split_takes_one_line_from_several_nodes() {
    let app = stocked(&[("X", "NYC", 6), ("X", "LAX", 6)]).await;
    // Two lines of one SKU are one line of 10.
    let mut request = ask(&[("X", 6), ("X", 4)], "10001", utc(2, 15, 0));
    request.service_levels = vec!["GROUND".into()];
    let whole = promise(&app, request.clone()).await;
    assert!(!whole.options[0].feasible);
    assert_eq!(
        whole.options[0].reason,
        "no node can ship 10 of X by GROUND"
    );

    request.allow_split = true;
    request.max_packages = 2;
    let split = promise(&app, request.clone()).await;
    let ground = &split.options[0];
    assert!(ground.feasible, "{ground:?}");
    let shipped: Vec<(&str, i64)> = ground
        .shipments
        .iter()
        .map(|s| (s.node_id.as_str(), s.lines[0].quantity))
        .collect();
    assert_eq!(
        shipped,
        [("NYC", 6), ("LAX", 4)],
        "the earlier node ships all it has"
    );
    assert_eq!(ground.delivery_date, date(10), "LAX's part arrives last");
    let costs: f64 = ground.shipments.iter().map(|s| s.cost).sum();
    assert!((costs - ground.cost).abs() < 1e-9, "{ground:?}");
    let penalty: f64 = ground
        .shipments
        .iter()
        .map(|s| s.cost_breakdown.expect("terms").packages)
        .sum();
    assert!(
        (penalty - 3.0).abs() < 1e-9,
        "one extra package: {ground:?}"
    );

    request.max_packages = 1;
    let one = promise(&app, request.clone()).await;
    assert_eq!(
        one.options[0].reason,
        "the cart needs more packages than max_packages allows"
    );
    request.lines[0].quantity = 9;
    request.max_packages = 0;
    let short = promise(&app, request).await;
    assert_eq!(
        short.options[0].reason,
        "the nodes together cannot ship 13 of X by GROUND"
    );
}
