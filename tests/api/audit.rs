//! The audit trail: every journaled change with who made it, which operation, when and under
//! which request id, queryable by range and filters, per position with before and after, kept
//! through snapshots and restarts for the retention.

use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use crate::durability::durable;
use crate::helpers::*;
use crate::redis::RedisServer;
use crate::reservations::{line, reserve_request};

/// `message` with `x-request-id` set.
fn with_id<T>(message: T, id: &'static str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static(id));
    request
}

async fn trail(app: &mut TestApp, query: pb::ListAuditRequest) -> pb::ListAuditResponse {
    app.admin
        .list_audit(query)
        .await
        .expect("audit trail")
        .into_inner()
}

#[tokio::test]
async fn every_change_is_recorded_with_its_request_id_operation_and_ids() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "trail")).await;
    let batch = batch(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    );
    let ack = app
        .supply
        .apply_batch(with_id(batch, "feed-1"))
        .await
        .expect("applied");
    assert_eq!(
        ack.metadata().get("x-request-id").map(|v| v.to_str().ok()),
        Some(Some("feed-1")),
        "the answer carries the caller's request id"
    );
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let held = reservations
        .reserve(reserve_request("cart-1", vec![line("SKU-1", "DC-EAST", 2)]))
        .await
        .expect("held");
    let generated = held
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an id is generated when the caller sends none")
        .to_owned();
    assert_eq!(generated.len(), 32, "{generated}");
    let commit = pb::CommitRequest {
        reservation_id: "cart-1".into(),
        order_id: "ORDER-1".into(),
    };
    reservations
        .commit(with_id(commit, "checkout-7"))
        .await
        .expect("committed");

    let page = trail(&mut app, pb::ListAuditRequest::default()).await;
    let tail = &page.entries[page.entries.len() - 3..];
    assert_eq!(
        tail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["apply_batch", "reserve", "commit"]
    );
    assert_eq!(
        (
            tail[0].source_id.as_str(),
            tail[0].seq,
            tail[0].request_id.as_str()
        ),
        ("WMS-EAST", 1, "feed-1")
    );
    assert_eq!(tail[0].skus, ["SKU-1"]);
    assert_eq!(tail[1].reservation_ids, ["cart-1"]);
    assert_eq!(tail[1].request_id, generated);
    assert_eq!(tail[2].order_ids, ["ORDER-1"]);
    assert_eq!(tail[2].request_id, "checkout-7");
    assert!(tail.iter().all(|e| e.actor == "anonymous"), "{tail:?}");
    assert_eq!(
        tail[1].at.as_ref().map(|t| t.seconds * 1000),
        Some(START_MS),
        "server time, from the service's clock"
    );
    let network = &page.entries[0];
    assert!(network.network_changed && network.action.starts_with("upsert_"));
}

#[tokio::test]
async fn the_trail_filters_pages_and_survives_snapshots_and_restarts() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "pages")).await;
    for seq in 1..=5 {
        let sku = if seq % 2 == 0 { "SKU-EVEN" } else { "SKU-ODD" };
        app.apply("WMS-EAST", seq, vec![adjust_on_hand(sku, "DC-EAST", 1)])
            .await;
    }
    let by_sku = pb::ListAuditRequest {
        sku: "SKU-EVEN".into(),
        ..Default::default()
    };
    let even = trail(&mut app, by_sku.clone()).await;
    assert_eq!(
        even.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 4]
    );
    let by_source = pb::ListAuditRequest {
        source_id: "WMS-EAST".into(),
        limit: 2,
        ..Default::default()
    };
    let first = trail(&mut app, by_source.clone()).await;
    assert_eq!(
        first.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    let next = pb::ListAuditRequest {
        after: first.next_after.clone(),
        ..by_source.clone()
    };
    let second = trail(&mut app, next).await;
    assert_eq!(
        second.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 4]
    );
    let nobody = pb::ListAuditRequest {
        actor: "someone-else".into(),
        ..Default::default()
    };
    assert!(trail(&mut app, nobody).await.entries.is_empty());

    // Two snapshots would trim the journal to the previous one's mark for recovery; the
    // audit retention keeps it.
    let store = match &app.durability {
        promised::checkpoint::Durability::Redis(store) => store.clone(),
        promised::checkpoint::Durability::Memory => panic!("durable"),
    };
    store.snapshot_once().await.expect("snapshot");
    store.snapshot_once().await.expect("snapshot");
    app.shutdown().await;
    let mut app = spawn_app_with(durable(&redis, "pages")).await;
    assert_eq!(trail(&mut app, by_sku).await.entries.len(), 2);
    let all = trail(&mut app, by_source).await;
    assert_eq!(all.entries.len(), 2, "a page holds at most its limit");
}

#[tokio::test]
async fn a_positions_history_shows_each_change_with_before_and_after() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "history")).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-2", "DC-EAST", 4)])
        .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    reservations
        .reserve(reserve_request("cart", vec![line("SKU-1", "DC-EAST", 3)]))
        .await
        .expect("held");
    app.apply("WMS-EAST", 3, vec![adjust_on_hand("SKU-1", "DC-EAST", -1)])
        .await;
    let history = app
        .admin
        .get_position_history(pb::GetPositionHistoryRequest {
            sku: "SKU-1".into(),
            node_id: "DC-EAST".into(),
            limit: 0,
        })
        .await
        .expect("history")
        .into_inner();
    // (action, (on hand, reserved) before, after)
    type Change<'a> = (&'a str, Option<(i64, i64)>, (i64, i64));
    let changes: Vec<Change<'_>> = history
        .changes
        .iter()
        .map(|c| {
            let figures = |f: &pb::PositionFigures| (f.on_hand, f.reserved);
            (
                c.cause.as_ref().map_or("", |e| e.action.as_str()),
                c.before.as_ref().map(figures),
                c.after.as_ref().map(figures).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("apply_batch", Some((10, 3)), (9, 3)),
            ("reserve", Some((10, 0)), (10, 3)),
            ("apply_batch", None, (10, 0)),
        ]
    );

    let unknown = app
        .admin
        .get_position_history(pb::GetPositionHistoryRequest {
            sku: "SKU-1".into(),
            node_id: "DC-NOWHERE".into(),
            limit: 1,
        })
        .await
        .expect_err("no such node");
    assert_eq!(unknown.code(), Code::NotFound);
    let too_many = app
        .admin
        .get_position_history(pb::GetPositionHistoryRequest {
            sku: "SKU-1".into(),
            node_id: "DC-EAST".into(),
            limit: 101,
        })
        .await
        .expect_err("over the limit");
    assert_bad_field(&too_many, "limit");
}

