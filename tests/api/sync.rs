//! Full syncs over gRPC: a source states its whole holding in parts, and the commit zeroes
//! what it left out, at once, durably, within the guard and the staging bounds.

use std::time::{SystemTime, UNIX_EPOCH};

use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::supply_client::SupplyClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::binary::Binary;
use crate::durability::durable;
use crate::helpers::*;
use crate::redis::RedisServer;

fn begin(source: &str, sync_id: &str, as_of_ms: i64) -> pb::BeginSyncRequest {
    pb::BeginSyncRequest {
        source_id: source.into(),
        sync_id: sync_id.into(),
        supply_type: pb::SupplyType::OnHand.into(),
        node_ids: Vec::new(),
        as_of: as_of(as_of_ms),
    }
}

fn on_hand(sku: &str, node: &str, quantity: i64) -> pb::SyncPosition {
    pb::SyncPosition {
        sku: sku.into(),
        node_id: node.into(),
        quantity,
        ..Default::default()
    }
}

fn part(source: &str, sync_id: &str, positions: Vec<pb::SyncPosition>) -> pb::SyncPartRequest {
    pb::SyncPartRequest {
        source_id: source.into(),
        sync_id: sync_id.into(),
        positions,
    }
}

fn commit(source: &str, sync_id: &str, force: bool) -> pb::CommitSyncRequest {
    pb::CommitSyncRequest {
        source_id: source.into(),
        sync_id: sync_id.into(),
        force,
    }
}

/// Begins, stages `positions` in one part, and commits.
async fn full_sync(
    supply: &mut SupplyClient<Channel>,
    begin_request: pb::BeginSyncRequest,
    positions: Vec<pb::SyncPosition>,
    force: bool,
) -> Result<pb::SyncAck, Status> {
    let (source, id) = (
        begin_request.source_id.clone(),
        begin_request.sync_id.clone(),
    );
    supply.begin_sync(begin_request).await?;
    let staged = supply.sync_part(part(&source, &id, positions)).await?;
    assert!(staged.get_ref().rejections.is_empty(), "{staged:?}");
    Ok(supply
        .commit_sync(commit(&source, &id, force))
        .await?
        .into_inner())
}

/// WMS-EAST's on-hand sync `sync_id` of `positions`, as of the start, committed.
async fn committed(
    app: &mut TestApp,
    sync_id: &str,
    positions: Vec<pb::SyncPosition>,
) -> pb::SyncAck {
    let begin_request = begin("WMS-EAST", sync_id, START_MS);
    let ack = full_sync(&mut app.supply, begin_request, positions, false).await;
    ack.expect("committed")
}

fn counts(ack: &pb::SyncAck) -> (u64, u64, u64, bool) {
    (ack.set, ack.zeroed, ack.unchanged, ack.duplicate)
}

/// On-hand of `skus` at `node`, in one availability answer.
async fn on_hand_of(
    availability: &mut AvailabilityClient<Channel>,
    skus: &[String],
    node: &str,
) -> Vec<i64> {
    let request = pb::AvailabilityRequest {
        skus: skus.to_vec(),
        node_ids: vec![node.into()],
        ..Default::default()
    };
    let answer = availability
        .get_availability(request)
        .await
        .expect("answered");
    let items = answer.into_inner().items;
    items
        .iter()
        .map(|item| node_view(item, node).on_hand)
        .collect()
}

/// The latest logged rejections of `source`.
pub async fn logged_rejections(
    supply: &mut SupplyClient<Channel>,
    source: &str,
) -> Vec<pb::LoggedRejection> {
    let request = pb::ListRejectionsRequest {
        source_id: source.into(),
        limit: 10,
    };
    let logged = supply.list_rejections(request).await.expect("log");
    logged.into_inner().rejections
}

