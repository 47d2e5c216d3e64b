//! Outbound sinks against a real `redis-server` and a real `nats-server` (both started on free
//! loopback ports, killed at the end), in process: `--events N` durable changes of one
//! position each are journaled first; then, in one run, the time each consumer takes to get
//! all of them from the start of the journal: a watch (`App::watch_changes`, the baseline: the
//! same journal read and decode, nothing sent), a webhook sink posting each event to a
//! loopback HTTP/1.1 receiver (one in flight, as in production), and a NATS JetStream sink
//! publishing each with an acknowledgement. Reports events/s and each sink's ratio to the
//! watch.
//!
//! `cargo bench --bench publish`; settings: `--events N` / `PROMISED_BENCH_EVENTS` (default
//! 5000). The NATS server is `target/ci-venv/bin/nats-server` (`scripts/setup`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;
mod durability_support;

use std::convert::Infallible;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use promised::app::App;
use promised::checkpoint::tail::EntryId;
use promised::checkpoint::{Durability, Store};
use promised::domain::SupplyBatch;
use promised::publish::{self, settings};
use promised::watch::WatchFilter;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use durability_support::{
    add_bench_feeds, fmt_count, load_demo_network, open_store, setting, sku, Persistence,
    RedisServer,
};

/// Journals `count` durable changes of one position each.
async fn journal(app: &App, count: u64) {
    let engine = app.engine().clone();
    let mut feed = add_bench_feeds(&engine, app, 1)
        .await
        .expect("a feed")
        .remove(0);
    let node = engine.network().nodes()[0].id.clone();
    for i in 0..count {
        let mut batch = SupplyBatch {
            source_id: feed.source_id.clone(),
            seq: 0,
            updates: vec![common::on_hand_adjust(
                sku(i as usize % 1_000),
                node.clone(),
                1,
            )],
        };
        feed.apply_durably(app, &mut batch).await.expect("durable");
    }
}

/// Seconds a watch from the journal's start takes to be given `count` position changes.
async fn watch_all(app: &App, count: u64) -> f64 {
    let started = Instant::now();
    let mut following = app
        .watch_changes(
            Some(WatchFilter::default()),
            false,
            Some(EntryId::default()),
            1_024,
        )
        .await
        .expect("watching");
    let mut seen = 0;
    while seen < count {
        let (_, changes) = following.events.recv().await.expect("a change");
        let changes = changes.expect("decodes");
        seen += changes
            .availability
            .map_or(0, |a| a.positions().len() as u64);
    }
    started.elapsed().as_secs_f64()
}

/// A loopback receiver answering 204 to everything; counts what it took.
async fn receiver() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let taken = Arc::new(AtomicU64::new(0));
    let counting = taken.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counting = counting.clone();
            let service = service_fn(move |_request| {
                counting.fetch_add(1, Ordering::Relaxed);
                let mut answer = Response::new(Full::new(Bytes::new()));
                *answer.status_mut() = hyper::StatusCode::NO_CONTENT;
                async { Ok::<_, Infallible>(answer) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (format!("http://{addr}/events"), taken)
}

/// Seconds a sink of `file` (its one sink named `name`), from the journal's start, takes
/// until `done` says all `count` events arrived.
async fn sink_all(
    app: &App,
    store: &Arc<Store>,
    file: &str,
    name: &str,
    done: impl AsyncFn() -> bool,
) -> f64 {
    let sinks = settings::parse(file, Path::new(".")).expect("the sink parses");
    store
        .save_sink_cursor(name, EntryId::default())
        .await
        .expect("cursor");
    let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
    let started = Instant::now();
    publish::start(sinks, app, store, "/promised/bench", &tasks, &stop);
    while !done().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed().as_secs_f64();
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    took
}

/// A `nats-server` with JetStream on a free port, in a temporary store.
struct Nats {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Nats {
    fn start() -> Self {
        let binary = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/ci-venv/bin/nats-server"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("promised-bench-nats-{port}"));
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (scripts/setup installs it)");
        Self { port, dir, child }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::main]
async fn main() {
    let count = setting("--events", "PROMISED_BENCH_EVENTS", 5_000);
    let redis = RedisServer::start(Persistence::parse("none").expect("none")).expect("redis");
    let (store, _) = open_store(&redis.url(), "bench-publish")
        .await
        .expect("store");
    let app = App::new(store.engine().clone(), Durability::Redis(store.clone()));
    load_demo_network(&app).await.expect("network");
    journal(&app, count).await;

    let watch = watch_all(&app, count).await;

    let (url, taken) = receiver().await;
    let hook = format!(
        "[[webhook]]\nname = \"hook\"\nurl = \"{url}\"\nsecret = \"s\"\navailability = true\n"
    );
    let webhook = sink_all(&app, &store, &hook, "hook", async || {
        taken.load(Ordering::Relaxed) >= count
    })
    .await;

    let nats = Nats::start();
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let client = loop {
        match async_nats::connect(url.as_str()).await {
            Ok(client) => break client,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let jetstream = async_nats::jetstream::new(client);
    let bus = format!(
        "[[nats]]\nname = \"bus\"\nurl = \"{url}\"\nstream = \"BENCH\"\navailability = true\n"
    );
    let published = sink_all(&app, &store, &bus, "bus", async || {
        match jetstream.get_stream("BENCH").await {
            Ok(mut stream) => stream
                .info()
                .await
                .is_ok_and(|info| info.state.messages >= count),
            Err(_) => false,
        }
    })
    .await;

    let rate = |secs: f64| count as f64 / secs;
    println!(
        "{count} events from the journal's start: watch {} events/s (baseline); webhook {} \
         deliveries/s (ratio {:.2}); NATS JetStream {} acknowledged publishes/s (ratio {:.2})",
        fmt_count(rate(watch)),
        fmt_count(rate(webhook)),
        watch / webhook,
        fmt_count(rate(published)),
        watch / published,
    );
}
