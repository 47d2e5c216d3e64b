//! Durability through Redis: the only module that talks to Redis.
//!
//! Every mutation's record is group-committed to a journal (a Redis stream) before the caller
//! is acknowledged (`journal`); the whole state is snapshotted periodically in chunks under a
//! generation without stopping queries or ingest ([`snapshot`]); at start the newest complete
//! generation is loaded and the journal replayed on top, each effect exactly once
//! (`recovery`). The outbound sinks keep their cursors and dead letters here too ([`outbox`]).
//! Keys share one hash tag, `{prefix}`, so an instance's keys live in one Redis
//! Cluster slot.

mod access;
mod journal;
pub mod outbox;
mod recovery;
pub mod snapshot;
pub mod tail;
pub mod trail;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::metrics;
use crate::mutation::Record;
pub use access::{RedisAccess, Secret};
pub use recovery::RecoveryReport;
pub use snapshot::SnapshotReport;

/// How often the snapshot loop checks its triggers.
const SNAPSHOT_CHECK: Duration = Duration::from_secs(1);

/// How the service uses Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// Namespace of every key; also the Redis Cluster hash tag.
    pub prefix: String,
    /// A mutation not confirmed durable within this fails with UNAVAILABLE.
    pub timeout: Duration,
    /// A snapshot is taken at least this often...
    pub snapshot_interval: Duration,
    /// ...and as soon as this many position images were journaled since the last one.
    pub snapshot_after_effects: u64,
    /// How long the journal keeps entries for the audit trail after a snapshot covers them.
    pub audit_retention: Duration,
    /// Share of one core a snapshot's shard copy may use, in percent (100: unpaced).
    pub snapshot_copy_percent: u32,
    /// ACL credentials and the TLS CA.
    pub access: RedisAccess,
}

/// The keys of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub journal: String,
    pub manifest: String,
    pub previous_manifest: String,
    pub generation: String,
    tag: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        let tag = format!("{{{prefix}}}");
        Self {
            journal: format!("{tag}:journal"),
            manifest: format!("{tag}:manifest"),
            previous_manifest: format!("{tag}:manifest:previous"),
            generation: format!("{tag}:generation"),
            tag,
        }
    }

    pub fn chunk(&self, generation: u64, chunk: usize) -> String {
        format!("{}:snapshot:{generation}:{chunk}", self.tag)
    }

    pub fn reservation_chunk(&self, generation: u64, chunk: usize) -> String {
        format!("{}:snapshot:{generation}:reservations:{chunk}", self.tag)
    }
}

/// Durability state for `GetStats` and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurabilityStatus {
    /// "memory" or "redis".
    pub mode: &'static str,
    pub redis_up: bool,
    /// What a crash of Redis itself could lose, from its own persistence settings.
    pub redis_persistence: String,
    pub snapshot_generation: u64,
    pub recovery: RecoveryReport,
}

/// The Redis-backed store of one engine.
pub struct Store {
    conn: ConnectionManager,
    /// The snapshots' own connection: a journal write does not queue on a socket behind a
    /// snapshot's chunks.
    snapshot_conn: ConnectionManager,
    keys: Keys,
    engine: Engine,
    config: RedisConfig,
    journal: journal::Handle,
    persistence: String,
    recovery: RecoveryReport,
    snapshot_generation: AtomicU64,
    /// One snapshot at a time.
    snapshotting: tokio::sync::Mutex<()>,
    last_snapshot_at: Mutex<Instant>,
}