/// The service binary started (again) with `args`, and its clients.
async fn restart(args: &[&str]) -> (Binary, SupplyClient<Channel>, AvailabilityClient<Channel>) {
    let service = Binary::start(args).await;
    let supply = SupplyClient::new(service.channel.clone());
    let availability = AvailabilityClient::new(service.channel.clone());
    (service, supply, availability)
}

fn skus(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("SKU-{i}")).collect()
}

/// WMS-EAST holds 10 of SKU-1..SKU-4 at DC-EAST; others hold what a sync of it must not touch.
async fn stocked() -> TestApp {
    let mut app = spawn_app().await;
    let sets = skus(4)
        .iter()
        .map(|sku| set_on_hand(sku, "DC-EAST", 10, START_MS - 1_000))
        .collect();
    app.apply("WMS-EAST", 1, sets).await;
    app.apply(
        "WMS-WEST",
        1,
        vec![set_on_hand("SKU-3", "DC-WEST", 7, START_MS)],
    )
    .await;
    let receipt = set_receipt(
        "SKU-3",
        "DC-EAST",
        pb::SupplyType::InTransit,
        "ASN-1",
        "2026-03-05",
        4,
    );
    app.apply("WMS-EAST", 2, vec![receipt]).await;
    app
}

#[tokio::test]
async fn a_full_sync_zeroes_exactly_the_positions_it_does_not_mention() {
    let mut app = stocked().await;
    let positions = vec![
        on_hand("SKU-1", "DC-EAST", 10),
        on_hand("SKU-2", "DC-EAST", 5),
        on_hand("SKU-5", "DC-EAST", 3),
    ];
    let ack = committed(&mut app, "night-1", positions).await;
    assert_eq!(counts(&ack), (2, 2, 1, false), "{ack:?}");
    let east = on_hand_of(&mut app.availability, &skus(5), "DC-EAST").await;
    assert_eq!(east, vec![10, 5, 0, 0, 3]);
    let sku3 = app.item("SKU-3").await;
    assert_eq!(
        node_view(&sku3, "DC-WEST").on_hand,
        7,
        "another source's stock stays"
    );
    assert_eq!(
        node_view(&sku3, "DC-EAST").inbound,
        4,
        "another supply type stays"
    );
}

#[tokio::test]
async fn a_commit_sent_again_answers_the_same_counts_and_applies_once() {
    let mut app = stocked().await;
    let positions = vec![
        on_hand("SKU-1", "DC-EAST", 12),
        on_hand("SKU-2", "DC-EAST", 10),
    ];
    let first = committed(&mut app, "night-1", positions).await;
    app.apply("WMS-EAST", 3, vec![adjust_on_hand("SKU-1", "DC-EAST", -2)])
        .await;
    let again = app
        .supply
        .commit_sync(commit("WMS-EAST", "night-1", false))
        .await;
    let again = again.expect("answered").into_inner();
    assert_eq!(
        counts(&again),
        (first.set, first.zeroed, first.unchanged, true)
    );
    let east = on_hand_of(&mut app.availability, &skus(2), "DC-EAST").await;
    assert_eq!(east, vec![10, 10], "the resent commit changed nothing");
}

#[tokio::test]
async fn a_sync_older_than_the_last_committed_one_is_refused_as_stale() {
    let mut app = stocked().await;
    let all = || {
        (1..=4)
            .map(|i| on_hand(&format!("SKU-{i}"), "DC-EAST", 1))
            .collect()
    };
    committed(&mut app, "late", all()).await;
    let older = app
        .supply
        .begin_sync(begin("WMS-EAST", "early", START_MS - 1))
        .await;
    assert_eq!(older.expect_err("stale").code(), Code::FailedPrecondition);

    // Begun in order but committed out of order: the older commit is refused at commit.
    app.supply
        .begin_sync(begin("WMS-EAST", "a", START_MS + 1))
        .await
        .expect("open");
    let newer = full_sync(
        &mut app.supply,
        begin("WMS-EAST", "b", START_MS + 2),
        all(),
        false,
    );
    newer.await.expect("committed");
    let late = app.supply.commit_sync(commit("WMS-EAST", "a", false)).await;
    assert_eq!(late.expect_err("stale").code(), Code::FailedPrecondition);
    let east = on_hand_of(&mut app.availability, &skus(4), "DC-EAST").await;
    assert_eq!(east, vec![1, 1, 1, 1]);
}

