//! Durability through a real redis-server: restarts, snapshots crossing ingest, Redis outages,
//! damaged generations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use promised::checkpoint::{Durability, Keys, RedisConfig, Store};
use promised::clock::ManualClock;
use promised::config::ServeArgs;
use promised::engine::{Engine, EngineConfig};
use promised::grpc::pb;
use promised::manifest::Manifest;
use promised::query::AvailabilityQuery;
use redis::Commands;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::*;
use crate::redis::RedisServer;

pub fn durable(redis: &RedisServer, prefix: &str) -> ServeArgs {
    ServeArgs {
        redis_url: Some(redis.url()),
        redis_prefix: Some(prefix.into()),
        redis_timeout_ms: Some("500".into()),
        snapshot_interval_secs: Some("3600".into()),
        ..ServeArgs::default()
    }
}

fn store_of(app: &TestApp) -> Arc<Store> {
    match &app.durability {
        Durability::Redis(store) => store.clone(),
        Durability::Memory => panic!("the test app runs without Redis"),
    }
}

/// Recovers the stored state into a second engine, as a restart would.
pub async fn recover(redis: &RedisServer, prefix: &str) -> anyhow::Result<Arc<Store>> {
    recover_at(redis, prefix, ManualClock::new(START_MS)).await
}

/// Recovers the stored state as a restart after a crash would, with `clock`.
async fn recover_at(
    redis: &RedisServer,
    prefix: &str,
    clock: ManualClock,
) -> anyhow::Result<Arc<Store>> {
    let config = RedisConfig {
        url: redis.url(),
        prefix: prefix.into(),
        timeout: Duration::from_millis(500),
        snapshot_interval: Duration::from_secs(3600),
        snapshot_after_effects: u64::MAX,
        audit_retention: Duration::from_secs(3600),
        snapshot_copy_percent: promised::config::DEFAULT_SNAPSHOT_COPY_PERCENT,
        access: Default::default(),
    };
    Store::open(config, &EngineConfig::default(), Arc::new(clock)).await
}

/// Asserts two engines answer alike for `skus` and hold the same feed sequences.
fn assert_same_state(live: &Engine, recovered: &Engine, skus: &[String]) {
    let query = AvailabilityQuery {
        skus: skus.to_vec(),
        quantity: Some(1),
        ..AvailabilityQuery::default()
    };
    let answer = |engine: &Engine| engine.availability(&query).expect("valid query").items;
    assert_eq!(answer(recovered), answer(live));
    let seqs = |engine: &Engine| {
        let stats = engine.stats();
        let mut seqs: Vec<(String, u64)> = stats
            .source_stats
            .into_iter()
            .map(|s| (s.source_id, s.last_seq))
            .collect();
        seqs.sort();
        (seqs, stats.positions, stats.nodes)
    };
    assert_eq!(seqs(recovered), seqs(live));
}

