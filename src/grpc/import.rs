//! Sends a supply CSV ([`crate::import`]) through the `Supply` API: as SET batches, or with
//! `full` as one full sync per supply type in the file (begin, parts, commit), so that what
//! the file leaves out becomes zero. The file is read on a blocking thread a few chunks ahead
//! of the calls, never whole. Row numbers in the answers' rejections become file lines.

use std::future::Future;
use std::io::Read;

use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tonic::Status;

use super::convert::{supply_type_pb, timestamp};
use super::pb;
use crate::domain::SupplyType;
use crate::import::{Chunk, CsvRows, FileError, Row, RowError};

/// Chunks read ahead of the calls: enough to overlap reading with a round trip.
const CHUNKS_AHEAD: usize = 2;
/// Rejected rows a summary lists; it counts them all.
pub const MAX_LISTED: usize = 1000;

/// The `Supply` calls an import makes: a gRPC client's, or an in-process adapter's.
pub trait SupplyCalls: Send {
    fn apply_batch(
        &mut self,
        batch: pb::SupplyBatch,
    ) -> impl Future<Output = Result<pb::SupplyAck, Status>> + Send;
    fn begin_sync(
        &mut self,
        begin: pb::BeginSyncRequest,
    ) -> impl Future<Output = Result<pb::BeginSyncResponse, Status>> + Send;
    fn sync_part(
        &mut self,
        part: pb::SyncPartRequest,
    ) -> impl Future<Output = Result<pb::SyncPartResponse, Status>> + Send;
    fn commit_sync(
        &mut self,
        commit: pb::CommitSyncRequest,
    ) -> impl Future<Output = Result<pb::SyncAck, Status>> + Send;
}

/// How to send a file.
#[derive(Debug, Clone)]
pub struct Options {
    pub source_id: String,
    /// A full sync per supply type instead of SET batches.
    pub full: bool,
    /// Commit a full sync even past the wipe guard.
    pub force: bool,
    /// Rows per batch or part, within the server's batch limit.
    pub rows_per_call: usize,
}

/// What one full sync of the file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCounts {
    pub supply_type: SupplyType,
    pub sync_id: String,
    pub set: u64,
    pub zeroed: u64,
    pub unchanged: u64,
}

/// What an import did, row by row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Data rows read.
    pub rows: u64,
    /// Rows applied (staged and committed, for a full sync).
    pub applied: u64,
    /// SETs older than the position's last one, ignored.
    pub stale: u64,
    /// Rows not applied, in the file or by the server.
    pub rejected: u64,
    /// The first [`MAX_LISTED`] rejected rows, in file order within each call.
    pub rejections: Vec<RowError>,
    pub syncs: Vec<SyncCounts>,
}

impl std::fmt::Display for Summary {
    /// One line of counts, a line per sync, then a line per listed rejection.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, applied, stale, rejected) = (self.rows, self.applied, self.stale, self.rejected);
        writeln!(
            f,
            "rows {rows}: applied {applied}, stale {stale}, rejected {rejected}"
        )?;
        for sync in &self.syncs {
            let SyncCounts {
                sync_id,
                set,
                zeroed,
                unchanged,
                ..
            } = sync;
            writeln!(
                f,
                "full sync {sync_id}: set {set}, zeroed {zeroed}, unchanged {unchanged}"
            )?;
        }
        for RowError {
            line,
            field,
            detail,
        } in &self.rejections
        {
            writeln!(f, "line {line}: {field}: {detail}")?;
        }
        let unlisted = self.rejected.saturating_sub(self.rejections.len() as u64);
        if unlisted > 0 {
            writeln!(f, "... and {unlisted} more rejected rows")?;
        }
        Ok(())
    }
}

/// Why an import stopped. A full sync that stops is not committed and changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("lines {first}-{last}: {} ({:?})", .status.message(), .status.code())]
    Refused {
        first: u64,
        last: u64,
        status: Status,
    },
}

/// Imports `input` through `calls`, advancing `progress` by the bytes read.
pub async fn run<R: Read + Send + 'static>(
    input: R,
    calls: &mut impl SupplyCalls,
    options: &Options,
    progress: &ProgressBar,
) -> Result<Summary, ImportError> {
    let mut chunks = read_ahead(input, options.rows_per_call.max(1));
    let mut sender = Sender::new(calls, options).await?;
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        progress.set_position(chunk.bytes_read);
        sender.summary.rows += (chunk.rows.len() + chunk.errors.len()) as u64;
        sender.reject_all(chunk.errors);
        sender.send(chunk.rows).await?;
    }
    sender.commit().await?;
    progress.finish();
    Ok(sender.summary)
}

