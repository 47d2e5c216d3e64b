//! Snapshots: the whole state written to Redis in chunks under a new generation, then made
//! current by replacing one manifest key; the previous generation is kept as a fallback, the
//! one before it and the journal it covered are trimmed.
//!
//! Format: a manifest ([`crate::manifest`]: `PRMS`, format version, body, CRC-32 of all before it) lists the
//! generation's chunks with their lengths and CRC-32s; chunks hold encoded shards: the
//! index's, then the reservation book's. Shards are copied one at a time under their lock
//! (an index shard's read lock, a book shard's mutex), so queries never wait and a writer
//! waits only for one shard's copy. The copy runs on a blocking thread, paced ([`Pace`]) to a
//! share of one core: on a small machine an unpaced copy holds a whole core for its length,
//! and calls wait for a core.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::Keys;
use crate::codec::{Reader, Writer};
use crate::engine::Engine;
use crate::index::Index;
use crate::manifest::{Manifest, ManifestError, FORMAT_VERSION, OLDEST_READ_VERSION};
use crate::reservation::{Layout, Reservation};

/// Target size of one chunk value: small, so that Redis, which takes one command at a time and
/// appends each to its log before it answers the next, answers journal writes between chunks
/// within a fraction of a millisecond.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunk reads in flight while a generation loads: the next chunks arrive while one decodes.
const READ_AHEAD: usize = 8;
/// How often a snapshot checks whether the batches it counts are durable yet.
const DURABLE_POLL: Duration = Duration::from_millis(2);
/// Copy work between two pauses of a paced copy: short, so that a call that finds both cores
/// busy waits at most about this long for the copy to step aside.
const PACE_SLICE: Duration = Duration::from_micros(250);

/// Keeps a CPU-bound copy to a share of one core: after each slice of work, the copying
/// thread sleeps for as long as keeps the work at that share of the time elapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Share of one core, 1 to 100; 100 copies without pausing.
    percent: u32,
}

impl Pace {
    pub fn new(percent: u32) -> Self {
        Self {
            percent: percent.clamp(1, 100),
        }
    }

    /// Called between steps of work on a blocking thread, with when the slice of work in
    /// progress began: pauses once the slice is long enough; returns when the next began.
    fn step(self, slice_from: Instant) -> Instant {
        let worked = slice_from.elapsed();
        if self.percent == 100 || worked < PACE_SLICE {
            return slice_from;
        }
        std::thread::sleep(worked * (100 - self.percent) / self.percent);
        Instant::now()
    }
}

/// Why a generation could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Missing or damaged data: fall back to an older generation.
    #[error("snapshot generation is unusable: {0}")]
    Corrupt(String),
    /// Written by a format this build does not read: refuse to start rather than lose it.
    #[error("snapshot format version {found} is not supported (this build reads versions {OLDEST_READ_VERSION} to {FORMAT_VERSION}); start a build that reads it, or move the data aside")]
    Unsupported { found: u16 },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A chunk's read did not finish (its task was cancelled with the runtime).
    #[error("reading a snapshot chunk stopped: {0}")]
    Stopped(String),
}

impl From<ManifestError> for LoadError {
    fn from(error: ManifestError) -> Self {
        match error {
            ManifestError::Corrupt(why) => LoadError::Corrupt(format!("manifest {why}")),
            ManifestError::Unsupported { found } => LoadError::Unsupported { found },
        }
    }
}

/// What writing a generation did, for logs and metrics; the manifest keeps no total size.
fn report(manifest: &Manifest, reservations: u64, bytes: u64) -> SnapshotReport {
    SnapshotReport {
        generation: manifest.generation,
        positions: manifest.positions,
        reservations,
        bytes,
        chunks: manifest.chunks.len(),
    }
}

/// What a finished snapshot wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotReport {
    pub generation: u64,
    pub positions: u64,
    /// Live and ended: the book as the snapshot copied it.
    pub reservations: u64,
    pub bytes: u64,
    pub chunks: usize,
}

