//! Recovery at start: the newest usable snapshot generation, then the journal replayed on top,
//! each effect applied once. Effects carry their shard's sequence number; an effect is applied
//! only if it is newer than the snapshot's copy of its shard and than any image of the same
//! position replayed before it, so the journal's order and duplicates do not matter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use redis::aio::ConnectionManager;
use redis::streams::StreamId;
use redis::AsyncCommands;

use super::snapshot::{self, LoadError};
use super::Keys;
use crate::clock::Clock;
use crate::codec::CodecError;
use crate::engine::{Engine, EngineConfig};
use crate::index::{Index, Replay};
use crate::metrics;
use crate::mutation::StoredRecord;
use crate::network::Network;
use crate::reservation::Reservation;
use crate::sync::SyncMark;

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

impl RecoveryReport {
    /// Recovery happens once per start, so its figures go both to the gauges and to the log.
    pub(super) fn publish(&self) {
        metrics::recovered(self.positions, self.journal_entries, self.took);
        tracing::info!(
            generation = ?self.generation,
            positions = self.positions,
            journal_entries = self.journal_entries,
            effects_applied = self.effects_applied,
            took = ?self.took,
            "recovered state from Redis"
        );
    }
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
    // The journal is read after the generation's mark: every entry up to it is in the
    // snapshot, and an entry there that the snapshot does not hold was taken back in memory
    // (a write Redis took after its round trip timed out), so replaying it would be wrong.
    let (mut state, replay_from) = match newest_snapshot(conn, keys).await? {
        Some(loaded) => {
            report.generation = Some(loaded.manifest.generation);
            let from = format!("({}", loaded.manifest.journal_mark);
            (Recovered::from_snapshot(loaded, now_ms)?, from)
        }
        None => (Recovered::empty(config.shards), "-".to_owned()),
    };
    if state.index.shard_count() != Index::new(config.shards).shard_count() {
        tracing::info!(
            shards = state.index.shard_count(),
            "using the shard count the stored state was written with"
        );
    }
    replay_journal(conn, keys, &mut state, replay_from, now_ms, &mut report).await?;
    let engine = state.into_engine(config, clock);
    report.positions = engine.index().position_count();
    report.took = started.elapsed();
    Ok((engine, report))
}

/// Replays the journal from `start` (a stream range start) on top of `state`, a page at a
/// time, so memory stays bounded.
async fn replay_journal(
    conn: &mut ConnectionManager,
    keys: &Keys,
    state: &mut Recovered,
    mut start: String,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> anyhow::Result<()> {
    let mut replay = state.index.begin_replay();
    loop {
        let page: redis::streams::StreamRangeReply = conn
            .xrange_count(&keys.journal, &start, "+", REPLAY_PAGE)
            .await
            .context("reading the journal")?;
        let Some(last) = page.ids.last() else { break };
        start = format!("({}", last.id);
        for entry in &page.ids {
            report.journal_entries += 1;
            state.apply(entry, &mut replay, now_ms)?;
        }
    }
    report.effects_applied = replay.applied;
    Ok(())
}

/// The state being rebuilt, held apart until it is complete enough to build an engine from.
struct Recovered {
    index: Index,
    network: Network,
    seqs: HashMap<String, u64>,
    /// Broker-fed sources' positions: the highest broker stream sequence applied.
    broker_seqs: HashMap<String, u64>,
    reservations: HashMap<String, Reservation>,
    /// Committed syncs' marks; the engine keeps the newest per source and supply type.
    sync_marks: Vec<SyncMark>,
}

impl Recovered {
    /// Starts from a snapshot generation, which the journal then brings up to date.
    fn from_snapshot(loaded: snapshot::Loaded, now_ms: i64) -> anyhow::Result<Self> {
        let network = Network::decode(&loaded.manifest.network, now_ms)
            .map_err(|e| anyhow!("snapshot network: {e}"))?;
        Ok(Self {
            index: loaded.index,
            network,
            seqs: loaded.manifest.source_seqs.into_iter().collect(),
            broker_seqs: loaded.manifest.broker_seqs.into_iter().collect(),
            sync_marks: loaded.manifest.sync_marks,
            reservations: loaded
                .reservations
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
        })
    }

    /// Starts from nothing, when no generation was ever stored: the journal is everything.
    fn empty(shards: usize) -> Self {
        Self {
            index: Index::new(shards),
            network: Network::default(),
            seqs: HashMap::new(),
            broker_seqs: HashMap::new(),
            reservations: HashMap::new(),
            sync_marks: Vec::new(),
        }
    }

    /// Applies one entry; a part counts only if newer, so duplicates and reordering are harmless.
    fn apply(&mut self, entry: &StreamId, replay: &mut Replay, now_ms: i64) -> anyhow::Result<()> {
        let bytes: Vec<u8> = entry
            .get("r")
            .ok_or_else(|| anyhow!("journal entry {} has no record", entry.id))?;
        let in_entry = |e: CodecError| anyhow!("journal entry {}: {e}", entry.id);
        let mut record = StoredRecord::decode(&bytes).map_err(in_entry)?;
        if let Some((source, seq)) = record.source_seq {
            let known = self.seqs.entry(source.to_owned()).or_default();
            *known = (*known).max(seq);
            if let Some(broker_seq) = record.broker_seq {
                let known = self.broker_seqs.entry(source.to_owned()).or_default();
                *known = (*known).max(broker_seq);
            }
        }
        if let Some(encoded) = record.network {
            let changed = Network::decode(encoded, now_ms).map_err(in_entry)?;
            if changed.version() > self.network.version() {
                self.network = changed;
            }
        }
        self.sync_marks.extend(record.sync.take());
        self.keep_newest(record.reservations);
        self.index
            .replay(&mut record.effects, replay)
            .map_err(in_entry)
    }

    /// A reservation is journaled at every change; only its newest image is its state.
    fn keep_newest(&mut self, images: Vec<Reservation>) {
        for image in images {
            let newer = self
                .reservations
                .get(&image.id)
                .is_none_or(|known| known.version < image.version);
            if newer {
                self.reservations.insert(image.id.clone(), image);
            }
        }
    }

    /// Builds the engine, first dropping positions at nodes the recovered network lacks.
    fn into_engine(self, config: &EngineConfig, clock: Arc<dyn Clock>) -> Engine {
        let dropped = self.index.drop_nodes_from(self.network.nodes().len());
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "dropped recovered positions at nodes whose configuration was never made durable"
            );
        }
        let engine = Engine::journaled(config.clone(), clock, self.network, self.index);
        for (source, seq) in self.seqs {
            engine.restore_seq(&source, seq);
        }
        for (source, broker_seq) in self.broker_seqs {
            engine.restore_broker_seq(&source, broker_seq);
        }
        engine.restore_reservations(self.reservations.into_values());
        for mark in self.sync_marks {
            engine.restore_sync_mark(mark);
        }
        engine
    }
}
