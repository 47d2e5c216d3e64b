//! Store pickup over gRPC and HTTP, durable through a real Redis: pickup options beside the
//! delivery options, from the store or by transfer, a hold at the store, and bad input.

use promised::grpc::pb;
use promised::grpc::pb::promising_client::PromisingClient;
use serde_json::json;

use crate::durability::durable;
use crate::helpers::*;
use crate::http_client::Http;
use crate::redis::RedisServer;

/// New York's STORE-NYC, open 09:00-21:00 Monday to Saturday, an hour's pick, cutoff 19:00,
/// fed by DC-NYC in a day; STORE-LA, open every day, fed by no one.
fn store(id: &str, zone: &str, (lat, lon): (f64, f64), transfers: &[&str]) -> pb::Node {
    let mut store = node(id, pb::NodeKind::Store, zone, &[]);
    (store.lat, store.lon) = (lat, lon);
    store.pickup = Some(pb::Pickup {
        hours: vec![pb::OpeningHours {
            days: ["MON", "TUE", "WED", "THU", "FRI", "SAT"]
                .map(String::from)
                .to_vec(),
            open: "09:00".into(),
            close: "21:00".into(),
        }],
        pick_minutes: 60,
        cutoff: "19:00".into(),
        transfers: transfers
            .iter()
            .map(|from| pb::Transfer {
                from_node_id: (*from).into(),
                days: 1,
            })
            .collect(),
    });
    store
}

/// DC-NYC (cutoff 14:00) and the two stores, WMS-PICKUP owning their on-hand, GROUND, and the
/// postal code 10001; SKU-1 at STORE-NYC (3) and DC-NYC (5), SKU-2 at DC-NYC (4).
async fn pickup_app(app: &mut TestApp) {
    let mut dc = node("DC-NYC", pb::NodeKind::Dc, "America/New_York", &[]);
    (dc.lat, dc.lon, dc.cutoff) = (40.70, -74.05, "14:00".into());
    let nyc = store(
        "STORE-NYC",
        "America/New_York",
        (40.75, -73.99),
        &["DC-NYC"],
    );
    let la = store("STORE-LA", "America/Los_Angeles", (34.05, -118.24), &[]);
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest {
            nodes: vec![dc, nyc, la],
        })
        .await
        .expect("nodes");
    wms_for(app, "WMS-PICKUP", &["DC-NYC", "STORE-NYC", "STORE-LA"]).await;
    let levels = pb::UpsertServiceLevelsRequest {
        service_levels: vec![ground(0.001)],
    };
    app.admin
        .upsert_service_levels(levels)
        .await
        .expect("levels");
    let code = pb::PostalCode {
        postal_code: "10001".into(),
        country: "US".into(),
        lat: 40.75,
        lon: -73.99,
    };
    let codes = pb::UpsertPostalCodesRequest {
        postal_codes: vec![code],
    };
    app.admin.upsert_postal_codes(codes).await.expect("codes");
    let stock = vec![
        set_on_hand("SKU-1", "STORE-NYC", 3, START_MS),
        set_on_hand("SKU-1", "DC-NYC", 5, START_MS),
        set_on_hand("SKU-2", "DC-NYC", 4, START_MS),
    ];
    app.apply("WMS-PICKUP", 1, stock).await;
}

