//! `promised demo`: the service in memory with a 50-node US network, a synthetic catalogue and
//! a feed that keeps streaming supply through the real gRPC ingest API, as a WMS, store POS
//! systems and an ERP would.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::{Day, NodeKind};
use crate::grpc::pb::{self, supply_client::SupplyClient};
use crate::network_file::NetworkFile;
use crate::server::Application;

/// The demo network; also an example of a `--network` file.
pub const NETWORK_TOML: &str = include_str!("network.toml");

/// Updates per batch during the initial load.
const LOAD_BATCH: usize = 1_000;

/// The feed sends one round of batches per tick.
const TICK: Duration = Duration::from_millis(100);

/// Runs the demo until `shutdown` resolves.
pub async fn run(
    config: Config,
    skus: usize,
    feed_rate: u32,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    NetworkFile::parse(NETWORK_TOML, false)?
        .apply(app.app())
        .await?;
    let network = app.engine().network();
    let catalogue = Catalogue {
        skus,
        fulfilment: network
            .nodes()
            .iter()
            .filter(|n| n.kind != NodeKind::Store)
            .map(|n| n.id.clone())
            .collect(),
        stores: network
            .nodes()
            .iter()
            .filter(|n| n.kind == NodeKind::Store)
            .map(|n| n.id.clone())
            .collect(),
    };
    let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), app.grpc_addr().port());
    print_instructions(target, app.metrics_addr());
    let stop = CancellationToken::new();
    let feed = tokio::spawn(feed(target, catalogue, feed_rate, stop.clone()));
    let result = app
        .run_until_stopped(async {
            shutdown.await;
            stop.cancel();
        })
        .await;
    match feed.await {
        Ok(Err(error)) => tracing::warn!(error = format!("{error:#}"), "demo feed stopped"),
        Err(error) => tracing::warn!(%error, "demo feed task failed"),
        Ok(Ok(())) => {}
    }
    result
}

fn print_instructions(grpc: SocketAddr, metrics: SocketAddr) {
    let port = grpc.port();
    println!(
        "\npromised demo: 50 nodes, 3 sources, synthetic catalogue loading through the feed API\n\
         \n  grpcurl -plaintext localhost:{port} list\
         \n  grpcurl -plaintext -d '{{\"skus\":[\"SKU-000042\"],\"node_ids\":[\"DC-EDISON-NJ\",\"STORE-BOSTON-MA\"],\"group_ids\":[\"EAST\"],\"quantity\":50}}' \\\
         \n      localhost:{port} promised.v1.Availability/GetAvailability\
         \n  grpcurl -plaintext localhost:{port} promised.v1.Admin/GetStats\
         \n  grpcurl -plaintext -d '{{\"limit\":5}}' localhost:{port} promised.v1.Supply/ListRejections\
         \n  curl -s localhost:{}/metrics | grep ^promised_\n\
         \nCtrl-C stops it.\n",
        metrics.port()
    );
}

/// What the synthetic feed knows of the demo network.
struct Catalogue {
    skus: usize,
    /// DCs and 3PL warehouses, owned by the WMS source.
    fulfilment: Vec<String>,
    /// Stores, owned by the POS source.
    stores: Vec<String>,
}

fn sku(i: usize) -> String {
    format!("SKU-{i:06}")
}

/// One feed connection per source, each with its own sequence.
struct FeedStream {
    source_id: &'static str,
    seq: u64,
    batches: mpsc::Sender<pb::SupplyBatch>,
}

impl FeedStream {
    async fn open(target: SocketAddr, source_id: &'static str) -> anyhow::Result<Self> {
        let mut client = SupplyClient::connect(format!("http://{target}"))
            .await
            .context("connecting the demo feed")?;
        let (batches, outbound) = mpsc::channel(4);
        let mut acks = client
            .stream_updates(ReceiverStream::new(outbound))
            .await?
            .into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = acks.message().await {} });
        Ok(Self {
            source_id,
            seq: 0,
            batches,
        })
    }

    async fn send(&mut self, updates: Vec<pb::SupplyUpdate>) -> anyhow::Result<()> {
        if !updates.is_empty() {
            self.seq += 1;
        }
        let batch = pb::SupplyBatch {
            source_id: self.source_id.to_owned(),
            seq: self.seq,
            updates,
        };
        self.batches.send(batch).await.context("feed stream closed")
    }
}

fn update(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    op: pb::UpdateOp,
    quantity: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        sku,
        node_id: node.to_owned(),
        supply_type: supply_type.into(),
        op: op.into(),
        quantity,
        ..Default::default()
    }
}

/// A SET as of now.
fn set(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    quantity: i64,
    now_ms: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        as_of: Some(prost_types::Timestamp {
            seconds: now_ms / 1000,
            nanos: 0,
        }),
        ..update(sku, node, supply_type, pb::UpdateOp::Set, quantity)
    }
}

