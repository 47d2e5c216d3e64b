//! Reservations over gRPC: holds never oversell, are all-or-nothing, idempotent by id, expire,
//! commit into allocations that shipments consume.

use std::collections::HashMap;
use std::sync::Arc;

use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::SupplyType::OnOrder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::*;

pub fn line(sku: &str, node: &str, quantity: i64) -> pb::ReservationLine {
    pb::ReservationLine {
        sku: sku.into(),
        node_id: node.into(),
        quantity,
        ..Default::default()
    }
}

pub fn reserve_request(id: &str, lines: Vec<pb::ReservationLine>) -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation_id: id.into(),
        lines,
        ttl_seconds: 600,
    }
}

fn client(app: &TestApp) -> ReservationsClient<Channel> {
    ReservationsClient::new(app.channel.clone())
}

/// `(subject, description)` of each precondition violation.
fn shortfalls(status: &Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let details = status.get_error_details();
    let failure = details
        .precondition_failure()
        .expect("PreconditionFailure details");
    failure
        .violations
        .iter()
        .map(|v| (v.subject.clone(), v.description.clone()))
        .collect()
}

async fn stock(app: &mut TestApp, sku: &str, node: &str, quantity: i64, seq: u64) {
    let source = if node == "DC-EAST" {
        "WMS-EAST"
    } else {
        "WMS-WEST"
    };
    app.apply(
        source,
        seq,
        vec![set_on_hand(sku, node, quantity, START_MS)],
    )
    .await;
}

#[tokio::test]
async fn a_hold_takes_stock_off_atp_and_a_shortfall_says_what_is_left() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 5, 1).await;
    let mut reservations = client(&app);
    let held = reservations
        .reserve(reserve_request("cart-1", vec![line("SKU-1", "DC-EAST", 3)]))
        .await
        .expect("held")
        .into_inner();
    assert_eq!(held.state(), pb::ReservationState::Held);
    let view = node_view(&app.item("SKU-1").await, "DC-EAST").clone();
    assert_eq!((view.atp, view.reserved, view.on_hand), (2, 3, 5));

    let status = reservations
        .reserve(reserve_request("cart-2", vec![line("SKU-1", "DC-EAST", 3)]))
        .await
        .expect_err("only 2 left");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-1@DC-EAST".to_owned(),
            "requested 3 available 2".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_cart_is_held_whole_or_not_at_all() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 5, 1).await;
    stock(&mut app, "SKU-2", "DC-EAST", 1, 2).await;
    let mut reservations = client(&app);
    let cart = vec![line("SKU-1", "DC-EAST", 4), line("SKU-2", "DC-EAST", 2)];
    let status = reservations
        .reserve(reserve_request("cart", cart))
        .await
        .expect_err("SKU-2 is short");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-2@DC-EAST".to_owned(),
            "requested 2 available 1".to_owned()
        )]
    );
    assert_eq!(
        node_view(&app.item("SKU-1").await, "DC-EAST").reserved,
        0,
        "no partial hold"
    );
    let missing = reservations
        .get(pb::GetReservationRequest {
            reservation_id: "cart".into(),
        })
        .await
        .expect_err("nothing was kept");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn the_same_id_answers_the_same_and_a_different_request_is_refused() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 5, 1).await;
    let mut reservations = client(&app);
    let request = reserve_request("cart-1", vec![line("SKU-1", "DC-EAST", 2)]);
    let first = reservations
        .reserve(request.clone())
        .await
        .expect("held")
        .into_inner();
    let again = reservations
        .reserve(request)
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(
        node_view(&app.item("SKU-1").await, "DC-EAST").reserved,
        2,
        "held once"
    );
    let different = reservations
        .reserve(reserve_request("cart-1", vec![line("SKU-1", "DC-EAST", 3)]))
        .await
        .expect_err("same id, different request");
    assert_eq!(different.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_id_hold_once() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 50, 1).await;
    let request = reserve_request("cart-1", vec![line("SKU-1", "DC-EAST", 3)]);
    let calls = (0..50).map(|_| {
        let (mut reservations, request) = (client(&app), request.clone());
        tokio::spawn(async move { reservations.reserve(request).await.map(|r| r.into_inner()) })
    });
    let answers: Vec<pb::Reservation> = futures_join(calls).await;
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").reserved, 3);
}

