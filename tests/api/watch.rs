//! Watches over gRPC with a real Redis journal: changes in journal order, filtered, resumed by
//! token with no gap and no duplicate across a server restart; a token the journal no longer
//! reaches; a watcher that falls behind, told where to resume; every order lifecycle event;
//! and resumed across a kill -9 of the service binary.

use std::collections::HashSet;
use std::time::Duration;

use promised::checkpoint::Durability;
use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::supply_client::SupplyClient;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::binary::Binary;
use crate::durability::durable;
use crate::feeds::binary_args;
use crate::helpers::*;
use crate::redis::RedisServer;
use crate::reservations::{line, reserve_request, ship};

async fn watch(
    channel: &Channel,
    skus: &[&str],
    node_ids: &[&str],
    resume_token: &str,
) -> Result<Streaming<pb::AvailabilityChange>, tonic::Status> {
    let request = pb::WatchAvailabilityRequest {
        skus: skus.iter().map(|s| s.to_string()).collect(),
        node_ids: node_ids.iter().map(|s| s.to_string()).collect(),
        group_ids: Vec::new(),
        resume_token: resume_token.into(),
        bands: None,
    };
    let mut client = AvailabilityClient::new(channel.clone());
    Ok(client.watch_availability(request).await?.into_inner())
}

/// The next change other than the network's (the test network is loaded at every start).
async fn next(stream: &mut Streaming<pb::AvailabilityChange>) -> pb::AvailabilityChange {
    loop {
        let change = stream.message().await.expect("a change").expect("open");
        if !change.network_changed {
            return change;
        }
    }
}

fn seq(change: &pb::AvailabilityChange) -> u64 {
    change.cause.as_ref().expect("cause").seq
}

