//! The group-committed journal. Mutations are applied and their records queued in one order,
//! under [`Handle::order`]; one writer takes everything queued (up to a group limit), appends
//! it to a Redis stream in one pipelined round trip, and only then tells the waiting callers.
//! Concurrent writers therefore share round trips instead of paying one each, and the journal
//! holds mutations in the order memory saw them.
//!
//! A group that Redis does not take is taken back: the writer fences the store (new mutations
//! are refused before they are applied), and, holding the order so that nothing is applied
//! meanwhile, undoes that group and every record queued after it, newest first, and tells
//! their callers (who answer UNAVAILABLE). Memory then holds only what the journal holds. A
//! timed-out group may still reach Redis later; the fence stays until a snapshot of the undone
//! state is written (`Store::heal`), which supersedes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Mutex};
use tracing::field::Empty;
use tracing::{Instrument, Level, Span};

use super::tail::{EntryId, Journaled};
use super::Keys;
use crate::engine::Engine;
use crate::metrics::JournalMetrics;
use crate::mutation::Record;
use crate::telemetry;

/// Records that may wait for the journal writer before callers are slowed down.
const QUEUE_DEPTH: usize = 16_384;
/// Most records per round trip.
const MAX_GROUP_RECORDS: usize = 1_024;
/// Most record bytes per round trip, so one group cannot take long on the wire.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Pause between probes while Redis is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Durable records the broadcast to watchers keeps; a watcher further behind reads the
/// journal instead, so this bounds memory, never the writer.
const PUBLISHED_DEPTH: usize = 4_096;

/// A record waiting for its round trip, kept whole so that it can be taken back.
pub(super) struct Pending {
    bytes: Vec<u8>,
    record: Record,
    /// Told the record's entry id once it is in Redis, `None` when it was taken back.
    done: oneshot::Sender<Option<EntryId>>,
    /// The write that queued the record, which its commit's span links to; none when traces
    /// are off.
    span: Span,
}

impl Pending {
    pub(super) fn new(record: Record) -> (Self, oneshot::Receiver<Option<EntryId>>) {
        let (done, told) = oneshot::channel();
        let span = if tracing::enabled!(target: telemetry::TARGET, Level::DEBUG) {
            Span::current()
        } else {
            Span::none()
        };
        let pending = Pending {
            bytes: record.encode(),
            record,
            done,
            span,
        };
        (pending, told)
    }
}

/// The store's ends of a running writer: where records are queued and what it reports.
pub(super) struct Handle {
    pub queue: mpsc::Sender<Pending>,
    /// Held while a mutation is applied and its record queued, so the queue's order is the
    /// order of the changes in memory; the writer holds it while it takes records back. An
    /// async mutex: a writer waiting for it yields its thread instead of blocking it, which
    /// matters when the holder is preempted on a busy machine.
    pub order: Arc<Mutex<()>>,
    /// Whether Redis was reachable at the last round trip (or probe).
    pub up: watch::Receiver<bool>,
    /// Counts the writer's finished round trips (stored or taken back): a caller waiting for
    /// a record queued by another looks again at each.
    pub round_trips: watch::Receiver<u64>,
    /// Set when records were taken back; mutations are refused until a snapshot of the state
    /// after the undo is written.
    pub fenced: Arc<AtomicBool>,
    /// Effects appended since the last snapshot, a trigger for the next one.
    pub since_snapshot: Arc<AtomicU64>,
    /// Every record once Redis has it, with its entry id, in journal order: what watchers
    /// follow. Sending never waits for a receiver.
    pub published: broadcast::Sender<Arc<Journaled>>,
    /// The entry id of the newest durable record: moves before the callers of a group are
    /// told, so a call answered with its record's id finds the journal there.
    pub position: watch::Receiver<EntryId>,
}