/// Writes a new generation and makes it current.
///
/// Sources' sequences and reservations are read after the shards are copied, then the write
/// waits until every mutation applied so far is durable: one the copy caught half-way, or
/// missed, is then in the journal and replays on top, and nothing the snapshot counts can be
/// lost by a crash. (Without the wait, a batch applied during the copy could be partly in the
/// snapshot yet not durable, and its feed would resend it after a crash: applied twice.)
pub async fn write(
    conn: &mut ConnectionManager,
    keys: &Keys,
    engine: &Engine,
    now_ms: i64,
    durable_within: Duration,
    audit_retention: Duration,
    pace: Pace,
) -> anyhow::Result<SnapshotReport> {
    let generation: u64 = conn.incr(&keys.generation, 1u64).await?;
    // The mark is read before any shard is copied: every entry already in the journal was
    // applied in memory before it was appended, so the copy below contains it.
    let journal_mark = journal_mark(conn, keys).await?;
    let (positions, chunks) =
        write_part(conn, keys, engine, generation, Part::Positions, pace).await?;
    let (reservations, reservation_chunks) =
        write_part(conn, keys, engine, generation, Part::Reservations, pace).await?;
    let network = engine.network();
    // Read before the wait, like the sequences: what the wait makes durable covers them.
    let broker_seqs = engine.broker_seqs();
    let source_seqs = durable_seqs(engine, durable_within).await?;
    let manifest = Manifest {
        generation,
        created_ms: now_ms,
        shard_count: engine.index().shard_count() as u32,
        journal_mark,
        network: network.encode(),
        source_seqs,
        broker_seqs,
        sync_marks: engine.sync_marks(),
        chunks: chunks.sums,
        positions,
        reservation_chunks: reservation_chunks.sums,
    };
    let superseded = switch_to(conn, keys, &manifest).await?;
    let keep_from = retention_start(&manifest.journal_mark, audit_retention);
    trim_superseded(conn, keys, generation, superseded, keep_from).await?;
    let bytes = chunks.bytes + reservation_chunks.bytes;
    Ok(report(&manifest, reservations, bytes))
}

/// The id of the newest journal entry ("0-0" for an empty journal), which the snapshot covers.
async fn journal_mark(conn: &mut ConnectionManager, keys: &Keys) -> anyhow::Result<String> {
    let newest: redis::streams::StreamRangeReply = conn
        .xrevrange_count(&keys.journal, "+", "-", 1usize)
        .await?;
    Ok(newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone()))
}

/// Chunks stored so far: their sums go in the manifest, their sizes in the report.
#[derive(Default)]
struct Written {
    sums: Vec<(u32, u32)>,
    bytes: u64,
}

impl Written {
    /// Stores the next chunk under the key `key_of` gives its number, recording its sum.
    async fn put(
        &mut self,
        conn: &mut ConnectionManager,
        key_of: impl FnOnce(usize) -> String,
        data: Vec<u8>,
    ) -> anyhow::Result<()> {
        let key = key_of(self.sums.len());
        self.sums.push((data.len() as u32, crc32fast::hash(&data)));
        self.bytes += data.len() as u64;
        let () = conn.set(key, data).await?;
        Ok(())
    }
}

/// What a snapshot copies, one shard at a time on a blocking thread, paced: the index's
/// positions or the reservation book, whose ended reservations (remembered for their
/// retention) can outnumber the positions.
#[derive(Debug, Clone, Copy)]
enum Part {
    Positions,
    Reservations,
}

impl Part {
    fn shards(self, engine: &Engine) -> usize {
        match self {
            Part::Positions => engine.index().shard_count(),
            Part::Reservations => engine.book_shards(),
        }
    }

