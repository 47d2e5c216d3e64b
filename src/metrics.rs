//! Every metric the service exports is named here, described once, and recorded through handles
//! registered up front so hot paths only touch atomics. No SKU, order or node ids as labels:
//! label values come from small fixed sets (RPC methods, outcomes, reasons) or from the
//! operator-configured list of sources.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_stream::{Stream, StreamExt};

use crate::domain::{BatchOutcome, RejectReason, Rejection};
use crate::engine::Stats;
use crate::sync::SyncOutcome;

pub const RPC_DURATION: &str = "promised_rpc_duration_seconds";
pub const INGEST_UPDATES: &str = "promised_ingest_updates_total";
pub const INGEST_BATCHES: &str = "promised_ingest_batches_total";
pub const SYNC_POSITIONS: &str = "promised_sync_positions_total";
pub const INGEST_APPLY_LAG: &str = "promised_ingest_apply_lag_seconds";
pub const SOURCE_UPDATES: &str = "promised_source_updates_applied_total";
pub const SOURCE_LAG: &str = "promised_source_apply_lag_seconds";
pub const SOURCE_AGE: &str = "promised_source_age_seconds";
pub const SOURCE_STALE: &str = "promised_source_stale";
pub const DEGRADED_NODES: &str = "promised_degraded_nodes";
pub const NODES: &str = "promised_nodes";
pub const SKUS: &str = "promised_skus";
pub const POSITIONS: &str = "promised_positions";
pub const RESIDENT_MEMORY: &str = "promised_process_resident_memory_bytes";
pub const DURABLE: &str = "promised_durability_enabled";
pub const RESERVATION_DRIFT: &str = "promised_reservation_drift";
pub const RESERVATIONS: &str = "promised_reservations";
pub const RESERVATIONS_EXPIRED: &str = "promised_reservations_expired_total";
pub const OVERSOLD_POSITIONS: &str = "promised_oversold_positions";
pub const JOURNAL_COMMIT: &str = "promised_journal_commit_seconds";
pub const JOURNAL_GROUP: &str = "promised_journal_group_records";
pub const JOURNAL_RECORDS: &str = "promised_journal_records_total";
pub const JOURNAL_TAKEN_BACK: &str = "promised_journal_taken_back_total";
pub const REDIS_UP: &str = "promised_redis_up";
pub const SNAPSHOT_SECONDS: &str = "promised_snapshot_duration_seconds";
pub const SNAPSHOT_BYTES: &str = "promised_snapshot_bytes";
pub const SNAPSHOT_GENERATION: &str = "promised_snapshot_generation";
pub const SNAPSHOT_TIMESTAMP: &str = "promised_snapshot_timestamp_seconds";
pub const RECOVERY_SECONDS: &str = "promised_recovery_duration_seconds";
pub const RECOVERY_POSITIONS: &str = "promised_recovery_positions";
pub const RECOVERY_REPLAYED: &str = "promised_recovery_journal_entries";
pub const FEED_MESSAGES: &str = "promised_feed_messages_total";
pub const FEED_DEAD_LETTERS: &str = "promised_feed_dead_letters_total";
pub const FEED_LAG: &str = "promised_feed_lag_messages";
pub const FEED_POSITION: &str = "promised_feed_position";
pub const SINK_DELIVERIES: &str = "promised_sink_deliveries_total";
pub const SINK_RETRIES: &str = "promised_sink_retries_total";
pub const SINK_DEAD_LETTERS: &str = "promised_sink_dead_letters_total";
pub const SINK_LAG: &str = "promised_sink_lag_seconds";
pub const CONNECTION_RESTS: &str = "promised_connection_rests_total";

