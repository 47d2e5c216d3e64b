//! What a mutation of the core leaves behind for the journal. The core applies a change in
//! memory and returns a [`Record`] of it; the durability layer appends the record before the
//! caller is acknowledged. Encoding is plain bytes: only the checkpoint layer knows where they go.

use std::sync::Arc;

use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::index::Effects;
use crate::network::Network;
use crate::reservation::Reservation;

/// Encoding version of a record; bumped on any incompatible change.
const RECORD_VERSION: u8 = 2;

const HAS_SOURCE: u8 = 1;
const HAS_NETWORK: u8 = 2;

/// The durable trace of one mutation.
#[derive(Debug, Default)]
pub struct Record {
    /// The feed batch this mutation applied, which recovery restores as the source's sequence.
    pub source_seq: Option<(String, u64)>,
    /// The whole network configuration after a network change (it is small and rarely changes).
    pub network: Option<Vec<u8>>,
    /// Position images, each tagged with its shard sequence number.
    pub effects: Effects,
    /// Reservations as they are after the mutation.
    pub reservations: Vec<Reservation>,
    /// The engine's number for the mutation, settled once the record is durable.
    pub ticket: Option<u64>,
    /// What the mutation replaced outside the index; never journaled.
    pub(crate) undo: Undo,
}

/// What a mutation replaced outside the index (the index keeps its own in [`Effects`]), held in
/// memory with its record so that a mutation the journal never took can be taken back
/// ([`crate::engine::Engine::undo`]).
#[derive(Debug, Default)]
pub(crate) struct Undo {
    /// Each of the record's reservations as it was before, `None` where the mutation created
    /// it; in the same order as the record's.
    pub reservations: Vec<Option<Reservation>>,
    /// The network the mutation replaced.
    pub network: Option<Arc<Network>>,
    /// The batch's source's last applied sequence before the batch.
    pub last_seq: Option<u64>,
}

impl Record {
    /// Whether replaying this record would change anything.
    pub fn is_empty(&self) -> bool {
        self.source_seq.is_none()
            && self.network.is_none()
            && self.effects.count() == 0
            && self.reservations.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(RECORD_VERSION);
        let flags = if self.source_seq.is_some() {
            HAS_SOURCE
        } else {
            0
        } | if self.network.is_some() {
            HAS_NETWORK
        } else {
            0
        };
        w.u8(flags);
        if let Some((source, seq)) = &self.source_seq {
            w.str(source);
            w.var(*seq);
        }
        if let Some(network) = &self.network {
            w.bytes(network);
        }
        w.len(self.reservations.len());
        for reservation in &self.reservations {
            reservation.encode(&mut w);
        }
        w.buf.extend_from_slice(self.effects.as_bytes());
        w.buf
    }
}

/// A record read back from the journal; `effects` is left encoded for the index to replay.
#[derive(Debug)]
pub struct StoredRecord<'a> {
    pub source_seq: Option<(&'a str, u64)>,
    pub network: Option<&'a [u8]>,
    pub reservations: Vec<Reservation>,
    pub effects: Reader<'a>,
}

impl<'a> StoredRecord<'a> {
    pub fn decode(bytes: &'a [u8]) -> Decoded<StoredRecord<'a>> {
        let mut r = Reader::new(bytes);
        if r.u8()? != RECORD_VERSION {
            return Err(CodecError("unsupported journal record version"));
        }
        let flags = r.u8()?;
        let source_seq = if flags & HAS_SOURCE != 0 {
            Some((r.str()?, r.var()?))
        } else {
            None
        };
        let network = if flags & HAS_NETWORK != 0 {
            Some(r.bytes()?)
        } else {
            None
        };
        let reservations = (0..r.len()?)
            .map(|_| Reservation::decode(&mut r))
            .collect::<Decoded<_>>()?;
        Ok(StoredRecord {
            source_seq,
            network,
            reservations,
            effects: r,
        })
    }
}

/// The result of a mutation, and its record when the engine journals. Only this crate makes
/// one; the server's application service is the one place that makes its record durable
/// before the answer goes out.
#[derive(Debug)]
#[must_use = "a change is acknowledged only once its record is durable"]
pub struct Mutation<T> {
    pub(crate) result: T,
    /// `None` when the engine runs in memory only, or when the change changed nothing.
    pub(crate) record: Option<Record>,
}

impl<T> Mutation<T> {
    /// What must be durable before the answer is given.
    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    /// The answer as it will be acknowledged, to inspect before it is durable.
    pub fn peek(&self) -> &T {
        &self.result
    }

    /// The answer and the record to make durable before it is given.
    pub fn into_parts(self) -> (T, Option<Record>) {
        (self.result, self.record)
    }

    /// The answer. For a journaled mutation, only once its record is durable; an engine that
    /// keeps everything in memory (tests, benches) has no record to wait for.
    pub fn into_result(self) -> T {
        self.result
    }
}