#[tokio::test]
async fn without_a_journal_the_trail_is_a_failed_precondition_and_bad_queries_are_refused() {
    let mut app = spawn_app().await;
    let refused = app
        .admin
        .list_audit(pb::ListAuditRequest::default())
        .await
        .expect_err("memory only");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    for (query, field) in [
        (
            pb::ListAuditRequest {
                limit: 1_001,
                ..Default::default()
            },
            "limit",
        ),
        (
            pb::ListAuditRequest {
                after: "not-an-id".into(),
                ..Default::default()
            },
            "after",
        ),
        (
            pb::ListAuditRequest {
                sku: "S".repeat(1_000),
                ..Default::default()
            },
            "sku",
        ),
        (
            pb::ListAuditRequest {
                from: as_of(-5_000),
                ..Default::default()
            },
            "from",
        ),
    ] {
        let status = app.admin.list_audit(query).await.expect_err(field);
        assert_bad_field(&status, field);
    }
}

/// Every mutating RPC, let through, leaves its entry: who (`anonymous` without
/// authentication), what, when (server time) and the request id it was sent under; and the
/// entries are all there again after a restart.
#[tokio::test]
async fn every_mutating_rpc_leaves_an_audit_entry_that_survives_a_restart() {
    use crate::mutating::{prepare, send, Mutating, MUTATING};
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "every-rpc")).await;
    prepare(&mut app).await;
    for (i, call) in MUTATING.into_iter().enumerate() {
        if call == Mutating::Repair {
            // Demand no reservation accounts for, so that the repair has drift to fix.
            let day = promised::domain::Day::parse("2026-03-02").expect("date");
            app.engine.index().update("SKU-1", 0, None, |position| {
                position.add_demand(day, 1, 0);
                ((), true)
            });
        }
        let request_id = format!("call-{i}");
        send(call, &app.channel, &request_id)
            .await
            .unwrap_or_else(|status| panic!("{call:?}: {status:?}"));
    }
    let audited = |page: &pb::ListAuditResponse| -> Vec<(String, String, String, i64)> {
        let mut entries: Vec<_> = page
            .entries
            .iter()
            .filter(|e| e.request_id.starts_with("call-"))
            .map(|e| {
                let at_ms = e.at.as_ref().map_or(0, |t| t.seconds * 1000);
                (
                    e.request_id.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    at_ms,
                )
            })
            .collect();
        entries.dedup();
        entries
    };
    let all = pb::ListAuditRequest {
        limit: 1_000,
        ..Default::default()
    };
    let before = audited(&trail(&mut app, all.clone()).await);
    let expected: Vec<(String, String, String, i64)> = MUTATING
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let who = "anonymous".to_owned();
            (format!("call-{i}"), who, call.action().to_owned(), START_MS)
        })
        .collect();
    assert_eq!(before, expected);
    app.shutdown().await;

    let mut app = spawn_app_with(durable(&redis, "every-rpc")).await;
    assert_eq!(
        audited(&trail(&mut app, all).await),
        expected,
        "after a restart"
    );
}

/// Who the trail names besides credentials: `system:network-file` for the network file loaded
/// at start, `anonymous` for a caller when authentication is off (whose reservation records
/// no owner: it is an operator's), and `system:expiry` for a hold that expired.
#[tokio::test]
async fn the_service_and_unauthenticated_callers_are_named_in_the_trail() {
    let redis = RedisServer::start();
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    let mut app = spawn_app_with(promised::config::ServeArgs {
        network: Some(network.into()),
        ..durable(&redis, "actors")
    })
    .await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    ReservationsClient::new(app.channel.clone())
        .reserve(with_id(
            reserve_request("cart", vec![line("SKU-1", "DC-EAST", 2)]),
            "anonymous-1",
        ))
        .await
        .expect("held");
    let held = app.engine.get_reservation("cart").expect("held");
    assert_eq!(held.reservation.owner, "", "no credential, no owner");
    app.clock.advance_ms(601_000);
    app.service.expire_once().await;

    let page = trail(&mut app, pb::ListAuditRequest::default()).await;
    let by = |actor: &str| -> Vec<(&str, &str)> {
        let entries = page.entries.iter().filter(|e| e.actor == actor);
        entries
            .map(|e| (e.action.as_str(), e.request_id.as_str()))
            .collect()
    };
    assert_eq!(
        by("system:network-file"),
        [
            ("upsert_groups", ""),
            ("upsert_nodes", ""),
            ("upsert_sources", ""),
            ("upsert_service_levels", ""),
            ("upsert_postal_codes", ""),
            ("upsert_mappings", "")
        ]
    );
    assert!(by("anonymous").contains(&("reserve", "anonymous-1")));
    assert_eq!(by("system:expiry"), [("expire", "")]);
}
