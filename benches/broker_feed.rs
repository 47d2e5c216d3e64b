//! Broker ingest: supply batches of 1,000 updates published to NATS JetStream and applied by
//! the service's broker feed (durable pull consumer, Redis journal), against the same batches
//! sent over the gRPC `Supply/StreamUpdates` stream of the same service, in the same run.
//!
//! The program starts a private `redis-server` and `nats-server` (the one `scripts/setup`
//! installs into `target/ci-venv/bin`) on free loopback ports, and the real service
//! (`Application`, demo network, `--feeds`) in process. Each round sends `--messages` batches
//! over gRPC (each answered once durable, as a feed stream is) and then publishes as many to
//! the feed's subject; a round's rate runs from its first send to the service having applied
//! its last batch. Rounds alternate, and the medians are compared.
//!
//! Run: `cargo bench --bench broker_feed` (settings: `PROMISED_BENCH_MESSAGES`, default 300;
//! `PROMISED_BENCH_ROUNDS`, default 5). `cargo test --benches` runs one small round.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;
mod durability_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use promised::clock::SystemClock;
use promised::config::{Config, ServeArgs};
use promised::domain::SupplyType;
use promised::engine::Engine;
use promised::grpc::pb::{self, supply_client::SupplyClient};
use promised::server::Application;
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use common::{benchmarking, owned_nodes, BATCH};
use durability_support::{fmt_count, Persistence, RedisServer};

