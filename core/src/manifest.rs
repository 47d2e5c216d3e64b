//! The manifest of a snapshot generation as bytes: `PRMS`, the format version, the fields,
//! and a CRC-32 of all before it. The server stores it and reads the chunks it lists; the
//! format lives here, beside the other decoders of durable state, so it is checked like them
//! without a store.

use crate::codec::{Decoded, Reader, Writer};
use crate::index::MAX_SHARDS;
use crate::reservation::Layout;
use crate::sync::SyncMark;

const MAGIC: &[u8; 4] = b"PRMS";
/// The snapshot format this build writes. Version 5 added the sources' broker positions,
/// version 4 the committed syncs' marks, version 3 the answer a promise or route kept with its
/// hold to the reservation chunks, version 2 the reservations' owner; versions 1 to 4 are
/// still read.
pub const FORMAT_VERSION: u16 = 5;
/// The first version with sync marks.
const SYNC_MARKS_VERSION: u16 = 4;
/// The first version with broker positions.
const BROKER_SEQS_VERSION: u16 = 5;
/// The oldest snapshot format this build reads.
pub const OLDEST_READ_VERSION: u16 = 1;

/// What a generation holds, besides its chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub generation: u64,
    pub created_ms: i64,
    pub shard_count: u32,
    /// Id of the last journal entry appended before the snapshot started; every entry up to it
    /// is contained in the snapshot.
    pub journal_mark: String,
    pub network: Vec<u8>,
    pub source_seqs: Vec<(String, u64)>,
    /// Each broker-fed source's last applied broker stream sequence.
    pub broker_seqs: Vec<(String, u64)>,
    /// Each source's last committed sync per supply type.
    pub sync_marks: Vec<SyncMark>,
    /// Length and CRC-32 of each chunk of positions.
    pub chunks: Vec<(u32, u32)>,
    pub positions: u64,
    /// Length and CRC-32 of each chunk of reservations.
    pub reservation_chunks: Vec<(u32, u32)>,
}

/// Why a manifest does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Damaged: no header, a failed checksum, or fields that do not decode.
    #[error("manifest {0}")]
    Corrupt(String),
    /// Intact, but written in a format version this build does not read.
    #[error("snapshot format version {found} is not supported")]
    Unsupported { found: u16 },
}

impl Manifest {
    pub fn encode_with_version(&self, version: u16) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(MAGIC);
        w.buf.extend_from_slice(&version.to_le_bytes());
        w.var(self.generation);
        w.ivar(self.created_ms);
        w.u32(self.shard_count);
        w.str(&self.journal_mark);
        w.bytes(&self.network);
        write_seqs(&mut w, &self.source_seqs);
        write_sums(&mut w, &self.chunks);
        w.var(self.positions);
        write_sums(&mut w, &self.reservation_chunks);
        if version >= SYNC_MARKS_VERSION {
            w.len(self.sync_marks.len());
            self.sync_marks.iter().for_each(|mark| mark.encode(&mut w));
        }
        if version >= BROKER_SEQS_VERSION {
            write_seqs(&mut w, &self.broker_seqs);
        }
        let crc = crc32fast::hash(&w.buf);
        w.u32(crc);
        w.buf
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_version(FORMAT_VERSION)
    }

    /// Reads a manifest [`Manifest::encode`] wrote; its shard count is one an index can have
    /// (a power of two up to [`MAX_SHARDS`]), as recovery makes an index of that many shards.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        Self::decode_versioned(bytes).map(|(_, manifest)| manifest)
    }

    /// Reads a manifest as [`Manifest::decode`] does, with the format version it was written
    /// in, which says how the chunks it lists are laid out ([`reservation_layout`]).
    pub fn decode_versioned(bytes: &[u8]) -> Result<(u16, Manifest), ManifestError> {
        let (version, body) = checked_body(bytes)?;
        let manifest = read_manifest(&mut Reader::new(body), version)
            .map_err(|e| ManifestError::Corrupt(format!("fields: {e}")))?;
        let shards = manifest.shard_count as usize;
        if !(shards.is_power_of_two() && shards <= MAX_SHARDS) {
            return Err(ManifestError::Corrupt(format!(
                "shard count {shards} is not a power of two up to {MAX_SHARDS}"
            )));
        }
        Ok((version, manifest))
    }
}

/// How the reservations in the chunks of a generation of format `version` (one
/// [`Manifest::decode_versioned`] accepted) are laid out: format 1 holds no owners, format 2
/// no kept answers.
pub fn reservation_layout(version: u16) -> Layout {
    match version {
        0 | 1 => Layout::Ownerless,
        2 => Layout::Owned,
        _ => Layout::Answered,
    }
}

/// Both chunk lists are stored alike: a count, then each chunk's length and CRC-32.
fn write_sums(w: &mut Writer, sums: &[(u32, u32)]) {
    w.len(sums.len());
    for (len, crc) in sums {
        w.u32(*len);
        w.u32(*crc);
    }
}

/// Sources' sequences and broker positions are stored alike: a count, then each source's id
/// and number.
fn write_seqs(w: &mut Writer, seqs: &[(String, u64)]) {
    w.len(seqs.len());
    for (source, seq) in seqs {
        w.str(source);
        w.var(*seq);
    }
}