/// Latency buckets from 5 µs to 2.5 s: server time of a read is a few microseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Lag buckets from 10 ms to 1 hour.
const LAG_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Records per journal round trip.
const GROUP_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// Handles created before this are no-ops, so build the engine after it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    // A mutex rather than a `OnceLock` because installing can fail and must happen once even
    // when several services start in one process (as in tests).
    static HANDLE: std::sync::Mutex<Option<PrometheusHandle>> = std::sync::Mutex::new(None);
    let mut installed = HANDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(INGEST_APPLY_LAG.into()), LAG_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(JOURNAL_COMMIT.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(JOURNAL_GROUP.into()), GROUP_BUCKETS)?
        .install_recorder()?;
    keep_up(handle.clone(), UPKEEP_EVERY)?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// How often the recorder's histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the histograms' recorded samples into their buckets every `every`, on a thread of
/// its own for the life of the process. The recorder keeps each sample until then (or until a
/// scrape renders it): without this, a server nobody scrapes grows by every call it times.
fn keep_up(handle: PrometheusHandle, every: Duration) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            handle.run_upkeep();
        })?;
    Ok(())
}

/// Which kind of metric a description is for: the exporter declares each name's type from it.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Help text and unit of the metrics that have them, one row each, in one place.
const DESCRIPTIONS: &[(Kind, &str, Option<Unit>, &str)] = &[
    (
        Kind::Gauge,
        RESERVATIONS,
        None,
        "Reservations by state: held and committed are live; ended (released, expired, shipped) are remembered until their retention passes.",
    ),
    (
        Kind::Counter,
        RESERVATIONS_EXPIRED,
        None,
        "Holds expired at their TTL (made durable).",
    ),
    (
        Kind::Histogram,
        RPC_DURATION,
        Some(Unit::Seconds),
        "Server time per RPC (per batch for streams), by method.",
    ),
    (
        Kind::Counter,
        INGEST_UPDATES,
        None,
        "Supply updates by outcome (applied, stale, rejected) and rejection reason.",
    ),
    (
        Kind::Counter,
        INGEST_BATCHES,
        None,
        "Supply batches by outcome (applied, duplicate, heartbeat).",
    ),
    (
        Kind::Counter,
        SYNC_POSITIONS,
        None,
        "Positions of committed full syncs by outcome (set, zeroed, unchanged).",
    ),
    (
        Kind::Histogram,
        INGEST_APPLY_LAG,
        Some(Unit::Seconds),
        "Time from the newest as_of of a batch's SETs to its application.",
    ),
    (
        Kind::Gauge,
        SOURCE_AGE,
        Some(Unit::Seconds),
        "Seconds since each source was last heard from.",
    ),
    (
        Kind::Gauge,
        SOURCE_STALE,
        None,
        "1 while a source is stale beyond its limit.",
    ),
    (
        Kind::Gauge,
        DEGRADED_NODES,
        None,
        "Nodes degraded because a feed owning supply there is stale.",
    ),
    (Kind::Gauge, NODES, None, "Nodes in the network."),
    (Kind::Gauge, SKUS, None, "SKUs with at least one position."),
    (
        Kind::Gauge,
        POSITIONS,
        None,
        "(SKU, node) positions held in memory.",
    ),
    (
        Kind::Gauge,
        RESIDENT_MEMORY,
        Some(Unit::Bytes),
        "Resident set size of the process.",
    ),
    (
        Kind::Gauge,
        DURABLE,
        None,
        "1 when acknowledged mutations are persisted, 0 when in memory only.",
    ),
    (
        Kind::Gauge,
        SNAPSHOT_TIMESTAMP,
        Some(Unit::Seconds),
        "Unix time at which the last snapshot was written.",
    ),
    (
        Kind::Counter,
        SOURCE_UPDATES,
        None,
        "Supply updates applied, by source.",
    ),
    (
        Kind::Gauge,
        SOURCE_LAG,
        Some(Unit::Seconds),
        "Apply lag of each source's latest batch with SETs.",
    ),
    (
        Kind::Counter,
        FEED_MESSAGES,
        None,
        "Broker feed messages by source and outcome (applied, duplicate, retried).",
    ),
    (
        Kind::Counter,
        FEED_DEAD_LETTERS,
        None,
        "Broker feed messages dead-lettered, by source and reason.",
    ),
    (
        Kind::Gauge,
        FEED_LAG,
        None,
        "Messages in a broker feed's stream not yet delivered to its consumer, by source.",
    ),
    (
        Kind::Gauge,
        FEED_POSITION,
        None,
        "Stream sequence of the last broker message each source's feed handled.",
    ),
    (
        Kind::Counter,
        SINK_DELIVERIES,
        None,
        "Event deliveries of each outbound sink, by outcome (delivered, failed, dead_letter).",
    ),
    (
        Kind::Counter,
        SINK_RETRIES,
        None,
        "Deliveries an outbound sink retried after a failure.",
    ),
    (
        Kind::Counter,
        SINK_DEAD_LETTERS,
        None,
        "Events an outbound sink gave up on and kept as dead letters.",
    ),
    (
        Kind::Gauge,
        SINK_LAG,
        Some(Unit::Seconds),
        "Time from the change to its delivery, of each sink's latest delivered event.",
    ),
    (
        Kind::Counter,
        CONNECTION_RESTS,
        None,
        "Times a connection that had spent its allowance of refused calls was left unread until it earned one back.",
    ),
];