impl Store {
    /// Connects, reports Redis's own persistence, recovers the engine and starts the journal
    /// writer. On a first start (nothing stored), writes an initial snapshot so the stored
    /// state always names its shard layout.
    pub async fn open(
        config: RedisConfig,
        engine_config: &EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Store>> {
        let (mut conn, persistence) = connect(&config).await?;
        let snapshot_conn = manager(&config).await?;
        let keys = Keys::new(&config.prefix);
        let (engine, recovery) = recovery::recover(&mut conn, &keys, engine_config, clock).await?;
        recovery.publish();
        // Asked before the writer starts, so nothing appends in between.
        let last = tail::end(&mut conn, &keys).await?;
        let journal = journal::start(
            conn.clone(),
            keys.clone(),
            engine.clone(),
            config.timeout,
            last,
        );
        let store = Arc::new(Store {
            conn,
            snapshot_conn,
            keys,
            engine,
            config,
            journal,
            persistence,
            snapshot_generation: AtomicU64::new(recovery.generation.unwrap_or(0)),
            recovery,
            snapshotting: tokio::sync::Mutex::new(()),
            last_snapshot_at: Mutex::new(Instant::now()),
        });
        if store.recovery.generation.is_none() {
            store
                .snapshot_once()
                .await
                .context("writing the initial snapshot")?;
        }
        Ok(store)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The namespace of the instance's keys, which also names the instance.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    pub fn is_up(&self) -> bool {
        *self.journal.up.borrow()
    }

    /// Changes of Redis reachability, for health reporting.
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        self.journal.up.clone()
    }

