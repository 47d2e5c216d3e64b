//! In-process benchmarks of the engine: availability (ATP) of one SKU across the 50-node demo
//! network, explanations of it, and applying supply batches on one and on two threads.
//!
//! `cargo bench --bench atp` (add a filter after `--` to run part of it, e.g. `-- availability`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use promised::domain::{SupplyBatch, SupplyType, SupplyUpdate};
use promised::engine::Engine;
use promised::explain::ExplainQuery;
use promised::query::AvailabilityQuery;
use promised::reservation::{LineRequest, ReserveRequest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use common::{
    assert_fully_applied, demo_engine, on_hand_adjust, on_hand_owner, on_hand_set, owned_nodes,
    receipt, sku, today, Feed, BATCH, NOW_MS,
};

/// SKUs in the catalogue the engine holds besides the benchmarked ones.
const CATALOGUE_SKUS: usize = 100_000;

/// Prepared batches per source in the apply benches (100,000 updates), replayed in a cycle.
const REPLAY_BATCHES: usize = 100;

/// SKUs with on-hand only at every node (the first one is the 1-SKU case), and one that also
/// has dated receipts.
const PLAIN_SKUS: usize = 20;
const DATED_SKU: &str = "BENCH-DATED";

fn plain_sku(i: usize) -> String {
    format!("BENCH-PLAIN-{i:02}")
}

/// A quantity the dated SKU only reaches after some receipts arrive.
const EARLIEST_QUANTITY: i64 = 2_000;

/// An engine with the demo network, a background catalogue, and the benchmarked SKUs.
fn availability_engine() -> Engine {
    let engine = demo_engine();
    load_catalogue(&engine);
    let mut feeds = [Feed::resume(&engine, "WMS"), Feed::resume(&engine, "POS")];
    let mut erp = Feed::resume(&engine, "ERP");
    let day = today(&engine);
    let nodes: Vec<String> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .collect();
    for feed in &mut feeds {
        let mut updates = Vec::new();
        for node in nodes
            .iter()
            .filter(|n| on_hand_owner(&engine, n) == feed.source_id)
        {
            let quantity = if feed.source_id == "WMS" { 20 } else { 3 };
            for sku in (0..PLAIN_SKUS).map(plain_sku).chain([DATED_SKU.into()]) {
                updates.push(on_hand_set(sku, node.clone(), quantity, NOW_MS));
            }
        }
        feed.apply_all(&engine, updates);
    }
    // Receipts of the dated SKU: two ASN lines in transit at each DC and 3PL, two open PO lines
    // there, and one PO line at each store.
    let mut in_transit = Vec::new();
    for (i, node) in owned_nodes(&engine, "WMS", SupplyType::InTransit)
        .into_iter()
        .enumerate()
    {
        for (line, days) in [(1, 2), (2, 5)] {
            in_transit.push(receipt(
                DATED_SKU.into(),
                node.clone(),
                SupplyType::InTransit,
                format!("ASN-{i}-{line}"),
                day.plus(days),
                50,
                NOW_MS,
            ));
        }
    }
    feeds[0].apply_all(&engine, in_transit);
    let wms_nodes = owned_nodes(&engine, "WMS", SupplyType::OnHand);
    let mut on_order = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let lines: &[(i32, i32)] = if wms_nodes.contains(node) {
            &[(1, 10), (2, 20)]
        } else {
            &[(1, 15)]
        };
        for &(line, days) in lines {
            on_order.push(receipt(
                DATED_SKU.into(),
                node.clone(),
                SupplyType::OnOrder,
                format!("PO-{i}-{line}"),
                day.plus(days),
                100,
                NOW_MS,
            ));
        }
    }
    erp.apply_all(&engine, on_order);
    engine
}