/// Hands every row of [`DESCRIPTIONS`] to the recorder, as the `describe_*!` macros would.
fn describe() {
    metrics::with_recorder(|recorder| {
        for &(kind, name, unit, help) in DESCRIPTIONS {
            let (key, help) = (name.into(), help.into());
            match kind {
                Kind::Counter => recorder.describe_counter(key, unit, help),
                Kind::Gauge => recorder.describe_gauge(key, unit, help),
                Kind::Histogram => recorder.describe_histogram(key, unit, help),
            }
        }
    });
}

/// The RPCs whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    UpsertNodes,
    UpsertGroups,
    UpsertSources,
    UpsertServiceLevels,
    UpsertItems,
    UpsertPostalCodes,
    UpsertMappings,
    SetSafetyStock,
    GetStats,
    StreamUpdates,
    ApplyBatch,
    ListRejections,
    GetAvailability,
    Explain,
    Reserve,
    UpdateReservation,
    Extend,
    Release,
    GetReservation,
    Commit,
    CheckInvariants,
    ListAudit,
    GetPositionHistory,
    PromiseOrder,
    RouteOrder,
    RouteOrders,
    BeginSync,
    SyncPart,
    CommitSync,
    ListDeadLetters,
    DeleteDeadLetters,
}

impl Rpc {
    const ALL: [Rpc; 31] = [
        Self::UpsertNodes,
        Self::UpsertGroups,
        Self::UpsertSources,
        Self::UpsertServiceLevels,
        Self::UpsertItems,
        Self::UpsertPostalCodes,
        Self::UpsertMappings,
        Self::SetSafetyStock,
        Self::GetStats,
        Self::StreamUpdates,
        Self::ApplyBatch,
        Self::ListRejections,
        Self::GetAvailability,
        Self::Explain,
        Self::Reserve,
        Self::UpdateReservation,
        Self::Extend,
        Self::Release,
        Self::GetReservation,
        Self::Commit,
        Self::CheckInvariants,
        Self::ListAudit,
        Self::GetPositionHistory,
        Self::PromiseOrder,
        Self::RouteOrder,
        Self::RouteOrders,
        Self::BeginSync,
        Self::SyncPart,
        Self::CommitSync,
        Self::ListDeadLetters,
        Self::DeleteDeadLetters,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::UpsertNodes => "UpsertNodes",
            Self::UpsertGroups => "UpsertGroups",
            Self::UpsertSources => "UpsertSources",
            Self::UpsertServiceLevels => "UpsertServiceLevels",
            Self::UpsertItems => "UpsertItems",
            Self::UpsertPostalCodes => "UpsertPostalCodes",
            Self::UpsertMappings => "UpsertMappings",
            Self::SetSafetyStock => "SetSafetyStock",
            Self::GetStats => "GetStats",
            Self::StreamUpdates => "StreamUpdates",
            Self::ApplyBatch => "ApplyBatch",
            Self::ListRejections => "ListRejections",
            Self::GetAvailability => "GetAvailability",
            Self::Explain => "Explain",
            Self::Reserve => "Reserve",
            Self::UpdateReservation => "UpdateReservation",
            Self::Extend => "Extend",
            Self::Release => "Release",
            Self::GetReservation => "GetReservation",
            Self::Commit => "Commit",
            Self::CheckInvariants => "CheckInvariants",
            Self::ListAudit => "ListAudit",
            Self::GetPositionHistory => "GetPositionHistory",
            Self::PromiseOrder => "PromiseOrder",
            Self::RouteOrder => "RouteOrder",
            Self::RouteOrders => "RouteOrders",
            Self::BeginSync => "BeginSync",
            Self::SyncPart => "SyncPart",
            Self::CommitSync => "CommitSync",
            Self::ListDeadLetters => "ListDeadLetters",
            Self::DeleteDeadLetters => "DeleteDeadLetters",
        }
    }
}