#[tokio::test]
async fn acknowledged_state_survives_a_restart() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "restart")).await;
    use pb::SupplyType::{InTransit, OnOrder};
    app.apply(
        "WMS-EAST",
        1,
        vec![
            set_on_hand("SKU-1", "DC-EAST", 30, START_MS),
            set_receipt("SKU-1", "DC-EAST", InTransit, "ASN-1", "2026-03-05", 10),
        ],
    )
    .await;
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", -4)])
        .await;
    app.apply(
        "ERP",
        1,
        vec![set_receipt(
            "SKU-1",
            "DC-WEST",
            OnOrder,
            "PO-1",
            "2026-03-20",
            50,
        )],
    )
    .await;
    let mut new_node = node("DC-NEW", pb::NodeKind::Dc, "America/Denver", &["WEST"]);
    new_node.safety_stock = 2;
    app.admin
        .upsert_nodes(pb::UpsertNodesRequest {
            nodes: vec![new_node],
        })
        .await
        .expect("node");
    let entry = pb::SafetyStockEntry {
        sku: "SKU-1".into(),
        node_id: "DC-EAST".into(),
        quantity: 5,
    };
    app.admin
        .set_safety_stock(pb::SetSafetyStockRequest {
            entries: vec![entry],
        })
        .await
        .expect("safety");
    let before = app.item("SKU-1").await;
    assert_eq!(app.stats().await.durability, "redis");
    app.shutdown().await;

    let mut app = spawn_app_with(durable(&redis, "restart")).await;
    assert_eq!(app.item("SKU-1").await, before);
    let stats = app.stats().await;
    assert!(
        stats.redis_up && stats.recovered_positions == 2,
        "{stats:?}"
    );
    assert!(
        stats.redis_persistence.contains("appendfsync=always"),
        "{}",
        stats.redis_persistence
    );
    let retry = app
        .apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", -4)])
        .await;
    assert!(retry.duplicate, "a retry after the restart is recognised");
    assert_eq!(app.item("SKU-1").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_mid_ingest_replay_every_delta_exactly_once() {
    let redis = RedisServer::start();
    // Not a test of timeouts: a journal round trip behind a snapshot's chunk writes, on a
    // machine busy with the rest of the suite, may take longer than the usual half second.
    let args = ServeArgs {
        redis_timeout_ms: Some("3000".into()),
        ..durable(&redis, "mid-ingest")
    };
    let app = spawn_app_with(args).await;
    let store = store_of(&app);
    let skus: Vec<String> = (0..20).map(|i| format!("SKU-{i}")).collect();
    let mut supply = app.supply.clone();
    let feed_skus = skus.clone();
    let feed = tokio::spawn(async move {
        for seq in 1..=150u64 {
            let updates = feed_skus
                .iter()
                .filter(|sku| seq % 3 != 0 || sku.ends_with('1'))
                .map(|sku| adjust_on_hand(sku, "DC-EAST", 1))
                .collect();
            supply
                .apply_batch(batch("WMS-EAST", seq, updates))
                .await
                .expect("durable batch");
        }
    });
    for _ in 0..3 {
        store.snapshot_once().await.expect("snapshot during ingest");
    }
    feed.await.expect("feed finished");
    let recovered = recover(&redis, "mid-ingest").await.expect("recovers");
    let report = recovered.status().recovery;
    assert!(
        report.generation.is_some() && report.effects_applied > 0,
        "{report:?}"
    );
    assert_same_state(&app.engine, recovered.engine(), &skus);
    let on_hand = |sku: &str| {
        let query = AvailabilityQuery {
            skus: vec![sku.into()],
            node_ids: vec!["DC-EAST".into()],
            ..Default::default()
        };
        recovered
            .engine()
            .availability(&query)
            .expect("query")
            .items[0]
            .nodes[0]
            .on_hand
    };
    assert_eq!(on_hand("SKU-1"), 150);
    assert_eq!(on_hand("SKU-2"), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_refuses_mutations_keeps_reads_and_heals_without_restart() {
    let mut redis = RedisServer::start();
    // A long timeout, so that "refused at once" below cannot be a timeout.
    let args = ServeArgs {
        redis_timeout_ms: Some("5000".into()),
        ..durable(&redis, "outage")
    };
    let mut app = spawn_app_with(args).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    redis.kill();

    let refused = app
        .supply
        .apply_batch(batch(
            "WMS-EAST",
            2,
            vec![adjust_on_hand("SKU-1", "DC-EAST", 5)],
        ))
        .await
        .expect_err("no acknowledgement without Redis");
    assert_eq!(refused.code(), Code::Unavailable);
    let fast = Instant::now();
    let again = app
        .supply
        .apply_batch(batch(
            "WMS-EAST",
            3,
            vec![adjust_on_hand("SKU-1", "DC-EAST", 7)],
        ))
        .await
        .expect_err("still down");
    assert_eq!(again.code(), Code::Unavailable);
    assert!(
        fast.elapsed() < Duration::from_millis(2_500),
        "refused before waiting for Redis"
    );
    assert_eq!(
        node_view(&app.item("SKU-1").await, "DC-EAST").on_hand,
        10,
        "reads are served from memory, and the refused batch left no trace"
    );
    let mut health = HealthClient::new(app.channel.clone());
    let supply_health = HealthCheckRequest {
        service: "promised.v1.Supply".into(),
    };
    let reads_health = HealthCheckRequest {
        service: "promised.v1.Availability".into(),
    };
    // The health service hears of the outage from the journal's state, on its own task.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = health
            .check(supply_health.clone())
            .await
            .expect("health")
            .into_inner()
            .status();
        if status == ServingStatus::NotServing {
            break;
        }
        assert!(Instant::now() < deadline, "Supply still {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = health
        .check(reads_health)
        .await
        .expect("health")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    redis.resume();
    // The refused batch 2 is retried by its feed until it is durable, and applied then: it was
    // undone, not kept.
    let deadline = Instant::now() + Duration::from_secs(15);
    let ack = loop {
        let retry = batch("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", 5)]);
        match app.supply.apply_batch(retry).await {
            Ok(ack) => break ack.into_inner(),
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
        assert!(Instant::now() < deadline, "the service did not heal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !ack.duplicate && ack.applied == 1 && ack.durable_seq == 2,
        "{ack:?}"
    );
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").on_hand, 15);
    let status = health
        .check(supply_health)
        .await
        .expect("health")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    let ack = app
        .apply("WMS-EAST", 4, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)])
        .await;
    assert_eq!((ack.applied, ack.durable_seq), (1, 4));
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").on_hand, 16);
    let recovered = recover(&redis, "outage").await.expect("recovers");
    assert_same_state(&app.engine, recovered.engine(), &["SKU-1".into()]);
}

#[tokio::test]
async fn a_damaged_generation_is_passed_over_for_the_previous_complete_one() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "damaged")).await;
    let store = store_of(&app);
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let older = store.snapshot_once().await.expect("snapshot");
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", 3)])
        .await;
    let newer = store.snapshot_once().await.expect("snapshot");
    app.apply("WMS-EAST", 3, vec![adjust_on_hand("SKU-2", "DC-EAST", 4)])
        .await;

    let keys = Keys::new("damaged");
    let mut conn = redis.client().get_connection().expect("redis");
    let () = conn
        .set(keys.chunk(newer.generation, 0), b"not a chunk".to_vec())
        .expect("damage a chunk");
    // A generation that never got its manifest is ignored as well.
    let () = conn
        .set(keys.chunk(newer.generation + 7, 0), b"partial".to_vec())
        .expect("stray chunk");

    let recovered = recover(&redis, "damaged")
        .await
        .expect("recovers from the older generation");
    assert_eq!(
        recovered.status().recovery.generation,
        Some(older.generation)
    );
    assert_same_state(
        &app.engine,
        recovered.engine(),
        &["SKU-1".into(), "SKU-2".into()],
    );
}

