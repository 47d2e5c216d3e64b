//! Watchers against a real `redis-server` (started on a free loopback port, killed at the
//! end), in process, in two parts, each in windows of `--secs` seconds without watchers and
//! with `--watchers` watchers of the whole network attached, alternating, so both see the
//! same machine load:
//!
//! - flat out: durable small mutations from 8 feeds as fast as they go; reports durable
//!   mutations/s per window kind and their ratio, and the lag from a change's time to its
//!   arrival at the first watcher (ms, the journal records' clock);
//! - paced: the same feeds at `--rate` updates/s in all, while a storefront reads
//!   `GetAvailability` (one SKU, every node) once a millisecond; reports the read's latency
//!   (from when it was due, so a read held up by the watchers counts its wait) without and
//!   with the watchers, and the lag of every change at every watcher.
//!
//! `cargo bench --bench watch`; settings: `--watchers N` / `PROMISED_BENCH_WATCHERS` (default
//! 100), `--secs S` / `PROMISED_BENCH_SECS` (default 3), `--rounds R` /
//! `PROMISED_BENCH_ROUNDS` (default 3), `--rate U` / `PROMISED_BENCH_RATE` (default 10000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;
mod durability_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promised::app::App;
use promised::checkpoint::Durability;
use promised::clock::{Clock, SystemClock};
use promised::domain::SupplyBatch;
use promised::query::AvailabilityQuery;
use promised::watch::WatchFilter;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use durability_support::{
    add_bench_feeds, fmt_count, load_demo_network, open_store, setting, sku, Persistence,
    RedisServer,
};

/// Concurrent writers, each a feed of its own.
const WRITERS: usize = 8;
/// Updates per mutation.
const UPDATES: usize = 10;

/// Durable mutations per second from `WRITERS` feeds for `secs`, together at most
/// `mutations_per_sec` when set.
async fn window(app: &App, secs: u64, mutations_per_sec: Option<u64>) -> f64 {
    let engine = app.engine().clone();
    let nodes: Vec<String> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let mut feeds = add_bench_feeds(&engine, app, WRITERS).await.expect("feeds");
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut writers = JoinSet::new();
    for (w, mut feed) in feeds.drain(..).enumerate() {
        let (app, nodes, done) = (app.clone(), nodes.clone(), done.clone());
        let mut pace = mutations_per_sec.map(|rate| {
            let every = Duration::from_secs_f64(WRITERS as f64 / rate.max(1) as f64);
            tokio::time::interval(every)
        });
        writers.spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                if let Some(pace) = &mut pace {
                    pace.tick().await;
                }
                let updates = (0..UPDATES)
                    .map(|u| {
                        let node = nodes[(i + u) % nodes.len()].clone();
                        common::on_hand_adjust(sku(w * 1_000 + (i + u) % 1_000), node, 1)
                    })
                    .collect();
                let mut batch = SupplyBatch {
                    source_id: feed.source_id.clone(),
                    seq: 0,
                    updates,
                };
                feed.apply_durably(&app, &mut batch).await.expect("durable");
                done.fetch_add(1, Ordering::Relaxed);
                i += UPDATES;
            }
        });
    }
    while writers.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

/// Each watcher's lags (ms), one per change it took.
type Lags = Vec<Arc<std::sync::Mutex<Vec<i64>>>>;

/// Attaches `count` watchers that take every change; returns their tasks and their lags.
async fn watchers(app: &App, count: u64) -> (JoinSet<()>, Lags) {
    let mut all = Vec::new();
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let mut following = app
            .watch_availability(WatchFilter::default(), None, 1_024)
            .await
            .expect("watching");
        let lags = Arc::new(std::sync::Mutex::new(Vec::new()));
        all.push(lags.clone());
        tasks.spawn(async move {
            while let Some((_, change)) = following.events.recv().await {
                let change = change.expect("decodes");
                let lag = SystemClock.now_ms() - change.why().cause.at_ms;
                lags.lock().expect("lags").push(lag);
            }
        });
    }
    (tasks, all)
}