/// On-hand for [`CATALOGUE_SKUS`] SKUs at 2 to 5 random nodes each.
fn load_catalogue(engine: &Engine) {
    let mut rng = SmallRng::seed_from_u64(7);
    let nodes: Vec<(String, &'static str)> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| (n.id.clone(), on_hand_owner(engine, &n.id)))
        .collect();
    let mut feeds = [Feed::resume(engine, "WMS"), Feed::resume(engine, "POS")];
    let mut pending: [Vec<SupplyUpdate>; 2] = Default::default();
    for i in 0..CATALOGUE_SKUS {
        for _ in 0..rng.random_range(2..6) {
            let (node, owner) = &nodes[rng.random_range(0..nodes.len())];
            let at = usize::from(*owner == "POS");
            pending[at].push(on_hand_set(
                sku(i),
                node.clone(),
                rng.random_range(0..500),
                NOW_MS,
            ));
            if pending[at].len() == BATCH {
                feeds[at].apply_all(engine, std::mem::take(&mut pending[at]));
            }
        }
    }
    for (feed, updates) in feeds.iter_mut().zip(pending) {
        feed.apply_all(engine, updates);
    }
}

fn availability(c: &mut Criterion) {
    let engine = availability_engine();
    let nodes = engine.network().nodes().len();
    let one_node = engine.network().nodes()[0].id.clone();
    let query = |skus: Vec<String>, node_ids: &[&str], quantity: Option<i64>| AvailabilityQuery {
        skus,
        node_ids: node_ids.iter().map(|n| n.to_string()).collect(),
        quantity,
        ..AvailabilityQuery::default()
    };
    let plain = || vec![plain_sku(0)];
    let dated = || vec![DATED_SKU.to_owned()];
    let cases = [
        ("1_sku_all_50_nodes", query(plain(), &[], None)),
        (
            "1_sku_all_50_nodes_dated_earliest",
            query(dated(), &[], Some(EARLIEST_QUANTITY)),
        ),
        ("1_sku_1_node", query(plain(), &[&one_node], None)),
        (
            "1_sku_1_node_dated_earliest",
            query(dated(), &[&one_node], Some(EARLIEST_QUANTITY)),
        ),
        (
            "20_skus_all_50_nodes",
            query((0..PLAIN_SKUS).map(plain_sku).collect(), &[], None),
        ),
    ];
    // The answers must be what the bench claims to measure.
    let all = engine.availability(&cases[0].1).expect("valid query");
    assert_eq!(all.items[0].nodes.len(), nodes);
    assert!(all.items[0].network_atp > 0);
    let dated = engine.availability(&cases[1].1).expect("valid query");
    let earliest = dated.items[0].network_earliest.expect("reachable quantity");
    assert!(
        earliest > today(&engine),
        "the earliest date needs receipts"
    );
    assert_eq!(
        engine.availability(&cases[2].1).expect("valid query").items[0]
            .nodes
            .len(),
        1
    );
    let many = engine.availability(&cases[4].1).expect("valid query");
    assert_eq!(many.items.len(), PLAIN_SKUS);
    assert!(many.items.iter().all(|item| item.nodes.len() == nodes));

    let mut group = c.benchmark_group("availability");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    for (name, query) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| engine.availability(black_box(query)).expect("valid query"))
        });
    }
    // One fixed cost of every query above: "today" in each of the network's time zones.
    let network = engine.network();
    group.bench_function("part_today_per_zone", |b| {
        b.iter(|| network.today_per_zone(black_box(NOW_MS)))
    });
    group.finish();
    explain(c, &engine);
}

/// Holds on the dated SKU at the first node.
const EXPLAINED_HOLDS: usize = 20;