fn receipt(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    reference: String,
    eta: Day,
    quantity: i64,
    now_ms: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        reference,
        eta: eta.to_string(),
        ..set(sku, node, supply_type, quantity, now_ms)
    }
}

fn pick<'a>(rng: &mut SmallRng, nodes: &'a [String]) -> &'a str {
    &nodes[rng.random_range(0..nodes.len())]
}

/// Loads the catalogue, then keeps sending `rate` updates a second until stopped.
async fn feed(
    target: SocketAddr,
    catalogue: Catalogue,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut wms = FeedStream::open(target, "WMS").await?;
    let mut pos = FeedStream::open(target, "POS").await?;
    let mut erp = FeedStream::open(target, "ERP").await?;
    let mut rng = SmallRng::seed_from_u64(42);
    let clock = SystemClock;
    let started = std::time::Instant::now();
    let (mut w, mut p, mut e) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..catalogue.skus {
        if stop.is_cancelled() {
            return Ok(());
        }
        let now_ms = clock.now_ms();
        let today = Day::in_zone(chrono_tz::UTC, now_ms);
        for _ in 0..rng.random_range(2..6) {
            let node = pick(&mut rng, &catalogue.fulfilment);
            w.push(set(
                sku(i),
                node,
                pb::SupplyType::OnHand,
                rng.random_range(0..500),
                now_ms,
            ));
        }
        if rng.random_bool(0.2) {
            let node = pick(&mut rng, &catalogue.fulfilment);
            let eta = today.plus(rng.random_range(1..8));
            w.push(receipt(
                sku(i),
                node,
                pb::SupplyType::InTransit,
                format!("ASN-{i}"),
                eta,
                rng.random_range(10..200),
                now_ms,
            ));
        }
        for _ in 0..rng.random_range(0..4) {
            let node = pick(&mut rng, &catalogue.stores);
            p.push(set(
                sku(i),
                node,
                pb::SupplyType::OnHand,
                rng.random_range(0..20),
                now_ms,
            ));
        }
        if rng.random_bool(0.3) {
            let node = pick(&mut rng, &catalogue.fulfilment);
            let eta = today.plus(rng.random_range(7..46));
            e.push(receipt(
                sku(i),
                node,
                pb::SupplyType::OnOrder,
                format!("PO-{i}"),
                eta,
                rng.random_range(100..1000),
                now_ms,
            ));
        }
        for (stream, updates) in [(&mut wms, &mut w), (&mut pos, &mut p), (&mut erp, &mut e)] {
            if updates.len() >= LOAD_BATCH {
                stream.send(std::mem::take(updates)).await?;
            }
        }
    }
    for (stream, updates) in [(&mut wms, w), (&mut pos, p), (&mut erp, e)] {
        stream.send(updates).await?;
    }
    tracing::info!(skus = catalogue.skus, elapsed = ?started.elapsed(), "demo catalogue sent");

    let per_tick = (rate as usize * TICK.as_millis() as usize / 1000).max(1);
    let mut ticks = tokio::time::interval(TICK);
    let mut po = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let now_ms = clock.now_ms();
        let today = Day::in_zone(chrono_tz::UTC, now_ms);
        let (mut w, mut p, mut e) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..per_tick {
            let item = sku(rng.random_range(0..catalogue.skus.max(1)));
            match rng.random_range(0..10) {
                // Store sales and counts arrive as POS snapshots.
                0..=5 => p.push(set(
                    item,
                    pick(&mut rng, &catalogue.stores),
                    pb::SupplyType::OnHand,
                    rng.random_range(0..20),
                    now_ms,
                )),
                // Warehouse picks; a pick from an empty position is rejected, as it should be.
                6..=8 => {
                    let delta = if rng.random_bool(0.1) {
                        200
                    } else {
                        -rng.random_range(1..4)
                    };
                    w.push(update(
                        item,
                        pick(&mut rng, &catalogue.fulfilment),
                        pb::SupplyType::OnHand,
                        pb::UpdateOp::Adjust,
                        delta,
                    ));
                }
                _ => {
                    po += 1;
                    let eta = today.plus(rng.random_range(7..46));
                    e.push(receipt(
                        item,
                        pick(&mut rng, &catalogue.fulfilment),
                        pb::SupplyType::OnOrder,
                        format!("PO-LIVE-{po}"),
                        eta,
                        rng.random_range(100..1000),
                        now_ms,
                    ));
                }
            }
        }
        // An empty batch is a heartbeat, which keeps a quiet source from going stale.
        wms.send(w).await?;
        pos.send(p).await?;
        erp.send(e).await?;
    }
}