    /// Waits until `settled` holds, looking again after each journal round trip, for at most
    /// two round-trip timeouts: a record already queued is stored or taken back by then.
    async fn until(&self, settled: impl Fn() -> bool) {
        let mut trips = self.journal.round_trips.clone();
        let wait = async {
            loop {
                trips.borrow_and_update();
                if settled() || trips.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(self.config.timeout.saturating_mul(2), wait).await;
    }

    /// Refuses a mutation before it is applied while Redis is unreachable, or while mutations
    /// that were taken back are not yet superseded by a snapshot.
    fn ensure_writable(&self) -> Result<()> {
        if !self.is_up() {
            return Err(Error::Unavailable(
                "the durable store (Redis) is unreachable; mutations are refused until it is back"
                    .into(),
            ));
        }
        if self.journal.fenced.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "the durable store is recovering from an outage; mutations are refused until \
                 it has a snapshot"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Applies mutations and queues their records: `operation` runs and its records are
    /// queued in the journal's order; the answer is given by [`Queued::durable`] once Redis
    /// has them. If Redis does not take them, they are undone before the error is answered.
    async fn submit<R>(
        &self,
        operation: impl FnOnce() -> Result<(R, Vec<Record>)>,
    ) -> Result<Queued<R>> {
        // Room for one record is taken first, so a full queue slows callers down without
        // anyone waiting while holding the order.
        let first = self
            .journal
            .queue
            .reserve()
            .await
            .map_err(|_| not_applied("the journal is closed"))?;
        let _order = self.journal.order.lock().await;
        self.ensure_writable()?;
        let (answer, records) = operation()?;
        let mut permits = vec![first];
        while permits.len() < records.len() {
            match self.journal.queue.try_reserve() {
                Ok(permit) => permits.push(permit),
                Err(_) => {
                    // Still the newest changes, under the order: undone as if never made.
                    self.engine.undo(records);
                    return Err(not_applied("the journal queue is full"));
                }
            }
        }
        let waits = records
            .into_iter()
            .zip(permits)
            .map(|(record, permit)| {
                let (pending, told) = journal::Pending::new(record);
                permit.send(pending);
                told
            })
            .collect();
        Ok(Queued { answer, waits })
    }

    /// Lifts the fence after mutations were taken back, once Redis is reachable: a snapshot
    /// of the state after the undo supersedes every journal entry before it, including a
    /// taken-back write that reached Redis after its round trip timed out.
    async fn heal(&self) {
        if !self.journal.fenced.load(Ordering::SeqCst) || !self.is_up() {
            return;
        }
        match self.snapshot_once().await {
            Ok(_) => {
                self.journal.fenced.store(false, Ordering::SeqCst);
                tracing::info!("snapshot after the outage written; mutations accepted again");
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "snapshot after the outage failed; will retry"
                );
            }
        }
    }

    /// Writes a snapshot now (one at a time) and trims what it supersedes.
    pub async fn snapshot_once(&self) -> anyhow::Result<SnapshotReport> {
        let _one = self.snapshotting.lock().await;
        let started = Instant::now();
        let journaled_before = self.journal.since_snapshot.load(Ordering::Relaxed);
        let mut conn = self.snapshot_conn.clone();
        let now_ms = self.engine.now_ms();
        // Long enough for the journal to catch up with batches applied during the copy.
        let durable_within = self.config.timeout * 4;
        let retention = self.config.audit_retention;
        let report = snapshot::write(
            &mut conn,
            &self.keys,
            &self.engine,
            now_ms,
            durable_within,
            retention,
            snapshot::Pace::new(self.config.snapshot_copy_percent),
        )
        .await?;
        self.journal
            .since_snapshot
            .fetch_sub(journaled_before, Ordering::Relaxed);
        self.snapshot_generation
            .store(report.generation, Ordering::Relaxed);
        *self
            .last_snapshot_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        metrics::snapshot_written(report.generation, report.bytes, started.elapsed(), now_ms);
        tracing::info!(
            generation = report.generation,
            positions = report.positions,
            reservations = report.reservations,
            bytes = report.bytes,
            took = ?started.elapsed(),
            "snapshot written"
        );
        Ok(report)
    }

    /// Whether a snapshot is due: by time, or by journal growth.
    fn snapshot_due(&self) -> bool {
        let last = *self
            .last_snapshot_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.elapsed() >= self.config.snapshot_interval
            || self.journal.since_snapshot.load(Ordering::Relaxed)
                >= self.config.snapshot_after_effects
    }

    /// Takes snapshots when due until `stop`, and the one that ends a fence as soon as Redis
    /// is back.
    pub async fn snapshot_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(SNAPSHOT_CHECK);
        let mut up = self.watch_up();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
                _ = up.changed() => {}
            }
            self.heal().await;
            if self.snapshot_due() && self.is_up() {
                if let Err(error) = self.snapshot_once().await {
                    tracing::warn!(error = format!("{error:#}"), "snapshot failed; will retry");
                }
            }
        }
    }

    /// A page of the audit trail.
    pub async fn audit(&self, query: &trail::AuditQuery) -> Result<trail::AuditPage> {
        trail::page(&mut self.conn.clone(), &self.keys, query)
            .await
            .map_err(|error| journal_unreadable(&error))
    }

    /// The last `limit` changes of a position.
    pub async fn position_history(
        &self,
        sku: &str,
        node: crate::network::NodeIdx,
        limit: usize,
    ) -> Result<(Vec<trail::PositionChange>, usize)> {
        trail::position_history(&mut self.conn.clone(), &self.keys, sku, node, limit)
            .await
            .map_err(|error| journal_unreadable(&error))
    }

    pub fn status(&self) -> DurabilityStatus {
        DurabilityStatus {
            mode: "redis",
            redis_up: self.is_up(),
            redis_persistence: self.persistence.clone(),
            snapshot_generation: self.snapshot_generation.load(Ordering::Relaxed),
            recovery: self.recovery.clone(),
        }
    }
}

/// A journal read that failed: Redis is unreachable (or the entry is damaged, which is
/// logged).
fn journal_unreadable(error: &anyhow::Error) -> Error {
    tracing::warn!(
        error = format!("{error:#}"),
        "reading the audit trail failed"
    );
    Error::Unavailable("the journal could not be read; retry".into())
}

fn not_applied(why: &str) -> Error {
    Error::Unavailable(format!("not applied: {why}; retry"))
}

/// A change applied in memory whose records are queued for the journal; its answer is given
/// once they are durable.
#[derive(Debug)]
pub struct Queued<R> {
    answer: R,
    waits: Vec<oneshot::Receiver<Option<tail::EntryId>>>,
}

impl<R> Queued<R> {
    /// The answer, once every record is in Redis; an error if one was not taken, in which
    /// case the change was undone (for several independent mutations, such as an expiry sweep,
    /// those after a failed one are undone too).
    pub async fn durable(self) -> Result<R> {
        Ok(self.durable_at().await?.0)
    }

