//! Recovery at start: the newest usable snapshot generation, then the journal replayed on top,
//! each effect applied once. Effects carry their shard's sequence number; an effect is applied
//! only if it is newer than the snapshot's copy of its shard and than any image of the same
//! position replayed before it, so the journal's order and duplicates do not matter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::snapshot::{self, LoadError};
use super::Keys;
use crate::clock::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::index::Index;
use crate::mutation::StoredRecord;
use crate::network::Network;
use crate::reservation::Reservation;

/// Journal entries read per round trip.
const REPLAY_PAGE: usize = 1_000;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// The snapshot generation started from; `None` when there was none.
    pub generation: Option<u64>,
    /// Positions held after recovery.
    pub positions: u64,
    pub journal_entries: u64,
    /// Position images from the journal that were newer than the snapshot.
    pub effects_applied: u64,
    pub took: Duration,
}

/// The newest generation that loads: the current manifest, else the previous one.
async fn newest_snapshot(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> anyhow::Result<Option<snapshot::Loaded>> {
    for manifest_key in [&keys.manifest, &keys.previous_manifest] {
        match snapshot::load(conn, keys, manifest_key).await {
            Ok(Some(loaded)) => return Ok(Some(loaded)),
            Ok(None) => {}
            Err(LoadError::Corrupt(why)) => {
                tracing::warn!(manifest = %manifest_key, %why, "skipping unusable snapshot generation");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(None)
}

pub async fn recover(
    conn: &mut ConnectionManager,
    keys: &Keys,
    config: &EngineConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Engine, RecoveryReport)> {
    let started = Instant::now();
    let now_ms = clock.now_ms();
    let mut report = RecoveryReport::default();
    let (index, mut network, mut seqs, mut reservations) = match newest_snapshot(conn, keys).await?
    {
        Some(loaded) => {
            report.generation = Some(loaded.manifest.generation);
            let network = Network::decode(&loaded.manifest.network, now_ms)
                .map_err(|e| anyhow!("snapshot network: {e}"))?;
            let seqs: HashMap<String, u64> = loaded.manifest.source_seqs.into_iter().collect();
            let reservations: HashMap<String, Reservation> = loaded
                .reservations
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
            (loaded.index, network, seqs, reservations)
        }
        None => (
            Index::new(config.shards),
            Network::default(),
            HashMap::new(),
            HashMap::new(),
        ),
    };
    if index.shard_count() != Index::new(config.shards).shard_count() {
        tracing::info!(
            shards = index.shard_count(),
            "using the shard count the stored state was written with"
        );
    }
    let mut replay = index.begin_replay();
    let mut start = "-".to_owned();
    loop {
        let page: redis::streams::StreamRangeReply = conn
            .xrange_count(&keys.journal, &start, "+", REPLAY_PAGE)
            .await
            .context("reading the journal")?;
        let Some(last) = page.ids.last() else { break };
        start = format!("({}", last.id);
        for entry in &page.ids {
            report.journal_entries += 1;
            let bytes: Vec<u8> = entry
                .get("r")
                .ok_or_else(|| anyhow!("journal entry {} has no record", entry.id))?;
            let mut record = StoredRecord::decode(&bytes)
                .map_err(|e| anyhow!("journal entry {}: {e}", entry.id))?;
            if let Some((source, seq)) = record.source_seq {
                let known = seqs.entry(source.to_owned()).or_default();
                *known = (*known).max(seq);
            }
            if let Some(encoded) = record.network {
                let changed = Network::decode(encoded, now_ms)
                    .map_err(|e| anyhow!("journal entry {}: {e}", entry.id))?;
                if changed.version() > network.version() {
                    network = changed;
                }
            }
            for image in record.reservations.drain(..) {
                let newer = reservations
                    .get(&image.id)
                    .is_none_or(|known| known.version < image.version);
                if newer {
                    reservations.insert(image.id.clone(), image);
                }
            }
            index
                .replay(&mut record.effects, &mut replay)
                .map_err(|e| anyhow!("journal entry {}: {e}", entry.id))?;
        }
    }
    report.effects_applied = replay.applied;
    let dropped = index.drop_nodes_from(network.nodes().len());
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "dropped recovered positions at nodes whose configuration was never made durable"
        );
    }
    let engine = Engine::journaled(config.clone(), clock, network, index);
    for (source, seq) in seqs {
        engine.restore_seq(&source, seq);
    }
    engine.restore_reservations(reservations.into_values());
    report.positions = engine.index().position_count();
    report.took = started.elapsed();
    Ok((engine, report))
}