/// Starts the writer on its own task, so callers only ever queue records and wait.
pub(super) fn start(
    conn: ConnectionManager,
    keys: Keys,
    engine: Engine,
    timeout: Duration,
    last: EntryId,
) -> Handle {
    let (queue, pending) = mpsc::channel(QUEUE_DEPTH);
    let (up_tx, up) = watch::channel(true);
    let (position_tx, position) = watch::channel(last);
    let (round_trips_tx, round_trips) = watch::channel(0);
    let handle = Handle {
        queue,
        order: Arc::default(),
        up,
        round_trips,
        fenced: Arc::default(),
        since_snapshot: Arc::default(),
        published: broadcast::channel(PUBLISHED_DEPTH).0,
        position,
    };
    let committer = Committer {
        conn,
        keys,
        engine,
        queue: pending,
        order: handle.order.clone(),
        up: up_tx,
        round_trips: round_trips_tx,
        fenced: handle.fenced.clone(),
        timeout,
        metrics: JournalMetrics::new(),
        since_snapshot: handle.since_snapshot.clone(),
        published: handle.published.clone(),
        position: position_tx,
    };
    tokio::spawn(committer.run());
    handle
}

/// The writer's state.
struct Committer {
    conn: ConnectionManager,
    keys: Keys,
    engine: Engine,
    queue: mpsc::Receiver<Pending>,
    order: Arc<Mutex<()>>,
    /// Whether the last round trip (or probe) reached Redis.
    up: watch::Sender<bool>,
    round_trips: watch::Sender<u64>,
    fenced: Arc<AtomicBool>,
    timeout: Duration,
    metrics: JournalMetrics,
    /// Effects appended since the last snapshot, a trigger for the next one.
    since_snapshot: Arc<AtomicU64>,
    published: broadcast::Sender<Arc<Journaled>>,
    position: watch::Sender<EntryId>,
}

impl Committer {
    /// Runs until the queue is closed and everything queued has been written or taken back.
    async fn run(mut self) {
        let mut backlog: VecDeque<Pending> = VecDeque::new();
        loop {
            if backlog.is_empty() {
                let Some(pending) = self.next_record().await else {
                    return;
                };
                backlog.push_back(pending);
            }
            self.take_queued(&mut backlog);
            let group = take_group(&mut backlog);
            let span = commit_span(&group);
            let ids = self.append(&group).instrument(span.clone()).await;
            span.record("ok", ids.is_some());
            match ids {
                Some(ids) => self.stored(group, ids),
                None => self.take_back(group, &mut backlog).await,
            }
            self.round_trips
                .send_modify(|trips| *trips = trips.wrapping_add(1));
        }
    }

    /// Undoes a group Redis did not take and everything queued after it, newest first, with
    /// the store fenced and the order held, so that no mutation is applied meanwhile and none
    /// remains that was built on an undone one; tells each caller it failed.
    async fn take_back(&mut self, group: Vec<Pending>, backlog: &mut VecDeque<Pending>) {
        self.fenced.store(true, Ordering::SeqCst);
        let order = self.order.clone();
        let _order = order.lock().await;
        while let Ok(pending) = self.queue.try_recv() {
            backlog.push_back(pending);
        }
        let taken: Vec<Pending> = group.into_iter().chain(backlog.drain(..)).collect();
        let mut records = Vec::with_capacity(taken.len());
        let mut callers = Vec::with_capacity(taken.len());
        for pending in taken {
            records.push(pending.record);
            callers.push(pending.done);
        }
        tracing::warn!(
            records = records.len(),
            "the journal did not take these mutations; they are undone and refused"
        );
        self.metrics.taken_back(records.len());
        self.engine.undo(records);
        for caller in callers {
            let _ = caller.send(None);
        }
    }

    /// Waits for a record; while Redis is down, probes it between waits so its return is noticed.
    async fn next_record(&mut self) -> Option<Pending> {
        loop {
            if *self.up.borrow() {
                return self.queue.recv().await;
            }
            match tokio::time::timeout(RETRY_PAUSE, self.queue.recv()).await {
                Ok(next) => return next,
                Err(_) => self.probe().await,
            }
        }
    }

