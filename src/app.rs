//! The application service: the one writer between the edges and the core.
//!
//! An edge (gRPC today; HTTP, brokers and file imports next) converts and checks a request,
//! then calls one method here. Every mutating method runs the same protocol: refuse while the
//! durable store cannot take a write, run the core operation, make its record durable, and
//! only then answer; a change the journal does not take is undone before the error is
//! answered. `App::write` is the only code that hands a mutation to the journal, so a new edge
//! needs no durability code of its own, and an edge cannot acknowledge a change before it is
//! durable. Reads go straight to the core.

use std::sync::Arc;

use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::audit::AuditReport;
use crate::auth::Identity;
use crate::band::Bands;
use crate::checkpoint::outbox::DeadLetter;
use crate::checkpoint::tail::{EntryId, Feed, Following};
use crate::checkpoint::trail::{AuditPage, AuditQuery, PositionChange};
use crate::checkpoint::{Durability, DurabilityStatus, Queued};
use crate::consistency;
use crate::deadline::Deadline;
use crate::domain::{BatchOutcome, Node, NodeGroup, ServiceLevel, Source, SupplyBatch};
use crate::engine::{Engine, SafetyStockEntry, Stats};
use crate::error::{Error, Result};
use crate::explain::{ExplainQuery, Explanation};
use crate::metrics::{self, IngestMetrics};
use crate::mutation::{Cause, Mutation, Record};
use crate::normalize::SourceMapping;
use crate::promise::{Promise, PromiseRequest};
use crate::query::{Availability, AvailabilityQuery};
use crate::rate_card::ItemAttributes;
use crate::rejections::LoggedRejection;
use crate::reservation::{Hold, ReserveRequest};
use crate::reserve::Held;
use crate::route::{HeldWave, RouteRequest, Routed, WaveOrder};
use crate::sync::{Opened, PartOutcome, SyncBegin, SyncCommit, SyncOutcome, SyncPart};
use crate::telemetry;
use crate::watch::bands::{BandChange, BandState, BandToken};
use crate::watch::{self, AvailabilityChange, Change, Changes, OrderChange, WatchFilter};

/// Who asks for a change, in one request: the identity an edge authenticated (whose id a
/// reservation records as its owner, and whose scopes decide who may act on one) and the
/// request's id. Recorded with every change for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// The request's id, as the caller sent it (`x-request-id`) or as generated for it.
    pub request_id: String,
}

impl Caller {
    /// `identity` asking, in the request `request_id`.
    pub fn new(identity: Identity, request_id: impl Into<String>) -> Self {
        Self {
            identity,
            request_id: request_id.into(),
        }
    }

    /// The service itself, for a change its own loop makes (`expiry`).
    pub fn system(loop_name: &str) -> Self {
        Self::new(Identity::system(loop_name), "")
    }

    /// Who the audit trail names: the credential id, `anonymous` when authentication is off,
    /// `system:<loop>` for the service's own changes.
    pub fn actor(&self) -> &str {
        self.identity.actor()
    }

    /// The owner a reservation this caller makes records: its credential id (empty when
    /// authentication is off: such a reservation is an operator's).
    pub fn owner(&self) -> &str {
        self.identity.id()
    }

    fn cause(&self, action: &str, at_ms: i64) -> Cause {
        Cause {
            actor: self.actor().to_owned(),
            request_id: self.request_id.clone(),
            action: action.to_owned(),
            at_ms,
        }
    }
}

/// A queued change's answer once it is durable, noting its journal position for the answer's
/// consistency token.
async fn answered<T>(queued: Queued<T>) -> Result<T> {
    let (answer, position) = queued.durable_at().await?;
    consistency::wrote(position);
    Ok(answer)
}

/// The span of one write: the core operation and, for [`App::write`], the wait for its
/// record to be durable. Exported with traces only; otherwise disabled, costing one check.
fn write_span(caller: &Caller, action: &str) -> tracing::Span {
    tracing::debug_span!(
        target: telemetry::TARGET,
        "write",
        otel.name = action,
        action,
        caller = caller.actor(),
        request_id = caller.request_id.as_str(),
    )
}

/// A postal code's (country, code) and its coordinates.
pub type PostalCode = ((String, String), (f64, f64));

/// A journal record as every watch shares it: the change, or why it does not decode (the
/// service's error is not `Clone`).
type Decoded = std::result::Result<Arc<Change>, String>;

/// The engine, where its changes become durable, and what ingest reports; cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    engine: Engine,
    durability: Durability,
    ingest: Arc<IngestMetrics>,
    /// The journal's records decoded once for every watch; started by the first watch.
    feed: Arc<OnceCell<Feed<Decoded>>>,
}

