//! Kill -9 the real binary at random points while feeds stream, restart it, and check that the
//! recovered state is exactly what the recovered feed sequences imply: nothing acknowledged is
//! missing and nothing is applied twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::supply_client::SupplyClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::binary::Binary;
use crate::helpers::{adjust_on_hand, batch, set_on_hand};
use crate::redis::RedisServer;

const SKUS: usize = 24;
const DCS: [&str; 3] = ["DC-EDISON-NJ", "DC-ATLANTA-GA", "DC-DALLAS-TX"];
const STORES: [&str; 3] = ["STORE-BOSTON-MA", "STORE-MIAMI-FL", "STORE-SEATTLE-WA"];

/// The service binary running against Redis, with the demo network.
async fn start_service(redis: &RedisServer, prefix: &str) -> Binary {
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    let redis_url = redis.url();
    Binary::start(&[
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        prefix,
        "--network",
        network,
        // Frequent snapshots, so kills land before, during and after them.
        "--snapshot-after-effects",
        "150",
        "--snapshot-interval-secs",
        "1",
        "--log",
        "error",
    ])
    .await
}

/// One source's planned batches, and how far they were acknowledged.
struct Feed {
    source: &'static str,
    batches: Vec<Vec<pb::SupplyUpdate>>,
}

/// Opening stock at every DC position, then receipts of one unit.
fn wms_feed(rng: &mut SmallRng) -> Feed {
    let opening: Vec<pb::SupplyUpdate> = (0..SKUS)
        .flat_map(|i| DCS.map(|dc| adjust_on_hand(&format!("SKU-{i}"), dc, 50)))
        .collect();
    let mut batches = vec![opening];
    for _ in 0..3_000 {
        let batch = (0..rng.random_range(1..12))
            .map(|_| {
                let sku = format!("SKU-{}", rng.random_range(0..SKUS));
                adjust_on_hand(&sku, DCS[rng.random_range(0..DCS.len())], 1)
            })
            .collect();
        batches.push(batch);
    }
    Feed {
        source: "WMS",
        batches,
    }
}

fn pos_feed(rng: &mut SmallRng) -> Feed {
    let batches = (0..3_000)
        .map(|i| {
            (0..rng.random_range(1..6))
                .map(|_| {
                    let sku = format!("SKU-{}", rng.random_range(0..SKUS));
                    set_on_hand(
                        &sku,
                        STORES[rng.random_range(0..STORES.len())],
                        rng.random_range(0..50),
                        1_000 * (i + 1),
                    )
                })
                .collect()
        })
        .collect();
    Feed {
        source: "POS",
        batches,
    }
}

/// Streams the feed's batches in order, recording the highest sequence acknowledged as durable.
async fn stream(channel: Channel, feed: &Feed, acked: &AtomicU64) {
    let (batches, outbound) = mpsc::channel(4);
    let Ok(reply) = SupplyClient::new(channel)
        .stream_updates(ReceiverStream::new(outbound))
        .await
    else {
        return;
    };
    let mut acks = reply.into_inner();
    let sender = async {
        for (i, updates) in feed.batches.iter().enumerate() {
            if batches
                .send(batch(feed.source, i as u64 + 1, updates.clone()))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let receiver = async {
        while let Ok(Some(ack)) = acks.message().await {
            assert!(!ack.duplicate, "{ack:?}");
            acked.store(ack.durable_seq, Ordering::SeqCst);
        }
    };
    tokio::join!(sender, receiver);
}

/// Sends the feed batch by batch, recording the highest sequence acknowledged as durable.
async fn unary(channel: Channel, feed: &Feed, acked: &AtomicU64) {
    let mut client = SupplyClient::new(channel);
    for (i, updates) in feed.batches.iter().enumerate() {
        match client
            .apply_batch(batch(feed.source, i as u64 + 1, updates.clone()))
            .await
        {
            Ok(ack) => acked.store(ack.into_inner().durable_seq, Ordering::SeqCst),
            Err(_) => return,
        }
    }
}

/// On-hand per (sku, node) after batches `1..=upto` of both feeds.
fn expected(
    wms: &Feed,
    wms_upto: u64,
    pos: &Feed,
    pos_upto: u64,
) -> HashMap<(String, String), i64> {
    let mut state = HashMap::new();
    for update in wms.batches.iter().take(wms_upto as usize).flatten() {
        *state
            .entry((update.sku.clone(), update.node_id.clone()))
            .or_default() += update.quantity;
    }
    for update in pos.batches.iter().take(pos_upto as usize).flatten() {
        state.insert(
            (update.sku.clone(), update.node_id.clone()),
            update.quantity,
        );
    }
    state.retain(|_, quantity| *quantity != 0);
    state
}

/// What the checkout acknowledged: each reservation's id and whether its commit was answered.
type Checkouts = Mutex<Vec<(String, bool)>>;

/// Reserves one- and two-line carts at the DCs and commits every other one, recording each
/// acknowledged step.
async fn checkout(channel: Channel, seed: u64, acked: &Checkouts) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xc0ffee);
    let mut client = ReservationsClient::new(channel);
    for i in 0.. {
        let id = format!("cart-{i}");
        let lines = (0..rng.random_range(1..3))
            .map(|n| pb::ReservationLine {
                sku: format!("SKU-{}", (i * 2 + n) % SKUS),
                node_id: DCS[rng.random_range(0..DCS.len())].into(),
                quantity: 1,
                ..Default::default()
            })
            .collect();
        let request = pb::ReserveRequest {
            reservation_id: id.clone(),
            lines,
            ttl_seconds: 3_600,
        };
        match client.reserve(request).await {
            Ok(_) => acked.lock().expect("acks").push((id.clone(), false)),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => continue,
            Err(_) => return,
        }
        if i % 2 == 0 {
            let commit = pb::CommitRequest {
                reservation_id: id.clone(),
                order_id: format!("order-{i}"),
            };
            match client.commit(commit).await {
                Ok(_) => acked.lock().expect("acks").push((id, true)),
                Err(_) => return,
            }
        }
    }
}

