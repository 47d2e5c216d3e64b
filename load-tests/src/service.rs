//! The service under test. `promised-load serve-promised` runs the real server (the library's
//! `Application`, journaling to a private Redis, with the demo network) in a child process;
//! the generator loads the catalogue through the feed API as the systems of record would,
//! and keeps the feeds fresh with heartbeats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use promised::clock::SystemClock;
use promised::config::{Config, ServeArgs};
use promised::domain::{parse_time_zone, Day};
use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::supply_client::SupplyClient;
use promised::network_file::{self, NetworkFile, DEMO_NETWORK_TOML};
use promised::server::Application;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::catalogue::{sku, supply, Network};
use crate::process::{announce, parent_gone};

/// Updates per ApplyBatch while loading.
const LOAD_BATCH: usize = 1_000;

/// SKUs per GetAvailability while reading the loaded availability back.
const READ_BATCH: usize = 100;

/// Heartbeats keep the sources from going stale (the demo network's POS goes stale after
/// 120 s of silence, and a stale feed's nodes are excluded from availability).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// What the service under test is started with beyond its defaults: the flags of
/// `serve-promised`, which a run hands on to its child process.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceSettings {
    /// How long ended reservations are remembered [default: the server's, 24 h].
    #[arg(long)]
    pub retention_secs: Option<u64>,
    /// Refused calls a connection earns back per second [default: the server's].
    #[arg(long)]
    pub refusals_per_connection_per_sec: Option<u32>,
    /// Refusals a connection may have at once [default: the server's].
    #[arg(long)]
    pub refusal_burst: Option<u32>,
}

impl ServiceSettings {
    /// These settings as `serve-promised` flags.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(secs) = self.retention_secs {
            args.extend(["--retention-secs".to_owned(), secs.to_string()]);
        }
        if let Some(rate) = self.refusals_per_connection_per_sec {
            let flag = "--refusals-per-connection-per-sec".to_owned();
            args.extend([flag, rate.to_string()]);
        }
        if let Some(burst) = self.refusal_burst {
            args.extend(["--refusal-burst".to_owned(), burst.to_string()]);
        }
        args
    }
}

/// Runs the service until the parent goes away: in-process `Application` with durability on
/// (`--redis-url`), loopback on a free port, the demo network loaded.
pub async fn serve(redis_url: String, settings: ServiceSettings) -> anyhow::Result<()> {
    let args = ServeArgs {
        retention_secs: settings.retention_secs.map(|secs| secs.to_string()),
        refusals_per_connection_per_sec: settings
            .refusals_per_connection_per_sec
            .map(|rate| rate.to_string()),
        refusal_burst: settings.refusal_burst.map(|burst| burst.to_string()),
        grpc_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        redis_url: Some(redis_url),
        shutdown_grace_secs: Some("5".into()),
        // A local load test of a loopback service: no credentials to issue.
        insecure_no_auth: true,
        ..ServeArgs::default()
    };
    // Only flags: a run does not depend on PROMISED_* variables of the shell it starts in.
    let config = Config::resolve(&args, &HashMap::new())?;
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    network_file::apply(NetworkFile::parse(DEMO_NETWORK_TOML, false)?, app.app()).await?;
    announce(app.grpc_addr());
    app.run_until_stopped(parent_gone()).await
}

/// The demo network's sources, with the next batch sequence of each.
#[derive(Debug, Default)]
pub struct Feeds {
    seqs: [AtomicU64; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// On-hand and in-transit at DCs and 3PL warehouses.
    Wms,
    /// On-hand at stores.
    Pos,
    /// On-order everywhere.
    Erp,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Wms, Source::Pos, Source::Erp];

    pub fn id(self) -> &'static str {
        match self {
            Source::Wms => "WMS",
            Source::Pos => "POS",
            Source::Erp => "ERP",
        }
    }
}