#[tokio::test]
async fn a_generation_of_many_chunks_reads_back_in_order_and_a_damaged_last_chunk_is_caught() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "chunks")).await;
    let store = store_of(&app);
    let skus: Vec<String> = (0..120_000).map(|i| format!("SKU-{i:06}")).collect();
    for (seq, part) in (1..).zip(skus.chunks(10_000)) {
        let updates = part
            .iter()
            .enumerate()
            .map(|(i, sku)| {
                set_on_hand(
                    sku,
                    "DC-EAST",
                    1 + (seq * 7 + i as u64) as i64 % 97,
                    START_MS,
                )
            })
            .collect();
        app.apply("WMS-EAST", seq, updates).await;
    }
    let older = store.snapshot_once().await.expect("snapshot");
    let newer = store.snapshot_once().await.expect("snapshot");
    let keys = Keys::new("chunks");
    let mut conn = redis.client().get_connection().expect("redis");
    let chunks = (0..)
        .take_while(|&i| {
            conn.exists::<_, bool>(keys.chunk(newer.generation, i))
                .expect("exists")
        })
        .count();
    assert!(chunks > 8, "more chunks than are read ahead: {chunks}");
    let sample: Vec<String> = skus.iter().step_by(997).cloned().collect();
    let whole = recover(&redis, "chunks").await.expect("recovers");
    assert_eq!(whole.status().recovery.generation, Some(newer.generation));
    assert_same_state(&app.engine, whole.engine(), &sample);

    let () = conn
        .set(
            keys.chunk(newer.generation, chunks - 1),
            b"not a chunk".to_vec(),
        )
        .expect("damage the last chunk");
    let fallback = recover(&redis, "chunks").await.expect("recovers");
    assert_eq!(
        fallback.status().recovery.generation,
        Some(older.generation)
    );
    assert_same_state(&app.engine, fallback.engine(), &sample);
}

