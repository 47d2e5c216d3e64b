//! The engine: the shared, synchronous core that every front end (gRPC, the demo feed, benches)
//! drives. A cloneable handle around `Arc<Shared>`; no method awaits or does I/O, and no lock is
//! held across calls into another key's lock except in ascending shard order.
//!
//! A sync's commit holds every other mutation off (they wait for it in [`Engine::begin`]) but
//! no reader: readers see it whole through the index ([`crate::index::Whole`]). A commit
//! takes no lock a waiting mutation may hold, and lets mutations go before it waits for the
//! readers older than its change (a mutation may hold a reader while it waits).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::clock::{Clock, UnixMillis};
use crate::domain::{Node, NodeGroup, Qty, ServiceLevel, Source};
use crate::error::{Error, FieldViolation, Result};
use crate::index::{AtpPolicy, Effects, Index, MAX_QUANTITY};
use crate::mutation::{Mutation, Record, Undo};
use crate::network::{Network, NodeIdx, SeqState};
use crate::normalize::SourceMapping;
use crate::rate_card::ItemAttributes;
use crate::rejections::RejectionLog;
use crate::reservation::{Book, State};
use crate::sync::{Staging, SyncLimits, SyncMark, SyncMarks};

/// Reservation book shards; a reservation call locks one.
const BOOK_SHARDS: usize = 64;

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
    /// Lines of one promise or route request.
    pub max_order_lines: usize,
    /// How far a SET's `as_of` may be ahead of the server clock: a source clock that runs
    /// ahead is tolerated this much; beyond it, one bad SET would make every later one stale.
    pub max_clock_skew_secs: u64,
    /// How far one batch's sequence may jump past the source's last: beyond it, one bad
    /// batch would make every later real batch a duplicate.
    pub max_seq_gap: u64,
    /// Holds and allocations one explanation lists by reservation; the day totals they make
    /// up are always complete.
    pub max_explained_commitments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pairs: 10_000,
            max_batch_updates: 10_000,
            max_field_len: 128,
            rejection_log_len: 10_000,
            max_order_lines: 1_000,
            max_clock_skew_secs: 300,
            max_seq_gap: 1_000_000,
            max_explained_commitments: 1_000,
        }
    }
}

/// Reservation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationLimits {
    /// TTL of a hold that does not ask for one.
    pub default_ttl_secs: u64,
    /// Longest TTL a hold may ask for or be extended to.
    pub max_ttl_secs: u64,
    /// How long an ended reservation's id is remembered (same id, same answer).
    pub retention_secs: u64,
    /// Lines per reservation.
    pub max_lines: usize,
}

impl Default for ReservationLimits {
    fn default() -> Self {
        Self {
            default_ttl_secs: 900,
            max_ttl_secs: 86_400,
            retention_secs: 86_400,
            max_lines: 1_000,
        }
    }
}

/// Everything the engine is built with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    pub reservations: ReservationLimits,
    pub atp: AtpPolicy,
    pub stale: StalePolicy,
    /// Index shards; more shards, less contention between writers.
    pub shards: usize,
    pub sync: SyncLimits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            reservations: ReservationLimits::default(),
            atp: AtpPolicy::default(),
            stale: StalePolicy::Exclude,
            shards: 256,
            sync: SyncLimits::default(),
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
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// Live reservations: holds, and committed ones with allocations not all shipped.
    pub held_reservations: u64,
    pub committed_reservations: u64,
    /// Released, expired and shipped reservations, remembered until their retention passes.
    pub ended_reservations: u64,
}

#[derive(Debug)]
/// A mutation's number while it is not yet durable; dropping it unused settles it. It holds
/// off a sync's commit until the mutation is over (`None` for the commit itself).
pub(crate) struct Ticket<'a> {
    engine: &'a Engine,
    number: Option<u64>,
    _writing: Option<RwLockReadGuard<'a, ()>>,
}

