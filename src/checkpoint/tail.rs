//! Following the journal from a position: what watchers read. One [`Feed`] decodes each record
//! the journal writer publishes once Redis has it, once for all followers, on one task that
//! hands it to every follower directly: a change wakes the receivers, not a task per follower
//! too. A follower is counted in the feed first (from then on the feed keeps what it
//! decodes), reads (and decodes for itself) the journal from its position up to its end on a
//! task of its own, then joins the feed, which gives it the records it kept since, skipping
//! those the follower already read, and every later one: every record after the position
//! arrives once, in journal order, and none that was undone. Positions are journal entry ids,
//! so a follower resumes where another (of this or an earlier process) stopped. A follower
//! further behind than the records the feed keeps (or a feed that lags behind the writer)
//! reads the journal again; one whose own receiver does not keep up is ended, naming the last
//! record it delivered, so that the engine and the writer never wait for a watcher.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Decoded records the feed keeps for followers about to join it; a follower further behind
/// reads the journal instead, so this bounds memory, never the writer or the feed.
const RECENT: usize = 4_096;

/// A journal entry id (`ms-seq`): a position in the journal, and a watcher's resume token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// Past every id.
    const MAX: EntryId = EntryId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The first id after this one.
    fn successor(self) -> EntryId {
        match self.seq.checked_add(1) {
            Some(seq) => EntryId { ms: self.ms, seq },
            None => EntryId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
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

/// A follower that read the journal up to its end, handed to the feed's decoder, which gives
/// it every later record directly.
type Joining<D> = Box<dyn Live<D>>;

/// The journal's durable records, each decoded once into a `D` shared by every follower.
pub struct Feed<D> {
    conn: ConnectionManager,
    keys: Keys,
    decode: Decode<D>,
    joins: mpsc::UnboundedSender<Joining<D>>,
    /// Followers alive, reading the journal or taken in by the decoder: while there are
    /// none, the decoder decodes nothing.
    followers: Arc<AtomicUsize>,
}

impl<D> fmt::Debug for Feed<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("followers", &self.followers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Starts the feed's decoder on its own task: it takes every record `published` gives and,
/// while anyone follows, decodes it with `decode` once and hands it to every follower that
/// caught up, in one pass per wake-up (the records published since, at most [`BATCH`]). It
/// never waits for a follower; it stops when the writer does.
pub(super) fn feed<D: Clone + Send + Sync + 'static>(
    conn: ConnectionManager,
    keys: Keys,
    published: &broadcast::Sender<Arc<Journaled>>,
    decode: impl Fn(&[u8]) -> D + Send + Sync + 'static,
) -> Feed<D> {
    let decode: Decode<D> = Arc::new(decode);
    let (joins, joining) = mpsc::unbounded_channel();
    let followers = Arc::new(AtomicUsize::new(0));
    let decoder = Decoder {
        decode: decode.clone(),
        followers: followers.clone(),
        recent: VecDeque::new(),
        complete_from: EntryId::default(),
        live: Vec::new(),
        waiting: Vec::new(),
    };
    tokio::spawn(decoder.run(published.subscribe(), joining));
    Feed {
        conn,
        keys,
        decode,
        joins,
        followers,
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
        // Counted first: the decoder keeps every record Redis takes from now on until this
        // follower joins it, and one Redis took before is in the journal it reads.
        let counted = Counted::new(&self.followers);
        let mut conn = self.conn.clone();
        let position = start(&mut conn, &self.keys, after).await?;
        let (events, receiver) = mpsc::channel(buffer.max(1));
        let (end, ended) = oneshot::channel();
        let follower = Follower {
            conn,
            keys: self.keys.clone(),
            decode: self.decode.clone(),
            joins: self.joins.clone(),
            _counted: counted,
            position,
            delivered: position,
            events,
            end: Some(end),
            map,
        };
        Box::new(follower).catch_up();
        Ok(Following {
            start: position,
            events: receiver,
            ended,
        })
    }
}

/// One follower in the feed's count, for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(followers: &Arc<AtomicUsize>) -> Self {
        followers.fetch_add(1, Ordering::SeqCst);
        Counted(followers.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records the decoder takes per pass; the rest of a burst waits for the next.
const BATCH: usize = 64;

/// The feed's task: decodes each published record once and gives it to the followers that
/// caught up, keeping the newest [`RECENT`] for those about to.
struct Decoder<D> {
    decode: Decode<D>,
    followers: Arc<AtomicUsize>,
    /// The newest decoded records, oldest first.
    recent: VecDeque<(EntryId, D)>,
    /// `recent` holds every record from this position on that the writer published
    /// ([`EntryId::MAX`] after it lost some, until the next one arrives).
    complete_from: EntryId,
    live: Vec<Joining<D>>,
    /// Followers that joined after records were lost, before the next arrived.
    waiting: Vec<Joining<D>>,
}

impl<D: Clone + Send + Sync + 'static> Decoder<D> {
    async fn run(
        mut self,
        mut records: broadcast::Receiver<Arc<Journaled>>,
        mut joining: mpsc::UnboundedReceiver<Joining<D>>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                Some(follower) = joining.recv() => self.join(follower),
                received = records.recv() => match received {
                    Ok(first) => {
                        batch.push(first);
                        while batch.len() < BATCH {
                            match records.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        self.take(&mut batch);
                    }
                    Err(RecvError::Lagged(_)) => self.lost(),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Decodes a batch of published records and gives each follower its events of them.
    fn take(&mut self, batch: &mut Vec<Arc<Journaled>>) {
        if self.followers.load(Ordering::SeqCst) == 0 {
            // Nobody follows: one who starts later reads these from the journal.
            self.recent.clear();
            if let Some(last) = batch.last() {
                self.complete_from = last.id.successor();
            }
            batch.clear();
            return;
        }
        if let (EntryId::MAX, Some(first)) = (self.complete_from, batch.first()) {
            self.complete_from = first.id;
        }
        let taken = batch.len();
        for journaled in batch.drain(..) {
            if self.recent.len() == RECENT {
                if let Some((evicted, _)) = self.recent.pop_front() {
                    self.complete_from = evicted.successor();
                }
            }
            let decoded = (self.decode)(&journaled.bytes);
            self.recent.push_back((journaled.id, decoded));
        }
        let fresh = self.recent.len() - taken.min(self.recent.len());
        let recent = &self.recent;
        self.live
            .retain_mut(|follower| recent.range(fresh..).all(|(id, d)| follower.take(*id, d)));
        for follower in std::mem::take(&mut self.waiting) {
            self.join(follower);
        }
    }

    /// Takes in a follower that read the journal up to its end, with the records since; one
    /// further behind than the records kept reads the journal again.
    fn join(&mut self, mut follower: Joining<D>) {
        if self.complete_from == EntryId::MAX {
            // Whether it is behind what was lost shows with the next record.
            self.waiting.push(follower);
            return;
        }
        if follower.position().successor() < self.complete_from {
            follower.catch_up();
            return;
        }
        let after = follower.position();
        let caught_up = self
            .recent
            .iter()
            .filter(|(id, _)| *id > after)
            .all(|(id, d)| follower.take(*id, d));
        if caught_up {
            self.live.push(follower);
        }
    }

    /// The writer published records this task did not see: every follower reads them from
    /// the journal, and the records kept no longer reach back.
    fn lost(&mut self) {
        self.recent.clear();
        self.complete_from = EntryId::MAX;
        for follower in self.live.drain(..) {
            follower.catch_up();
        }
    }
}

/// A follower as the decoder holds it.
trait Live<D>: Send {
    /// The last record it read.
    fn position(&self) -> EntryId;
    /// Takes a record after its position; `false` once it stopped (and said why).
    fn take(&mut self, id: EntryId, decoded: &D) -> bool;
    /// Reads the journal after its position on a task of its own, then joins the decoder.
    fn catch_up(self: Box<Self>);
}

struct Follower<D, E, M> {
    conn: ConnectionManager,
    keys: Keys,
    /// Decodes the records read back from the journal, which the feed no longer has.
    decode: Decode<D>,
    joins: mpsc::UnboundedSender<Joining<D>>,
    _counted: Counted,
    /// The last record read.
    position: EntryId,
    /// The last record whose event was delivered (or `position` at the start).
    delivered: EntryId,
    events: mpsc::Sender<(EntryId, E)>,
    /// Where it says why it stopped, until it has.
    end: Option<oneshot::Sender<Ended>>,
    map: M,
}

impl<D, E, M> Live<D> for Follower<D, E, M>
where
    D: Clone + Send + Sync + 'static,
    E: Send + 'static,
    M: FnMut(EntryId, &D) -> Option<E> + Send + 'static,
{
    fn position(&self) -> EntryId {
        self.position
    }

    /// Taking published records may not wait for the receiver: one whose buffer is full is
    /// ended as behind.
    fn take(&mut self, id: EntryId, decoded: &D) -> bool {
        if id <= self.position {
            return true;
        }
        self.position = id;
        let Some(event) = (self.map)(id, decoded) else {
            return true;
        };
        match self.events.try_send((id, event)) {
            Ok(()) => {
                self.delivered = id;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let last = self.delivered;
                self.stop(Ended::Behind { last });
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn catch_up(self: Box<Self>) {
        tokio::spawn(self.read_journal());
    }
}

impl<D, E, M> Follower<D, E, M>
where
    D: Clone + Send + Sync + 'static,
    E: Send + 'static,
    M: FnMut(EntryId, &D) -> Option<E> + Send + 'static,
{
    /// Reads the journal after the position up to its end, then joins the decoder (which
    /// has every record since), unless it stopped.
    async fn read_journal(mut self: Box<Self>) {
        match self.read_pages().await {
            Ok(()) => {
                let joins = self.joins.clone();
                // The decoder is gone only when the service shuts down.
                let _ = joins.send(self);
            }
            Err(Some(ended)) => self.stop(ended),
            Err(None) => {}
        }
    }

    /// Reads pages of the journal until one comes back empty; reading back may wait for
    /// the receiver (it holds up nothing else). `Err(None)` when the receiver is gone.
    async fn read_pages(&mut self) -> std::result::Result<(), Option<Ended>> {
        loop {
            let start = format!("({}", self.position);
            let page: StreamRangeReply = self
                .conn
                .xrange_count(&self.keys.journal, &start, "+", PAGE)
                .await
                .map_err(|e| Some(Ended::Failed(unreadable(e.into()))))?;
            if page.ids.is_empty() {
                return Ok(());
            }
            for entry in page.ids {
                let id: EntryId = entry
                    .id
                    .parse()
                    .map_err(|()| Some(Ended::Failed(unreadable(anyhow!("entry id")))))?;
                let bytes: Vec<u8> = entry.get("r").unwrap_or_default();
                self.position = id;
                let decoded = (self.decode)(&bytes);
                if let Some(event) = (self.map)(id, &decoded) {
                    self.events.send((id, event)).await.map_err(|_| None)?;
                    self.delivered = id;
                }
            }
        }
    }

    fn stop(&mut self, ended: Ended) {
        if let Some(end) = self.end.take() {
            let _ = end.send(ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn at(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    /// What a probe saw: the records it took, and how often it was sent back to the journal.
    #[derive(Default)]
    struct Seen {
        taken: Vec<EntryId>,
        sent_back: usize,
    }

    /// A follower that takes at most `room` records.
    struct Probe {
        position: EntryId,
        room: usize,
        seen: Arc<Mutex<Seen>>,
    }

    impl Live<usize> for Probe {
        fn position(&self) -> EntryId {
            self.position
        }

        fn take(&mut self, id: EntryId, _: &usize) -> bool {
            if id <= self.position {
                return true;
            }
            self.position = id;
            let mut seen = self.seen.lock().expect("seen");
            seen.taken.push(id);
            seen.taken.len() <= self.room
        }

        fn catch_up(self: Box<Self>) {
            self.seen.lock().expect("seen").sent_back += 1;
        }
    }

    fn probe(position: EntryId, room: usize) -> (Joining<usize>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let follower = Probe {
            position,
            room,
            seen: seen.clone(),
        };
        (Box::new(follower), seen)
    }

    fn decoder(followers: usize) -> Decoder<usize> {
        Decoder {
            decode: Arc::new(|bytes: &[u8]| bytes.len()),
            followers: Arc::new(AtomicUsize::new(followers)),
            recent: VecDeque::new(),
            complete_from: EntryId::default(),
            live: Vec::new(),
            waiting: Vec::new(),
        }
    }

    fn publish(decoder: &mut Decoder<usize>, ids: impl IntoIterator<Item = u64>) {
        let mut batch = ids
            .into_iter()
            .map(|ms| {
                let bytes = vec![0; 3];
                Arc::new(Journaled { id: at(ms), bytes })
            })
            .collect();
        decoder.take(&mut batch);
    }

    fn taken(seen: &Mutex<Seen>) -> Vec<u64> {
        seen.lock()
            .expect("seen")
            .taken
            .iter()
            .map(|id| id.ms)
            .collect()
    }

    fn sent_back(seen: &Mutex<Seen>) -> usize {
        seen.lock().expect("seen").sent_back
    }

    #[test]
    fn a_joining_follower_gets_what_was_kept_after_its_position_then_every_record_once() {
        let mut decoder = decoder(2);
        publish(&mut decoder, 1..=3);
        let (early, early_seen) = probe(at(2), 10);
        decoder.join(early);
        // It read the journal further than the decoder got so far.
        let (ahead, ahead_seen) = probe(at(4), 10);
        decoder.join(ahead);
        publish(&mut decoder, 4..=5);
        assert_eq!(taken(&early_seen), [3, 4, 5]);
        assert_eq!(taken(&ahead_seen), [5]);
    }

    #[test]
    fn a_follower_behind_the_kept_records_reads_the_journal_again() {
        let mut decoder = decoder(2);
        publish(&mut decoder, 1..=RECENT as u64 + 1);
        let (behind, behind_seen) = probe(at(0), usize::MAX);
        decoder.join(behind);
        assert_eq!((sent_back(&behind_seen), taken(&behind_seen).len()), (1, 0));
        // Record 1 was dropped from what is kept, and this one has it.
        let (reached, reached_seen) = probe(at(1), usize::MAX);
        decoder.join(reached);
        assert_eq!(sent_back(&reached_seen), 0);
        assert_eq!(
            taken(&reached_seen),
            (2..=RECENT as u64 + 1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn after_records_were_lost_a_joining_follower_waits_for_the_next_to_know_where_it_is() {
        let mut decoder = decoder(3);
        let (live, live_seen) = probe(at(0), 10);
        decoder.join(live);
        publish(&mut decoder, 1..=2);
        decoder.lost();
        assert_eq!((taken(&live_seen), sent_back(&live_seen)), (vec![1, 2], 1));
        let (old, old_seen) = probe(at(5), 10);
        let (ahead, ahead_seen) = probe(at(12), 10);
        decoder.join(old);
        decoder.join(ahead);
        assert_eq!(sent_back(&old_seen) + taken(&old_seen).len(), 0);
        publish(&mut decoder, 11..=13);
        assert_eq!((sent_back(&old_seen), taken(&old_seen).len()), (1, 0));
        assert_eq!((sent_back(&ahead_seen), taken(&ahead_seen)), (0, vec![13]));
    }

    #[test]
    fn a_follower_out_of_room_is_let_go_and_the_others_keep_taking() {
        let mut decoder = decoder(2);
        let (small, small_seen) = probe(at(0), 1);
        let (large, large_seen) = probe(at(0), 10);
        decoder.join(small);
        decoder.join(large);
        publish(&mut decoder, 1..=2);
        publish(&mut decoder, 3..=3);
        assert_eq!(taken(&small_seen), [1, 2]);
        assert_eq!(taken(&large_seen), [1, 2, 3]);
        assert_eq!(decoder.live.len(), 1);
    }

    #[test]
    fn records_nobody_follows_are_not_kept_and_a_later_follower_before_them_reads_the_journal() {
        let mut decoder = decoder(0);
        publish(&mut decoder, 1..=3);
        assert!(decoder.recent.is_empty());
        decoder.followers.store(2, Ordering::SeqCst);
        let (before, before_seen) = probe(at(2), 10);
        decoder.join(before);
        assert_eq!(sent_back(&before_seen), 1);
        let (after, after_seen) = probe(at(3), 10);
        decoder.join(after);
        publish(&mut decoder, 4..=4);
        assert_eq!((sent_back(&after_seen), taken(&after_seen)), (0, vec![4]));
    }
}