/// Per-method latency histograms.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    durations: Vec<Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        let durations = Rpc::ALL
            .iter()
            .map(|rpc| histogram!(RPC_DURATION, "method" => rpc.name()))
            .collect();
        Self { durations }
    }
}

impl RpcMetrics {
    /// Records the time until the returned guard is dropped.
    pub fn time(&self, rpc: Rpc) -> RpcTimer<'_> {
        RpcTimer {
            histogram: &self.durations[rpc as usize],
            started: Instant::now(),
        }
    }
}

pub struct RpcTimer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl Drop for RpcTimer<'_> {
    fn drop(&mut self) {
        self.histogram.record(self.started.elapsed().as_secs_f64());
    }
}

/// One broker feed's counters and gauges, labelled by its source.
#[derive(Debug, Clone)]
pub struct FeedMetrics {
    source: String,
    applied: Counter,
    duplicate: Counter,
    retried: Counter,
    lag: metrics::Gauge,
    position: metrics::Gauge,
}

impl FeedMetrics {
    pub fn new(source: &str) -> Self {
        let outcome = |outcome: &'static str| counter!(FEED_MESSAGES, "source" => source.to_owned(), "outcome" => outcome);
        Self {
            source: source.to_owned(),
            applied: outcome("applied"),
            duplicate: outcome("duplicate"),
            retried: outcome("retried"),
            lag: gauge!(FEED_LAG, "source" => source.to_owned()),
            position: gauge!(FEED_POSITION, "source" => source.to_owned()),
        }
    }

    /// A message handled (applied, a duplicate, or dead-lettered) at stream sequence
    /// `stream_seq`, with `pending` messages behind it.
    pub fn handled(&self, stream_seq: u64, pending: u64) {
        self.position.set(stream_seq as f64);
        self.lag.set(pending as f64);
    }

    pub fn applied(&self, duplicate: bool) {
        if duplicate {
            self.duplicate.increment(1);
        } else {
            self.applied.increment(1);
        }
    }

    /// A message left for later after a transient failure.
    pub fn retried(&self) {
        self.retried.increment(1);
    }

    /// A message dead-lettered for `reason` (one of a small fixed set); rare, so its handle is
    /// looked up when needed.
    pub fn dead_lettered(&self, reason: &'static str) {
        counter!(FEED_DEAD_LETTERS, "source" => self.source.clone(), "reason" => reason)
            .increment(1);
    }
}

/// Ingest counters.
#[derive(Debug)]
pub struct IngestMetrics {
    applied: Counter,
    stale: Counter,
    /// Indexed like [`RejectReason::ALL`].
    rejected: Vec<Counter>,
    batches_applied: Counter,
    batches_duplicate: Counter,
    heartbeats: Counter,
    apply_lag: Histogram,
    /// Committed syncs' positions: set, zeroed, unchanged.
    synced: [Counter; 3],
    /// Per-source handles, made when a source's first batch is answered (sources are the
    /// operator's small configured set), then only read.
    sources: std::sync::RwLock<std::collections::HashMap<String, SourceIngest>>,
}