    /// Encodes shard `at` into `w`: how many positions or reservations it held.
    fn encode(self, engine: &Engine, at: usize, w: &mut Writer) -> u64 {
        match self {
            Part::Positions => engine.index().encode_shard(at, w),
            Part::Reservations => engine.encode_reservations(at, w) as u64,
        }
    }

    fn key(self, keys: &Keys, generation: u64, chunk: usize) -> String {
        match self {
            Part::Positions => keys.chunk(generation, chunk),
            Part::Reservations => keys.reservation_chunk(generation, chunk),
        }
    }
}

/// Copies and stores every shard of `part`; returns how many positions or reservations were
/// copied.
async fn write_part(
    conn: &mut ConnectionManager,
    keys: &Keys,
    engine: &Engine,
    generation: u64,
    part: Part,
    pace: Pace,
) -> anyhow::Result<(u64, Written)> {
    let mut written = Written::default();
    let mut copied = 0;
    let mut next = 0;
    while next < part.shards(engine) {
        // Copying is CPU work: it runs (and pauses) on a blocking thread, so the runtime's
        // workers keep answering calls meanwhile.
        let copier = engine.clone();
        let (data, count, after) =
            tokio::task::spawn_blocking(move || encode_chunk(&copier, part, next, pace)).await?;
        next = after;
        copied += count;
        let key_of = |chunk| part.key(keys, generation, chunk);
        written.put(conn, key_of, data).await?;
    }
    Ok((copied, written))
}

/// The manifests a switch pushes down, decoded where they still decode.
struct Superseded {
    /// Was current; now the fallback.
    previous: Option<Manifest>,
    /// Was the fallback; now nothing refers to it.
    retired: Option<Manifest>,
}

/// Makes `manifest` current and the current one previous, in one atomic step.
async fn switch_to(
    conn: &mut ConnectionManager,
    keys: &Keys,
    manifest: &Manifest,
) -> anyhow::Result<Superseded> {
    let current: Option<Vec<u8>> = conn.get(&keys.manifest).await?;
    let retired: Option<Vec<u8>> = conn.get(&keys.previous_manifest).await?;
    let mut switch = redis::pipe();
    switch.atomic();
    if let Some(current) = &current {
        switch.set(&keys.previous_manifest, current).ignore();
    }
    switch.set(&keys.manifest, manifest.encode()).ignore();
    let () = switch.query_async(conn).await?;
    let decoded = |bytes: Option<Vec<u8>>| bytes.and_then(|bytes| Manifest::decode(&bytes).ok());
    Ok(Superseded {
        previous: decoded(current),
        retired: decoded(retired),
    })
}

/// The oldest journal entry id the audit trail keeps: `retention` before the mark (both on
/// Redis's clock), or `None` for an empty journal.
fn retention_start(mark: &str, retention: Duration) -> Option<(u64, u64)> {
    let (ms, _) = parse_id(mark)?;
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    Some((ms.saturating_sub(retention_ms), 0))
}

