//! The engine: the shared, synchronous core that every front end (gRPC, the demo feed, benches)
//! drives. A cloneable handle around `Arc<Shared>`; no method awaits or does I/O, and no lock is
//! held across calls into another key's lock except in ascending shard order.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::clock::{Clock, UnixMillis};
use crate::domain::{Node, NodeGroup, Qty, Source};
use crate::error::{Error, FieldViolation, Result};
use crate::index::{AtpPolicy, Effects, Index, MAX_QUANTITY};
use crate::ingest::RejectionLog;
use crate::metrics::IngestMetrics;
use crate::mutation::{Mutation, Record};
use crate::network::{Network, NodeIdx};

/// How nodes whose feed is stale are treated in availability answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    /// A degraded node promises nothing.
    Exclude,
    /// A degraded node holds back this extra percentage of its on-hand (rounded up).
    Buffer { percent: u32 },
}

/// Request and state limits; every one is configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Item-node pairs one availability call may ask for.
    pub max_pairs: usize,
    /// Updates in one supply batch.
    pub max_batch_updates: usize,
    /// Bytes of a SKU or receipt reference.
    pub max_field_len: usize,
    /// Rejections kept in the queryable log.
    pub rejection_log_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pairs: 10_000,
            max_batch_updates: 10_000,
            max_field_len: 128,
            rejection_log_len: 10_000,
        }
    }
}

/// Everything the engine is built with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    pub atp: AtpPolicy,
    pub stale: StalePolicy,
    /// Index shards; more shards, less contention between writers.
    pub shards: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            atp: AtpPolicy::default(),
            stale: StalePolicy::Exclude,
            shards: 256,
        }
    }
}

/// One per-position safety stock override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyStockEntry {
    pub sku: String,
    pub node_id: String,
    pub quantity: Qty,
}

/// A feed's state as `GetStats` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStats {
    pub source_id: String,
    pub last_seq: u64,
    pub durable_seq: u64,
    pub age_ms: i64,
    pub stale: bool,
}

/// Counts and feed states.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub nodes: u64,
    pub groups: u64,
    pub sources: u64,
    pub skus: u64,
    pub positions: u64,
    pub degraded_nodes: u64,
    /// Where acknowledged mutations live: "memory" until a durable store is configured.
    pub durability: &'static str,
    pub source_stats: Vec<SourceStats>,
    pub rejections_logged: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    /// The current network version; replaced whole by upserts.
    network: RwLock<Arc<Network>>,
    /// Serialises upserts so that none is lost between reading and replacing the network.
    network_writer: Mutex<()>,
    pub(crate) index: Index,
    pub(crate) rejections: RejectionLog,
    pub(crate) ingest_metrics: IngestMetrics,
    /// Mutations return journal records, and sequences become durable only when the durability
    /// layer says so; otherwise everything applied counts as durable at once.
    pub(crate) journaling: bool,
}

/// Cloneable handle to the core.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

impl Engine {
    /// An empty engine that keeps everything in memory only.
    pub fn new(config: EngineConfig, clock: Arc<dyn Clock>) -> Self {
        let index = Index::new(config.shards);
        Self::assemble(config, clock, Network::default(), index, false)
    }

    /// An engine over recovered state whose mutations return journal records.
    pub fn journaled(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        network: Network,
        index: Index,
    ) -> Self {
        Self::assemble(config, clock, network, index, true)
    }