#[tokio::test]
async fn an_abandoned_sync_expires_on_the_clock_and_changes_nothing() {
    let args = ServeArgs {
        sync_ttl_secs: Some("60".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let opened = app
        .supply
        .begin_sync(begin("WMS-EAST", "n", START_MS))
        .await;
    let expires_at = opened.expect("open").into_inner().expires_at.expect("set");
    assert_eq!(expires_at, as_of(START_MS + 60_000).expect("time"));
    let positions = vec![on_hand("SKU-2", "DC-EAST", 4)];
    app.supply
        .sync_part(part("WMS-EAST", "n", positions))
        .await
        .expect("staged");
    app.clock.advance_ms(59_000);
    assert_eq!(
        app.engine.expire_syncs(),
        0,
        "a part keeps it open for the TTL"
    );
    app.clock.advance_ms(1_000);
    app.service.expire_once().await;
    assert_eq!(app.engine.open_syncs(), 0, "the sweep dropped it");
    let late = app.supply.commit_sync(commit("WMS-EAST", "n", false)).await;
    assert_eq!(late.expect_err("expired").code(), Code::NotFound);
    let east = on_hand_of(&mut app.availability, &skus(2), "DC-EAST").await;
    assert_eq!(east, vec![10, 0], "nothing of the expired sync applied");
}

#[tokio::test]
async fn the_wipe_guard_refuses_zeroing_a_large_share_unless_forced() {
    let mut app = stocked().await;
    let one = vec![on_hand("SKU-1", "DC-EAST", 10)];
    let refused = full_sync(
        &mut app.supply,
        begin("WMS-EAST", "cut", START_MS),
        one,
        false,
    )
    .await;
    let refused = refused.expect_err("3 of 4 is over 50%");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("force"), "{}", refused.message());
    let east = on_hand_of(&mut app.availability, &skus(4), "DC-EAST").await;
    assert_eq!(
        east,
        vec![10, 10, 10, 10],
        "the refused sync changed nothing"
    );
    let forced = app
        .supply
        .commit_sync(commit("WMS-EAST", "cut", true))
        .await;
    assert_eq!(
        counts(&forced.expect("forced").into_inner()),
        (0, 3, 1, false)
    );
    let east = on_hand_of(&mut app.availability, &skus(4), "DC-EAST").await;
    assert_eq!(east, vec![10, 0, 0, 0]);
}

#[tokio::test]
async fn staging_beyond_its_bounds_is_resource_exhausted() {
    let args = ServeArgs {
        max_open_syncs: Some("1".into()),
        max_staged_sync_positions: Some("3".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    app.supply
        .begin_sync(begin("WMS-EAST", "one", START_MS))
        .await
        .expect("open");
    let second = app
        .supply
        .begin_sync(begin("WMS-WEST", "two", START_MS))
        .await;
    assert_eq!(
        second.expect_err("one open at most").code(),
        Code::ResourceExhausted
    );
    let four = skus(4).iter().map(|s| on_hand(s, "DC-EAST", 1)).collect();
    let big = app.supply.sync_part(part("WMS-EAST", "one", four)).await;
    assert_eq!(
        big.expect_err("3 staged at most").code(),
        Code::ResourceExhausted
    );
    let three = skus(3).iter().map(|s| on_hand(s, "DC-EAST", 1)).collect();
    let staged = app.supply.sync_part(part("WMS-EAST", "one", three)).await;
    assert_eq!(staged.expect("fits").into_inner().total_staged, 3);
}

#[tokio::test]
async fn bad_sync_input_is_named_and_changes_nothing() {
    let mut app = stocked().await;
    let mut untyped = begin("WMS-EAST", "s", START_MS);
    untyped.supply_type = 0;
    let status = app.supply.begin_sync(untyped).await.expect_err("no type");
    assert_bad_field(&status, "supply_type");
    let mut foreign = begin("WMS-EAST", "s", START_MS);
    foreign.node_ids = vec!["DC-EAST".into(), "DC-WEST".into(), "NOWHERE".into()];
    let status = app.supply.begin_sync(foreign).await.expect_err("not owned");
    assert_bad_field(&status, "node_ids[1]");
    assert_bad_field(&status, "node_ids[2]");
    let mut timeless = begin("WMS-EAST", "s", START_MS);
    timeless.as_of = None;
    assert_bad_field(
        &app.supply.begin_sync(timeless).await.expect_err("no as_of"),
        "as_of",
    );
    let status = app
        .supply
        .begin_sync(begin("WMS-EAST", " s", START_MS))
        .await;
    assert_bad_field(&status.expect_err("bad id"), "sync_id");
    let unknown = app
        .supply
        .sync_part(part("WMS-EAST", "never", Vec::new()))
        .await;
    assert_eq!(unknown.expect_err("not open").code(), Code::NotFound);

    app.supply
        .begin_sync(begin("WMS-EAST", "s", START_MS))
        .await
        .expect("open");
    let positions = vec![
        on_hand("SKU-1", "DC-EAST", -1),
        on_hand("SKU-1", "DC-WEST", 1),
        on_hand("", "DC-EAST", 1),
        on_hand("SKU-2", "DC-EAST", 10),
    ];
    let staged = app.supply.sync_part(part("WMS-EAST", "s", positions)).await;
    let staged = staged.expect("part answered").into_inner();
    let reasons: Vec<(u32, i32)> = staged
        .rejections
        .iter()
        .map(|r| (r.index, r.reason))
        .collect();
    use pb::RejectReason::{MissingSku, NegativeQuantity, NotOwned};
    let expected = [(0, NegativeQuantity), (1, NotOwned), (2, MissingSku)];
    assert_eq!(reasons, expected.map(|(i, r)| (i, r as i32)));
    assert_eq!((staged.staged, staged.total_staged), (1, 1));
    let logged = logged_rejections(&mut app.supply, "WMS-EAST").await;
    assert_eq!(logged.len(), 3, "a part's rejections are logged");
    let east = on_hand_of(&mut app.availability, &skus(4), "DC-EAST").await;
    assert_eq!(east, vec![10, 10, 10, 10], "staging changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_see_a_whole_sync_or_none_of_it() {
    let mut app = spawn_app().await;
    const SKUS: usize = 20_000;
    const READ: usize = 2_000;
    let all = skus(SKUS);
    for (i, chunk) in all.chunks(10_000).enumerate() {
        let sets = chunk
            .iter()
            .map(|s| set_on_hand(s, "DC-EAST", 10, START_MS - 1))
            .collect();
        app.apply("WMS-EAST", i as u64 + 1, sets).await;
    }
    app.supply
        .begin_sync(begin("WMS-EAST", "all", START_MS))
        .await
        .expect("open");
    for chunk in all.chunks(10_000) {
        let positions = chunk.iter().map(|s| on_hand(s, "DC-EAST", 20)).collect();
        app.supply
            .sync_part(part("WMS-EAST", "all", positions))
            .await
            .expect("staged");
    }
    // Every READ-th SKU, so that one answer spans every shard of the index.
    let watched: Vec<String> = all.iter().step_by(SKUS / READ).cloned().collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut availability = app.availability.clone();
            let watched = watched.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let seen = on_hand_of(&mut availability, &watched, "DC-EAST").await;
                    let done = seen.iter().all(|q| *q == 20);
                    answers.push(seen);
                    if done {
                        return answers;
                    }
                }
            })
        })
        .collect();
    let ack = app
        .supply
        .commit_sync(commit("WMS-EAST", "all", false))
        .await;
    assert_eq!(ack.expect("committed").into_inner().set, SKUS as u64);
    for reader in readers {
        for seen in reader.await.expect("reader") {
            let after = seen.iter().filter(|q| **q == 20).count();
            assert!(
                after == 0 || after == seen.len(),
                "a read saw half a sync: {after} of {} positions after it",
                seen.len()
            );
        }
    }
}

