//! Rate cards and item weights over gRPC. GROUND's card: a package from a 100xx postal code to
//! a 100xx one is zone 2 (a local courier), anything within 6,000 km zone 1; zone 1 costs 6 up
//! to 5 kg and 10 up to 30 kg, zone 2 costs 8 and 20; zone 1 takes 2 days, zone 2 one; CHI
//! pays 0.5 to handle a package; dimensional weight is the volume over 5,000. To 10018 the
//! flat price would prefer NYC (5 km) over CHI (1,150 km).

use promised::grpc::pb;
use promised::grpc::pb::promising_client::PromisingClient;
use tonic::Code;

use crate::durability::durable;
use crate::helpers::*;
use crate::redis::RedisServer;
use crate::routing::{order, reason, route};

fn card() -> pb::RateCard {
    let rate = |zone, from_kg, to_kg, price| pb::Rate {
        zone,
        from_kg,
        to_kg,
        price,
    };
    pb::RateCard {
        zone_rules: vec![pb::ZoneRule {
            origin_prefix: "100".into(),
            destination_prefix: "100".into(),
            zone: 2,
        }],
        zone_bands: vec![pb::ZoneBand {
            max_km: 6_000.0,
            zone: 1,
        }],
        dim_divisor: 5_000.0,
        rates: vec![
            rate(1, 0.0, 5.0, 6.0),
            rate(1, 5.0, 30.0, 10.0),
            rate(2, 0.0, 5.0, 8.0),
            rate(2, 5.0, 30.0, 20.0),
        ],
        transit: vec![
            pb::ZoneTransit { zone: 1, days: 2 },
            pb::ZoneTransit { zone: 2, days: 1 },
        ],
        handling: vec![pb::HandlingCost {
            node_id: "CHI".into(),
            cost: 0.5,
        }],
    }
}

fn carded(card: pb::RateCard) -> pb::UpsertServiceLevelsRequest {
    pb::UpsertServiceLevelsRequest {
        service_levels: vec![pb::ServiceLevel {
            rate_card: Some(card),
            ..ground(0.01)
        }],
    }
}

fn item(sku: &str, weight: f64, unit: &str, side_cm: f64) -> pb::Item {
    pb::Item {
        sku: sku.into(),
        weight,
        weight_unit: unit.into(),
        length_cm: side_cm,
        width_cm: side_cm,
        height_cm: side_cm,
    }
}

/// NYC (10001) and CHI (60601) with 50 each of A (1 kg) and B (1 lb, a 40 cm cube).
async fn rated(app: &mut TestApp) {
    let place = |id: &str, zone: &str, (lat, lon): (f64, f64), postal: &str| {
        let mut node = node(id, pb::NodeKind::Dc, zone, &[]);
        (node.lat, node.lon, node.postal_code) = (lat, lon, postal.into());
        node
    };
    let nodes = vec![
        place("NYC", "America/New_York", (40.71, -74.01), "10001"),
        place("CHI", "America/Chicago", (41.88, -87.63), "60601"),
    ];
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest { nodes })
        .await
        .expect("nodes");
    wms_for(app, "WMS-RATE", &["NYC", "CHI"]).await;
    app.admin
        .upsert_service_levels(carded(card()))
        .await
        .expect("a whole card");
    let items = vec![item("A", 1.0, "kg", 0.0), item("B", 1.0, "lb", 40.0)];
    app.admin
        .upsert_items(pb::UpsertItemsRequest { items })
        .await
        .expect("items");
    let stock = ["A", "B"]
        .iter()
        .flat_map(|sku| ["NYC", "CHI"].map(|node| set_on_hand(sku, node, 50, START_MS)))
        .collect();
    app.apply("WMS-RATE", 1, stock).await;
}

fn to_10018(id: &str, lines: &[(&str, i64)]) -> pb::RouteRequest {
    let mut request = order(id, lines);
    if let Some(destination) = request.destination.as_mut() {
        destination.postal_code = "10018".into();
    }
    request
}

/// The plan's single shipment: its node and carrier price.
fn shipped(response: &pb::RouteResponse) -> (String, f64) {
    let plan = response.plan.as_ref().expect("a plan");
    assert_eq!(plan.shipments.len(), 1, "{plan:?}");
    let shipment = &plan.shipments[0];
    let breakdown = shipment.cost_breakdown.expect("a breakdown");
    (shipment.node_id.clone(), breakdown.shipping)
}

