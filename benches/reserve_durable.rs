//! Durable reservations: many concurrent checkouts reserving through the group-committed
//! journal into a private redis-server, in process (the gRPC cost is in `load-tests/`).
//! 1-line and 5-line carts over spread SKUs, and every cart on one hot SKU.
//!
//! `cargo bench --bench reserve_durable` (`-- --secs N` per scenario, default 3).

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

use durability_support::{fmt_count, fmt_duration, open_store, Latency, Persistence, RedisServer};
use promised::app::{App, Caller};
use promised::checkpoint::Durability;
use promised::reservation::{LineRequest, ReserveRequest};

use common::{load_demo_network, on_hand_set, Feed, NOW_MS};

/// Carts in flight at once.
const CONCURRENCY: usize = 64;
const SPREAD_SKUS: usize = 10_000;
const NODE: &str = "DC-EDISON-NJ";

fn cart(id: u64, lines: usize, hot: bool) -> ReserveRequest {
    ReserveRequest {
        reservation_id: format!("cart-{id}"),
        lines: (0..lines)
            .map(|i| LineRequest {
                sku: if hot {
                    "HOT".into()
                } else {
                    format!("SPREAD-{}", (id as usize * 7 + i * 131) % SPREAD_SKUS)
                },
                node_id: NODE.into(),
                group_id: String::new(),
                quantity: 1,
                need_date: None,
            })
            .collect(),
        ttl_secs: 3_600,
        owner: String::new(),
    }
}

/// Runs `CONCURRENCY` workers reserving carts for `secs`; returns reservations/s and latency.
async fn scenario(
    durability: &Durability,
    lines: usize,
    hot: bool,
    secs: u64,
    next: Arc<AtomicU64>,
) -> (f64, Latency) {
    let Durability::Redis(store) = durability else {
        unreachable!("the bench runs with Redis")
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (app, next) = (
                App::new(store.engine().clone(), durability.clone()),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut sample = Vec::new();
                while Instant::now() < deadline {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    app.reserve(&Caller::system("bench"), &cart(id, lines, hot))
                        .await
                        .expect("stock is plentiful, Redis up");
                    sample.push(began.elapsed());
                }
                sample
            })
        })
        .collect();
    let mut sample = Vec::new();
    for worker in workers {
        sample.extend(worker.await.expect("worker"));
    }
    (
        sample.len() as f64 / started.elapsed().as_secs_f64(),
        Latency::of(sample),
    )
}

fn main() {
    if !common::benchmarking() {
        return;
    }
    let secs = std::env::args()
        .skip_while(|a| a != "--secs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for persistence in [Persistence::None, Persistence::AofEverySec] {
            let redis = RedisServer::start(persistence).expect("redis-server");
            let (store, _) = open_store(&redis.url(), "reserve-bench")
                .await
                .expect("store");
            let durability = Durability::Redis(store.clone());
            let engine = store.engine().clone();
            load_demo_network(&engine, &durability).await;
            let mut feed = Feed::resume(&engine, "WMS");
            let mut stock: Vec<_> = (0..SPREAD_SKUS)
                .map(|i| on_hand_set(format!("SPREAD-{i}"), NODE.into(), 1_000_000, NOW_MS))
                .collect();
            stock.push(on_hand_set(
                "HOT".into(),
                NODE.into(),
                1_000_000_000,
                NOW_MS,
            ));
            let app = App::new(engine.clone(), durability.clone());
            for chunk in stock.chunks(common::BATCH) {
                app.apply_batch(&Caller::system("bench"), &feed.batch(chunk.to_vec()))
                    .await
                    .expect("valid, durable");
            }
            println!(
                "\nRedis {}: {CONCURRENCY} concurrent carts, {secs} s each",
                persistence.describe()
            );
            println!("| carts | reservations/s | p50 | p99 | max |");
            println!("|---|---:|---:|---:|---:|");
            let next = Arc::new(AtomicU64::new(0));
            for (name, lines, hot) in [
                ("1 line, spread SKUs", 1, false),
                ("5 lines, spread SKUs", 5, false),
                ("1 line, one hot SKU", 1, true),
            ] {
                let (rate, latency) = scenario(&durability, lines, hot, secs, next.clone()).await;
                println!(
                    "| {name} | {} | {} | {} | {} |",
                    fmt_count(rate),
                    fmt_duration(latency.p50),
                    fmt_duration(latency.p99),
                    fmt_duration(latency.max)
                );
            }
        }
    });
}