/// A promise of `lines` to 10001 at the server's now (Monday 2026-03-02 10:00 in New York).
fn ask(lines: &[(&str, i64)], pickup: pb::PickupRequest) -> pb::PromiseRequest {
    pb::PromiseRequest {
        lines: lines
            .iter()
            .map(|(sku, quantity)| pb::PromiseLine {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
        destination: Some(pb::Destination {
            postal_code: "10001".into(),
            ..Default::default()
        }),
        pickup: Some(pickup),
        ..Default::default()
    }
}

fn at_store(id: &str) -> pb::PickupRequest {
    pb::PickupRequest {
        store_id: id.into(),
        ..Default::default()
    }
}

async fn promise(app: &TestApp, request: pb::PromiseRequest) -> pb::PromiseResponse {
    let mut client = PromisingClient::new(app.channel.clone());
    let response = client.promise_order(request).await.expect("promise");
    response.into_inner()
}

/// (from node, transfer?, local ready time) of a feasible option.
fn ready(option: &pb::PickupOption) -> (&str, bool, &str) {
    assert!(option.feasible, "{option:?}");
    let at = option.ready_at.as_ref().expect("ready_at");
    assert_eq!(at.nanos, 0);
    (&option.from_node_id, option.transfer, &option.ready_local)
}

#[tokio::test]
async fn pickup_options_come_beside_delivery_options_from_the_store_or_by_transfer() {
    let mut app = spawn_app().await;
    pickup_app(&mut app).await;
    let here = promise(&app, ask(&[("SKU-1", 2)], at_store("STORE-NYC"))).await;
    assert!(here.options[0].feasible, "delivery too: {here:?}");
    assert_eq!(here.pickup_options.len(), 1);
    assert_eq!(
        ready(&here.pickup_options[0]),
        ("STORE-NYC", false, "2026-03-02 11:00 EST"),
        "an hour after now"
    );
    let at = here.pickup_options[0].ready_at.as_ref().expect("ready_at");
    assert_eq!(at.seconds * 1000, START_MS + 3_600_000);
    // SKU-2 is at the DC only: shipped today, before its cutoff, it arrives Tuesday.
    let both = ask(&[("SKU-1", 1), ("SKU-2", 1)], at_store("STORE-NYC"));
    let transferred = promise(&app, both).await;
    assert_eq!(
        ready(&transferred.pickup_options[0]),
        ("DC-NYC", true, "2026-03-03 10:00 EST")
    );
    let nearest = pb::PickupRequest {
        nearest: 5,
        ..Default::default()
    };
    let near = promise(&app, ask(&[("SKU-1", 1)], nearest)).await;
    let stores: Vec<(&str, bool)> = near
        .pickup_options
        .iter()
        .map(|o| (o.store_id.as_str(), o.feasible))
        .collect();
    assert_eq!(stores, [("STORE-NYC", true), ("STORE-LA", false)]);
    assert_eq!(
        near.pickup_options[1].reason,
        "the whole cart is not at STORE-LA"
    );
    let without = promise(
        &app,
        pb::PromiseRequest {
            pickup: None,
            ..ask(&[("SKU-1", 1)], at_store("STORE-NYC"))
        },
    )
    .await;
    assert!(without.pickup_options.is_empty(), "only when asked");

    let http = Http::new(app.http_addr);
    let body = json!({"lines": [{"sku": "SKU-1", "quantity": "2"}],
        "destination": {"postalCode": "10001"}, "pickup": {"storeId": "STORE-NYC"}});
    let reply = http.post("/v1/promises", &body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let option = &reply.body["pickupOptions"][0];
    assert_eq!(option["readyLocal"], "2026-03-02 11:00 EST", "{reply:?}");
    assert_eq!(option["fromNodeId"], "STORE-NYC");
}

#[tokio::test]
async fn a_held_pickup_lowers_atp_at_the_store_and_a_retry_is_the_same_hold() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "pickup-hold")).await;
    pickup_app(&mut app).await;
    let mut request = ask(
        &[("SKU-1", 2)],
        pb::PickupRequest {
            hold: true,
            ..at_store("STORE-NYC")
        },
    );
    (request.reserve, request.reservation_id) = (true, "pickup-1".into());
    request.ttl_seconds = 900;
    let first = promise(&app, request.clone()).await;
    let held = first.reservation.clone().expect("held");
    assert_eq!(held.state(), pb::ReservationState::Held);
    let line = &held.lines[0];
    assert_eq!(
        (
            line.node_id.as_str(),
            line.need_date.as_str(),
            line.quantity
        ),
        ("STORE-NYC", "2026-03-02", 2)
    );
    let view = node_view(&app.item("SKU-1").await, "STORE-NYC").clone();
    assert_eq!((view.reserved, view.atp), (2, 1));
    let before = fingerprint(&mut app, &["pickup-1"], |_| {}).await;
    let again = promise(&app, request).await;
    assert_eq!(
        again.pickup_options, first.pickup_options,
        "the same answer"
    );
    assert_eq!(
        again.reservation.map(|r| r.reservation_id),
        Some("pickup-1".into())
    );
    assert_eq!(fingerprint(&mut app, &["pickup-1"], |_| {}).await, before);
    // The store has one left: a cart of two more comes from the DC.
    let next = promise(&app, ask(&[("SKU-1", 2)], at_store("STORE-NYC"))).await;
    assert_eq!(ready(&next.pickup_options[0]).0, "DC-NYC");
}

