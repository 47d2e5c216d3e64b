//! The application service: the one writer between the edges and the core.
//!
//! An edge (gRPC today; HTTP, brokers and file imports next) converts and checks a request,
//! then calls one method here. Every mutating method runs the same protocol: refuse while the
//! durable store cannot take a write, run the core operation, make its record durable, and
//! only then answer. [`App::commit`] is the only code that hands a mutation to the journal, so
//! a new edge needs no durability code of its own, and an edge cannot acknowledge a change
//! before it is durable. Reads go straight to the core.

use std::sync::Arc;

use crate::audit::AuditReport;
use crate::checkpoint::{Durability, DurabilityStatus};
use crate::deadline::Deadline;
use crate::domain::{BatchOutcome, Node, NodeGroup, ServiceLevel, Source, SupplyBatch};
use crate::engine::{Engine, SafetyStockEntry, Stats};
use crate::error::Result;
use crate::metrics::{self, IngestMetrics};
use crate::mutation::Mutation;
use crate::promise::{Promise, PromiseRequest};
use crate::query::{Availability, AvailabilityQuery};
use crate::rejections::LoggedRejection;
use crate::reservation::ReserveRequest;
use crate::reserve::Held;
use crate::route::{BatchRouting, RouteRequest, Routed};

/// A postal code's (country, code) and its coordinates.
pub type PostalCode = ((String, String), (f64, f64));

/// The engine, where its changes become durable, and what ingest reports; cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    engine: Engine,
    durability: Durability,
    ingest: Arc<IngestMetrics>,
}

impl App {
    pub fn new(engine: Engine, durability: Durability) -> Self {
        Self {
            engine,
            durability,
            ingest: Arc::new(IngestMetrics::new()),
        }
    }

    /// The core handle, for reads and for the loops that observe it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// Makes a mutation durable and returns its answer: the only call into the journal. An
    /// error means the change was not acknowledged. Public for callers that ran a core
    /// operation themselves (tests that hold a mutation back on purpose); edges call the
    /// operations below.
    pub async fn commit<T>(&self, mutation: Mutation<T>) -> Result<T> {
        self.durability.commit(mutation).await
    }

    /// The write protocol: refuse while the store is down, run `operation`, commit.
    async fn write<T>(&self, operation: impl FnOnce(&Engine) -> Result<Mutation<T>>) -> Result<T> {
        self.durability.ensure_writable()?;
        let mutation = operation(&self.engine)?;
        self.commit(mutation).await
    }

    pub async fn upsert_nodes(&self, nodes: Vec<Node>) -> Result<()> {
        self.write(|engine| engine.upsert_nodes(nodes)).await
    }

    pub async fn upsert_groups(&self, groups: Vec<NodeGroup>) -> Result<()> {
        self.write(|engine| engine.upsert_groups(groups)).await
    }

    pub async fn upsert_sources(&self, sources: Vec<Source>) -> Result<()> {
        self.write(|engine| engine.upsert_sources(sources)).await
    }

    pub async fn upsert_service_levels(&self, levels: Vec<ServiceLevel>) -> Result<()> {
        self.write(|engine| engine.upsert_service_levels(levels))
            .await
    }

    pub async fn upsert_postal_codes(&self, codes: Vec<PostalCode>) -> Result<()> {
        self.write(|engine| engine.upsert_postal_codes(codes)).await
    }

    pub async fn set_safety_stock(&self, entries: &[SafetyStockEntry]) -> Result<()> {
        self.write(|engine| engine.set_safety_stock(entries)).await
    }

    /// Applies a feed's batch and answers once it is durable, with the source's durable
    /// sequence as of the answer; a heartbeat (no updates) needs no durable store.
    pub async fn apply_batch(&self, batch: &SupplyBatch) -> Result<BatchOutcome> {
        if !batch.updates.is_empty() {
            self.durability.ensure_writable()?;
        }
        let mutation = self.engine.apply_batch(batch)?;
        let mut outcome = self.commit(mutation).await?;
        self.ingest.batch(batch.updates.is_empty(), &outcome);
        // The commit may have confirmed later batches of the source too.
        outcome.durable_seq = self
            .engine
            .durable_seq(&batch.source_id)
            .unwrap_or(outcome.durable_seq);
        Ok(outcome)
    }