async fn futures_join<T: Send + 'static>(
    calls: impl Iterator<Item = tokio::task::JoinHandle<Result<T, Status>>>,
) -> Vec<T> {
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("task").expect("answered"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_never_oversells_the_last_unit() {
    let mut app = spawn_app().await;
    stock(&mut app, "LAST", "DC-EAST", 1, 1).await;
    let calls: Vec<_> = (0..1_000)
        .map(|i| {
            let mut reservations = client(&app);
            tokio::spawn(async move {
                let request =
                    reserve_request(&format!("cart-{i}"), vec![line("LAST", "DC-EAST", 1)]);
                reservations
                    .reserve(request)
                    .await
                    .map(|_| ())
                    .map_err(|s| s.code())
            })
        })
        .collect();
    let mut won = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(()) => won += 1,
            Err(code) => assert_eq!(code, Code::FailedPrecondition),
        }
    }
    assert_eq!(won, 1);
    let view = node_view(&app.item("LAST").await, "DC-EAST").clone();
    assert_eq!((view.reserved, view.atp), (1, 0));
    assert_eq!(check(&app, false).await.drift, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_multi_sku_carts_never_oversell_or_hold_partly() {
    let mut app = spawn_app().await;
    let skus: Vec<String> = (0..12).map(|i| format!("HOT-{i}")).collect();
    let updates = skus
        .iter()
        .map(|sku| set_on_hand(sku, "DC-EAST", 20, START_MS))
        .collect();
    app.apply("WMS-EAST", 1, updates).await;
    let mut rng = SmallRng::seed_from_u64(7);
    let carts: Arc<Vec<Vec<(String, i64)>>> = Arc::new(
        (0..400)
            .map(|_| {
                let mut picked: Vec<(String, i64)> = Vec::new();
                while picked.len() < 3 {
                    let sku = skus[rng.random_range(0..skus.len())].clone();
                    if !picked.iter().any(|(s, _)| *s == sku) {
                        picked.push((sku, rng.random_range(1..4)));
                    }
                }
                picked
            })
            .collect(),
    );
    let calls: Vec<_> = (0..carts.len())
        .map(|i| {
            let (mut reservations, carts) = (client(&app), carts.clone());
            tokio::spawn(async move {
                let lines = carts[i]
                    .iter()
                    .map(|(sku, q)| line(sku, "DC-EAST", *q))
                    .collect();
                reservations
                    .reserve(reserve_request(&format!("cart-{i}"), lines))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut held: HashMap<String, i64> = HashMap::new();
    let mut winners = 0;
    for (i, call) in calls.into_iter().enumerate() {
        if call.await.expect("task") {
            winners += 1;
            for (sku, q) in &carts[i] {
                *held.entry(sku.clone()).or_default() += q;
            }
        }
    }
    assert!(
        winners > 0 && winners < carts.len(),
        "the race must be contended: {winners}"
    );
    for sku in &skus {
        let view = node_view(&app.item(sku).await, "DC-EAST").clone();
        let expected = held.get(sku).copied().unwrap_or(0);
        assert_eq!(
            view.reserved, expected,
            "{sku}: reserved equals the winning carts' lines"
        );
        assert!(
            view.reserved <= 20 && view.atp == 20 - view.reserved,
            "{sku}: {view:?}"
        );
    }
}

#[tokio::test]
async fn a_hold_for_a_later_date_keeps_todays_promise_from_starving_it() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 10, 1).await;
    app.apply(
        "ERP",
        1,
        vec![set_receipt(
            "SKU-1",
            "DC-EAST",
            OnOrder,
            "PO-1",
            "2026-03-07",
            20,
        )],
    )
    .await;
    let mut reservations = client(&app);
    let mut later = line("SKU-1", "DC-EAST", 25);
    later.need_date = "2026-03-07".into();
    reservations
        .reserve(reserve_request("later", vec![later]))
        .await
        .expect("30 due by the 7th");
    // Of the 10 on hand, the receipt of 20 covers only 20 of the 25 due on the 7th: 5 must stay.
    let status = reservations
        .reserve(reserve_request("today", vec![line("SKU-1", "DC-EAST", 6)]))
        .await
        .expect_err("would starve the later hold");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-1@DC-EAST".to_owned(),
            "requested 6 available 5".to_owned()
        )]
    );
    reservations
        .reserve(reserve_request("today", vec![line("SKU-1", "DC-EAST", 5)]))
        .await
        .expect("5 can be promised today");
}

#[tokio::test]
async fn network_and_group_holds_stay_covered_by_node_holds() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 3, 1).await;
    stock(&mut app, "SKU-1", "DC-WEST", 3, 1).await;
    let mut reservations = client(&app);
    let anywhere = line("SKU-1", "", 5);
    reservations
        .reserve(reserve_request("net", vec![anywhere]))
        .await
        .expect("5 of 6 in the network");
    let item = app.item("SKU-1").await;
    assert_eq!(item.network_atp, 1);
    let status = reservations
        .reserve(reserve_request("east", vec![line("SKU-1", "DC-EAST", 2)]))
        .await
        .expect_err("the network hold needs 5 of the 6");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-1@DC-EAST".to_owned(),
            "requested 2 available 1".to_owned()
        )]
    );
    reservations
        .reserve(reserve_request("east", vec![line("SKU-1", "DC-EAST", 1)]))
        .await
        .expect("one unit is free");
    // ALL-DCS = {DC-EAST, DC-WEST} is exhausted by the holds above; EAST = {DC-EAST, STORE-CHI}.
    let mut group = line("SKU-1", "", 1);
    group.group_id = "ALL-DCS".into();
    let status = reservations
        .reserve(reserve_request("group", vec![group]))
        .await
        .expect_err("nothing left");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-1@ALL-DCS".to_owned(),
            "requested 1 available 0".to_owned()
        )]
    );
}