#[tokio::test]
async fn a_snapshot_in_an_unknown_format_version_is_refused_with_a_clear_error() {
    let redis = RedisServer::start();
    let old = Manifest {
        generation: 1,
        created_ms: START_MS,
        shard_count: 256,
        journal_mark: "0-0".into(),
        network: Vec::new(),
        source_seqs: Vec::new(),
        broker_seqs: Vec::new(),
        sync_marks: Vec::new(),
        chunks: Vec::new(),
        positions: 0,
        reservation_chunks: Vec::new(),
    };
    let mut conn = redis.client().get_connection().expect("redis");
    let () = conn
        .set(Keys::new("old").manifest, old.encode_with_version(0))
        .expect("write manifest");
    let error = recover(&redis, "old").await.err().expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("format version 0 is not supported"),
        "{message}"
    );
}

#[tokio::test]
async fn a_snapshot_never_counts_a_batch_that_is_not_durable() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "counted")).await;
    let store = store_of(&app);
    app.apply("WMS-EAST", 1, vec![adjust_on_hand("SKU-1", "DC-EAST", 5)])
        .await;
    // Applied in memory, its journal write not yet made: a snapshot now would hold its effect
    // without its sequence being safe, so it must not complete.
    let update = promised::domain::SupplyBatch {
        source_id: "WMS-EAST".into(),
        seq: 2,
        updates: vec![promised::domain::SupplyUpdate {
            sku: "SKU-1".into(),
            node_id: "DC-EAST".into(),
            supply_type: Some(promised::domain::SupplyType::OnHand),
            op: Some(promised::domain::UpdateOp::Adjust),
            quantity: 3,
            reference: String::new(),
            eta: String::new(),
        }],
    };
    let (_, unjournaled) = app
        .engine
        .apply_batch(&update)
        .expect("applies in memory")
        .into_parts();
    let refused = store
        .snapshot_once()
        .await
        .expect_err("the batch is not durable");
    assert!(
        format!("{refused:#}").contains("did not become durable"),
        "{refused:#}"
    );
    // Taken back, as the journal writer does with a record Redis did not take.
    app.engine.undo(unjournaled.into_iter().collect());
    store
        .snapshot_once()
        .await
        .expect("nothing pending is left to count");
    let recovered = recover(&redis, "counted").await.expect("recovers");
    assert_same_state(&app.engine, recovered.engine(), &["SKU-1".into()]);
    assert_eq!(recovered.engine().durable_seq("WMS-EAST"), Some(1));
    assert_eq!(
        app.item("SKU-1").await.network_atp,
        5,
        "the batch left no trace"
    );
}

