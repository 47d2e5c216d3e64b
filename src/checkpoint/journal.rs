//! The group-committed journal. Mutations queue their records; one writer takes everything
//! queued (up to a group limit), appends it to a Redis stream in one pipelined round trip, and
//! only then tells the waiting callers. Concurrent writers therefore share round trips instead
//! of paying one each.
//!
//! A group that fails stays queued, in order, and is retried until Redis takes it; its waiters
//! are told at once that it failed (they answer UNAVAILABLE), and while Redis is down new
//! mutations are refused before they are applied. A retried group may land twice in the stream,
//! which replay tolerates: records carry whole position images numbered per shard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot, watch};

use super::Keys;
use crate::engine::Engine;
use crate::metrics::JournalMetrics;
use crate::mutation::Record;

/// Records that may wait for the journal writer before callers are slowed down.
const QUEUE_DEPTH: usize = 16_384;
/// Most records per round trip.
const MAX_GROUP_RECORDS: usize = 1_024;
/// Most record bytes per round trip, so one group cannot take long on the wire.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// Pause between attempts while Redis is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A record waiting for its round trip.
pub(super) struct Pending {
    bytes: Vec<u8>,
    source_seq: Option<(String, u64)>,
    ticket: Option<u64>,
    effects: u64,
    /// Told whether the record is in Redis; `None` once told (a retried record has no waiter).
    done: Option<oneshot::Sender<bool>>,
}

impl Pending {
    pub(super) fn new(record: &Record) -> (Self, oneshot::Receiver<bool>) {
        let (done, told) = oneshot::channel();
        let pending = Pending {
            bytes: record.encode(),
            source_seq: record.source_seq.clone(),
            ticket: record.ticket,
            effects: u64::from(record.effects.count()),
            done: Some(done),
        };
        (pending, told)
    }

    fn tell(&mut self, stored: bool) {
        if let Some(done) = self.done.take() {
            let _ = done.send(stored);
        }
    }
}

/// The store's ends of a running writer: where records are queued and what it reports.
pub(super) struct Handle {
    pub queue: mpsc::Sender<Pending>,
    /// Whether Redis was reachable at the last round trip (or probe).
    pub up: watch::Receiver<bool>,
    /// Effects appended since the last snapshot, a trigger for the next one.
    pub since_snapshot: Arc<AtomicU64>,
}

/// Starts the writer on its own task, so callers only ever queue records and wait.
pub(super) fn start(
    conn: ConnectionManager,
    keys: Keys,
    engine: Engine,
    timeout: Duration,
) -> Handle {
    let (queue, pending) = mpsc::channel(QUEUE_DEPTH);
    let (up_tx, up) = watch::channel(true);
    let since_snapshot = Arc::new(AtomicU64::new(0));
    let committer = Committer {
        conn,
        keys,
        engine,
        queue: pending,
        up: up_tx,
        timeout,
        metrics: JournalMetrics::new(),
        since_snapshot: since_snapshot.clone(),
    };
    tokio::spawn(committer.run());
    Handle {
        queue,
        up,
        since_snapshot,
    }
}

/// The writer's state.
struct Committer {
    conn: ConnectionManager,
    keys: Keys,
    engine: Engine,
    queue: mpsc::Receiver<Pending>,
    /// Whether the last round trip (or probe) reached Redis.
    up: watch::Sender<bool>,
    timeout: Duration,
    metrics: JournalMetrics,
    /// Effects appended since the last snapshot, a trigger for the next one.
    since_snapshot: Arc<AtomicU64>,
}

impl Committer {
    /// Runs until the queue is closed and everything queued has been written (or Redis stays
    /// unreachable, in which case the remaining records were never acknowledged).
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
            let mut group = take_group(&mut backlog);
            if self.append(&group).await {
                self.stored(&mut group);
            } else {
                put_back(group, &mut backlog);
                if self.queue.is_closed() && self.queue.is_empty() {
                    tracing::warn!(
                        records = backlog.len(),
                        "journal closed with unwritten records; they were never acknowledged"
                    );
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
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

    /// One pipelined round trip appending the group; true when Redis confirmed all of it.
    async fn append(&mut self, group: &[Pending]) -> bool {
        let mut pipe = redis::pipe();
        for pending in group {
            pipe.cmd("XADD")
                .arg(&self.keys.journal)
                .arg("*")
                .arg("r")
                .arg(&pending.bytes)
                .ignore();
        }
        let started = Instant::now();
        let sent = tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut self.conn)).await;
        let ok = matches!(sent, Ok(Ok(())));
        if let Ok(Err(error)) = &sent {
            tracing::warn!(%error, "journal append failed");
        } else if sent.is_err() {
            tracing::warn!(timeout = ?self.timeout, "journal append timed out");
        }
        if ok {
            self.metrics.committed(group.len(), started.elapsed());
        }
        self.set_up(ok);
        ok
    }

    fn stored(&self, group: &mut [Pending]) {
        let effects: u64 = group.iter().map(|p| p.effects).sum();
        self.since_snapshot.fetch_add(effects, Ordering::Relaxed);
        for pending in group {
            if let Some((source, seq)) = &pending.source_seq {
                self.engine.mark_durable(source, *seq);
            }
            if let Some(ticket) = pending.ticket {
                self.engine.settle(ticket);
            }
            pending.tell(true);
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

/// A failed group is retried first and in order, but its waiters are told of the failure now.
fn put_back(mut group: Vec<Pending>, backlog: &mut VecDeque<Pending>) {
    group.iter_mut().for_each(|p| p.tell(false));
    for pending in group.into_iter().rev() {
        backlog.push_front(pending);
    }
}