const SOURCE: &str = "WMS";
const SUBJECT: &str = "supply.wms";
/// SKUs the batches' updates fall on.
const SKUS: usize = 20_000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// A private `nats-server` with JetStream, killed and its store removed when dropped.
struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl NatsServer {
    fn start() -> Self {
        let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/nats-server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/setup",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("promised-bench-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nats store directory");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, dir, child }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Batches of [`BATCH`] ADJUST updates at WMS's on-hand nodes, numbered when sent.
fn batches(engine: &Engine, count: usize) -> Vec<pb::SupplyBatch> {
    let nodes = owned_nodes(engine, SOURCE, SupplyType::OnHand);
    let mut rng = SmallRng::seed_from_u64(16);
    (0..count)
        .map(|_| pb::SupplyBatch {
            source_id: SOURCE.into(),
            seq: 0,
            updates: (0..BATCH)
                .map(|_| pb::SupplyUpdate {
                    sku: format!("SKU-{:05}", rng.random_range(0..SKUS)),
                    node_id: nodes[rng.random_range(0..nodes.len())].clone(),
                    supply_type: pb::SupplyType::OnHand.into(),
                    op: pb::UpdateOp::Adjust.into(),
                    quantity: rng.random_range(1..4),
                    ..pb::SupplyUpdate::default()
                })
                .collect(),
        })
        .collect()
}

/// Numbers `prepared` after the source's last sequence.
fn numbered(engine: &Engine, prepared: &[pb::SupplyBatch]) -> Vec<pb::SupplyBatch> {
    let last = engine
        .network()
        .source(SOURCE)
        .map_or(0, |s| s.feed.seqs().0);
    let mut batches = prepared.to_vec();
    for (i, batch) in batches.iter_mut().enumerate() {
        batch.seq = last + 1 + i as u64;
    }
    batches
}

/// Sends the batches over one feed stream, each answered once durable; updates per second.
async fn over_grpc(channel: &Channel, engine: &Engine, prepared: &[pb::SupplyBatch]) -> f64 {
    let batches = numbered(engine, prepared);
    let (send, outbound) = mpsc::channel(8);
    let started = Instant::now();
    let mut acks = SupplyClient::new(channel.clone())
        .stream_updates(ReceiverStream::new(outbound))
        .await
        .expect("the feed stream opens")
        .into_inner();
    let sender = tokio::spawn(async move {
        for batch in batches {
            send.send(batch).await.expect("the stream is open");
        }
    });
    for _ in prepared {
        let ack = acks.message().await.expect("an answer").expect("an ack");
        assert!(!ack.duplicate && ack.applied as usize == BATCH, "{ack:?}");
    }
    let took = started.elapsed();
    sender.await.expect("sent");
    (prepared.len() * BATCH) as f64 / took.as_secs_f64()
}

/// Publishes the batches to the feed's subject and waits until the feed applied the last;
/// updates per second.
async fn over_nats(
    context: &jetstream::Context,
    engine: &Engine,
    prepared: &[pb::SupplyBatch],
) -> f64 {
    let payloads: Vec<Vec<u8>> = numbered(engine, prepared)
        .iter()
        .map(pb::SupplyBatch::encode_to_vec)
        .collect();
    let started = Instant::now();
    let mut stored = Vec::with_capacity(payloads.len());
    for payload in payloads {
        stored.push(
            context
                .publish(SUBJECT, payload.into())
                .await
                .expect("published"),
        );
    }
    let mut last = 0;
    for ack in stored {
        last = ack.await.expect("stored").sequence;
    }
    while engine.broker_seq(SOURCE) != Some(last) {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = started.elapsed();
    (prepared.len() * BATCH) as f64 / took.as_secs_f64()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let full = benchmarking();
    let messages = if full {
        setting("PROMISED_BENCH_MESSAGES", 300)
    } else {
        10
    };
    let rounds = if full {
        setting("PROMISED_BENCH_ROUNDS", 5)
    } else {
        1
    };
    let redis = RedisServer::start(Persistence::None)?;
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await?;
    let context = jetstream::new(client);
    for (name, subject) in [("SUPPLY", "supply.>"), ("DEAD", "dead.>")] {
        context
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![subject.into()],
                ..Default::default()
            })
            .await?;
    }
    let feeds =
        std::env::temp_dir().join(format!("promised-bench-feeds-{}.toml", std::process::id()));
    std::fs::write(
        &feeds,
        format!(
            "nats_url = \"{}\"\n[[feed]]\nsource = \"{SOURCE}\"\nstream = \"SUPPLY\"\n\
             subject = \"{SUBJECT}\"\ndurable = \"promised-wms\"\ndead_letter_subject = \"dead.wms\"\n",
            nats.url()
        ),
    )?;
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    let args = ServeArgs {
        grpc_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        insecure_no_auth: true,
        redis_url: Some(redis.url()),
        redis_prefix: Some("bench-feed".into()),
        snapshot_interval_secs: Some("3600".into()),
        network: Some(network.into()),
        feeds: Some(feeds.display().to_string()),
        log: Some("warn".into()),
        ..ServeArgs::default()
    };
    let service = Application::build(
        Config::resolve(&args, &HashMap::new())?,
        Arc::new(SystemClock),
    )
    .await?;
    let engine = service.engine().clone();
    let channel = Channel::from_shared(format!("http://{}", service.grpc_addr()))?.connect_lazy();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(service.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let prepared = batches(&engine, messages);
    // One untimed pass of each creates the positions, so the rounds measure steady updates.
    over_grpc(&channel, &engine, &prepared).await;
    over_nats(&context, &engine, &prepared).await;
    let (mut grpc, mut broker) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        grpc.push(over_grpc(&channel, &engine, &prepared).await);
        broker.push(over_nats(&context, &engine, &prepared).await);
        println!(
            "round {round}: gRPC stream {} updates/s, NATS feed {} updates/s",
            fmt_count(grpc[round - 1]),
            fmt_count(broker[round - 1])
        );
    }
    let (grpc, broker) = (median(grpc), median(broker));
    println!(
        "{messages} batches of {BATCH} per round, medians of {rounds}: gRPC stream {} updates/s, \
         NATS feed {} updates/s, feed / stream = {:.2}",
        fmt_count(grpc),
        fmt_count(broker),
        broker / grpc
    );
    let _ = stop.send(());
    serving.await??;
    let _ = std::fs::remove_file(&feeds);
    Ok(())
}