/// Every acknowledged reservation survived in the state it was acknowledged in (or later),
/// and the positions carry exactly the recovered reservations: no drift, nothing oversold.
async fn assert_checkouts_recovered(channel: Channel, acked: &Checkouts, seed: u64) {
    let mut client = ReservationsClient::new(channel.clone());
    let acked = acked.lock().expect("acks").clone();
    for (id, committed) in &acked {
        let request = pb::GetReservationRequest {
            reservation_id: id.clone(),
        };
        let reservation = client
            .get(request)
            .await
            .unwrap_or_else(|s| panic!("seed {seed}: acknowledged {id} lost: {s:?}"));
        let state = reservation.into_inner().state();
        let ok = state == pb::ReservationState::Committed
            || (!committed && state == pb::ReservationState::Held);
        assert!(ok, "seed {seed}: {id} recovered as {state:?}");
    }
    let report = AdminClient::new(channel)
        .check_invariants(pb::CheckInvariantsRequest { repair: false })
        .await
        .expect("audit")
        .into_inner();
    assert_eq!(
        (report.drift, report.oversold),
        (0, 0),
        "seed {seed}: {report:?}"
    );
}

async fn recovered_seqs(channel: Channel) -> HashMap<String, u64> {
    let stats = AdminClient::new(channel)
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    stats
        .source_stats
        .into_iter()
        .map(|s| (s.source_id, s.last_seq))
        .collect()
}

async fn on_hand(channel: Channel) -> HashMap<(String, String), i64> {
    let request = pb::AvailabilityRequest {
        skus: (0..SKUS).map(|i| format!("SKU-{i}")).collect(),
        node_ids: DCS.iter().chain(&STORES).map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let answer = AvailabilityClient::new(channel)
        .get_availability(request)
        .await
        .expect("availability");
    let mut state = HashMap::new();
    for item in answer.into_inner().items {
        for node in item.nodes.into_iter().filter(|n| n.on_hand != 0) {
            state.insert((item.sku.clone(), node.node_id), node.on_hand);
        }
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_service_recovers_exactly_the_acknowledged_state() {
    let redis = RedisServer::start();
    for seed in 0..10u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let feeds = Arc::new((wms_feed(&mut rng), pos_feed(&mut rng)));
        let acked = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let checkouts: Arc<Checkouts> = Arc::default();
        let prefix = format!("crash-{seed}");
        let service = start_service(&redis, &prefix).await;
        let running = tokio::spawn({
            let (channel, feeds, acked) = (service.channel.clone(), feeds.clone(), acked.clone());
            let checkouts = checkouts.clone();
            async move {
                tokio::join!(
                    stream(channel.clone(), &feeds.0, &acked.0),
                    unary(channel.clone(), &feeds.1, &acked.1),
                    checkout(channel, seed, &checkouts),
                );
            }
        });
        // The kill point: once both feeds and the checkouts are under way (a commit answered),
        // somewhere in the middle of them and of the snapshots they trigger.
        let committed = || checkouts.lock().expect("acks").iter().any(|(_, c)| *c);
        let started = Instant::now();
        while acked.0.load(Ordering::SeqCst) == 0
            || acked.1.load(Ordering::SeqCst) == 0
            || !committed()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "seed {seed}: the feeds or the checkouts never got going"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..500))).await;
        service.kill();
        running.await.expect("feeds end when the service dies");
        let (wms_acked, pos_acked) = (
            acked.0.load(Ordering::SeqCst),
            acked.1.load(Ordering::SeqCst),
        );

        let service = start_service(&redis, &prefix).await;
        let seqs = recovered_seqs(service.channel.clone()).await;
        let (wms_seq, pos_seq) = (seqs["WMS"], seqs["POS"]);
        assert!(wms_seq >= wms_acked && pos_seq >= pos_acked, "seed {seed}: lost acknowledged batches: WMS {wms_seq} < {wms_acked} or POS {pos_seq} < {pos_acked}");
        assert!(
            wms_acked > 0 && pos_acked > 0,
            "seed {seed}: the kill came before any batch was acknowledged"
        );
        assert_checkouts_recovered(service.channel.clone(), &checkouts, seed).await;
        let state = on_hand(service.channel.clone()).await;
        let (wms, pos) = (&feeds.0, &feeds.1);
        assert_eq!(
            state,
            expected(wms, wms_seq, pos, pos_seq),
            "seed {seed}: state is not that of WMS 1..={wms_seq} and POS 1..={pos_seq}"
        );
        service.kill();
    }
}