/// One source's applied updates and the apply lag of its latest batch with SETs.
#[derive(Debug, Clone)]
struct SourceIngest {
    applied: Counter,
    lag: metrics::Gauge,
}

impl IngestMetrics {
    pub fn new() -> Self {
        let rejected = RejectReason::ALL
            .iter()
            .map(|r| counter!(INGEST_UPDATES, "outcome" => "rejected", "reason" => r.as_str()))
            .collect();
        Self {
            applied: counter!(INGEST_UPDATES, "outcome" => "applied"),
            stale: counter!(INGEST_UPDATES, "outcome" => "stale"),
            rejected,
            batches_applied: counter!(INGEST_BATCHES, "outcome" => "applied"),
            batches_duplicate: counter!(INGEST_BATCHES, "outcome" => "duplicate"),
            heartbeats: counter!(INGEST_BATCHES, "outcome" => "heartbeat"),
            apply_lag: histogram!(INGEST_APPLY_LAG),
            synced: ["set", "zeroed", "unchanged"]
                .map(|outcome| counter!(SYNC_POSITIONS, "outcome" => outcome)),
            sources: Default::default(),
        }
    }

    fn source(&self, source_id: &str) -> SourceIngest {
        let known = self.sources.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = known.get(source_id) {
            return handles.clone();
        }
        drop(known);
        let mut known = self.sources.write().unwrap_or_else(PoisonError::into_inner);
        let id = source_id.to_owned();
        let handles = known.entry(id.clone()).or_insert_with(|| SourceIngest {
            applied: counter!(SOURCE_UPDATES, "source" => id.clone()),
            lag: gauge!(SOURCE_LAG, "source" => id),
        });
        handles.clone()
    }

    /// Counts an answered batch: a heartbeat (no updates), a duplicate, or an applied one.
    pub fn batch(&self, heartbeat: bool, outcome: &BatchOutcome) {
        if heartbeat {
            self.heartbeats.increment(1);
            return;
        }
        if outcome.duplicate {
            self.batches_duplicate.increment(1);
            return;
        }
        self.batches_applied.increment(1);
        self.applied.increment(u64::from(outcome.applied));
        let source = self.source(&outcome.source_id);
        source.applied.increment(u64::from(outcome.applied));
        self.stale.increment(u64::from(outcome.stale));
        self.rejected(&outcome.rejections);
        if let Some(lag_ms) = outcome.lag_ms {
            let lag = lag_ms.max(0) as f64 / 1000.0;
            self.apply_lag.record(lag);
            source.lag.set(lag);
        }
    }

    /// Counts rejected updates (of a batch or of a sync's part) by reason.
    pub fn rejected(&self, rejections: &[Rejection]) {
        for rejection in rejections {
            let at = RejectReason::ALL
                .iter()
                .position(|r| *r == rejection.reason)
                .unwrap_or_default();
            self.rejected[at].increment(1);
        }
    }

    /// Counts a committed sync's positions; a duplicate commit counts nothing again.
    pub fn synced(&self, outcome: &SyncOutcome) {
        if outcome.duplicate {
            return;
        }
        let [set, zeroed, unchanged] = &self.synced;
        set.increment(outcome.set);
        zeroed.increment(outcome.zeroed);
        unchanged.increment(outcome.unchanged);
    }
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Journal writer metrics.
#[derive(Debug, Clone)]
pub struct JournalMetrics {
    commit: Histogram,
    group: Histogram,
    records: Counter,
    taken_back: Counter,
    up: metrics::Gauge,
}

impl JournalMetrics {
    pub fn new() -> Self {
        Self {
            commit: histogram!(JOURNAL_COMMIT),
            group: histogram!(JOURNAL_GROUP),
            records: counter!(JOURNAL_RECORDS),
            taken_back: counter!(JOURNAL_TAKEN_BACK),
            up: gauge!(REDIS_UP),
        }
    }