#[tokio::test]
async fn changes_arrive_in_order_filtered_and_resume_across_a_restart_exactly() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "watch")).await;
    let mut changes = watch(&app.channel, &["SKU-A"], &["DC-EAST"], "")
        .await
        .expect("watching");
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-A", "DC-EAST", 10, START_MS)],
    )
    .await;
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-B", "DC-EAST", 5)])
        .await;
    app.apply("WMS-EAST", 3, vec![adjust_on_hand("SKU-A", "DC-EAST", 2)])
        .await;
    let first = next(&mut changes).await;
    assert_eq!(seq(&first), 1);
    let cause = first.cause.clone().expect("cause");
    assert_eq!(
        (cause.kind(), cause.action.as_str()),
        (pb::ChangeKind::Feed, "apply_batch")
    );
    assert_eq!(cause.source_id, "WMS-EAST");
    let figures = &first.positions[0];
    assert_eq!(
        (figures.sku.as_str(), figures.node_id.as_str()),
        ("SKU-A", "DC-EAST")
    );
    assert_eq!((figures.on_hand, figures.atp), (10, 10));
    assert_eq!(
        figures.event_id,
        format!("{}:position:SKU-A@DC-EAST", first.token)
    );
    let third = next(&mut changes).await;
    assert_eq!(seq(&third), 3, "SKU-B is not watched");
    assert_eq!(third.positions[0].atp, 12);

    app.shutdown().await;
    let ended = changes.message().await.expect_err("ended by the shutdown");
    assert_eq!(ended.code(), Code::Unavailable);
    let mut app = spawn_app_with(durable(&redis, "watch")).await;
    app.apply("WMS-EAST", 4, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    let mut resumed = watch(&app.channel, &["SKU-A"], &[], &first.token)
        .await
        .expect("resumed");
    assert_eq!(
        next(&mut resumed).await,
        third,
        "the journal from the token"
    );
    assert_eq!(seq(&next(&mut resumed).await), 4);
    app.apply("WMS-EAST", 5, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    let live = next(&mut resumed).await;
    assert_eq!(
        (seq(&live), live.positions[0].on_hand),
        (5, 14),
        "then live"
    );
}

#[tokio::test]
async fn a_watch_resumed_across_a_kill_misses_no_change_and_repeats_none() {
    let redis = RedisServer::start();
    let args = binary_args(&redis);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    const BATCHES: u64 = 40;
    let feed = |seq: u64| batch("WMS", seq, vec![adjust_on_hand("SKU-1", "DC-EDISON-NJ", 1)]);
    let mut seen: Vec<pb::AvailabilityChange> = Vec::new();

    let service = Binary::start(&args).await;
    let mut changes = watch(&service.channel, &["SKU-1"], &[], "")
        .await
        .expect("watching");
    let mut supply = SupplyClient::new(service.channel.clone());
    // The last batch is sent and the service killed without waiting for its answer: it may
    // or may not have reached the journal.
    for seq in 1..BATCHES / 2 {
        supply.apply_batch(feed(seq)).await.expect("applied");
    }
    let unanswered = tokio::spawn(async move { supply.apply_batch(feed(BATCHES / 2)).await });
    while seen.len() < (BATCHES / 2 - 1) as usize {
        seen.push(next(&mut changes).await);
    }
    service.kill();
    let _ = unanswered.await;
    // What the watcher still takes before its stream breaks is delivered too.
    while let Ok(Some(change)) = changes.message().await {
        if !change.network_changed {
            seen.push(change);
        }
    }

    let service = Binary::start(&args).await;
    let token = seen.last().expect("changes before the kill").token.clone();
    let mut resumed = watch(&service.channel, &["SKU-1"], &[], &token)
        .await
        .expect("resumed");
    let mut supply = SupplyClient::new(service.channel.clone());
    // The feed resends from the last batch it had no answer for; one already applied is a
    // duplicate, journaled once.
    for seq in BATCHES / 2..=BATCHES {
        supply.apply_batch(feed(seq)).await.expect("applied");
    }
    let through_the_last = async {
        while seen.last().map(seq) != Some(BATCHES) {
            seen.push(next(&mut resumed).await);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), through_the_last)
        .await
        .expect("every change through the last batch arrives");
    let seqs: Vec<u64> = seen.iter().map(seq).collect();
    assert_eq!(
        seqs,
        (1..=BATCHES).collect::<Vec<_>>(),
        "no gap, none twice"
    );
    let on_hand: Vec<i64> = seen.iter().map(|c| c.positions[0].on_hand).collect();
    assert_eq!(on_hand, (1..=BATCHES as i64).collect::<Vec<_>>());
    let ids: HashSet<&str> = seen
        .iter()
        .map(|c| c.positions[0].event_id.as_str())
        .collect();
    assert_eq!(ids.len(), seen.len(), "every event id once");
    service.kill();
}

#[tokio::test]
async fn a_token_the_journal_no_longer_reaches_answers_a_precise_precondition() {
    let redis = RedisServer::start();
    let args = ServeArgs {
        audit_retention_secs: Some("0".into()),
        ..durable(&redis, "watch-old")
    };
    let mut app = spawn_app_with(args).await;
    let mut changes = watch(&app.channel, &[], &[], "").await.expect("watching");
    app.apply("WMS-EAST", 1, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    let token = next(&mut changes).await.token;
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    let Durability::Redis(store) = &app.durability else {
        panic!("durable");
    };
    store.snapshot_once().await.expect("snapshot");
    store.snapshot_once().await.expect("snapshot");
    let status = watch(&app.channel, &[], &[], &token)
        .await
        .expect_err("too old");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let violations = status.get_details_precondition_failure().expect("details");
    assert_eq!(violations.violations[0].r#type, "RESUME_TOKEN_EXPIRED");
    let status = watch(&app.channel, &[], &[], "99999999999999-0")
        .await
        .expect_err("future");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = watch(&app.channel, &[], &[], "soon")
        .await
        .expect_err("not a token");
    assert_bad_field(&status, "resume_token");
    let status = watch(&app.channel, &[], &["NOWHERE"], "")
        .await
        .expect_err("unknown node");
    assert_bad_field(&status, "node_ids[0]");
}

/// A durable service whose watchers each have room for two events, so that one that does not
/// read falls behind.
pub async fn with_small_watch_buffers(redis: &RedisServer, prefix: &str) -> TestApp {
    let args = ServeArgs {
        watch_buffer: Some("2".into()),
        // Each batch is a 2,000-update journal write, fsynced: on a loaded machine one can
        // take longer than the durable helper's 500 ms, and this test is not about outages.
        redis_timeout_ms: Some("5000".into()),
        ..durable(redis, prefix)
    };
    spawn_app_with(args).await
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_where_to_resume_and_misses_nothing() {
    let redis = RedisServer::start();
    let mut app = with_small_watch_buffers(&redis, "watch-slow").await;
    let mut slow = watch(&app.channel, &[], &[], "").await.expect("watching");
    const BATCHES: u64 = 60;
    for seq in 1..=BATCHES {
        // Large changes, so that the transport's own buffers fill and the watch's follows.
        let updates = (0..2_000)
            .map(|i| adjust_on_hand(&format!("SKU-{i:05}-WITH-A-LONG-NAME"), "DC-EAST", 1))
            .collect();
        app.apply("WMS-EAST", seq, updates).await;
    }
    let mut seen = Vec::new();
    let status = loop {
        match slow.message().await {
            Ok(Some(change)) => {
                seen.push((seq(&change), change.token));
                assert!(seen.len() < BATCHES as usize, "never told it fell behind");
            }
            Ok(None) => panic!("the watch ended without saying why"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "WATCHER_BEHIND");
    let (last_seq, last_token) = seen.last().cloned().expect("some were delivered");
    assert_eq!(info.metadata["last_token"], last_token);
    assert!(last_seq < BATCHES, "behind before the end");
    let mut resumed = watch(&app.channel, &[], &[], &last_token)
        .await
        .expect("resumed");
    let mut seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    while seqs.len() < BATCHES as usize {
        seqs.push(seq(&next(&mut resumed).await));
    }
    assert_eq!(
        seqs,
        (1..=BATCHES).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}

#[tokio::test]
async fn every_order_lifecycle_event_names_the_ids_to_reconcile_by() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "watch-orders")).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let mut orders = reservations
        .watch_orders(pb::WatchOrdersRequest::default())
        .await
        .expect("watching")
        .into_inner();
    let cart = |id: &str, quantity| reserve_request(id, vec![line("SKU-1", "DC-EAST", quantity)]);
    reservations.reserve(cart("cart", 2)).await.expect("held");
    reservations.update(cart("cart", 3)).await.expect("updated");
    let commit = pb::CommitRequest {
        reservation_id: "cart".into(),
        order_id: "ORDER-1".into(),
    };
    reservations.commit(commit).await.expect("committed");
    app.apply("WMS-EAST", 2, vec![ship("ORDER-1", "SKU-1", "DC-EAST", 1)])
        .await;
    app.apply("WMS-EAST", 3, vec![ship("ORDER-1", "SKU-1", "DC-EAST", 2)])
        .await;
    reservations.reserve(cart("other", 1)).await.expect("held");
    let release = pb::ReleaseRequest {
        reservation_id: "other".into(),
    };
    reservations.release(release).await.expect("released");
    let mut brief = cart("brief", 1);
    brief.ttl_seconds = 1;
    reservations.reserve(brief).await.expect("held");
    app.clock.advance_ms(1_000);
    app.service.expire_once().await;
    use pb::OrderEventKind::*;
    let expected = [
        ("cart", Held),
        ("cart", Updated),
        ("cart", Committed),
        ("cart", Shipped),
        ("cart", Shipped),
        ("other", Held),
        ("other", Released),
        ("brief", Held),
        ("brief", Expired),
    ];
    let mut event_ids = std::collections::HashSet::new();
    for (id, kind) in expected {
        let change = orders.message().await.expect("a change").expect("open");
        let event = &change.events[0];
        let reservation = event.reservation.as_ref().expect("reservation");
        assert_eq!(
            (reservation.reservation_id.as_str(), event.kind()),
            (id, kind)
        );
        assert_eq!(
            event.event_id,
            format!("{}:reservation:{id}", change.token),
            "the event id names the change and the reservation"
        );
        assert!(event_ids.insert(event.event_id.clone()), "unique");
        if kind == Shipped {
            let cause = change.cause.as_ref().expect("cause");
            assert_eq!(cause.kind(), pb::ChangeKind::Ship);
        }
        if kind == Committed {
            assert_eq!(reservation.order_id, "ORDER-1");
            let cause = change.cause.expect("cause");
            assert_eq!(cause.order_ids, ["ORDER-1"]);
            assert_eq!(reservation.lines[0].allocations[0].node_id, "DC-EAST");
        }
    }
}

#[tokio::test]
async fn watches_are_bounded_and_need_the_journal() {
    let redis = RedisServer::start();
    let args = ServeArgs {
        max_watchers: Some("1".into()),
        ..durable(&redis, "watch-limit")
    };
    let app = spawn_app_with(args).await;
    let first = watch(&app.channel, &[], &[], "").await.expect("watching");
    let status = watch(&app.channel, &[], &[], "")
        .await
        .expect_err("one too many");
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(first);
    let memory = spawn_app().await;
    let status = watch(&memory.channel, &[], &[], "")
        .await
        .expect_err("no journal");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_watch_resumed_during_writes_hands_over_to_live_changes_exactly() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "watch-handover")).await;
    let mut first = watch(&app.channel, &[], &[], "").await.expect("watching");
    app.apply("WMS-EAST", 1, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)])
        .await;
    let token = next(&mut first).await.token;
    const BATCHES: u64 = 300;
    let mut supply = app.supply.clone();
    let writer = tokio::spawn(async move {
        for seq in 2..=BATCHES {
            let batch = batch("WMS-EAST", seq, vec![adjust_on_hand("SKU-A", "DC-EAST", 1)]);
            supply.apply_batch(batch).await.expect("applied");
        }
    });
    // Started while the writer runs: part of what follows the token is read from the
    // journal, part taken live, some of it both ways.
    let mut resumed = watch(&app.channel, &[], &[], &token)
        .await
        .expect("resumed");
    let mut seqs = Vec::new();
    while seqs.len() < (BATCHES - 1) as usize {
        seqs.push(seq(&next(&mut resumed).await));
    }
    writer.await.expect("writer");
    assert_eq!(
        seqs,
        (2..=BATCHES).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}