#[tokio::test]
async fn overlapping_groups_are_covered_jointly() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 5, 1).await;
    let mut reservations = client(&app);
    let in_group = |group: &str, quantity: i64| pb::ReservationLine {
        sku: "SKU-1".into(),
        group_id: group.into(),
        quantity,
        ..Default::default()
    };
    reservations
        .reserve(reserve_request("east", vec![in_group("EAST", 4)]))
        .await
        .expect("EAST has 5");
    // Each group alone still shows 1 free, but both draw on DC-EAST: a hold of 2 in ALL-DCS
    // would leave the EAST hold uncovered.
    let status = reservations
        .reserve(reserve_request("dcs", vec![in_group("ALL-DCS", 2)]))
        .await
        .expect_err("Hall's condition");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-1@ALL-DCS".to_owned(),
            "requested 2 available 1".to_owned()
        )]
    );
}

#[tokio::test]
async fn holds_expire_at_their_ttl_and_free_the_stock() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 2, 1).await;
    let mut reservations = client(&app);
    let mut request = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 2)]);
    request.ttl_seconds = 60;
    reservations.reserve(request).await.expect("held");
    app.clock.advance_ms(59_999);
    app.service.expire_once().await;
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 0, "not yet");
    app.clock.advance_ms(1);
    app.service.expire_once().await;
    assert_eq!(
        node_atp(&app.item("SKU-1").await, "DC-EAST"),
        2,
        "promisable again"
    );
    let expired = reservations
        .get(pb::GetReservationRequest {
            reservation_id: "cart".into(),
        })
        .await
        .expect("remembered")
        .into_inner();
    assert_eq!(expired.state(), pb::ReservationState::Expired);
    let extend = pb::ExtendRequest {
        reservation_id: "cart".into(),
        ttl_seconds: 60,
    };
    let status = reservations
        .extend(extend)
        .await
        .expect_err("an expired hold cannot be extended");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn extend_update_and_release_change_a_hold() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 10, 1).await;
    stock(&mut app, "SKU-2", "DC-EAST", 10, 2).await;
    let mut reservations = client(&app);
    let mut request = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 2)]);
    request.ttl_seconds = 60;
    reservations.reserve(request).await.expect("held");
    let extend = pb::ExtendRequest {
        reservation_id: "cart".into(),
        ttl_seconds: 600,
    };
    let extended = reservations
        .extend(extend)
        .await
        .expect("extended")
        .into_inner();
    assert_eq!(
        extended.expires_at.expect("expiry").seconds,
        START_MS / 1000 + 600
    );

    let edit = reserve_request(
        "cart",
        vec![line("SKU-1", "DC-EAST", 5), line("SKU-2", "DC-EAST", 1)],
    );
    let updated = reservations
        .update(edit)
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.lines.iter().map(|l| l.quantity).sum::<i64>(), 6);
    assert_eq!(
        node_view(&app.item("SKU-1").await, "DC-EAST").reserved,
        5,
        "set to 5, not 2 + 5"
    );
    let too_much = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 11)]);
    let status = reservations
        .update(too_much)
        .await
        .expect_err("only 10 exist");
    assert_eq!(
        shortfalls(&status),
        [(
            "SKU-1@DC-EAST".to_owned(),
            "requested 11 available 10".to_owned()
        )]
    );
    assert_eq!(
        node_view(&app.item("SKU-1").await, "DC-EAST").reserved,
        5,
        "unchanged"
    );
    let remove = reserve_request("cart", vec![line("SKU-2", "DC-EAST", 0)]);
    reservations.update(remove).await.expect("line removed");
    assert_eq!(node_view(&app.item("SKU-2").await, "DC-EAST").reserved, 0);

    let released = reservations
        .release(pb::ReleaseRequest {
            reservation_id: "cart".into(),
        })
        .await
        .expect("released")
        .into_inner();
    assert_eq!(released.state(), pb::ReservationState::Released);
    assert_eq!(node_atp(&app.item("SKU-1").await, "DC-EAST"), 10);
    let stats = app.stats().await;
    assert_eq!(
        (stats.held_reservations, stats.ended_reservations),
        (0, 1),
        "remembered as ended, no longer held"
    );
}

