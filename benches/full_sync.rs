//! A full sync's commit, in process: WMS holds on-hand at every SKU x node it owns in the demo
//! network (1 M positions by default); a sync restates all of it with 90 % unchanged, 5 %
//! changed and 5 % left out (zeroed at commit). Prints the time to stage the parts and to
//! commit, against applying the same positions as SET batches in the same run, and the
//! latency of single-SKU availability reads on another thread while idle and while the
//! commit runs. Each round starts from a fresh engine; the engine journals (its commit
//! records every position image it writes, as the server's does) but nothing is written out.
//!
//! `cargo bench --bench full_sync` measures 1,000,000 positions in 3 rounds;
//! `cargo bench --bench full_sync -- 200000` the count given. Under `cargo test --benches`
//! it only runs 10,000 positions once, as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use promised::clock::ManualClock;
use promised::domain::SupplyType;
use promised::engine::{Engine, EngineConfig};
use promised::index::Index;
use promised::network::Network;
use promised::query::AvailabilityQuery;
use promised::sync::{SyncBegin, SyncCommit, SyncPart, SyncPosition};

use common::{benchmarking, load_demo_network, on_hand_set, owned_nodes, sku, Feed, NOW_MS};

const DEFAULT_POSITIONS: usize = 1_000_000;
const SMOKE_POSITIONS: usize = 10_000;
const ROUNDS: usize = 3;
/// Positions per part (the engine's default batch limit).
const PART: usize = 10_000;

fn main() {
    let given = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok());
    let (positions, rounds) = match (given, benchmarking()) {
        (Some(n), _) => (n, ROUNDS),
        (None, true) => (DEFAULT_POSITIONS, ROUNDS),
        (None, false) => (SMOKE_POSITIONS, 1),
    };
    for round in 1..=rounds {
        let figures = measure(positions);
        println!("round {round}: {figures}");
    }
}

/// A journaling engine with the demo network; WMS's on-hand nodes.
fn engine() -> (Engine, Vec<String>) {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let engine = Engine::journaled(
        EngineConfig::default(),
        clock,
        Network::default(),
        Index::new(EngineConfig::default().shards),
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
        .block_on(load_demo_network(
            &engine,
            &promised::checkpoint::Durability::Memory,
        ));
    let nodes = owned_nodes(&engine, "WMS", SupplyType::OnHand);
    (engine, nodes)
}

/// Every (SKU, node) of the shape, SKU-major.
fn shape(positions: usize, nodes: &[String]) -> Vec<(String, String)> {
    (0..positions)
        .map(|i| (sku(i / nodes.len()), nodes[i % nodes.len()].clone()))
        .collect()
}

/// Applies `shape` at 10 units each as SET batches; returns how long it took.
fn preload(engine: &Engine, shape: &[(String, String)]) -> Duration {
    let mut feed = Feed::resume(engine, "WMS");
    let started = Instant::now();
    for chunk in shape.chunks(PART) {
        let sets = chunk
            .iter()
            .map(|(s, n)| on_hand_set(s.clone(), n.clone(), 10, NOW_MS - 1_000))
            .collect();
        let _ = feed.apply_all(engine, sets);
    }
    started.elapsed()
}

/// Stages the sync of `shape`: every 20th position left out, every 20th (offset 10) changed.
fn stage(engine: &Engine, shape: &[(String, String)]) -> Duration {
    let begin = SyncBegin {
        source_id: "WMS".into(),
        sync_id: "bench".into(),
        supply_type: Some(SupplyType::OnHand),
        node_ids: Vec::new(),
        as_of_ms: Some(NOW_MS),
    };
    let started = Instant::now();
    engine.begin_sync(&begin).expect("opens");
    let positions: Vec<SyncPosition> = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 0)
        .map(|(i, (s, n))| SyncPosition {
            sku: s.clone(),
            node_id: n.clone(),
            quantity: if i % 20 == 10 { 11 } else { 10 },
            reference: String::new(),
            eta: String::new(),
        })
        .collect();
    for chunk in positions.chunks(PART) {
        let part = SyncPart {
            source_id: "WMS".into(),
            sync_id: "bench".into(),
            positions: chunk.to_vec(),
        };
        let outcome = engine.stage_sync_part(&part).expect("staged");
        assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections[0]);
    }
    started.elapsed()
}

/// Availability reads of one SKU in a loop on another thread until `stop`; when each started
/// and how long it took.
fn reader(engine: &Engine, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<(Instant, Duration)>> {
    let engine = engine.clone();
    let query = AvailabilityQuery {
        skus: vec![sku(7)],
        ..AvailabilityQuery::default()
    };
    thread::spawn(move || {
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = engine.availability(&query).expect("answers");
            std::hint::black_box(answer);
            latencies.push((started, started.elapsed()));
        }
        latencies
    })
}

/// Reads while `work` runs; returns `work`'s result, and the p50, p99 and max of the reads
/// that overlapped it (started before it ended and ended after it started).
fn read_during<T>(engine: &Engine, work: impl FnOnce() -> T) -> (T, [Duration; 3]) {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = reader(engine, stop.clone());
    // The reader's first reads, before the work starts, are not counted.
    thread::sleep(Duration::from_millis(10));
    let began = Instant::now();
    let result = work();
    let ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = reads
        .join()
        .expect("reader")
        .into_iter()
        .filter(|(start, took)| *start < ended && *start + *took > began)
        .map(|(_, took)| took)
        .collect();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (result, [at(0.5), at(0.99), at(1.0)])
}

fn measure(positions: usize) -> String {
    let (engine, nodes) = engine();
    let shape = shape(positions, &nodes);
    let applied = preload(&engine, &shape);
    let staged = stage(&engine, &shape);
    let commit = SyncCommit {
        source_id: "WMS".into(),
        sync_id: "bench".into(),
        force: false,
    };
    let ((), idle_reads) = read_during(&engine, || thread::sleep(Duration::from_millis(500)));
    let ((took, outcome), busy_reads) = read_during(&engine, || {
        let started = Instant::now();
        let outcome = engine.commit_sync(&commit).expect("commits").into_parts();
        (started.elapsed(), outcome)
    });
    let (answer, record) = outcome;
    let effects = record.map_or(0, |r| r.effects.count());
    assert_eq!(answer.zeroed as usize, positions.div_ceil(20), "{answer:?}");
    format!(
        "{positions} positions at {} nodes: commit {took:.2?} (set {}, zeroed {}, unchanged {}, \
         {effects} effects); staging {staged:.2?}; the same positions as SET batches {applied:.2?} \
         (commit / batches = {:.2}); single-SKU reads p50/p99/max idle {:.1?}/{:.1?}/{:.1?}, \
         overlapping the commit {:.1?}/{:.1?}/{:.1?} (p99 overlapping / idle = {:.2})",
        nodes.len(),
        answer.set,
        answer.zeroed,
        answer.unchanged,
        took.as_secs_f64() / applied.as_secs_f64(),
        idle_reads[0],
        idle_reads[1],
        idle_reads[2],
        busy_reads[0],
        busy_reads[1],
        busy_reads[2],
        busy_reads[1].as_secs_f64() / idle_reads[1].as_secs_f64(),
    )
}