impl Ticket<'_> {
    /// The mutation's number; `None` when the engine does not journal.
    pub(crate) fn number(&self) -> Option<u64> {
        self.number
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(number) = self.number {
            self.engine.settle(number);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// Mutations return journal records, and sequences become durable only when the durability
    /// layer says so; otherwise everything applied counts as durable at once.
    pub(crate) journaling: bool,
    /// Numbers of mutations applied in memory whose records are not yet durable.
    unsettled: Mutex<BTreeSet<u64>>,
    next_mutation: AtomicU64,
    pub(crate) book: Book,
    /// Open full syncs and their staged positions.
    pub(crate) staging: Staging,
    /// Each source's last committed sync per supply type.
    pub(crate) sync_marks: SyncMarks,
    /// Mutations hold it shared from their ticket to their answer; a sync's commit holds it
    /// alone while it changes the index, so no mutation runs beside a commit. Readers never
    /// take it: they see a commit whole through the index's [`crate::index::Reader`].
    writers: RwLock<()>,
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
        let retention_ms = i64::try_from(config.reservations.retention_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let shared = Shared {
            index,
            rejections: RejectionLog::new(config.limits.rejection_log_len),
            config,
            clock,
            network: RwLock::new(Arc::new(network)),
            network_writer: Mutex::default(),
            journaling,
            unsettled: Mutex::default(),
            next_mutation: AtomicU64::new(1),
            book: Book::new(BOOK_SHARDS, retention_ms),
            staging: Staging::default(),
            sync_marks: SyncMarks::default(),
            writers: RwLock::default(),
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

    /// Numbers a mutation that is about to change memory, so a snapshot can wait until every
    /// mutation it may contain is durable. Take it before changing anything; while a sync's
    /// commit runs, it waits for the commit's change to be over. Never take two at once.
    pub(crate) fn begin(&self) -> Ticket<'_> {
        let writing = self
            .shared
            .writers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.numbered(Some(writing))
    }

    /// Holds off every other mutation until dropped: they wait in [`Engine::begin`]. The
    /// holder numbers its own mutation with [`Engine::begin_alone`].
    pub(crate) fn writers_alone(&self) -> RwLockWriteGuard<'_, ()> {
        self.shared
            .writers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Engine::begin`] for the holder of [`Engine::writers_alone`].
    pub(crate) fn begin_alone(&self, _alone: &RwLockWriteGuard<'_, ()>) -> Ticket<'_> {
        self.numbered(None)
    }

    fn numbered<'a>(&'a self, writing: Option<RwLockReadGuard<'a, ()>>) -> Ticket<'a> {
        let number = self.shared.journaling.then(|| {
            let number = self.shared.next_mutation.fetch_add(1, Ordering::SeqCst);
            lock(&self.shared.unsettled).insert(number);
            number
        });
        Ticket {
            engine: self,
            number,
            _writing: writing,
        }
    }

    /// Wraps a mutation's result with its record, when journaling; a record that would change
    /// nothing is dropped and its ticket settled.
    pub(crate) fn mutation<T>(
        &self,
        mut ticket: Ticket<'_>,
        result: T,
        record: impl FnOnce() -> Record,
    ) -> Mutation<T> {
        let Some(number) = ticket.number else {
            return Mutation {
                result,
                record: None,
            };
        };
        let mut record = record();
        if record.is_empty() {
            return Mutation {
                result,
                record: None,
            };
        }
        ticket.number = None;
        record.ticket = Some(number);
        Mutation {
            result,
            record: Some(record),
        }
    }

    fn replace_network(&self, network: Arc<Network>) -> Arc<Network> {
        let mut current = self
            .shared
            .network
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, network)
    }

    /// Takes back mutations whose records the journal never took, newest first, so that
    /// memory holds only what is durable again. `records` are in the order their mutations
    /// were applied, and no mutation applied after them may remain: each is undone by putting
    /// back what it replaced. The durability layer calls this with every record not yet
    /// durable while it holds off new mutations. Readers see the taking back whole, as they
    /// see a sync's commit.
    pub fn undo(&self, records: Vec<Record>) {
        let mut index = self.shared.index.whole();
        for record in records.into_iter().rev() {
            let Record {
                source_seq,
                broker_seq: _,
                effects,
                reservations,
                ticket,
                undo,
                network: _,
                cause: _,
                sync,
            } = record;
            index.undo(effects);
            for (after, before) in reservations.iter().zip(undo.reservations).rev() {
                let mut shard = self.shared.book.shard(&after.id);
                match before {
                    Some(before) => {
                        shard.put(before);
                    }
                    None => shard.forget(&after.id),
                }
            }
            if let (Some((source, seq)), Some(last_seq)) = (source_seq, undo.last_seq) {
                self.with_seq_state(&source, |state| {
                    state.pending.remove(&seq);
                    state.last_seq = last_seq;
                    state.broker_seq = undo.broker_seq.unwrap_or(state.broker_seq);
                });
            }
            if let Some(network) = undo.network {
                self.replace_network(network);
            }
            if let (Some(mark), Some(previous)) = (sync, undo.sync_mark) {
                let marks = &self.shared.sync_marks;
                marks.restore(&mark.source_id, mark.supply_type, previous);
            }
            if let Some(ticket) = ticket {
                self.settle(ticket);
            }
        }
    }

    /// Whether mutation `ticket` was applied but its record is not durable yet.
    pub(crate) fn is_unsettled(&self, ticket: u64) -> bool {
        lock(&self.shared.unsettled).contains(&ticket)
    }

    /// Marks a journaled mutation durable (its record is in the journal).
    pub fn settle(&self, ticket: u64) {
        lock(&self.shared.unsettled).remove(&ticket);
    }

    /// Every mutation numbered below the result is durable (or never happened).
    pub fn settled_below(&self) -> u64 {
        let next = self.shared.next_mutation.load(Ordering::SeqCst);
        lock(&self.shared.unsettled)
            .first()
            .copied()
            .unwrap_or(next)
    }

    /// The number the next mutation will get.
    pub fn next_ticket(&self) -> u64 {
        self.shared.next_mutation.load(Ordering::SeqCst)
    }

    /// Reservation book shards, for snapshots.
    pub fn book_shards(&self) -> usize {
        self.shared.book.shard_count()
    }

    /// Encodes one book shard's reservations; returns how many.
    pub fn encode_reservations(&self, shard: usize, w: &mut crate::codec::Writer) -> usize {
        let shard = self.shared.book.shard_at(shard);
        let reservations: Vec<&crate::reservation::Reservation> = shard.iter().collect();
        w.len(reservations.len());
        reservations.iter().for_each(|r| r.encode(w));
        reservations.len()
    }

    /// Puts recovered reservations in the book (before the engine serves).
    pub fn restore_reservations(
        &self,
        reservations: impl IntoIterator<Item = crate::reservation::Reservation>,
    ) {
        for reservation in reservations {
            self.shared.book.shard(&reservation.id).put(reservation);
        }
    }

    /// Installs a sync mark as recovered from durable state, unless a newer one is known.
    pub fn restore_sync_mark(&self, mark: SyncMark) {
        self.shared.sync_marks.recover(mark);
    }

    /// Every source's last committed sync per supply type, for snapshots: a mark whose commit
    /// is not durable yet is left out (the journal brings it back once it is), so a snapshot
    /// never counts a sync a crash could lose.
    pub fn sync_marks(&self) -> Vec<SyncMark> {
        self.shared
            .sync_marks
            .all(|ticket| self.is_unsettled(ticket))
    }

    /// Sets a source's applied sequence to at least `seq`, as recovered from durable state.
    pub fn restore_seq(&self, source_id: &str, seq: u64) {
        self.with_seq_state(source_id, |state| state.last_seq = state.last_seq.max(seq));
    }

    /// Sets a source's broker position to at least `broker_seq`, as recovered from durable
    /// state.
    pub fn restore_broker_seq(&self, source_id: &str, broker_seq: u64) {
        self.with_seq_state(source_id, |state| {
            state.broker_seq = state.broker_seq.max(broker_seq);
        });
    }

    /// Every source's broker position, for snapshots (sources never fed by a broker left out).
    pub fn broker_seqs(&self) -> Vec<(String, u64)> {
        self.network()
            .sources()
            .iter()
            .filter_map(|source| {
                let state = source
                    .feed
                    .seq
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                (state.broker_seq > 0).then(|| (source.def.id.clone(), state.broker_seq))
            })
            .collect()
    }

    /// The highest durable sequence of a source, if it exists.
    pub fn durable_seq(&self, source_id: &str) -> Option<u64> {
        self.network().source(source_id).map(|s| s.feed.seqs().1)
    }

    /// Records that a source's batch `seq` is durable.
    pub fn mark_durable(&self, source_id: &str, seq: u64) {
        self.with_seq_state(source_id, |state| {
            state.pending.remove(&seq);
        });
    }

    /// Changes a known source's sequence state under its lock; an unknown source is ignored.
    fn with_seq_state(&self, source_id: &str, change: impl FnOnce(&mut SeqState)) {
        if let Some(source) = self.network().source(source_id) {
            change(
                &mut source
                    .feed
                    .seq
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
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
        let ticket = self.begin();
        let before = self.replace_network(next.clone());
        Ok(self.mutation(ticket, (), || Record {
            network: Some(next.encode()),
            undo: Undo {
                network: Some(before),
                ..Undo::default()
            },
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

    pub fn upsert_service_levels(&self, levels: Vec<ServiceLevel>) -> Result<Mutation<()>> {
        self.change_network(|network| network.with_service_levels(levels))
    }

    /// Describes items' weights and dimensions by SKU, as a new network version.
    pub fn upsert_items(&self, items: Vec<(String, ItemAttributes)>) -> Result<Mutation<()>> {
        self.change_network(|network| network.with_items(items))
    }

    /// Adds destination coordinates by (country, postal code).
    pub fn upsert_postal_codes(
        &self,
        codes: Vec<((String, String), (f64, f64))>,
    ) -> Result<Mutation<()>> {
        self.change_network(|network| network.with_postal_codes(codes))
    }

    /// Replaces the named sources' normalization tables, as a new network version.
    pub fn upsert_mappings(&self, mappings: Vec<SourceMapping>) -> Result<Mutation<()>> {
        self.change_network(|network| network.with_mappings(mappings))
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
        let ticket = self.begin();
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
        Ok(self.mutation(ticket, (), || Record {
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
        let reservations = self.shared.book.counts();
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
            held_reservations: reservations.of(State::Held),
            committed_reservations: reservations.of(State::Committed),
            ended_reservations: reservations.ended(),
        }
    }
}

/// How far a what-if `now` of a promise or route may be from the server clock: a year and a
/// little, enough for any season's planning, and no more, so that a promise never searches
/// calendars for centuries.
pub const MAX_WHAT_IF_MS: i64 = 400 * 86_400_000;

impl Engine {
    /// The instant a promise or route is made at: the request's own `now` (a what-if), within
    /// [`MAX_WHAT_IF_MS`] of the server clock, or the server clock.
    pub(crate) fn request_now(&self, now_ms: Option<UnixMillis>) -> Result<UnixMillis> {
        let server_ms = self.now_ms();
        match now_ms {
            None => Ok(server_ms),
            Some(asked) if asked.abs_diff(server_ms) <= MAX_WHAT_IF_MS.unsigned_abs() => Ok(asked),
            Some(_) => Err(Error::invalid(
                "now",
                "a what-if instant must be within 400 days of the server clock",
            )),
        }
    }

    /// Refuses an order with more lines than the limit, before any work is done for it.
    pub(crate) fn check_order_lines(&self, lines: usize) -> Result<()> {
        let max = self.shared.config.limits.max_order_lines;
        if lines > max {
            let problem = format!("{lines} lines exceed the limit of {max} per order");
            return Err(Error::invalid("lines", problem));
        }
        Ok(())
    }
}

/// The `--stale-policy` text form: `exclude` or `buffer:PERCENT`.
impl FromStr for StalePolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "exclude" => Ok(StalePolicy::Exclude),
            Some(("buffer", percent)) => percent
                .parse()
                .map(|percent| StalePolicy::Buffer { percent })
                .map_err(|_| format!("{percent:?} is not a whole percentage")),
            _ => Err("expected `exclude` or `buffer:PERCENT`".into()),
        }
    }
}