/// Explanations of the dated SKU once its first node carries [`EXPLAINED_HOLDS`] holds (due
/// in a month, when its receipts have come in): at that node, and across the network (50
/// nodes, each with its receipts). Runs after the availability group, whose answers the holds
/// would change.
fn explain(c: &mut Criterion, engine: &Engine) {
    let node = engine.network().nodes()[0].id.clone();
    let need = today(engine).plus(30);
    for i in 0..EXPLAINED_HOLDS {
        let line = LineRequest {
            sku: DATED_SKU.into(),
            node_id: node.clone(),
            group_id: String::new(),
            quantity: 1,
            need_date: Some(need),
        };
        let hold = ReserveRequest {
            reservation_id: format!("bench-hold-{i}"),
            lines: vec![line],
            ttl_secs: 0,
            owner: String::new(),
        };
        black_box(engine.reserve(&hold).expect("stock").into_result());
    }
    let query = |node_id: &str| ExplainQuery {
        sku: DATED_SKU.into(),
        node_id: node_id.into(),
        ..ExplainQuery::default()
    };
    let cases = [
        ("dated_sku_1_node_20_holds", query(&node)),
        ("dated_sku_network_50_nodes", query("")),
    ];
    let at_node = engine.explain(&cases[0].1).expect("valid query");
    assert_eq!(at_node.nodes[0].commitments.len(), EXPLAINED_HOLDS);
    let network = engine.explain(&cases[1].1).expect("valid query");
    assert_eq!(network.nodes.len(), engine.network().nodes().len());
    let mut group = c.benchmark_group("explain");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    for (name, query) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| engine.explain(black_box(query)).expect("valid query"))
        });
    }
    group.finish();
}

/// A source's prepared batches, replayed in a cycle under fresh sequence numbers.
struct Replay {
    feed: Feed,
    batches: Vec<SupplyBatch>,
    next: usize,
}

impl Replay {
    /// [`REPLAY_BATCHES`] batches of on-hand SETs and ADJUSTs at random catalogue SKUs and
    /// random nodes of `source_id`, applied once (which creates the positions and checks that
    /// every update is applied, so the bench measures real work).
    fn prepare(engine: &Engine, source_id: &'static str, seed: u64) -> Self {
        let nodes = owned_nodes(engine, source_id, SupplyType::OnHand);
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut feed = Feed::resume(engine, source_id);
        let batches: Vec<SupplyBatch> = (0..REPLAY_BATCHES)
            .map(|_| {
                let updates = (0..BATCH)
                    .map(|_| {
                        let sku = sku(rng.random_range(0..CATALOGUE_SKUS));
                        let node = nodes[rng.random_range(0..nodes.len())].clone();
                        if rng.random_bool(0.5) {
                            on_hand_set(sku, node, rng.random_range(0..500), NOW_MS)
                        } else {
                            on_hand_adjust(sku, node, rng.random_range(1..4))
                        }
                    })
                    .collect();
                feed.batch(updates)
            })
            .collect();
        for batch in &batches {
            let outcome = engine
                .apply_batch(batch)
                .expect("a valid batch")
                .into_result();
            assert_fully_applied(batch, &outcome);
        }
        Self {
            feed,
            batches,
            next: 0,
        }
    }

    /// Applies the next prepared batch; returns the updates applied.
    fn apply_next(&mut self, engine: &Engine) -> u32 {
        let at = self.next;
        self.next = (at + 1) % self.batches.len();
        let batch = &mut self.batches[at];
        self.feed.renumber(batch);
        engine
            .apply_batch(batch)
            .expect("a valid batch")
            .into_result()
            .applied
    }
}

fn apply(c: &mut Criterion) {
    let engine = demo_engine();
    let mut wms = Replay::prepare(&engine, "WMS", 1);
    let mut pos = Replay::prepare(&engine, "POS", 2);

    let mut group = c.benchmark_group("apply");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .sample_size(30);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1_thread_batches_of_1000", |b| {
        b.iter(|| wms.apply_next(&engine))
    });
    // Each iteration is one batch on each of two threads, two sources, at the same time.
    group.throughput(Throughput::Elements(2 * BATCH as u64));
    group.bench_function("2_threads_batches_of_1000", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for replay in [&mut wms, &mut pos] {
                    let engine = &engine;
                    scope.spawn(move || {
                        for _ in 0..iters {
                            black_box(replay.apply_next(engine));
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    group.finish();
    // Replays after the first pass are still applied in full, not counted as duplicates or stale.
    for replay in [&mut wms, &mut pos] {
        assert_eq!(replay.apply_next(&engine) as usize, BATCH);
    }
}

criterion_group!(benches, availability, apply);
criterion_main!(benches);
