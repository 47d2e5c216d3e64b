//! Watchers against a real `redis-server` (started on a free loopback port, killed at the
//! end), in process: durable small mutations from 8 feeds for `--secs` seconds each in
//! windows without watchers and with `--watchers` watchers of the whole network attached,
//! alternating, so both see the same machine load. Reports durable mutations/s per window
//! kind and their ratio, and the lag from a change's time to its arrival at a watcher (ms,
//! the journal records' clock).
//!
//! `cargo bench --bench watch`; settings: `--watchers N` / `PROMISED_BENCH_WATCHERS` (default
//! 100), `--secs S` / `PROMISED_BENCH_SECS` (default 3), `--rounds R` /
//! `PROMISED_BENCH_ROUNDS` (default 3).

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
use promised::watch::WatchFilter;
use tokio::task::JoinSet;

use durability_support::{
    add_bench_feeds, fmt_count, load_demo_network, open_store, sku, Persistence, RedisServer,
};

/// Concurrent writers, each a feed of its own.
const WRITERS: usize = 8;
/// Updates per mutation.
const UPDATES: usize = 10;

fn setting(flag: &str, env: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Durable mutations per second from `WRITERS` feeds for `secs`.
async fn window(app: &App, secs: u64) -> f64 {
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
        writers.spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
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

/// Attaches `count` watchers that take every change; returns their tasks and the lags (ms)
/// the first one saw.
async fn watchers(app: &App, count: u64) -> (JoinSet<()>, Arc<std::sync::Mutex<Vec<i64>>>) {
    let lags = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = JoinSet::new();
    for w in 0..count {
        let mut following = app
            .watch_availability(WatchFilter::default(), None, 1_024)
            .await
            .expect("watching");
        let lags = lags.clone();
        tasks.spawn(async move {
            while let Some((_, change)) = following.events.recv().await {
                let change = change.expect("decodes");
                if w == 0 {
                    let lag = SystemClock.now_ms() - change.why.cause.at_ms;
                    lags.lock().expect("lags").push(lag);
                }
            }
        });
    }
    (tasks, lags)
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
    let redis = RedisServer::start(Persistence::parse("none").expect("none")).expect("redis");
    let (store, _) = open_store(&redis.url(), "bench-watch")
        .await
        .expect("store");
    let app = App::new(store.engine().clone(), Durability::Redis(store));
    load_demo_network(&app).await.expect("network");
    let (mut without, mut with, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        without.push(window(&app, secs).await);
        let (mut tasks, seen) = watchers(&app, count).await;
        with.push(window(&app, secs).await);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        lags.append(&mut seen.lock().expect("lags"));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "durable mutations/s ({WRITERS} feeds x {UPDATES} updates): without watchers {}, \
         with {count} watchers {} (ratio {:.2}); per window without {:?}, with {:?}",
        fmt_count(mean(&without)),
        fmt_count(mean(&with)),
        mean(&with) / mean(&without),
        without.iter().map(|v| fmt_count(*v)).collect::<Vec<_>>(),
        with.iter().map(|v| fmt_count(*v)).collect::<Vec<_>>(),
    );
    println!(
        "lag to the first watcher over {} changes: p50 {} ms, p99 {} ms, max {} ms",
        lags.len(),
        percentile(&mut lags, 0.5),
        percentile(&mut lags, 0.99),
        percentile(&mut lags, 1.0)
    );
}