#[tokio::test]
async fn the_last_committed_sync_survives_a_restart_through_journal_and_snapshot() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "sync-mark")).await;
    committed(&mut app, "j", vec![on_hand("SKU-1", "DC-EAST", 3)]).await;
    app.shutdown().await;
    // Recovered from the journal (the shutdown's snapshot holds it too): a resend is a
    // duplicate, an older sync stale.
    let mut app = spawn_app_with(durable(&redis, "sync-mark")).await;
    let again = app.supply.commit_sync(commit("WMS-EAST", "j", false)).await;
    assert!(again.expect("answered").into_inner().duplicate);
    let older = app
        .supply
        .begin_sync(begin("WMS-EAST", "old", START_MS - 1))
        .await;
    assert_eq!(older.expect_err("stale").code(), Code::FailedPrecondition);
    let store = match &app.durability {
        promised::checkpoint::Durability::Redis(store) => store.clone(),
        promised::checkpoint::Durability::Memory => panic!("runs with Redis"),
    };
    store.snapshot_once().await.expect("snapshot");
    app.shutdown().await;
    let mut app = spawn_app_with(durable(&redis, "sync-mark")).await;
    let again = app.supply.commit_sync(commit("WMS-EAST", "j", false)).await;
    assert!(
        again.expect("answered").into_inner().duplicate,
        "the snapshot holds the mark"
    );
    assert_eq!(
        on_hand_of(&mut app.availability, &skus(1), "DC-EAST").await,
        vec![3]
    );
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("in range")
}