    /// Moves what is already queued into the backlog, so one round trip carries it all.
    fn take_queued(&mut self, backlog: &mut VecDeque<Pending>) {
        while backlog.len() < MAX_GROUP_RECORDS {
            match self.queue.try_recv() {
                Ok(pending) => backlog.push_back(pending),
                Err(_) => break,
            }
        }
    }

    /// One pipelined round trip appending the group; the entry ids Redis gave its records
    /// when it confirmed all of them.
    async fn append(&mut self, group: &[Pending]) -> Option<Vec<EntryId>> {
        let mut pipe = redis::pipe();
        for pending in group {
            pipe.cmd("XADD")
                .arg(&self.keys.journal)
                .arg("*")
                .arg("r")
                .arg(&pending.bytes);
        }
        let started = Instant::now();
        let sent = tokio::time::timeout(
            self.timeout,
            pipe.query_async::<Vec<String>>(&mut self.conn),
        )
        .await;
        let ids = match &sent {
            Ok(Ok(ids)) if ids.len() == group.len() => {
                ids.iter().map(|id| id.parse().ok()).collect()
            }
            _ => None,
        };
        let ok = ids.is_some();
        if let Ok(Err(error)) = &sent {
            tracing::warn!(%error, "journal append failed");
        } else if sent.is_err() {
            tracing::warn!(timeout = ?self.timeout, "journal append timed out");
        }
        if ok {
            self.metrics.committed(group.len(), started.elapsed());
        }
        self.set_up(ok);
        ids
    }

    /// Tells the callers of a group Redis took, then the watchers: an event is only ever of a
    /// durable change.
    fn stored(&self, group: Vec<Pending>, ids: Vec<EntryId>) {
        let effects: u64 = group
            .iter()
            .map(|p| u64::from(p.record.effects.count()))
            .sum();
        self.since_snapshot.fetch_add(effects, Ordering::Relaxed);
        if let Some(&newest) = ids.last() {
            self.position.send_replace(newest);
        }
        let watched = self.published.receiver_count() > 0;
        let mut durable = Vec::with_capacity(if watched { group.len() } else { 0 });
        for (pending, id) in group.into_iter().zip(ids) {
            let record = &pending.record;
            if let Some((source, seq)) = &record.source_seq {
                self.engine.mark_durable(source, *seq);
            }
            if let Some(ticket) = record.ticket {
                self.engine.settle(ticket);
            }
            let _ = pending.done.send(Some(id));
            if watched {
                durable.push(Journaled {
                    id,
                    bytes: pending.bytes,
                });
            }
        }
        for journaled in durable {
            let _ = self.published.send(Arc::new(journaled));
        }
    }

    async fn probe(&mut self) {
        let ping = redis::cmd("PING");
        let reached =
            tokio::time::timeout(self.timeout, ping.query_async::<String>(&mut self.conn)).await;
        self.set_up(matches!(reached, Ok(Ok(_))));
    }

    fn set_up(&self, up: bool) {
        self.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        });
        self.metrics.redis_up(up);
    }
}

/// The span of one group's round trip, linked to the write of each of its records: a commit
/// serves many callers, so it is no one call's child. Exported with traces only.
fn commit_span(group: &[Pending]) -> Span {
    let span = tracing::debug_span!(
        target: telemetry::TARGET,
        "journal.commit",
        records = Empty,
        bytes = Empty,
        ok = Empty,
    );
    if !span.is_disabled() {
        // Signed: the exporter keeps an unsigned field as text.
        let signed = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        span.record("records", signed(group.len()));
        span.record("bytes", signed(group.iter().map(|p| p.bytes.len()).sum()));
        for pending in group {
            span.follows_from(&pending.span);
        }
    }
    span
}

/// Takes the next group off the front of the backlog, within the group limits.
fn take_group(backlog: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut bytes = 0;
    let mut count = 0;
    for pending in backlog.iter() {
        if count == MAX_GROUP_RECORDS
            || (count > 0 && bytes + pending.bytes.len() > MAX_GROUP_BYTES)
        {
            break;
        }
        bytes += pending.bytes.len();
        count += 1;
    }
    backlog.drain(..count).collect()
}
