//! Following the journal from a position: what watchers read. A follower subscribes to the
//! records the journal writer publishes once Redis has them, then reads the journal from its
//! position up to its end, then takes the published records, skipping those it already read:
//! every record after the position arrives once, in journal order, and none that was undone.
//! Positions are journal entry ids, so a follower resumes where another (of this or an
//! earlier process) stopped. A follower that lags behind the broadcast reads the journal
//! again; one whose own receiver does not keep up is ended, naming the last record it
//! delivered, so that the engine and the writer never wait for a watcher.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Keys;
use crate::error::{Error, Result};

/// Entries read per round trip while catching up.
const PAGE: usize = 500;

/// A journal entry id (`ms-seq`): a position in the journal, and a watcher's resume token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntryId {
    ms: u64,
    seq: u64,
}

impl FromStr for EntryId {
    type Err = ();

    fn from_str(text: &str) -> std::result::Result<Self, ()> {
        let (ms, seq) = text.split_once('-').ok_or(())?;
        Ok(EntryId {
            ms: ms.parse().map_err(drop)?,
            seq: seq.parse().map_err(drop)?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A record Redis has, with its entry id.
#[derive(Debug)]
pub struct Journaled {
    pub id: EntryId,
    pub bytes: Vec<u8>,
}

/// Why a follower stopped before its receiver did.
#[derive(Debug)]
pub enum Ended {
    /// Its receiver's buffer was full: it delivered everything up to and including `last`
    /// (the position it started from when it delivered nothing).
    Behind { last: EntryId },
    /// The journal could not be read.
    Failed(Error),
}

/// A running follower's ends: its events, in journal order, each with the id of the record it
/// comes from, then why it stopped (nothing when the service shuts down).
#[derive(Debug)]
pub struct Following<E> {
    pub events: mpsc::Receiver<(EntryId, E)>,
    pub ended: oneshot::Receiver<Ended>,
}

/// The journal's ends, as XINFO reports them.
#[derive(Debug, Clone, Copy, Default)]
struct Extent {
    /// The newest id the journal ever gave.
    last: EntryId,
    /// The oldest position from which nothing was trimmed away.
    trimmed: EntryId,
}

async fn extent(conn: &mut ConnectionManager, keys: &Keys) -> anyhow::Result<Extent> {
    let exists: bool = conn.exists(&keys.journal).await?;
    if !exists {
        return Ok(Extent::default());
    }
    let info: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&keys.journal)
        .query_async(conn)
        .await
        .context("XINFO STREAM")?;
    let value = |name: &str| -> anyhow::Result<redis::Value> {
        let at = info
            .iter()
            .position(|v| matches!(v, redis::Value::BulkString(b) if b == name.as_bytes()))
            .ok_or_else(|| anyhow!("XINFO STREAM has no {name}"))?;
        Ok(info[at + 1].clone())
    };
    let id = |name: &str| -> anyhow::Result<EntryId> {
        let text: String = redis::from_redis_value(value(name)?)?;
        text.parse().map_err(|()| anyhow!("{name} {text:?}"))
    };
    let count = |name: &str| -> anyhow::Result<u64> { Ok(redis::from_redis_value(value(name)?)?) };
    let last = id("last-generated-id")?;
    // Trimming (XTRIM) does not record what it removed; what is left starts at the first
    // entry, so a position before it may have lost records.
    let trimmed = if count("entries-added")? == count("length")? {
        EntryId::default()
    } else if count("length")? == 0 {
        last
    } else {
        id("recorded-first-entry-id")?
    };
    Ok(Extent { last, trimmed })
}

/// The newest id the journal ever gave: a follower from it sees what comes next.
pub(super) async fn end(conn: &mut ConnectionManager, keys: &Keys) -> anyhow::Result<EntryId> {
    Ok(extent(conn, keys).await?.last)
}

/// Where a follower starts: after `after`, or after the journal's end when `None`; a position
/// the journal no longer reaches back to, or never reached, is refused.
async fn start(
    conn: &mut ConnectionManager,
    keys: &Keys,
    after: Option<EntryId>,
) -> Result<EntryId> {
    let extent = extent(conn, keys).await.map_err(unreadable)?;
    match after {
        None => Ok(extent.last),
        Some(after) if after < extent.trimmed => Err(Error::FailedPrecondition(format!(
            "resume token {after} is older than the journal's retention (it keeps records \
             from {} on): read a snapshot (GetAvailability, Reservations/Get) and watch \
             from now",
            extent.trimmed
        ))),
        Some(after) if after > extent.last => Err(Error::FailedPrecondition(format!(
            "resume token {after} is past the journal's end ({}): it is not of this \
             journal; read a snapshot and watch from now",
            extent.last
        ))),
        Some(after) => Ok(after),
    }
}

fn unreadable(error: anyhow::Error) -> Error {
    tracing::warn!(
        error = format!("{error:#}"),
        "reading the journal for a watcher failed"
    );
    Error::Unavailable("the journal could not be read; retry".into())
}

/// Starts a follower after `after`; `map` makes a record's event, if it has one for this
/// follower, and `buffer` bounds the events waiting for the receiver.
pub(super) async fn follow<E: Send + 'static>(
    mut conn: ConnectionManager,
    keys: Keys,
    published: &broadcast::Sender<Arc<Journaled>>,
    after: Option<EntryId>,
    buffer: usize,
    map: impl FnMut(EntryId, &[u8]) -> Option<E> + Send + 'static,
) -> Result<Following<E>> {
    // Subscribed first: a record Redis takes from now on is published to it, and one it took
    // before is in the range read next.
    let live = published.subscribe();
    let position = start(&mut conn, &keys, after).await?;
    let (events, receiver) = mpsc::channel(buffer.max(1));
    let (end, ended) = oneshot::channel();
    let follower = Follower {
        conn,
        keys,
        position,
        delivered: position,
        events,
        map,
    };
    tokio::spawn(follower.run(live, end));
    Ok(Following {
        events: receiver,
        ended,
    })
}

struct Follower<E, M> {
    conn: ConnectionManager,
    keys: Keys,
    /// The last record read.
    position: EntryId,
    /// The last record whose event was delivered (or `position` at the start).
    delivered: EntryId,
    events: mpsc::Sender<(EntryId, E)>,
    map: M,
}

/// Whether delivering an event may wait for the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

/// What stops a follower's loop.
enum Stop {
    /// The receiver is gone.
    Gone,
    Ended(Ended),
}

impl<E: Send + 'static, M: FnMut(EntryId, &[u8]) -> Option<E> + Send + 'static> Follower<E, M> {
    async fn run(
        mut self,
        mut live: broadcast::Receiver<Arc<Journaled>>,
        end: oneshot::Sender<Ended>,
    ) {
        let stop = loop {
            if let Err(stop) = self.catch_up().await {
                break stop;
            }
            match self.follow_live(&mut live).await {
                // Lagged behind the broadcast: the journal has what it dropped.
                Ok(()) => continue,
                Err(stop) => break stop,
            }
        };
        if let Stop::Ended(ended) = stop {
            let _ = end.send(ended);
        }
    }

    /// Reads the journal after the position up to its end.
    async fn catch_up(&mut self) -> std::result::Result<(), Stop> {
        loop {
            let start = format!("({}", self.position);
            let page: StreamRangeReply = self
                .conn
                .xrange_count(&self.keys.journal, &start, "+", PAGE)
                .await
                .map_err(|e| Stop::Ended(Ended::Failed(unreadable(e.into()))))?;
            if page.ids.is_empty() {
                return Ok(());
            }
            for entry in page.ids {
                let id: EntryId = entry
                    .id
                    .parse()
                    .map_err(|()| Stop::Ended(Ended::Failed(unreadable(anyhow!("entry id")))))?;
                let bytes: Vec<u8> = entry.get("r").unwrap_or_default();
                self.take(id, &bytes, Wait::Yes).await?;
            }
        }
    }

    /// Takes published records until the broadcast drops some for this follower (`Ok`).
    async fn follow_live(
        &mut self,
        live: &mut broadcast::Receiver<Arc<Journaled>>,
    ) -> std::result::Result<(), Stop> {
        loop {
            let journaled = tokio::select! {
                received = live.recv() => received,
                () = self.events.closed() => return Err(Stop::Gone),
            };
            match journaled {
                Ok(journaled) if journaled.id > self.position => {
                    self.take(journaled.id, &journaled.bytes, Wait::No).await?;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Ok(()),
                Err(RecvError::Closed) => return Err(Stop::Gone),
            }
        }
    }

    /// Delivers a record's event, if it has one. Reading the journal back may wait for the
    /// receiver (it holds up nothing else); taking published records may not.
    async fn take(
        &mut self,
        id: EntryId,
        bytes: &[u8],
        wait: Wait,
    ) -> std::result::Result<(), Stop> {
        self.position = id;
        let Some(event) = (self.map)(id, bytes) else {
            return Ok(());
        };
        if wait == Wait::Yes {
            self.events
                .send((id, event))
                .await
                .map_err(|_| Stop::Gone)?;
            self.delivered = id;
            return Ok(());
        }
        match self.events.try_send((id, event)) {
            Ok(()) => {
                self.delivered = id;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(Stop::Ended(Ended::Behind {
                last: self.delivered,
            })),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Stop::Gone),
        }
    }
}