/// Reads the file on a blocking thread, a few chunks ahead; a refused header is the first
/// and only message.
fn read_ahead<R: Read + Send + 'static>(
    input: R,
    rows_per_chunk: usize,
) -> mpsc::Receiver<Result<Chunk, FileError>> {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut rows = match CsvRows::new(input) {
            Ok(rows) => rows,
            Err(error) => return drop(tx.blocking_send(Err(error))),
        };
        loop {
            let next = rows.next_chunk(rows_per_chunk).transpose();
            let Some(next) = next else { return };
            let failed = next.is_err();
            // A closed channel means the import stopped: stop reading.
            if tx.blocking_send(next).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// An open full sync of one supply type.
struct OpenSync {
    supply_type: SupplyType,
    sync_id: String,
    as_of_ms: i64,
}

struct Sender<'a, C> {
    calls: &'a mut C,
    options: &'a Options,
    /// The next SET batch's sequence.
    next_seq: u64,
    syncs: Vec<OpenSync>,
    summary: Summary,
}

impl<'a, C: SupplyCalls> Sender<'a, C> {
    /// SET batches continue the source's sequence, which a heartbeat answers.
    async fn new(calls: &'a mut C, options: &'a Options) -> Result<Self, ImportError> {
        let mut next_seq = 0;
        if !options.full {
            let heartbeat = pb::SupplyBatch {
                source_id: options.source_id.clone(),
                ..Default::default()
            };
            let ack = calls
                .apply_batch(heartbeat)
                .await
                .map_err(|status| refused(&[], status))?;
            next_seq = ack.durable_seq + 1;
        }
        Ok(Self {
            calls,
            options,
            next_seq,
            syncs: Vec::new(),
            summary: Summary::default(),
        })
    }

    fn reject_all(&mut self, errors: Vec<RowError>) {
        self.summary.rejected += errors.len() as u64;
        let room = MAX_LISTED.saturating_sub(self.summary.rejections.len());
        self.summary
            .rejections
            .extend(errors.into_iter().take(room));
    }

    /// The server's rejections of `rows`, by file line.
    fn reject_sent(&mut self, rows: &[Row], rejections: &[pb::Rejection]) {
        let errors = rejections.iter().map(|rejection| RowError {
            line: rows.get(rejection.index as usize).map_or(0, |row| row.line),
            field: reason_name(rejection.reason),
            detail: rejection.detail.clone(),
        });
        self.reject_all(errors.collect());
    }

    async fn send(&mut self, rows: Vec<Row>) -> Result<(), ImportError> {
        if rows.is_empty() {
            return Ok(());
        }
        if !self.options.full {
            return self.set_batch(rows).await;
        }
        for supply_type in SupplyType::ALL {
            let of_type: Vec<Row> = rows
                .iter()
                .filter(|row| row.update.supply_type == Some(supply_type))
                .cloned()
                .collect();
            if !of_type.is_empty() {
                self.stage(supply_type, of_type).await?;
            }
        }
        Ok(())
    }

    async fn set_batch(&mut self, rows: Vec<Row>) -> Result<(), ImportError> {
        let batch = pb::SupplyBatch {
            source_id: self.options.source_id.clone(),
            seq: self.next_seq,
            updates: rows.iter().map(update_pb).collect(),
        };
        let ack = self
            .calls
            .apply_batch(batch)
            .await
            .map_err(|status| refused(&rows, status))?;
        if ack.duplicate {
            let status = Status::failed_precondition(format!(
                "sequence {} of the source was already applied: another feed is sending",
                self.next_seq
            ));
            return Err(refused(&rows, status));
        }
        self.next_seq += 1;
        self.summary.applied += u64::from(ack.applied);
        self.summary.stale += u64::from(ack.stale);
        self.reject_sent(&rows, &ack.rejections);
        Ok(())
    }

    /// Stages rows of one supply type in its sync, opening it at its first row, whose as-of
    /// becomes the sync's.
    async fn stage(&mut self, supply_type: SupplyType, rows: Vec<Row>) -> Result<(), ImportError> {
        let as_of_ms = match self.syncs.iter().find(|s| s.supply_type == supply_type) {
            Some(open) => open.as_of_ms,
            None => self.open(supply_type, &rows).await?,
        };
        let (rows, other_times): (Vec<Row>, Vec<Row>) =
            rows.into_iter().partition(|row| row.as_of_ms == as_of_ms);
        let mismatched = other_times.iter().map(|row| RowError {
            line: row.line,
            field: "as of".into(),
            detail: format!(
                "a full sync has one as-of per supply type: {as_of_ms} ms (its first row's)"
            ),
        });
        self.reject_all(mismatched.collect());
        let sync_id = sync_id(supply_type, as_of_ms);
        let part = pb::SyncPartRequest {
            source_id: self.options.source_id.clone(),
            sync_id,
            positions: rows.iter().map(position_pb).collect(),
        };
        let staged = self
            .calls
            .sync_part(part)
            .await
            .map_err(|status| refused(&rows, status))?;
        self.summary.applied += u64::from(staged.staged);
        self.reject_sent(&rows, &staged.rejections);
        Ok(())
    }

    async fn open(&mut self, supply_type: SupplyType, rows: &[Row]) -> Result<i64, ImportError> {
        let as_of_ms = rows.first().map_or(0, |row| row.as_of_ms);
        let sync_id = sync_id(supply_type, as_of_ms);
        let begin = pb::BeginSyncRequest {
            source_id: self.options.source_id.clone(),
            sync_id: sync_id.clone(),
            supply_type: supply_type_pb(supply_type).into(),
            node_ids: Vec::new(),
            as_of: Some(timestamp(as_of_ms)),
        };
        self.calls
            .begin_sync(begin)
            .await
            .map_err(|status| refused(rows, status))?;
        self.syncs.push(OpenSync {
            supply_type,
            sync_id,
            as_of_ms,
        });
        Ok(as_of_ms)
    }

    /// Commits every sync the file opened, in supply-type order.
    async fn commit(&mut self) -> Result<(), ImportError> {
        for open in std::mem::take(&mut self.syncs) {
            let commit = pb::CommitSyncRequest {
                source_id: self.options.source_id.clone(),
                sync_id: open.sync_id.clone(),
                force: self.options.force,
            };
            let ack = self
                .calls
                .commit_sync(commit)
                .await
                .map_err(|status| refused(&[], status))?;
            self.summary.syncs.push(SyncCounts {
                supply_type: open.supply_type,
                sync_id: open.sync_id,
                set: ack.set,
                zeroed: ack.zeroed,
                unchanged: ack.unchanged,
            });
        }
        Ok(())
    }
}

/// A sync's id names its type and time, so that the same file sent again is the same sync.
fn sync_id(supply_type: SupplyType, as_of_ms: i64) -> String {
    let name = supply_type_pb(supply_type).as_str_name();
    let name = name.trim_start_matches("SUPPLY_TYPE_").to_ascii_lowercase();
    format!("csv-{name}-{as_of_ms}")
}

fn refused(rows: &[Row], status: Status) -> ImportError {
    let line = |row: Option<&Row>| row.map_or(0, |row| row.line);
    ImportError::Refused {
        first: line(rows.first()),
        last: line(rows.last()),
        status,
    }
}

fn reason_name(raw: i32) -> String {
    pb::RejectReason::try_from(raw)
        .map_or("UNSPECIFIED", |reason| reason.as_str_name())
        .trim_start_matches("REJECT_REASON_")
        .to_owned()
}

fn update_pb(row: &Row) -> pb::SupplyUpdate {
    let update = &row.update;
    pb::SupplyUpdate {
        sku: update.sku.clone(),
        node_id: update.node_id.clone(),
        supply_type: update.supply_type.map_or(0, |t| supply_type_pb(t).into()),
        op: pb::UpdateOp::Set.into(),
        quantity: update.quantity,
        reference: update.reference.clone(),
        eta: update.eta.clone(),
        as_of: Some(timestamp(row.as_of_ms)),
        order_id: String::new(),
    }
}

fn position_pb(row: &Row) -> pb::SyncPosition {
    pb::SyncPosition {
        sku: row.update.sku.clone(),
        node_id: row.update.node_id.clone(),
        quantity: row.update.quantity,
        reference: row.update.reference.clone(),
        eta: row.update.eta.clone(),
    }
}