#[tokio::test]
async fn reservations_and_their_idempotency_survive_a_restart() {
    use crate::reservations::{line, reserve_request};
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "holds")).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let held = reserve_request("held", vec![line("SKU-1", "DC-EAST", 2)]);
    let before_held = reservations
        .reserve(held.clone())
        .await
        .expect("held")
        .into_inner();
    reservations
        .reserve(reserve_request("ordered", vec![line("SKU-1", "", 3)]))
        .await
        .expect("held");
    let commit = pb::CommitRequest {
        reservation_id: "ordered".into(),
        order_id: "ORDER-1".into(),
    };
    let before_ordered = reservations
        .commit(commit)
        .await
        .expect("committed")
        .into_inner();
    let before = app.item("SKU-1").await;
    let report = store_of(&app).snapshot_once().await.expect("snapshot");
    assert_eq!(report.reservations, 2, "the held and the committed one");
    app.shutdown().await;

    let mut app = spawn_app_with(durable(&redis, "holds")).await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    assert_eq!(app.item("SKU-1").await, before);
    assert_eq!(
        reservations
            .reserve(held)
            .await
            .expect("retry")
            .into_inner(),
        before_held,
        "same answer after restart"
    );
    let different = reserve_request("held", vec![line("SKU-1", "DC-EAST", 1)]);
    assert_eq!(
        reservations
            .reserve(different)
            .await
            .expect_err("taken")
            .code(),
        Code::AlreadyExists
    );
    let get = pb::GetReservationRequest {
        reservation_id: "ordered".into(),
    };
    assert_eq!(
        reservations.get(get).await.expect("kept").into_inner(),
        before_ordered
    );
    let shipped = pb::SupplyUpdate {
        sku: "SKU-1".into(),
        node_id: "DC-EAST".into(),
        supply_type: pb::SupplyType::OnHand.into(),
        op: pb::UpdateOp::Ship.into(),
        quantity: 3,
        order_id: "ORDER-1".into(),
        ..Default::default()
    };
    assert_eq!(
        app.apply("WMS-EAST", 2, vec![shipped]).await.applied,
        1,
        "the order ships after the restart"
    );
    let view = node_view(&app.item("SKU-1").await, "DC-EAST").clone();
    assert_eq!((view.on_hand, view.allocated, view.reserved), (7, 0, 2));
}

/// Recovery keeps the highest version of each reservation it finds in the snapshot and the
/// journal, so an extension must count as a new version to survive a crash.
#[tokio::test]
async fn an_extended_hold_keeps_its_new_expiry_through_a_crash() {
    use crate::reservations::{line, reserve_request};
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "extended")).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    // Held for 600 s from START_MS, then extended at +300 s to expire at +1,200 s.
    let cart = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 4)]);
    reservations.reserve(cart).await.expect("held");
    app.clock.advance_ms(300_000);
    let extend = pb::ExtendRequest {
        reservation_id: "cart".into(),
        ttl_seconds: 900,
    };
    reservations.extend(extend).await.expect("extended");

    // What a restart after a crash now finds: no final snapshot, only the journal.
    let clock = ManualClock::new(START_MS + 700_000);
    let store = recover_at(&redis, "extended", clock)
        .await
        .expect("recovers");
    let recovered = store.engine();
    assert!(recovered.expire_due().is_empty(), "past the first TTL only");
    let held = recovered.get_reservation("cart").expect("known");
    assert_eq!(
        held.reservation.expires_at_ms,
        START_MS + 1_200_000,
        "the extended expiry"
    );
    app.shutdown().await;
}

/// What a client can see; whether Redis is up is what changes during an outage, not state.
async fn outage_fingerprint(app: &mut TestApp) -> String {
    fingerprint(app, &["held", "ordered"], |stats| stats.redis_up = false).await
}

/// Once the store is known to be down, every mutating RPC is refused with UNAVAILABLE before
/// it changes anything: no edge can acknowledge, or apply, what is not durable.
#[tokio::test]
async fn every_mutating_rpc_is_refused_while_redis_is_down_and_changes_nothing() {
    use crate::mutating::{prepare, send, MUTATING};
    let mut redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "refused")).await;
    prepare(&mut app).await;
    let before = outage_fingerprint(&mut app).await;
    redis.kill();
    // The first write after the kill is the one that finds Redis gone: applied, then undone
    // when the journal does not take it.
    let first = batch("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", 4)]);
    let undone = app
        .supply
        .apply_batch(first)
        .await
        .expect_err("not durable");
    assert_eq!(undone.code(), Code::Unavailable, "{undone:?}");
    for call in MUTATING {
        match send(call, &app.channel, "during-the-outage").await {
            Ok(()) => panic!("{call:?} acknowledged without Redis"),
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{call:?}: {status:?}"),
        }
    }
    assert_eq!(
        outage_fingerprint(&mut app).await,
        before,
        "nothing changed"
    );
}