    /// [`Queued::durable`], with the entry id of its newest record (none when the change
    /// wrote nothing or there is no journal): the journal position that holds the change.
    pub async fn durable_at(self) -> Result<(R, Option<tail::EntryId>)> {
        let mut newest = None;
        for told in self.waits {
            match told.await {
                Ok(Some(id)) => newest = newest.max(Some(id)),
                _ => {
                    return Err(not_applied(
                        "Redis did not take the journal write, and the change was undone",
                    ))
                }
            }
        }
        Ok((self.answer, newest))
    }
}

/// Where acknowledged mutations live.
#[derive(Clone)]
pub enum Durability {
    /// Nowhere but memory: lost on restart.
    Memory,
    Redis(Arc<Store>),
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Memory => f.write_str("Durability::Memory"),
            Durability::Redis(store) => write!(f, "Durability::Redis({:?})", store.keys.tag),
        }
    }
}

impl Durability {
    /// Runs `operation`, which answers and returns the records of its changes, and makes them
    /// durable before the answer is given; an error means nothing changed. Called by the application service only (`app::App`), the
    /// one place that commits.
    pub(crate) async fn apply<R>(
        &self,
        operation: impl FnOnce() -> Result<(R, Vec<Record>)>,
    ) -> Result<R> {
        self.submit(operation).await?.durable().await
    }

    /// [`Durability::apply`] in two steps: applied and queued now, in order with everything
    /// applied before, and answered by [`Queued::durable`]; lets one caller pipeline changes
    /// that must keep their order (one feed's batches).
    pub(crate) async fn submit<R>(
        &self,
        operation: impl FnOnce() -> Result<(R, Vec<Record>)>,
    ) -> Result<Queued<R>> {
        match self {
            Durability::Memory => Ok(Queued {
                answer: operation()?.0,
                waits: Vec::new(),
            }),
            Durability::Redis(store) => store.submit(operation).await,
        }
    }

    /// Waits (a bounded time) until `settled` holds, which the journal makes true by storing
    /// or taking back records other callers queued; without a journal it already holds.
    pub(crate) async fn until(&self, settled: impl Fn() -> bool) {
        if let Durability::Redis(store) = self {
            store.until(settled).await;
        }
    }

    /// The journal position of the newest durable change; none without a journal.
    pub fn position(&self) -> Option<tail::EntryId> {
        match self {
            Durability::Memory => None,
            Durability::Redis(store) => Some(*store.journal.position.borrow()),
        }
    }

    /// Waits at most `within` until the journal's durable position is at or past `token`;
    /// answers where it is when the wait ends. Without a journal there is no position to
    /// reach.
    pub async fn reach(&self, token: tail::EntryId, within: Duration) -> Result<tail::EntryId> {
        let Durability::Redis(store) = self else {
            return Err(Error::FailedPrecondition(
                "consistency tokens are journal positions; this service runs in memory only \
                 (start it with --redis-url)"
                    .into(),
            ));
        };
        let mut position = store.journal.position.clone();
        let _ = tokio::time::timeout(within, position.wait_for(|at| *at >= token)).await;
        let at = *position.borrow();
        Ok(at)
    }

    /// A page of the audit trail, which lives in the journal.
    pub async fn audit(&self, query: &trail::AuditQuery) -> Result<trail::AuditPage> {
        match self {
            Durability::Memory => Err(no_trail()),
            Durability::Redis(store) => store.audit(query).await,
        }
    }

    /// The last `limit` changes of a position, from the journal.
    pub async fn position_history(
        &self,
        sku: &str,
        node: crate::network::NodeIdx,
        limit: usize,
    ) -> Result<(Vec<trail::PositionChange>, usize)> {
        match self {
            Durability::Memory => Err(no_trail()),
            Durability::Redis(store) => store.position_history(sku, node, limit).await,
        }
    }