#[tokio::test]
async fn routing_prices_packages_by_zone_and_billable_weight() {
    let mut app = spawn_app().await;
    rated(&mut app).await;
    let light = route(&app, to_10018("O-1", &[("A", 2)])).await;
    assert_eq!(
        shipped(&light),
        ("CHI".into(), 6.5),
        "zone 1, 2 kg, handling"
    );
    let heavier = route(&app, to_10018("O-2", &[("A", 6)])).await;
    assert_eq!(shipped(&heavier), ("CHI".into(), 10.5), "zone 1, 6 kg");
    let bulky = route(&app, to_10018("O-3", &[("B", 1)])).await;
    assert_eq!(
        shipped(&bulky),
        ("CHI".into(), 10.5),
        "0.45 kg, but 12.8 kg by volume"
    );
    let too_heavy = route(&app, to_10018("O-4", &[("A", 31)])).await;
    assert!(too_heavy.plan.is_none(), "{too_heavy:?}");
    let carries = "heavier than GROUND's rate card carries";
    assert_eq!(reason(&too_heavy, "NYC"), carries);
    assert_eq!(reason(&too_heavy, "CHI"), carries);
}

#[tokio::test]
async fn promises_price_and_time_shipments_by_the_card() {
    let mut app = spawn_app().await;
    rated(&mut app).await;
    let request = pb::PromiseRequest {
        lines: vec![pb::PromiseLine {
            sku: "A".into(),
            quantity: 2,
        }],
        destination: to_10018("P", &[]).destination,
        now: as_of(START_MS),
        ..Default::default()
    };
    let response = PromisingClient::new(app.channel.clone())
        .promise_order(request)
        .await
        .expect("promise")
        .into_inner();
    let option = &response.options[0];
    assert!(option.feasible, "{option:?}");
    let shipment = &option.shipments[0];
    // Zone 2 delivers a day sooner, so NYC promises first, at the zone 2 price.
    assert_eq!(shipment.node_id, "NYC");
    let breakdown = shipment.cost_breakdown.expect("a breakdown");
    assert_eq!(breakdown.shipping, 8.0);
}

#[tokio::test]
async fn a_card_with_a_gap_and_bad_items_are_refused_and_change_nothing() {
    let mut app = spawn_app().await;
    rated(&mut app).await;
    let before = route(&app, to_10018("O-1", &[("A", 2)])).await;

    let mut gap = card();
    gap.rates[1].from_kg = 6.0;
    let refused = app.admin.upsert_service_levels(carded(gap)).await;
    let status = refused.expect_err("5 to 6 kg of zone 1 has no row");
    assert_bad_field(&status, "service_levels[0].rate_card.rates");
    let mut no_zone = card();
    no_zone.zone_bands.push(pb::ZoneBand {
        max_km: 9_000.0,
        zone: 3,
    });
    let status = app
        .admin
        .upsert_service_levels(carded(no_zone))
        .await
        .expect_err("zone 3 has no rows");
    assert_bad_field(&status, "service_levels[0].rate_card.transit");

    for (bad, field) in [
        (item("A", 2.0, "stone", 0.0), "items[1].weight_unit"),
        (item("A", -2.0, "kg", 0.0), "items[1].weight"),
        (item("A", 2.0, "kg", -1.0), "items[1].length_cm"),
    ] {
        let items = vec![item("B", 5.0, "kg", 0.0), bad];
        let status = app
            .admin
            .upsert_items(pb::UpsertItemsRequest { items })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_bad_field(&status, field);
    }
    let after = route(&app, to_10018("O-1", &[("A", 2)])).await;
    assert_eq!(shipped(&after), shipped(&before));
    let bulky = route(&app, to_10018("O-3", &[("B", 1)])).await;
    assert_eq!(
        shipped(&bulky).1,
        10.5,
        "B kept its weight: the list was refused whole"
    );
}

#[tokio::test]
async fn cards_and_item_weights_survive_a_restart() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "rate-cards")).await;
    rated(&mut app).await;
    let before = route(&app, to_10018("O-1", &[("B", 1)])).await;
    app.shutdown().await;

    let app = spawn_app_with(durable(&redis, "rate-cards")).await;
    let after = route(&app, to_10018("O-1", &[("B", 1)])).await;
    assert_eq!(shipped(&after), ("CHI".into(), 10.5));
    assert_eq!(shipped(&after), shipped(&before));
}