impl App {
    pub fn new(engine: Engine, durability: Durability) -> Self {
        Self {
            engine,
            durability,
            ingest: Arc::new(IngestMetrics::new()),
            feed: Arc::default(),
        }
    }

    /// The core handle, for reads and for the loops that observe it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// The write protocol: refuse while the store cannot take a write, run `operation`, make
    /// its record durable, answer; an error means nothing changed. The only call into the
    /// journal. The record carries `caller` and `action` for the audit trail.
    async fn write<T>(
        &self,
        caller: &Caller,
        action: &str,
        operation: impl FnOnce(&Engine) -> Result<Mutation<T>>,
    ) -> Result<T> {
        let written = async { answered(self.submit(caller, action, operation).await?).await };
        written.instrument(write_span(caller, action)).await
    }

    /// [`App::write`] up to the journal queue: applied and queued in order now, answered by
    /// [`Queued::durable`].
    async fn submit<T>(
        &self,
        caller: &Caller,
        action: &str,
        operation: impl FnOnce(&Engine) -> Result<Mutation<T>>,
    ) -> Result<Queued<T>> {
        self.submit_records(caller, action, |engine| {
            let (answer, record) = operation(engine)?.into_parts();
            Ok((answer, record.into_iter().collect()))
        })
        .await
    }

    /// [`App::submit`] for an operation that makes several changes, each with its record.
    async fn submit_records<T>(
        &self,
        caller: &Caller,
        action: &str,
        operation: impl FnOnce(&Engine) -> Result<(T, Vec<Record>)>,
    ) -> Result<Queued<T>> {
        self.durability
            .submit(|| {
                let (answer, mut records) = operation(&self.engine)?;
                let cause = caller.cause(action, self.engine.now_ms());
                for record in &mut records {
                    record.cause = Some(cause.clone());
                }
                Ok((answer, records))
            })
            .await
    }