    pub async fn reserve(&self, request: &ReserveRequest) -> Result<Held> {
        self.write(|engine| engine.reserve(request)).await
    }

    pub async fn update_reservation(&self, request: &ReserveRequest) -> Result<Held> {
        self.write(|engine| engine.update_reservation(request))
            .await
    }

    pub async fn extend(&self, reservation_id: &str, ttl_secs: u64) -> Result<Held> {
        self.write(|engine| engine.extend(reservation_id, ttl_secs))
            .await
    }

    pub async fn release(&self, reservation_id: &str) -> Result<Held> {
        self.write(|engine| engine.release(reservation_id)).await
    }

    /// Turns a hold into an allocation for `order_id`.
    pub async fn commit_reservation(&self, reservation_id: &str, order_id: &str) -> Result<Held> {
        self.write(|engine| engine.commit(reservation_id, order_id))
            .await
    }

    /// A delivery promise; with `reserve`, the promised plan is held and durable first. Past
    /// `deadline` the work stops and nothing is held.
    pub async fn promise(
        &self,
        request: &PromiseRequest,
        deadline: &Deadline<'_>,
    ) -> Result<Promise> {
        if request.reserve.is_some() {
            self.durability.ensure_writable()?;
        }
        let mutation = self.engine.promise(request, deadline)?;
        self.commit(mutation).await
    }

    /// Routes an order; with `reserve` (reservation id, TTL), the chosen plan is held too.
    /// Past `deadline` the work stops and nothing is held.
    pub async fn route(
        &self,
        request: &RouteRequest,
        reserve: Option<(&str, u64)>,
        deadline: &Deadline<'_>,
    ) -> Result<Routed> {
        match reserve {
            None => Ok(Routed {
                routing: self.engine.route(request, deadline)?,
                reservation: None,
            }),
            Some((id, ttl_secs)) => {
                self.write(|engine| engine.route_and_reserve(request, id, ttl_secs, deadline))
                    .await
            }
        }
    }

    /// Routes a wave of orders together over shared stock, until `deadline`; holds nothing.
    pub fn route_batch(
        &self,
        requests: &[RouteRequest],
        deadline: &Deadline<'_>,
    ) -> Result<BatchRouting> {
        self.engine.route_batch(requests, deadline)
    }

    /// Checks every position against the live holds; with `repair`, fixes and journals drift.
    pub async fn check_invariants(&self, repair: bool) -> Result<AuditReport> {
        if repair {
            self.durability.ensure_writable()?;
        }
        let report = self.commit(self.engine.audit(repair)).await?;
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
    /// not a caller's request, so a journal failure is retried by the writer, not reported.
    pub async fn expire_once(&self) {
        for expired in self.engine.expire_due() {
            if let Err(error) = self.commit(expired).await {
                // Expiry already happened in memory; the journal writer keeps the record and
                // retries it.
                tracing::debug!(%error, "expiry not yet durable");
            }
        }
    }

    pub fn availability(&self, query: &AvailabilityQuery) -> Result<Availability> {
        self.engine.availability(query)
    }

    pub fn get_reservation(&self, reservation_id: &str) -> Result<Held> {
        self.engine.get_reservation(reservation_id)
    }

    /// Up to `limit` logged rejections, newest first, and how many were ever logged.
    pub fn rejections(&self, source_id: Option<&str>, limit: usize) -> (Vec<LoggedRejection>, u64) {
        self.engine.rejections(source_id, limit)
    }

    pub fn stats(&self) -> (Stats, DurabilityStatus) {
        (self.engine.stats(), self.durability.status())
    }
}