pub fn ship(order: &str, sku: &str, node: &str, quantity: i64) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        sku: sku.into(),
        node_id: node.into(),
        supply_type: pb::SupplyType::OnHand.into(),
        op: pb::UpdateOp::Ship.into(),
        quantity,
        order_id: order.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn commit_allocates_and_shipments_consume_the_allocation_and_on_hand_together() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 4, 1).await;
    stock(&mut app, "SKU-1", "DC-WEST", 4, 1).await;
    let mut reservations = client(&app);
    let cart = vec![line("SKU-1", "DC-EAST", 2), line("SKU-1", "", 5)];
    reservations
        .reserve(reserve_request("cart", cart))
        .await
        .expect("held");
    let commit = pb::CommitRequest {
        reservation_id: "cart".into(),
        order_id: "ORDER-1".into(),
    };
    let committed = reservations
        .commit(commit.clone())
        .await
        .expect("committed")
        .into_inner();
    assert_eq!(committed.state(), pb::ReservationState::Committed);
    let bound: i64 = committed
        .lines
        .iter()
        .flat_map(|l| &l.allocations)
        .map(|a| a.quantity)
        .sum();
    assert_eq!(bound, 7, "every unit is bound to a node");
    assert_eq!(
        reservations
            .commit(commit)
            .await
            .expect("same order again")
            .into_inner(),
        committed
    );
    let item = app.item("SKU-1").await;
    let allocated: i64 = item.nodes.iter().map(|n| n.allocated).sum();
    let reserved: i64 = item.nodes.iter().map(|n| n.reserved).sum();
    assert_eq!((allocated, reserved, item.network_atp), (7, 0, 1));

    let east = committed
        .lines
        .iter()
        .flat_map(|l| &l.allocations)
        .filter(|a| a.node_id == "DC-EAST")
        .map(|a| a.quantity)
        .sum::<i64>();
    let ack = app
        .apply(
            "WMS-EAST",
            2,
            vec![
                ship("ORDER-1", "SKU-1", "DC-EAST", east),
                ship("ORDER-1", "SKU-1", "DC-EAST", 1),
                ship("ORDER-NOPE", "SKU-1", "DC-EAST", 1),
            ],
        )
        .await;
    assert_eq!(ack.applied, 1);
    let reasons: Vec<_> = ack.rejections.iter().map(|r| r.reason()).collect();
    assert_eq!(
        reasons,
        [
            pb::RejectReason::NotAllocated,
            pb::RejectReason::UnknownOrder
        ]
    );
    let view = node_view(&app.item("SKU-1").await, "DC-EAST").clone();
    assert_eq!(
        (view.on_hand, view.allocated),
        (4 - east, 0),
        "shipped units counted once"
    );
    assert_eq!(view.atp, 4 - east, "and not freed early either");
}