    /// Waits (at most two journal round trips) until no change of these reservations is in
    /// flight, so that a call on one is answered on what is durable rather than refused: the
    /// journal stores the change (a retry then finds it) or takes it back (the id is free).
    async fn settled<'a>(&self, reservation_ids: impl IntoIterator<Item = &'a str>) {
        for id in reservation_ids {
            let engine = &self.engine;
            self.durability
                .until(|| !engine.reservation_in_flight(id))
                .await;
        }
    }

    pub async fn upsert_nodes(&self, caller: &Caller, nodes: Vec<Node>) -> Result<()> {
        self.write(caller, "upsert_nodes", |engine| engine.upsert_nodes(nodes))
            .await
    }

    pub async fn upsert_groups(&self, caller: &Caller, groups: Vec<NodeGroup>) -> Result<()> {
        self.write(caller, "upsert_groups", |engine| {
            engine.upsert_groups(groups)
        })
        .await
    }

    pub async fn upsert_sources(&self, caller: &Caller, sources: Vec<Source>) -> Result<()> {
        self.write(caller, "upsert_sources", |engine| {
            engine.upsert_sources(sources)
        })
        .await
    }

    pub async fn upsert_service_levels(
        &self,
        caller: &Caller,
        levels: Vec<ServiceLevel>,
    ) -> Result<()> {
        self.write(caller, "upsert_service_levels", |engine| {
            engine.upsert_service_levels(levels)
        })
        .await
    }

    /// Describes items' weights and dimensions by SKU (a new network version).
    pub async fn upsert_items(
        &self,
        caller: &Caller,
        items: Vec<(String, ItemAttributes)>,
    ) -> Result<()> {
        self.write(caller, "upsert_items", |engine| engine.upsert_items(items))
            .await
    }

    pub async fn upsert_postal_codes(&self, caller: &Caller, codes: Vec<PostalCode>) -> Result<()> {
        self.write(caller, "upsert_postal_codes", |engine| {
            engine.upsert_postal_codes(codes)
        })
        .await
    }

    /// Replaces sources' item, location and unit tables (a new network version).
    pub async fn upsert_mappings(
        &self,
        caller: &Caller,
        mappings: Vec<SourceMapping>,
    ) -> Result<()> {
        self.write(caller, "upsert_mappings", |engine| {
            engine.upsert_mappings(mappings)
        })
        .await
    }

    pub async fn set_safety_stock(
        &self,
        caller: &Caller,
        entries: &[SafetyStockEntry],
    ) -> Result<()> {
        self.write(caller, "set_safety_stock", |engine| {
            engine.set_safety_stock(entries)
        })
        .await
    }

    /// Applies a feed's batch and answers once it is durable, with the source's durable
    /// sequence as of the answer; a heartbeat (no updates) needs no durable store.
    pub async fn apply_batch(&self, caller: &Caller, batch: &SupplyBatch) -> Result<BatchOutcome> {
        self.apply_batch_at(caller, batch, None).await
    }

    /// Applies a batch a broker feed read at stream sequence `broker_seq`, as
    /// [`App::apply_batch`] does; the position is durable with the batch's effects, so the
    /// feed resumes after it, and a message at or before it is answered as a duplicate.
    pub async fn apply_broker_batch(
        &self,
        caller: &Caller,
        batch: &SupplyBatch,
        broker_seq: u64,
    ) -> Result<BatchOutcome> {
        self.apply_batch_at(caller, batch, Some(broker_seq)).await
    }

    async fn apply_batch_at(
        &self,
        caller: &Caller,
        batch: &SupplyBatch,
        broker_seq: Option<u64>,
    ) -> Result<BatchOutcome> {
        let apply = |engine: &Engine| match broker_seq {
            Some(at) => engine.apply_broker_batch(batch, at),
            None => engine.apply_batch(batch),
        };
        let mut outcome = if batch.updates.is_empty() {
            apply(&self.engine)?.into_result()
        } else {
            self.write(caller, "apply_batch", apply).await?
        };
        self.ingest.batch(batch.updates.is_empty(), &outcome);
        // The commit may have confirmed later batches of the source too.
        outcome.durable_seq = self
            .engine
            .durable_seq(&batch.source_id)
            .unwrap_or(outcome.durable_seq);
        Ok(outcome)
    }

    /// Applies a feed's batch with updates now and answers once it is durable, through
    /// [`Queued::durable`]: a feed may send its next batch before the answer and keep its
    /// order (pipelining one source's batches).
    pub async fn submit_batch(
        &self,
        caller: &Caller,
        batch: &SupplyBatch,
    ) -> Result<Queued<BatchOutcome>> {
        self.submit(caller, "apply_batch", |engine| engine.apply_batch(batch))
            .instrument(write_span(caller, "apply_batch"))
            .await
    }

    /// Opens a full sync. Nothing durable changes until its commit, so nothing is journaled:
    /// a sync the process loses (crash, expiry) is sent again from its begin.
    pub fn begin_sync(&self, begin: &SyncBegin) -> Result<Opened> {
        self.engine.begin_sync(begin)
    }

    /// Stages a part of an open sync, counting its rejected positions.
    pub fn sync_part(&self, part: &SyncPart) -> Result<PartOutcome> {
        let outcome = self.engine.stage_sync_part(part)?;
        self.ingest.rejected(&outcome.rejections);
        Ok(outcome)
    }

    /// Commits a full sync and answers once it is durable.
    pub async fn commit_sync(&self, caller: &Caller, commit: &SyncCommit) -> Result<SyncOutcome> {
        let outcome = self
            .write(caller, "commit_sync", |engine| engine.commit_sync(commit))
            .await?;
        self.ingest.synced(&outcome);
        Ok(outcome)
    }

    pub async fn reserve(&self, caller: &Caller, request: &ReserveRequest) -> Result<Held> {
        self.settled([request.reservation_id.as_str()]).await;
        self.write(caller, "reserve", |engine| engine.reserve(request))
            .await
    }

    pub async fn update_reservation(
        &self,
        caller: &Caller,
        request: &ReserveRequest,
    ) -> Result<Held> {
        self.settled([request.reservation_id.as_str()]).await;
        self.write(caller, "update_reservation", |engine| {
            engine.update_reservation(request)
        })
        .await
    }

    pub async fn extend(
        &self,
        caller: &Caller,
        reservation_id: &str,
        ttl_secs: u64,
    ) -> Result<Held> {
        self.settled([reservation_id]).await;
        self.write(caller, "extend", |engine| {
            engine.extend(reservation_id, ttl_secs)
        })
        .await
    }

    pub async fn release(&self, caller: &Caller, reservation_id: &str) -> Result<Held> {
        self.settled([reservation_id]).await;
        self.write(caller, "release", |engine| engine.release(reservation_id))
            .await
    }

    /// Turns a hold into an allocation for `order_id`.
    pub async fn commit_reservation(
        &self,
        caller: &Caller,
        reservation_id: &str,
        order_id: &str,
    ) -> Result<Held> {
        self.settled([reservation_id]).await;
        self.write(caller, "commit", |engine| {
            engine.commit(reservation_id, order_id)
        })
        .await
    }

    /// A delivery promise; with `reserve`, the promised plan is held and durable first. Past
    /// `deadline` the work stops and nothing is held.
    pub async fn promise(
        &self,
        caller: &Caller,
        request: &PromiseRequest,
        deadline: &Deadline<'_>,
    ) -> Result<Promise> {
        if let Some(hold) = &request.reserve {
            self.settled([hold.reservation_id.as_str()]).await;
            self.write(caller, "promise", |engine| {
                engine.promise(request, deadline)
            })
            .await
        } else {
            Ok(self.engine.promise(request, deadline)?.into_result())
        }
    }

    /// Routes an order; with `reserve`, the chosen plan is held too. Past `deadline` the work
    /// stops and nothing is held.
    pub async fn route(
        &self,
        caller: &Caller,
        request: &RouteRequest,
        reserve: Option<&Hold>,
        deadline: &Deadline<'_>,
    ) -> Result<Routed> {
        match reserve {
            None => Ok(Routed {
                routing: self.engine.route(request, deadline)?,
                reservation: None,
            }),
            Some(hold) => {
                self.settled([hold.reservation_id.as_str()]).await;
                self.write(caller, "route_and_reserve", |engine| {
                    engine.route_and_reserve(request, hold, deadline)
                })
                .await
            }
        }
    }

    /// Routes a wave of orders together over shared stock, until `deadline`; each order that
    /// asks to reserve holds its plan under its own id, and the answer waits until every new
    /// hold is durable (an error: none is held).
    pub async fn route_wave(
        &self,
        caller: &Caller,
        orders: &[WaveOrder],
        deadline: &Deadline<'_>,
    ) -> Result<HeldWave> {
        if orders.iter().all(|order| order.hold.is_none()) {
            // A wave that holds nothing changes nothing: no record, and no durable store needed.
            return Ok(self.engine.route_wave(orders, deadline)?.0);
        }
        let ids: Vec<&str> = orders
            .iter()
            .filter_map(|order| Some(order.hold.as_ref()?.reservation_id.as_str()))
            .collect();
        self.settled(ids).await;
        let queued = self
            .submit_records(caller, "route_wave_and_reserve", |engine| {
                engine.route_wave(orders, deadline)
            })
            .await?;
        answered(queued).await
    }

    /// Checks every position against the live holds; with `repair`, fixes and journals drift.
    pub async fn check_invariants(&self, caller: &Caller, repair: bool) -> Result<AuditReport> {
        let report = if repair {
            self.write(caller, "repair", |engine| Ok(engine.audit(true)))
                .await?
        } else {
            self.engine.audit(false).into_result()
        };
        metrics::audited(report.drift, report.oversold);
        Ok(report)
    }

    /// Checks every position against the live holds without changing anything, and reports
    /// it in the gauges: the periodic audit.
    pub fn audit(&self) -> AuditReport {
        let report = self.engine.audit(false).into_result();
        metrics::audited(report.drift, report.oversold);
        report
    }

    /// One sweep of reservation expiry: expired holds are released and journaled. Expiry is
    /// not a caller's request: what the journal does not take is undone and expires again at
    /// a later sweep.
    pub async fn expire_once(&self) {
        let swept = self
            .durability
            .apply(|| {
                let cause = Caller::system("expiry").cause("expire", self.engine.now_ms());
                let records = self.engine.expire_due().into_iter();
                let records: Vec<_> = records
                    .filter_map(|m| m.into_parts().1)
                    .map(|mut record| {
                        record.cause = Some(cause.clone());
                        record
                    })
                    .collect();
                Ok((records.len(), records))
            })
            .await;
        match swept {
            Ok(expired) => metrics::expired(expired),
            Err(error) => {
                tracing::debug!(%error, "expiry not durable; it is retried at the next sweep")
            }
        }
        self.engine.expire_syncs();
    }

    pub fn availability(&self, query: &AvailabilityQuery) -> Result<Availability> {
        self.engine.availability(query)
    }

    /// How one availability figure is made; reads only.
    pub fn explain(&self, query: &ExplainQuery) -> Result<Explanation> {
        self.engine.explain(query)
    }

    /// Who made reservation `reservation_id`, also while its record is not durable yet.
    pub fn reservation_owner(&self, reservation_id: &str) -> Option<String> {
        self.engine.reservation_owner(reservation_id)
    }

    /// The reservation as it is durable: a change in flight is waited for first.
    pub async fn get_reservation(&self, reservation_id: &str) -> Result<Held> {
        self.settled([reservation_id]).await;
        self.engine.get_reservation(reservation_id)
    }

    /// Up to `limit` logged rejections, newest first, and how many were ever logged.
    pub fn rejections(&self, source_id: Option<&str>, limit: usize) -> (Vec<LoggedRejection>, u64) {
        self.engine.rejections(source_id, limit)
    }

    /// A page of the audit trail.
    pub async fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage> {
        self.durability.audit(query).await
    }

    /// The last `limit` changes of the position at (`sku`, `node_id`), newest first, and the
    /// journal entries read for them.
    pub async fn position_history(
        &self,
        sku: &str,
        node_id: &str,
        limit: usize,
    ) -> Result<(Vec<PositionChange>, usize)> {
        let node = self.engine.network().node_idx(node_id).ok_or_else(|| {
            crate::error::Error::NotFound(format!("node {}", crate::domain::echo(node_id)))
        })?;
        self.durability.position_history(sku, node, limit).await
    }

    /// The feed every watch follows, started by the first. A record that does not decode is
    /// shared as why (the service's error is not `Clone`), and ends each watch it reaches.
    async fn feed(&self) -> Result<&Feed<Decoded>> {
        self.feed
            .get_or_try_init(|| async {
                let engine = self.engine.clone();
                self.durability.feed(move |bytes| {
                    watch::decode(&engine, bytes).map_err(|error| error.to_string())
                })
            })
            .await
    }

    /// Follows the journal after `after` (from now when `None`) for changes of the positions
    /// `filter` watches, at most `buffer` waiting for the watcher.
    pub async fn watch_availability(
        &self,
        filter: WatchFilter,
        after: Option<EntryId>,
        buffer: usize,
    ) -> Result<Following<Result<AvailabilityChange>>> {
        self.follow(after, buffer, move |_, change| change.availability(&filter))
            .await
    }

    /// Follows the journal after `after` (from now when `None`) for changes of reservations.
    pub async fn watch_orders(
        &self,
        after: Option<EntryId>,
        buffer: usize,
    ) -> Result<Following<Result<OrderChange>>> {
        self.follow(after, buffer, |_, change| change.orders())
            .await
    }

    /// Follows the journal for crossings of `bands` by the positions `filter` watches: from
    /// now, or after `resume`, its bands replayed from its anchor. The anchor of the tokens
    /// to give is the returned follower's `start`.
    pub async fn watch_bands(
        &self,
        filter: WatchFilter,
        bands: Bands,
        resume: Option<BandToken>,
        buffer: usize,
    ) -> Result<Following<Result<BandChange>>> {
        let mut state = BandState::new(filter, bands, resume);
        self.follow(resume.map(|r| r.anchor), buffer, move |id, change| {
            state.take(id, change)
        })
        .await
    }

    /// Follows the feed with `admit`, which makes a watcher's event of a shared change; a
    /// record that does not decode ends the watch with why.
    async fn follow<E: Send + 'static>(
        &self,
        after: Option<EntryId>,
        buffer: usize,
        mut admit: impl FnMut(EntryId, &Arc<Change>) -> Option<E> + Send + 'static,
    ) -> Result<Following<Result<E>>> {
        self.feed()
            .await?
            .follow(after, buffer, move |id, decoded| match decoded {
                Ok(change) => admit(id, change).map(Ok),
                Err(damage) => Some(Err(Error::Unavailable(damage.clone()))),
            })
            .await
    }

    /// Follows the journal after `after` (from now when `None`) for changes of the positions
    /// `availability` watches (none when `None`) and, when `orders`, of reservations, in one
    /// journal order: what an outbound sink delivers.
    pub async fn watch_changes(
        &self,
        availability: Option<WatchFilter>,
        orders: bool,
        after: Option<EntryId>,
        buffer: usize,
    ) -> Result<Following<Result<Changes>>> {
        self.follow(after, buffer, move |_, change| {
            change.sink(availability.as_ref(), orders)
        })
        .await
    }

    /// A page of an outbound sink's dead letters, and how many it holds.
    pub async fn dead_letters(
        &self,
        sink: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, u64)> {
        self.durability.dead_letters(sink, after, limit).await
    }

    /// Deletes dead letters of an outbound sink; answers how many there were.
    pub async fn delete_dead_letters(&self, sink: &str, ids: &[String]) -> Result<u64> {
        self.durability.delete_dead_letters(sink, ids).await
    }

    pub fn stats(&self) -> (Stats, DurabilityStatus) {
        (self.engine.stats(), self.durability.status())
    }
}