    /// The feed of durable records, each decoded once with `decode` for every follower: what
    /// watchers follow. Events are of journaled changes, so there are none without a journal.
    pub fn feed<D: Clone + Send + Sync + 'static>(
        &self,
        decode: impl Fn(&[u8]) -> D + Send + Sync + 'static,
    ) -> Result<tail::Feed<D>> {
        match self {
            Durability::Memory => Err(Error::FailedPrecondition(
                "watching follows the journal; this service runs in memory only (start it \
                 with --redis-url)"
                    .into(),
            )),
            Durability::Redis(store) => Ok(tail::feed(
                store.conn.clone(),
                store.keys.clone(),
                &store.journal.published,
                decode,
            )),
        }
    }

    /// A page of an outbound sink's dead letters, and how many it holds.
    pub async fn dead_letters(
        &self,
        sink: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<outbox::DeadLetter>, u64)> {
        match self {
            Durability::Memory => Err(no_sinks()),
            Durability::Redis(store) => store.dead_letters(sink, after, limit).await,
        }
    }

    /// Deletes dead letters of an outbound sink; answers how many there were.
    pub async fn delete_dead_letters(&self, sink: &str, ids: &[String]) -> Result<u64> {
        match self {
            Durability::Memory => Err(no_sinks()),
            Durability::Redis(store) => store.delete_dead_letters(sink, ids).await,
        }
    }

    pub fn status(&self) -> DurabilityStatus {
        match self {
            Durability::Memory => DurabilityStatus {
                mode: "memory",
                redis_persistence: "none: state is in memory only and lost on restart".into(),
                ..DurabilityStatus::default()
            },
            Durability::Redis(store) => store.status(),
        }
    }
}

fn no_sinks() -> Error {
    Error::FailedPrecondition(
        "outbound sinks keep their cursors and dead letters in Redis; this service runs in \
         memory only (start it with --redis-url)"
            .into(),
    )
}

fn no_trail() -> Error {
    Error::FailedPrecondition(
        "the audit trail is kept in the journal; this service runs in memory only (start it \
         with --redis-url)"
            .into(),
    )
}

/// Connects and learns what a Redis crash could lose, which bounds what an acknowledgement means.
async fn connect(config: &RedisConfig) -> anyhow::Result<(ConnectionManager, String)> {
    let mut conn = manager(config).await?;
    let persistence = persistence_report(&mut conn).await;
    tracing::info!(persistence = %persistence, "Redis persistence");
    Ok((conn, persistence))
}

/// A connection to the configured Redis that reconnects when it breaks.
async fn manager(config: &RedisConfig) -> anyhow::Result<ConnectionManager> {
    let client = access::client(&config.url, &config.access)?;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout.max(Duration::from_secs(30))))
        .set_number_of_retries(2);
    client
        .get_connection_manager_with_config(manager)
        .await
        .with_context(|| format!("cannot reach Redis at {}", config.url))
}

/// Reads `appendonly`, `appendfsync` and `save` and says what a Redis crash could lose.
async fn persistence_report(conn: &mut ConnectionManager) -> String {
    let setting = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut conn)
                .await;
            reply.ok().and_then(|pair| pair.get(1).cloned())
        }
    };
    let (Some(appendonly), Some(appendfsync), Some(save)) = (
        setting("appendonly").await,
        setting("appendfsync").await,
        setting("save").await,
    ) else {
        return "unknown (CONFIG GET is not allowed): check the server's persistence settings"
            .into();
    };
    let loss = match (appendonly.as_str(), appendfsync.as_str()) {
        ("yes", "always") => "nothing acknowledged",
        ("yes", "everysec") => "up to about one second of acknowledged writes",
        ("yes", _) => "acknowledged writes the OS had not yet flushed (tens of seconds)",
        _ if save.trim().is_empty() => "everything: neither AOF nor RDB is enabled",
        _ => "acknowledged writes since the last RDB save",
    };
    format!("appendonly={appendonly} appendfsync={appendfsync} save={save:?}: a Redis crash would lose {loss}")
}