async fn check(app: &TestApp, repair: bool) -> pb::InvariantReport {
    let mut admin = app.admin.clone();
    admin
        .check_invariants(pb::CheckInvariantsRequest { repair })
        .await
        .expect("audit")
        .into_inner()
}

#[tokio::test]
async fn the_audit_finds_no_drift_and_repairs_drift_it_is_shown() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 10, 1).await;
    stock(&mut app, "SKU-1", "DC-WEST", 10, 1).await;
    let mut reservations = client(&app);
    let cart = vec![line("SKU-1", "DC-EAST", 2), line("SKU-1", "", 3)];
    reservations
        .reserve(reserve_request("a", cart.clone()))
        .await
        .expect("held");
    reservations
        .reserve(reserve_request("b", cart))
        .await
        .expect("held");
    let commit = pb::CommitRequest {
        reservation_id: "b".into(),
        order_id: "ORDER-B".into(),
    };
    reservations.commit(commit).await.expect("committed");
    let report = check(&app, false).await;
    assert_eq!((report.drift, report.oversold), (0, 0), "{report:?}");

    // Demand that no reservation accounts for: drift, found and repaired.
    let day = promised::domain::Day::parse("2026-03-02").expect("date");
    app.engine.index().update("SKU-1", 0, None, |position| {
        position.add_demand(day, 4, 0);
        ((), true)
    });
    let found = check(&app, false).await;
    assert_eq!(found.drift, 1);
    assert!(check(&app, true).await.repaired);
    assert_eq!(check(&app, false).await.drift, 0);
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").reserved, 2);

    // A feed lowering on-hand under existing holds oversells: reported, not drift.
    app.apply(
        "WMS-EAST",
        2,
        vec![set_on_hand("SKU-1", "DC-EAST", 1, START_MS + 1)],
    )
    .await;
    let report = check(&app, false).await;
    assert_eq!((report.drift, report.oversold), (0, 1));
}

#[tokio::test]
async fn a_shipment_of_more_than_is_on_hand_is_rejected_and_changes_nothing() {
    let mut app = spawn_app().await;
    stock(&mut app, "SKU-1", "DC-EAST", 5, 1).await;
    let mut reservations = client(&app);
    let cart = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 5)]);
    reservations.reserve(cart).await.expect("held");
    let commit = pb::CommitRequest {
        reservation_id: "cart".into(),
        order_id: "ORDER-1".into(),
    };
    reservations.commit(commit).await.expect("committed");
    // The WMS counts 2 on the shelf, then confirms a shipment of all 5.
    stock(&mut app, "SKU-1", "DC-EAST", 2, 2).await;
    let before = node_view(&app.item("SKU-1").await, "DC-EAST").clone();
    let ack = app
        .apply("WMS-EAST", 3, vec![ship("ORDER-1", "SKU-1", "DC-EAST", 5)])
        .await;
    assert_eq!(ack.applied, 0);
    let reasons: Vec<_> = ack.rejections.iter().map(|r| r.reason()).collect();
    assert_eq!(reasons, [pb::RejectReason::NegativeResult]);
    let after = node_view(&app.item("SKU-1").await, "DC-EAST").clone();
    assert_eq!(after, before, "nothing shipped");
    assert_eq!((after.on_hand, after.allocated), (2, 5));
}
