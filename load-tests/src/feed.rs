//! The supply feed of the `feed` and `mixed` scenarios: one `Supply/StreamUpdates` stream per
//! source (the WMS setting on-hand at DCs and 3PL warehouses, store POS systems setting store
//! on-hand), each sending a batch every 100 ms so that together they make the update rate.
//! A batch's latency runs from its intended send time to its acknowledgement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use promised::grpc::pb;
use promised::grpc::pb::supply_client::SupplyClient;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::catalogue::sku;
use crate::service::{set, Feeds, Source};
use crate::stats::{Outcome, Recorder};
use crate::workload::{call, code_name, Workload, CALL_TIMEOUT};

/// A batch per stream per tick.
const TICK: Duration = Duration::from_millis(100);

/// The sources that stream.
const STREAMS: [Source; 2] = [Source::Wms, Source::Pos];

/// Where the feed goes: the service, and its sources' sequences.
#[derive(Debug, Clone)]
pub struct FeedTarget {
    pub channel: Channel,
    pub feeds: Arc<Feeds>,
}

/// Streams `rate` updates a second from `t0` to `end`; returns the updates sent from
/// `measure_from` on.
pub async fn run(
    target: FeedTarget,
    workload: Arc<Workload>,
    rate: f64,
    (t0, measure_from, end): (Instant, Instant, Instant),
    recorder: Arc<Recorder>,
) -> anyhow::Result<u64> {
    let per_batch = (rate / STREAMS.len() as f64 * TICK.as_secs_f64())
        .round()
        .max(1.0) as usize;
    let mut streams = tokio::task::JoinSet::new();
    for source in STREAMS {
        streams.spawn(stream(
            source,
            target.clone(),
            workload.clone(),
            per_batch,
            (t0, measure_from, end),
            recorder.clone(),
        ));
    }
    let mut sent = 0;
    while let Some(stream) = streams.join_next().await {
        sent += stream??;
    }
    Ok(sent)
}

fn update(source: Source, workload: &Workload, rng: &mut impl Rng) -> pb::SupplyUpdate {
    let item = sku(workload.zipf.sample(rng));
    let network = &workload.network;
    match source {
        Source::Pos => {
            let store = &network.stores[rng.random_range(0..network.stores.len())];
            set(
                item,
                store,
                pb::SupplyType::OnHand,
                rng.random_range(0..=20),
            )
        }
        _ => {
            let node = &network.fulfilment[rng.random_range(0..network.fulfilment.len())];
            set(
                item,
                node,
                pb::SupplyType::OnHand,
                rng.random_range(150..=600),
            )
        }
    }
}

async fn stream(
    source: Source,
    target: FeedTarget,
    workload: Arc<Workload>,
    per_batch: usize,
    (t0, measure_from, end): (Instant, Instant, Instant),
    recorder: Arc<Recorder>,
) -> anyhow::Result<u64> {
    let (batches, outbound) = mpsc::channel(4);
    let mut client = SupplyClient::new(target.channel.clone());
    let mut acks = client
        .stream_updates(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    // Intended send times of the batches not yet acknowledged, in order.
    let (pending, mut unacked) = mpsc::unbounded_channel::<Instant>();
    let acks_recorder = recorder.clone();
    let reader = tokio::spawn(async move {
        while let Some(intended) = unacked.recv().await {
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, acks.message()).await {
                Ok(Ok(Some(ack))) if ack.rejected == 0 => Outcome::Ok,
                Ok(Ok(Some(_))) => Outcome::Failed("REJECTED"),
                Ok(Ok(None)) => Outcome::Failed("STREAM_ENDED"),
                Ok(Err(status)) => Outcome::Failed(code_name(status.code())),
                Err(_) => Outcome::Failed("CLIENT_TIMEOUT"),
            };
            acks_recorder.record(call::FEED, intended, outcome);
            if outcome != Outcome::Ok {
                return;
            }
        }
    });
    let mut sent = 0u64;
    // Bounded by `end`: one batch per tick.
    for k in 0u32.. {
        let intended = t0 + TICK * k;
        if intended >= end {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let mut rng = workload.rng(1_000 + source as u64, u64::from(k));
        let updates = (0..per_batch)
            .map(|_| update(source, &workload, &mut rng))
            .collect();
        let batch = target.feeds.batch(source, updates);
        if pending.send(intended).is_err() {
            break;
        }
        match tokio::time::timeout(CALL_TIMEOUT, batches.send(batch)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        if intended >= measure_from {
            sent += per_batch as u64;
        }
    }
    drop((batches, pending));
    if tokio::time::timeout(CALL_TIMEOUT * 2, reader)
        .await
        .is_err()
    {
        recorder.record(
            call::FEED,
            Instant::now(),
            Outcome::Failed("CLIENT_TIMEOUT"),
        );
    }
    Ok(sent)
}