    pub fn committed(&self, records: usize, took: std::time::Duration) {
        self.commit.record(took.as_secs_f64());
        self.group.record(records as f64);
        self.records.increment(records as u64);
    }

    /// Mutations undone because the journal did not take them.
    pub fn taken_back(&self, records: usize) {
        self.taken_back.increment(records as u64);
    }

    pub fn redis_up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }
}

impl Default for JournalMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Records a finished snapshot, written at `now_ms` (Unix milliseconds): the timestamp lets an
/// alert on `time() - promised_snapshot_timestamp_seconds` see snapshots that stopped.
pub fn snapshot_written(generation: u64, bytes: u64, took: std::time::Duration, now_ms: i64) {
    gauge!(SNAPSHOT_TIMESTAMP).set(now_ms as f64 / 1000.0);
    gauge!(SNAPSHOT_SECONDS).set(took.as_secs_f64());
    gauge!(SNAPSHOT_BYTES).set(bytes as f64);
    gauge!(SNAPSHOT_GENERATION).set(generation as f64);
}

/// Records an invariant audit.
pub fn audited(drift: u64, oversold: u64) {
    gauge!(RESERVATION_DRIFT).set(drift as f64);
    gauge!(OVERSOLD_POSITIONS).set(oversold as f64);
}

/// Records what the last start recovered.
pub fn recovered(positions: u64, journal_entries: u64, took: std::time::Duration) {
    gauge!(RECOVERY_SECONDS).set(took.as_secs_f64());
    gauge!(RECOVERY_POSITIONS).set(positions as f64);
    gauge!(RECOVERY_REPLAYED).set(journal_entries as f64);
}

/// Sets the state gauges from a stats reading; called periodically.
pub fn observe(stats: &Stats) {
    gauge!(NODES).set(stats.nodes as f64);
    gauge!(SKUS).set(stats.skus as f64);
    gauge!(POSITIONS).set(stats.positions as f64);
    gauge!(DEGRADED_NODES).set(stats.degraded_nodes as f64);
    gauge!(DURABLE).set(if stats.durability == "memory" {
        0.0
    } else {
        1.0
    });
    gauge!(RESERVATIONS, "state" => "held").set(stats.held_reservations as f64);
    gauge!(RESERVATIONS, "state" => "committed").set(stats.committed_reservations as f64);
    gauge!(RESERVATIONS, "state" => "ended").set(stats.ended_reservations as f64);
    for source in &stats.source_stats {
        let id = source.source_id.clone();
        gauge!(SOURCE_AGE, "source" => id.clone()).set(source.age_ms as f64 / 1000.0);
        gauge!(SOURCE_STALE, "source" => id).set(if source.stale { 1.0 } else { 0.0 });
    }
    if let Some(bytes) = resident_memory_bytes() {
        gauge!(RESIDENT_MEMORY).set(bytes as f64);
    }
}

/// The metrics of one outbound sink (its name is the label: sinks are few, from config),
/// registered when it starts.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    delivered: Counter,
    failed: Counter,
    dead: Counter,
    retries: Counter,
    dead_letters: Counter,
    lag: Gauge,
}

impl SinkMetrics {
    pub fn new(sink: &str) -> Self {
        let outcome = |outcome: &'static str| counter!(SINK_DELIVERIES, "sink" => sink.to_owned(), "outcome" => outcome);
        Self {
            delivered: outcome("delivered"),
            failed: outcome("failed"),
            dead: outcome("dead_letter"),
            retries: counter!(SINK_RETRIES, "sink" => sink.to_owned()),
            dead_letters: counter!(SINK_DEAD_LETTERS, "sink" => sink.to_owned()),
            lag: gauge!(SINK_LAG, "sink" => sink.to_owned()),
        }
    }