/// Reads a list written by [`write_seqs`].
fn read_seqs(r: &mut Reader<'_>) -> Decoded<Vec<(String, u64)>> {
    (0..r.len()?)
        .map(|_| Ok((r.str()?.to_owned(), r.var()?)))
        .collect()
}

/// Reads a chunk list written by [`write_sums`].
fn read_sums(r: &mut Reader<'_>) -> Decoded<Vec<(u32, u32)>> {
    (0..r.len()?).map(|_| Ok((r.u32()?, r.u32()?))).collect()
}

/// Checks header, checksum and version before any field is trusted; returns the version and
/// the fields' bytes.
fn checked_body(bytes: &[u8]) -> Result<(u16, &[u8]), ManifestError> {
    let corrupt = |what: &str| ManifestError::Corrupt(what.to_owned());
    if bytes.len() < 10 || &bytes[..4] != MAGIC {
        return Err(corrupt("has no PRMS header"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(tail);
    if crc32fast::hash(body) != u32::from_le_bytes(stored) {
        return Err(corrupt("fails its checksum"));
    }
    let found = u16::from_le_bytes([body[4], body[5]]);
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&found) {
        return Err(ManifestError::Unsupported { found });
    }
    Ok((found, &body[6..]))
}

/// The fields of a checked manifest of format `version`, in the order
/// [`Manifest::encode_with_version`] writes them.
fn read_manifest(r: &mut Reader<'_>, version: u16) -> Decoded<Manifest> {
    let mut manifest = Manifest {
        generation: r.var()?,
        created_ms: r.ivar()?,
        shard_count: r.u32()?,
        journal_mark: r.str()?.to_owned(),
        network: r.bytes()?.to_vec(),
        source_seqs: read_seqs(r)?,
        chunks: read_sums(r)?,
        positions: r.var()?,
        reservation_chunks: read_sums(r)?,
        sync_marks: Vec::new(),
        broker_seqs: Vec::new(),
    };
    if version >= SYNC_MARKS_VERSION {
        manifest.sync_marks = (0..r.len()?)
            .map(|_| SyncMark::decode(r))
            .collect::<Decoded<_>>()?;
    }
    if version >= BROKER_SEQS_VERSION {
        manifest.broker_seqs = read_seqs(r)?;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            generation: 3,
            created_ms: 1_000,
            shard_count: 4,
            journal_mark: "17-2".into(),
            network: vec![1, 2, 3],
            source_seqs: vec![("WMS".into(), 9)],
            broker_seqs: vec![("WMS".into(), 41)],
            sync_marks: Vec::new(),
            chunks: vec![(10, 0xabcd)],
            positions: 12,
            reservation_chunks: vec![(4, 0x1234)],
        }
    }

    #[test]
    fn manifest_round_trips() {
        assert_eq!(
            Manifest::decode(&manifest().encode()).expect("decodes"),
            manifest()
        );
    }

    #[test]
    fn damaged_manifest_is_corrupt_and_other_versions_are_refused() {
        let mut bytes = manifest().encode();
        bytes[8] ^= 0xff;
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Corrupt(_))
        ));
        let old = manifest().encode_with_version(0);
        let error = Manifest::decode(&old).expect_err("version 0 is not read");
        assert_eq!(error, ManifestError::Unsupported { found: 0 });
        let newer = manifest().encode_with_version(FORMAT_VERSION + 1);
        assert_eq!(
            Manifest::decode(&newer),
            Err(ManifestError::Unsupported {
                found: FORMAT_VERSION + 1
            }),
            "a newer format is not guessed at"
        );
    }

    #[test]
    fn a_manifest_of_the_format_before_owners_is_still_read() {
        let before = manifest().encode_with_version(1);
        assert_eq!(
            Manifest::decode_versioned(&before).expect("version 1 is read"),
            (
                1,
                Manifest {
                    broker_seqs: Vec::new(),
                    ..manifest()
                }
            )
        );
        assert_eq!(reservation_layout(1), Layout::Ownerless);
        assert_eq!(reservation_layout(2), Layout::Owned);
        let (version, _) = Manifest::decode_versioned(&manifest().encode()).expect("decodes");
        assert_eq!(
            (version, reservation_layout(version)),
            (FORMAT_VERSION, Layout::Answered)
        );
    }

    #[test]
    fn a_manifest_keeps_broker_positions_and_one_before_them_reads_without() {
        let (_, read) = Manifest::decode_versioned(&manifest().encode()).expect("decodes");
        assert_eq!(read.broker_seqs, vec![("WMS".to_owned(), 41)]);
        let before = manifest().encode_with_version(BROKER_SEQS_VERSION - 1);
        let (version, read) = Manifest::decode_versioned(&before).expect("version 4 is read");
        assert_eq!(version, 4);
        assert_eq!(read.broker_seqs, Vec::new());
        assert_eq!(read.source_seqs, manifest().source_seqs);
    }

    proptest::proptest! {
        /// A manifest with bytes changed or cut short is refused, never a panic.
        #[test]
        fn damaged_manifests_never_panic(
            changes in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 0..6),
            cut in 0usize..4096,
        ) {
            let mut bytes = manifest().encode();
            for (at, value) in changes {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = Manifest::decode(&bytes);
        }
    }
}