#[tokio::test]
async fn a_crash_mid_sync_leaves_the_state_before_it_and_a_retried_sync_lands_once() {
    let redis = RedisServer::start();
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    let args = [
        "--redis-url",
        &redis.url(),
        "--redis-prefix",
        "crash-sync",
        "--network",
        network,
        "--log",
        "error",
    ];
    let (service, mut supply, _) = restart(&args).await;
    let (node, t0) = ("DC-EDISON-NJ", now_ms() - 10_000);
    let sets = skus(3)
        .iter()
        .map(|s| set_on_hand(s, node, 10, t0))
        .collect();
    supply
        .apply_batch(batch("WMS", 1, sets))
        .await
        .expect("applied");
    let mut begin_request = begin("WMS", "nightly", t0 + 1);
    begin_request.node_ids = vec![node.into()];
    let positions = || vec![on_hand("SKU-1", node, 4), on_hand("SKU-2", node, 10)];
    supply
        .begin_sync(begin_request.clone())
        .await
        .expect("open");
    supply
        .sync_part(part("WMS", "nightly", positions()))
        .await
        .expect("staged");
    service.kill();

    let (service, mut supply, mut availability) = restart(&args).await;
    assert_eq!(
        on_hand_of(&mut availability, &skus(3), node).await,
        vec![10, 10, 10]
    );
    let lost = supply.commit_sync(commit("WMS", "nightly", false)).await;
    assert_eq!(
        lost.expect_err("staging is not durable").code(),
        Code::NotFound
    );
    let ack = full_sync(&mut supply, begin_request.clone(), positions(), false).await;
    assert_eq!(counts(&ack.expect("retried")), (1, 1, 1, false));
    service.kill();

    let (_service, mut supply, mut availability) = restart(&args).await;
    assert_eq!(
        on_hand_of(&mut availability, &skus(3), node).await,
        vec![4, 10, 0]
    );
    let resent = supply.commit_sync(commit("WMS", "nightly", false)).await;
    assert!(
        resent.expect("answered").into_inner().duplicate,
        "it landed once"
    );
}