    pub fn delivered(&self) {
        self.delivered.increment(1);
    }

    /// The sink is through a change made `lag_ms` ago.
    pub fn lag(&self, lag_ms: i64) {
        self.lag.set(lag_ms.max(0) as f64 / 1000.0);
    }

    /// An attempt that failed, to be retried.
    pub fn retried(&self) {
        self.failed.increment(1);
        self.retries.increment(1);
    }

    /// An attempt that failed, the event's last.
    pub fn dead_lettered(&self) {
        self.dead.increment(1);
        self.dead_letters.increment(1);
    }
}

/// A connection starts a rest, having spent its allowance of refused calls.
pub fn connection_rested() {
    counter!(CONNECTION_RESTS).increment(1);
}

/// Counts holds one expiry sweep expired and made durable (a sweep of none registers the
/// counter, so it is exported from the first sweep on).
pub fn expired(holds: usize) {
    counter!(RESERVATIONS_EXPIRED).increment(holds as u64);
}

/// Resident set size from `/proc/self/statm` (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Serves the text exposition at `GET /metrics` (any path, in fact) on the admitted
/// connections (plaintext or TLS) until `shutdown` resolves. A minimal HTTP/1.1 responder:
/// one request per connection, then close.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    connections: impl Stream<Item = std::io::Result<S>>,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    tokio::pin!(connections);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            admitted = connections.next() => match admitted {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::warn!(%error, "metrics listener accept failed");
                    continue;
                }
                None => return,
            },
        };
        tokio::spawn(respond(stream, handle.clone()));
    }
}

/// Answers one scrape on its own task, so a slow scraper never holds up the next one.
async fn respond(mut stream: impl AsyncRead + AsyncWrite + Unpin, handle: PrometheusHandle) {
    // The request itself is not needed; read what has arrived so the peer sees a reply
    // to a complete request.
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request).await;
    let body = handle.render();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_exports_when_it_was_written() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            snapshot_written(
                7,
                4096,
                std::time::Duration::from_millis(250),
                1_772_463_600_500,
            );
        });
        let body = handle.render();
        assert!(
            body.contains("promised_snapshot_timestamp_seconds 1772463600.5"),
            "{body}"
        );
        assert!(body.contains("promised_snapshot_generation 7"), "{body}");
    }

    #[test]
    fn live_reservations_and_expired_holds_are_exported() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let stats = Stats {
                held_reservations: 3,
                committed_reservations: 2,
                ended_reservations: 5,
                ..Stats::default()
            };
            observe(&stats);
            expired(4);
            expired(0);
        });
        let body = handle.render();
        for expected in [
            "promised_reservations{state=\"held\"} 3",
            "promised_reservations{state=\"committed\"} 2",
            "promised_reservations{state=\"ended\"} 5",
            "promised_reservations_expired_total 4",
        ] {
            assert!(body.contains(expected), "{expected} missing from\n{body}");
        }
    }

    #[test]
    fn ingest_is_counted_per_source_too() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let ingest = IngestMetrics::new();
            for (source_id, applied, lag_ms) in [("WMS", 3, 1500), ("POS", 2, 250), ("WMS", 4, 500)]
            {
                let outcome = BatchOutcome {
                    source_id: source_id.into(),
                    applied,
                    lag_ms: Some(lag_ms),
                    ..BatchOutcome::default()
                };
                ingest.batch(false, &outcome);
            }
        });
        let body = handle.render();
        for expected in [
            "promised_source_updates_applied_total{source=\"WMS\"} 7",
            "promised_source_updates_applied_total{source=\"POS\"} 2",
            "promised_source_apply_lag_seconds{source=\"WMS\"} 0.5",
            "promised_source_apply_lag_seconds{source=\"POS\"} 0.25",
        ] {
            assert!(body.contains(expected), "{expected} missing from\n{body}");
        }
    }
}