#[tokio::test]
async fn bad_pickup_input_names_the_field_and_changes_nothing() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "pickup-bad")).await;
    pickup_app(&mut app).await;
    let before = fingerprint(&mut app, &[], |_| {}).await;
    let mut dc = node("DC-2", pb::NodeKind::Dc, "America/New_York", &[]);
    dc.pickup = store("X", "UTC", (0.0, 0.0), &[]).pickup;
    let mut backwards = store("STORE-X", "UTC", (0.0, 0.0), &[]);
    backwards.pickup.as_mut().expect("pickup").hours[0].close = "08:00".into();
    let mut funday = store("STORE-X", "UTC", (0.0, 0.0), &[]);
    funday.pickup.as_mut().expect("pickup").hours[0].days = vec!["FUNDAY".into()];
    let mut long_pick = store("STORE-X", "UTC", (0.0, 0.0), &[]);
    long_pick.pickup.as_mut().expect("pickup").pick_minutes = 1441;
    let bad_nodes = [
        (dc, "nodes[0].pickup"),
        (backwards, "nodes[0].pickup.hours[0].close"),
        (funday, "nodes[0].pickup.hours[0].days"),
        (long_pick, "nodes[0].pickup.pick_minutes"),
        (
            store("STORE-X", "UTC", (0.0, 0.0), &["NOWHERE"]),
            "nodes[0].pickup.transfers[0].from_node_id",
        ),
        (
            store("STORE-X", "UTC", (0.0, 0.0), &["STORE-LA"]),
            "nodes[0].pickup.transfers[0].from_node_id",
        ),
    ];
    for (bad, field) in bad_nodes {
        let upsert = pb::UpsertNodesRequest { nodes: vec![bad] };
        let status = app.admin.upsert_nodes(upsert).await.expect_err(field);
        assert_bad_field(&status, field);
    }
    let nearest = |nearest, hold| pb::PickupRequest {
        nearest,
        hold,
        ..Default::default()
    };
    let mut held_nearest = ask(&[("SKU-1", 1)], nearest(2, true));
    (held_nearest.reserve, held_nearest.reservation_id) = (true, "pickup-2".into());
    let mut unreserved = ask(&[("SKU-1", 1)], at_store("STORE-NYC"));
    unreserved.pickup.as_mut().expect("pickup").hold = true;
    let both = pb::PickupRequest {
        nearest: 2,
        ..at_store("STORE-NYC")
    };
    let bad_promises = [
        (
            ask(&[("SKU-1", 1)], at_store("STORE-NOPE")),
            "pickup.store_id",
        ),
        (ask(&[("SKU-1", 1)], at_store("DC-NYC")), "pickup.store_id"),
        (ask(&[("SKU-1", 1)], nearest(11, false)), "pickup.nearest"),
        (ask(&[("SKU-1", 1)], pb::PickupRequest::default()), "pickup"),
        (ask(&[("SKU-1", 1)], both), "pickup.nearest"),
        (held_nearest, "pickup.hold"),
        (unreserved, "pickup.hold"),
    ];
    let mut client = PromisingClient::new(app.channel.clone());
    for (request, field) in bad_promises {
        let status = client.promise_order(request).await.expect_err(field);
        assert_bad_field(&status, field);
    }
    assert_eq!(fingerprint(&mut app, &[], |_| {}).await, before);
    let missing = pb::GetReservationRequest {
        reservation_id: "pickup-2".into(),
    };
    let mut reservations = pb::reservations_client::ReservationsClient::new(app.channel.clone());
    assert!(reservations.get(missing).await.is_err(), "nothing held");
}
