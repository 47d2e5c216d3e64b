//! Following the journal from a position: what watchers read. One [`Feed`] decodes each record
//! the journal writer publishes once Redis has it, once for all followers, and shares the
//! decoded record. A follower subscribes to the feed, then reads (and decodes for itself) the
//! journal from its position up to its end, then takes the shared records, skipping those it
//! already read: every record after the position arrives once, in journal order, and none
//! that was undone. Positions are journal entry ids, so a follower resumes where another (of
//! this or an earlier process) stopped. A follower that lags behind the feed (or a feed that
//! lags behind the writer) reads the journal again; one whose own receiver does not keep up is
//! ended, naming the last record it delivered, so that the engine and the writer never wait
//! for a watcher.

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
/// Decoded records the feed keeps for its followers; a follower further behind reads the
/// journal instead, so this bounds memory, never the writer or the feed.
const SHARED_DEPTH: usize = 4_096;

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
    /// The position it follows after: the resume position asked for, or the journal's end.
    pub start: EntryId,
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

/// How a feed makes its shared value of a record's bytes.
type Decode<D> = Arc<dyn Fn(&[u8]) -> D + Send + Sync>;

/// What a feed gives its followers; `D` is cheap to clone (it shares what it decoded).
#[derive(Clone)]
enum Shared<D> {
    /// A durable record, decoded once for every follower.
    Record(EntryId, D),
    /// The feed fell behind the writer and did not see some records: followers read the
    /// journal for them.
    Lost,
}

/// The journal's durable records, each decoded once into a `D` shared by every follower.
pub struct Feed<D> {
    conn: ConnectionManager,
    keys: Keys,
    decode: Decode<D>,
    shared: broadcast::Sender<Shared<D>>,
}

impl<D> fmt::Debug for Feed<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("followers", &self.shared.receiver_count())
            .finish_non_exhaustive()
    }
}

/// Starts the feed's decoder on its own task: it takes every record `published` gives and,
/// while anyone follows, decodes it with `decode` and shares it. It never waits for a
/// follower; it stops when the writer does.
pub(super) fn feed<D: Clone + Send + Sync + 'static>(
    conn: ConnectionManager,
    keys: Keys,
    published: &broadcast::Sender<Arc<Journaled>>,
    decode: impl Fn(&[u8]) -> D + Send + Sync + 'static,
) -> Feed<D> {
    let decode: Decode<D> = Arc::new(decode);
    let (shared, _) = broadcast::channel(SHARED_DEPTH);
    let mut records = published.subscribe();
    let (to, decoder) = (shared.clone(), decode.clone());
    tokio::spawn(async move {
        loop {
            let told = match records.recv().await {
                // No follower: one who subscribes later reads this record from the journal.
                Ok(_) if to.receiver_count() == 0 => continue,
                Ok(journaled) => Shared::Record(journaled.id, decoder(&journaled.bytes)),
                Err(RecvError::Lagged(_)) => Shared::Lost,
                Err(RecvError::Closed) => return,
            };
            let _ = to.send(told);
        }
    });
    Feed {
        conn,
        keys,
        decode,
        shared,
    }
}

impl<D: Clone + Send + Sync + 'static> Feed<D> {
    /// Starts a follower after `after` (the journal's end when `None`); `map` makes a
    /// record's event, if it has one for this follower, and `buffer` bounds the events
    /// waiting for the receiver.
    pub async fn follow<E: Send + 'static>(
        &self,
        after: Option<EntryId>,
        buffer: usize,
        map: impl FnMut(EntryId, &D) -> Option<E> + Send + 'static,
    ) -> Result<Following<E>> {
        // Subscribed first: a record Redis takes from now on is shared with it, and one it
        // took before is in the range read next.
        let live = self.shared.subscribe();
        let mut conn = self.conn.clone();
        let position = start(&mut conn, &self.keys, after).await?;
        let (events, receiver) = mpsc::channel(buffer.max(1));
        let (end, ended) = oneshot::channel();
        let follower = Follower {
            conn,
            keys: self.keys.clone(),
            decode: self.decode.clone(),
            position,
            delivered: position,
            events,
            map,
        };
        tokio::spawn(follower.run(live, end));
        Ok(Following {
            start: position,
            events: receiver,
            ended,
        })
    }
}

struct Follower<D, E, M> {
    conn: ConnectionManager,
    keys: Keys,
    /// Decodes the records read back from the journal, which the feed no longer has.
    decode: Decode<D>,
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

impl<D, E, M> Follower<D, E, M>
where
    D: Clone + Send + Sync + 'static,
    E: Send + 'static,
    M: FnMut(EntryId, &D) -> Option<E> + Send + 'static,
{
    async fn run(mut self, mut live: broadcast::Receiver<Shared<D>>, end: oneshot::Sender<Ended>) {
        let stop = loop {
            if let Err(stop) = self.catch_up().await {
                break stop;
            }
            match self.follow_live(&mut live).await {
                // Lagged behind the feed: the journal has what it dropped.
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
                let decoded = (self.decode)(&bytes);
                self.take(id, &decoded, Wait::Yes).await?;
            }
        }
    }

    /// Takes shared records until the feed drops some for this follower (`Ok`).
    async fn follow_live(
        &mut self,
        live: &mut broadcast::Receiver<Shared<D>>,
    ) -> std::result::Result<(), Stop> {
        loop {
            let shared = tokio::select! {
                received = live.recv() => received,
                () = self.events.closed() => return Err(Stop::Gone),
            };
            match shared {
                Ok(Shared::Record(id, decoded)) if id > self.position => {
                    self.take(id, &decoded, Wait::No).await?;
                }
                Ok(Shared::Record(..)) => {}
                Ok(Shared::Lost) | Err(RecvError::Lagged(_)) => return Ok(()),
                Err(RecvError::Closed) => return Err(Stop::Gone),
            }
        }
    }

    /// Delivers a record's event, if it has one. Reading the journal back may wait for the
    /// receiver (it holds up nothing else); taking published records may not.
    async fn take(
        &mut self,
        id: EntryId,
        decoded: &D,
        wait: Wait,
    ) -> std::result::Result<(), Stop> {
        self.position = id;
        let Some(event) = (self.map)(id, decoded) else {
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