/// Frees what the switch left unreachable, so Redis holds two generations and the journal
/// from the older of the previous generation's mark and the audit retention (`keep_from`).
async fn trim_superseded(
    conn: &mut ConnectionManager,
    keys: &Keys,
    generation: u64,
    superseded: Superseded,
    keep_from: Option<(u64, u64)>,
) -> anyhow::Result<()> {
    // The generation before the previous one is no longer a fallback; recovery needs the
    // journal from the previous generation's mark on, the audit trail its retention.
    if let Some(retired) = superseded.retired {
        if retired.generation != generation {
            // Both kinds of chunk: position chunks and reservation chunks.
            let positions = (0..retired.chunks.len()).map(|c| keys.chunk(retired.generation, c));
            let holds = (0..retired.reservation_chunks.len())
                .map(|c| keys.reservation_chunk(retired.generation, c));
            let keys_to_drop: Vec<String> = positions.chain(holds).collect();
            if !keys_to_drop.is_empty() {
                let () = conn.del(keys_to_drop).await?;
            }
        }
    }
    let recovery_from = superseded
        .previous
        .and_then(|p| after(&p.journal_mark))
        .and_then(|id| parse_id(&id));
    if let Some((ms, seq)) = recovery_from.zip(keep_from).map(|(a, b)| a.min(b)) {
        let _: u64 = redis::cmd("XTRIM")
            .arg(&keys.journal)
            .arg("MINID")
            .arg(format!("{ms}-{seq}"))
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Encodes shards of `part` from `first` on until a chunk is full, pausing between shards as
/// `pace` says; returns the chunk, the positions or reservations in it and the next shard.
fn encode_chunk(engine: &Engine, part: Part, first: usize, pace: Pace) -> (Vec<u8>, u64, usize) {
    let mut chunk = Writer::default();
    let mut count = 0;
    let mut shard = first;
    let mut slice_from = Instant::now();
    while shard < part.shards(engine) && chunk.buf.len() < CHUNK_BYTES {
        count += part.encode(engine, shard, &mut chunk);
        shard += 1;
        slice_from = pace.step(slice_from);
    }
    (chunk.buf, count, shard)
}

/// Every source's applied sequence, once every mutation applied so far is durable.
async fn durable_seqs(engine: &Engine, within: Duration) -> anyhow::Result<Vec<(String, u64)>> {
    let wanted: Vec<(String, u64)> = engine
        .network()
        .sources()
        .iter()
        .map(|s| (s.def.id.clone(), s.feed.seqs().0))
        .collect();
    let applied = engine.next_ticket();
    let deadline = Instant::now() + within;
    while engine.settled_below() < applied {
        if Instant::now() >= deadline {
            anyhow::bail!("mutations applied during the snapshot did not become durable in time");
        }
        tokio::time::sleep(DURABLE_POLL).await;
    }
    Ok(wanted)
}

/// The stream id right after `id` ("ms-seq"), or `None` for the empty mark.
fn after(id: &str) -> Option<String> {
    let (ms, seq) = parse_id(id)?;
    (ms, seq).ne(&(0, 0)).then(|| format!("{ms}-{}", seq + 1))
}

/// A stream id's (milliseconds, sequence).
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A generation read back: its manifest, an index holding its positions, its reservations.
pub struct Loaded {
    pub manifest: Manifest,
    pub index: Index,
    pub reservations: Vec<Reservation>,
}

/// Reads one chunk and checks its length and checksum.
async fn chunk(
    conn: &mut ConnectionManager,
    key: String,
    (len, crc): (u32, u32),
) -> Result<Vec<u8>, LoadError> {
    let data: Option<Vec<u8>> = conn.get(&key).await?;
    let data = data.ok_or_else(|| LoadError::Corrupt(format!("chunk {key} is missing")))?;
    if data.len() != len as usize || crc32fast::hash(&data) != crc {
        return Err(LoadError::Corrupt(format!(
            "chunk {key} fails its checksum"
        )));
    }
    Ok(data)
}

/// Reads the generation named by the manifest at `manifest_key`; `Ok(None)` if there is none.
pub async fn load(
    conn: &mut ConnectionManager,
    keys: &Keys,
    manifest_key: &str,
) -> Result<Option<Loaded>, LoadError> {
    let Some(bytes): Option<Vec<u8>> = conn.get(manifest_key).await? else {
        return Ok(None);
    };
    let (version, manifest) = Manifest::decode_versioned(&bytes)?;
    let layout = crate::manifest::reservation_layout(version);
    let index = Index::new(manifest.shard_count as usize);
    if index.shard_count() != manifest.shard_count as usize {
        return Err(LoadError::Corrupt(
            "shard count is not a power of two".into(),
        ));
    }
    restore_positions(conn, keys, &manifest, &index).await?;
    let reservations = read_reservations(conn, keys, &manifest, layout).await?;
    Ok(Some(Loaded {
        manifest,
        index,
        reservations,
    }))
}

/// Reads `chunks` (keys and sums) in order, [`READ_AHEAD`] at a time in flight, and hands each
/// to `take` with its number once its checksum holds.
async fn each_chunk(
    conn: &ConnectionManager,
    chunks: impl Iterator<Item = (String, (u32, u32))>,
    mut take: impl FnMut(usize, &[u8]) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    let mut chunks = chunks.fuse();
    let mut ahead = VecDeque::with_capacity(READ_AHEAD);
    for i in 0.. {
        while ahead.len() < READ_AHEAD {
            let Some((key, sum)) = chunks.next() else {
                break;
            };
            let mut conn = conn.clone();
            ahead.push_back(tokio::spawn(
                async move { chunk(&mut conn, key, sum).await },
            ));
        }
        let Some(read) = ahead.pop_front() else {
            break;
        };
        let data = read
            .await
            .map_err(|e| LoadError::Stopped(e.to_string()))??;
        take(i, &data)?;
    }
    Ok(())
}

/// Restores the generation's position chunks into `index`, checking each chunk first.
async fn restore_positions(
    conn: &ConnectionManager,
    keys: &Keys,
    manifest: &Manifest,
    index: &Index,
) -> Result<(), LoadError> {
    let chunks = (manifest.chunks.iter().enumerate())
        .map(|(i, &sum)| (keys.chunk(manifest.generation, i), sum));
    each_chunk(conn, chunks, |i, data| {
        let mut r = Reader::new(data);
        while !r.is_empty() {
            index
                .restore_shard(&mut r)
                .map_err(|e| LoadError::Corrupt(format!("chunk {i}: {e}")))?;
        }
        Ok(())
    })
    .await
}

/// Decodes the generation's reservation chunks, checking each chunk first.
async fn read_reservations(
    conn: &ConnectionManager,
    keys: &Keys,
    manifest: &Manifest,
    layout: Layout,
) -> Result<Vec<Reservation>, LoadError> {
    let mut reservations = Vec::new();
    let chunks = (manifest.reservation_chunks.iter().enumerate())
        .map(|(i, &sum)| (keys.reservation_chunk(manifest.generation, i), sum));
    each_chunk(conn, chunks, |i, data| {
        let mut r = Reader::new(data);
        let corrupt =
            |e: crate::codec::CodecError| LoadError::Corrupt(format!("reservation chunk {i}: {e}"));
        while !r.is_empty() {
            for _ in 0..r.len().map_err(corrupt)? {
                reservations.push(Reservation::decode_layout(&mut r, layout).map_err(corrupt)?);
            }
        }
        Ok(())
    })
    .await?;
    Ok(reservations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_format_version_is_refused_with_what_to_do() {
        let error = LoadError::from(ManifestError::Unsupported { found: 0 });
        assert!(matches!(error, LoadError::Unsupported { found: 0 }));
        assert!(error.to_string().contains("version 0 is not supported"));
        assert!(error.to_string().contains("reads versions 1 to 5"));
    }

    #[test]
    fn a_paced_copy_pauses_to_keep_its_share_of_a_core() {
        let worked = Duration::from_millis(2);
        let stepped = Instant::now();
        let next = Pace::new(25).step(stepped - worked);
        // 2 ms of work at a quarter of a core: 6 ms of pause before the next slice.
        assert!(
            next >= stepped + Duration::from_millis(6),
            "paused too briefly"
        );
        let slice_from = Instant::now() - worked;
        assert_eq!(
            Pace::new(100).step(slice_from),
            slice_from,
            "100 % never pauses"
        );
        let short = Instant::now();
        assert_eq!(Pace::new(25).step(short), short, "a short slice goes on");
    }

    #[test]
    fn journal_trim_starts_after_the_mark() {
        assert_eq!(after("17-2"), Some("17-3".into()));
        assert_eq!(after("0-0"), None);
    }
}