/// Redis keeps two generations: a retired one leaves neither its position chunks nor its
/// reservation chunks behind.
#[tokio::test]
async fn a_retired_generation_leaves_no_chunks_behind() {
    use crate::reservations::{line, reserve_request};
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "retired")).await;
    let store = store_of(&app);
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let cart = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 2)]);
    reservations.reserve(cart).await.expect("held");
    let first = store.snapshot_once().await.expect("snapshot").generation;
    store.snapshot_once().await.expect("snapshot");
    store.snapshot_once().await.expect("snapshot");
    let keys = Keys::new("retired");
    let mut conn = redis.client().get_connection().expect("redis");
    let left: Vec<String> = [keys.chunk(first, 0), keys.reservation_chunk(first, 0)]
        .into_iter()
        .filter(|key| conn.exists::<_, bool>(key).expect("EXISTS"))
        .collect();
    assert!(
        left.is_empty(),
        "chunks of retired generation {first}: {left:?}"
    );
}

/// Waits until the service takes writes again after an outage, proving it with `batch`.
pub async fn until_healed(app: &mut TestApp, batch: pb::SupplyBatch) -> pb::SupplyAck {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match app.supply.apply_batch(batch.clone()).await {
            Ok(ack) => return ack.into_inner(),
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
        assert!(Instant::now() < deadline, "the service did not heal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_write_redis_takes_after_its_timeout_stays_undone_through_a_restart() {
    use crate::reservations::{line, reserve_request};
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "late")).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let journal = Keys::new("late").journal;
    let mut conn = redis.client().get_connection().expect("redis");
    let entries_before: u64 = conn.xlen(&journal).expect("xlen");
    let generation_before = store_of(&app).status().snapshot_generation;

    // A Redis that hangs: the write reaches its socket and times out unanswered.
    redis.signal("STOP");
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let hold = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 3)]);
    let refused = reservations.reserve(hold).await.expect_err("timed out");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let adjust = batch("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)]);
    let refused = app.supply.apply_batch(adjust).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").on_hand, 10);
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").reserved, 0);

    // Redis wakes and executes the write it was sent; the service fences writes until a
    // snapshot of the undone state supersedes it.
    redis.signal("CONT");
    let ack = until_healed(
        &mut app,
        batch("WMS-EAST", 2, vec![adjust_on_hand("SKU-2", "DC-EAST", 4)]),
    )
    .await;
    assert_eq!((ack.applied, ack.durable_seq), (1, 2), "{ack:?}");
    let entries_after: u64 = conn.xlen(&journal).expect("xlen");
    assert_eq!(
        entries_after,
        entries_before + 2,
        "the timed-out write reached the journal after all, beside the new batch"
    );
    assert!(store_of(&app).status().snapshot_generation > generation_before);
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").on_hand, 10);

    let recovered = recover(&redis, "late").await.expect("recovers");
    assert_same_state(
        &app.engine,
        recovered.engine(),
        &["SKU-1".into(), "SKU-2".into()],
    );
    assert!(recovered.engine().get_reservation("cart").is_err());
}

#[tokio::test]
async fn a_restart_while_redis_is_down_brings_back_what_readers_saw() {
    use crate::reservations::{line, reserve_request};
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let mut redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "readers")).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    redis.kill();
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let hold = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 3)]);
    let refused = reservations.reserve(hold).await.expect_err("not durable");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let adjust = batch("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", 5)]);
    let refused = app.supply.apply_batch(adjust).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let seen = app.item("SKU-1").await;
    assert_eq!(node_view(&seen, "DC-EAST").on_hand, 10);
    assert_eq!(node_view(&seen, "DC-EAST").reserved, 0);
    app.shutdown().await;

    redis.resume();
    let mut app = spawn_app_with(durable(&redis, "readers")).await;
    assert_eq!(
        app.item("SKU-1").await,
        seen,
        "what readers saw is what survived"
    );
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let missing = reservations
        .get(pb::GetReservationRequest {
            reservation_id: "cart".into(),
        })
        .await
        .expect_err("never held");
    assert_eq!(missing.code(), Code::NotFound);
}