/// Stops the watchers and takes the lags they saw: the first one's, and everyone's.
async fn stop(mut tasks: JoinSet<()>, lags: Lags) -> (Vec<i64>, Vec<i64>) {
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let mut taken = lags
        .iter()
        .map(|l| std::mem::take(&mut *l.lock().expect("lags")));
    let first = taken.next().unwrap_or_default();
    let mut every = first.clone();
    taken.for_each(|mut l| every.append(&mut l));
    (first, every)
}

/// A storefront's reads of one SKU at every node, due once a millisecond until `until`: each
/// read's latency (µs) from when it was due.
fn reader(app: &App, until: Instant) -> tokio::task::JoinHandle<Vec<i64>> {
    let app = app.clone();
    let query = AvailabilityQuery {
        skus: vec![sku(7)],
        node_ids: Vec::new(),
        group_ids: Vec::new(),
        date: None,
        quantity: None,
        totals_only: false,
    };
    tokio::spawn(async move {
        let mut due = tokio::time::interval(Duration::from_millis(1));
        due.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut latencies = Vec::new();
        while Instant::now() < until {
            let at = due.tick().await.into_std();
            std::hint::black_box(app.availability(&query).expect("answers"));
            latencies.push(at.elapsed().as_micros() as i64);
        }
        latencies
    })
}

/// A paced window: its reads' latencies (µs).
async fn paced(app: &App, secs: u64, rate: u64) -> Vec<i64> {
    let reads = reader(app, Instant::now() + Duration::from_secs(secs));
    window(app, secs, Some(rate / UPDATES as u64)).await;
    reads.await.expect("reader")
}

fn percentile(sample: &mut [i64], q: f64) -> i64 {
    sample.sort_unstable();
    let rank = ((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len().max(1));
    sample.get(rank - 1).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let count = setting("--watchers", "PROMISED_BENCH_WATCHERS", 100);
    let secs = setting("--secs", "PROMISED_BENCH_SECS", 3);
    let rounds = setting("--rounds", "PROMISED_BENCH_ROUNDS", 3);
    let rate = setting("--rate", "PROMISED_BENCH_RATE", 10_000);
    let redis = RedisServer::start(Persistence::parse("none").expect("none")).expect("redis");
    let (store, _) = open_store(&redis.url(), "bench-watch")
        .await
        .expect("store");
    let app = App::new(store.engine().clone(), Durability::Redis(store));
    load_demo_network(&app).await.expect("network");
    let (mut without, mut with, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(window(&app, secs, None).await);
        let (tasks, seen) = watchers(&app, count).await;
        with.push(window(&app, secs, None).await);
        lags.append(&mut stop(tasks, seen).await.0);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "flat out: durable mutations/s ({WRITERS} feeds x {UPDATES} updates): without \
         watchers {}, with {count} watchers {} (ratio {:.2}); per window without {:?}, with {:?}",
        fmt_count(mean(&without)),
        fmt_count(mean(&with)),
        mean(&with) / mean(&without),
        without.iter().map(|v| fmt_count(*v)).collect::<Vec<_>>(),
        with.iter().map(|v| fmt_count(*v)).collect::<Vec<_>>(),
    );
    println!(
        "flat out: lag to the first watcher {}",
        summary(&mut lags, "ms")
    );
    let (mut reads_without, mut reads_with, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        reads_without.append(&mut paced(&app, secs, rate).await);
        let (tasks, seen) = watchers(&app, count).await;
        reads_with.append(&mut paced(&app, secs, rate).await);
        lags.append(&mut stop(tasks, seen).await.1);
    }
    let p99 = |sample: &mut Vec<i64>| percentile(sample, 0.99) as f64;
    println!(
        "paced at {rate} updates/s: GetAvailability without watchers {}, with {count} \
         watchers {} (p99 ratio {:.2})",
        summary(&mut reads_without.clone(), "µs"),
        summary(&mut reads_with.clone(), "µs"),
        p99(&mut reads_with) / p99(&mut reads_without).max(1.0),
    );
    println!(
        "paced at {rate} updates/s: lag at every watcher {}",
        summary(&mut lags, "ms")
    );
}

fn summary(sample: &mut [i64], unit: &str) -> String {
    format!(
        "over {}: p50 {} {unit}, p99 {} {unit}, max {} {unit}",
        sample.len(),
        percentile(sample, 0.5),
        percentile(sample, 0.99),
        percentile(sample, 1.0)
    )
}