    fn assemble(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        network: Network,
        index: Index,
        journaling: bool,
    ) -> Self {
        let shared = Shared {
            index,
            rejections: RejectionLog::new(config.limits.rejection_log_len),
            config,
            clock,
            network: RwLock::new(Arc::new(network)),
            network_writer: Mutex::default(),
            ingest_metrics: IngestMetrics::new(),
            journaling,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Whether mutations return journal records.
    pub fn is_journaling(&self) -> bool {
        self.shared.journaling
    }

    pub fn index(&self) -> &Index {
        &self.shared.index
    }

    /// Effects collection for one mutation, when journaling.
    pub(crate) fn effects(&self) -> Option<Effects> {
        self.shared.journaling.then(Effects::default)
    }

    /// Wraps a mutation's result with its record, when journaling.
    pub(crate) fn mutation<T>(&self, result: T, record: impl FnOnce() -> Record) -> Mutation<T> {
        Mutation {
            result,
            record: self.shared.journaling.then(record),
        }
    }

    /// Sets a source's applied sequence to at least `seq`, as recovered from durable state.
    pub fn restore_seq(&self, source_id: &str, seq: u64) {
        if let Some(source) = self.network().source(source_id) {
            let mut state = source
                .feed
                .seq
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.last_seq = state.last_seq.max(seq);
        }
    }

    /// The highest durable sequence of a source, if it exists.
    pub fn durable_seq(&self, source_id: &str) -> Option<u64> {
        self.network().source(source_id).map(|s| s.feed.seqs().1)
    }

    /// Records that a source's batch `seq` is durable.
    pub fn mark_durable(&self, source_id: &str, seq: u64) {
        if let Some(source) = self.network().source(source_id) {
            let mut state = source
                .feed
                .seq
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.pending.remove(&seq);
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    pub fn now_ms(&self) -> UnixMillis {
        self.shared.clock.now_ms()
    }

    /// The current network version.
    pub fn network(&self) -> Arc<Network> {
        self.shared
            .network
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the network with `change(current)`, unless it fails.
    fn change_network(
        &self,
        change: impl FnOnce(&Network) -> Result<Network>,
    ) -> Result<Mutation<()>> {
        let _writer = self
            .shared
            .network_writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = Arc::new(change(&self.network())?);
        *self
            .shared
            .network
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next.clone();
        Ok(self.mutation((), || Record {
            network: Some(next.encode()),
            ..Record::default()
        }))
    }

    pub fn upsert_nodes(&self, nodes: Vec<Node>) -> Result<Mutation<()>> {
        self.change_network(|network| network.with_nodes(nodes))
    }

    pub fn upsert_groups(&self, groups: Vec<NodeGroup>) -> Result<Mutation<()>> {
        self.change_network(|network| network.with_groups(groups))
    }

    pub fn upsert_sources(&self, sources: Vec<Source>) -> Result<Mutation<()>> {
        let now_ms = self.now_ms();
        self.change_network(|network| network.with_sources(sources, now_ms))
    }

    /// Sets per-position safety stock; all entries are checked before any is applied.
    pub fn set_safety_stock(&self, entries: &[SafetyStockEntry]) -> Result<Mutation<()>> {
        let network = self.network();
        let max_len = self.shared.config.limits.max_field_len;
        let mut resolved: Vec<(&str, NodeIdx, Qty)> = Vec::with_capacity(entries.len());
        let mut violations = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            if entry.sku.is_empty() || entry.sku.len() > max_len {
                violations.push(FieldViolation::new(
                    format!("entries[{i}].sku"),
                    format!("must be 1 to {max_len} bytes"),
                ));
            }
            if !(0..=MAX_QUANTITY).contains(&entry.quantity) {
                violations.push(FieldViolation::new(
                    format!("entries[{i}].quantity"),
                    format!("must be within [0, {MAX_QUANTITY}]"),
                ));
            }
            match network.node_idx(&entry.node_id) {
                Some(node) => resolved.push((&entry.sku, node, entry.quantity)),
                None => violations.push(FieldViolation::new(
                    format!("entries[{i}].node_id"),
                    format!("unknown node {:?}", entry.node_id),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let mut effects = self.effects();
        for (sku, node, quantity) in resolved {
            self.shared
                .index
                .update(sku, node, effects.as_mut(), |position| {
                    let changed = position.safety(-1) != quantity;
                    position.set_safety_override(quantity);
                    ((), changed)
                });
        }
        Ok(self.mutation((), || Record {
            effects: effects.unwrap_or_default(),
            ..Record::default()
        }))
    }

    pub fn stats(&self) -> Stats {
        let network = self.network();
        let now_ms = self.now_ms();
        let source_stats = network
            .sources()
            .iter()
            .map(|source| {
                let (last_seq, durable_seq) = source.feed.seqs();
                SourceStats {
                    source_id: source.def.id.clone(),
                    last_seq,
                    durable_seq,
                    age_ms: now_ms.saturating_sub(source.feed.last_heard_ms()),
                    stale: source.is_stale(now_ms),
                }
            })
            .collect();
        Stats {
            nodes: network.nodes().len() as u64,
            groups: network.groups().len() as u64,
            sources: network.sources().len() as u64,
            skus: self.shared.index.sku_count(),
            positions: self.shared.index.position_count(),
            degraded_nodes: network.degraded(now_ms).count() as u64,
            durability: if self.shared.journaling {
                "redis"
            } else {
                "memory"
            },
            source_stats,
            rejections_logged: self.shared.rejections.total(),
        }
    }
}