impl Feeds {
    /// A batch of `source` with the next sequence number (a heartbeat when empty, which
    /// consumes none).
    pub fn batch(&self, source: Source, updates: Vec<pb::SupplyUpdate>) -> pb::SupplyBatch {
        let seq = &self.seqs[source as usize];
        let seq = if updates.is_empty() {
            seq.load(Ordering::Relaxed)
        } else {
            seq.fetch_add(1, Ordering::Relaxed) + 1
        };
        pb::SupplyBatch {
            source_id: source.id().to_owned(),
            seq,
            updates,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `days` after today (UTC), as `YYYY-MM-DD`.
fn date_in(days: u32) -> String {
    let utc = parse_time_zone("UTC").expect("UTC is a time zone");
    Day::in_zone(utc, now_ms()).plus(days as i32).to_string()
}

/// A SET of `supply_type` as of now.
pub fn set(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    quantity: i64,
) -> pb::SupplyUpdate {
    let now = now_ms();
    pb::SupplyUpdate {
        sku,
        node_id: node.to_owned(),
        supply_type: supply_type.into(),
        op: pb::UpdateOp::Set.into(),
        quantity,
        as_of: Some(prost_types::Timestamp {
            seconds: now / 1000,
            nanos: (now % 1000) as i32 * 1_000_000,
        }),
        ..Default::default()
    }
}

fn receipt(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    reference: String,
    (days, quantity): (u32, i64),
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        reference,
        eta: date_in(days),
        ..set(sku, node, supply_type, quantity)
    }
}

/// Loads SKUs `0..skus` through `Supply/ApplyBatch` (WMS on-hand and ASNs, POS store
/// on-hand, ERP purchase orders), each batch journaled before it is acknowledged. Returns
/// the number of updates applied.
pub async fn load_catalogue(
    channel: Channel,
    network: &Network,
    skus: usize,
    seed: u64,
    feeds: Arc<Feeds>,
) -> anyhow::Result<u64> {
    use pb::SupplyType::{InTransit, OnHand, OnOrder};
    let mut per_source: [Vec<pb::SupplyUpdate>; 3] = Default::default();
    for i in 0..skus {
        let supply = supply(seed, i, network);
        let [wms, pos, erp] = &mut per_source;
        for (node, quantity) in supply.fulfilment_on_hand {
            wms.push(set(sku(i), &network.fulfilment[node], OnHand, quantity));
        }
        for (node, quantity) in supply.store_on_hand {
            pos.push(set(sku(i), &network.stores[node], OnHand, quantity));
        }
        if let Some((node, days, quantity)) = supply.in_transit {
            let node = &network.fulfilment[node];
            let reference = format!("ASN-{i}");
            wms.push(receipt(
                sku(i),
                node,
                InTransit,
                reference,
                (days, quantity),
            ));
        }
        if let Some((node, days, quantity)) = supply.on_order {
            let node = &network.fulfilment[node];
            let reference = format!("PO-{i}");
            erp.push(receipt(sku(i), node, OnOrder, reference, (days, quantity)));
        }
    }
    let mut loads = tokio::task::JoinSet::new();
    for (source, updates) in Source::ALL.into_iter().zip(per_source) {
        let mut client = SupplyClient::new(channel.clone());
        let feeds = feeds.clone();
        loads.spawn(async move {
            let mut applied = 0u64;
            for chunk in updates.chunks(LOAD_BATCH) {
                let ack = client
                    .apply_batch(feeds.batch(source, chunk.to_vec()))
                    .await
                    .with_context(|| format!("loading the catalogue as {}", source.id()))?
                    .into_inner();
                if ack.rejected > 0 {
                    anyhow::bail!(
                        "{} rejected {} updates, first {:?}",
                        source.id(),
                        ack.rejected,
                        ack.rejections.first()
                    );
                }
                applied += u64::from(ack.applied);
            }
            anyhow::Ok(applied)
        });
    }
    let mut total = 0;
    while let Some(applied) = loads.join_next().await {
        total += applied.context("a catalogue load task failed")??;
    }
    Ok(total)
}

/// Network available-to-promise today of SKUs `0..skus`, as the service answers it: what the
/// peers are loaded with, so that every target starts with the same availability.
pub async fn network_atp(
    channel: Channel,
    network: &Network,
    skus: usize,
) -> anyhow::Result<Vec<i64>> {
    let mut client = AvailabilityClient::new(channel);
    let mut atp = Vec::with_capacity(skus);
    let all: Vec<usize> = (0..skus).collect();
    for chunk in all.chunks(READ_BATCH) {
        let request = pb::AvailabilityRequest {
            skus: chunk.iter().map(|&i| sku(i)).collect(),
            node_ids: vec![network.fulfilment[0].clone()],
            ..Default::default()
        };
        let answer = client.get_availability(request).await?.into_inner();
        atp.extend(answer.items.iter().map(|item| item.network_atp));
    }
    Ok(atp)
}

/// Sends a heartbeat of every source every [`HEARTBEAT`] until the handle is aborted.
pub fn heartbeats(channel: Channel, feeds: Arc<Feeds>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = SupplyClient::new(channel);
        let mut ticks = tokio::time::interval(HEARTBEAT);
        loop {
            ticks.tick().await;
            for source in Source::ALL {
                if let Err(status) = client.apply_batch(feeds.batch(source, Vec::new())).await {
                    eprintln!("heartbeat of {} failed: {status}", source.id());
                }
            }
        }
    })
}
