//! What a mutation of the core leaves behind for the journal. The core applies a change in
//! memory and returns a [`Record`] of it; the durability layer appends the record before the
//! caller is acknowledged. Encoding is plain bytes: only the checkpoint layer knows where they go.

use std::sync::Arc;

use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::index::Effects;
use crate::network::Network;
use crate::reservation::{Layout, Reservation};
use crate::sync::SyncMark;

/// Encoding version of a record; bumped on any incompatible change. Version 6 added the broker
/// position of a batch read from a broker feed; version 5 the committed sync's mark; version 4
/// the answer a promise or route kept with its hold; version 3 the cause and the reservations'
/// owner. Versions 2 to 5 (without the later fields) are still read.
const RECORD_VERSION: u8 = 6;
/// Records of version 5: sync marks, no broker positions.
const SYNC_MARK_VERSION: u8 = 5;
/// Records of version 4: kept answers, no sync marks.
const ANSWERED_VERSION: u8 = 4;
/// Records of version 3: a cause and owners, no kept answers.
const OWNED_VERSION: u8 = 3;
/// The oldest version read: its reservations have no owner.
const OLDEST_READ_VERSION: u8 = 2;

const HAS_SOURCE: u8 = 1;
const HAS_NETWORK: u8 = 2;
const HAS_CAUSE: u8 = 4;
const HAS_SYNC: u8 = 8;
const HAS_BROKER: u8 = 16;

/// Who made a change and why, for the audit trail: journaled with the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cause {
    /// The credential that asked for it, or the service's own loop (`system:expiry`).
    pub actor: String,
    /// The request's id (`x-request-id`), as the caller sent it or as generated for it.
    pub request_id: String,
    /// The operation (`reserve`, `apply_batch`, ...).
    pub action: String,
    /// Server time of the change.
    pub at_ms: i64,
}

impl Cause {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.actor);
        w.str(&self.request_id);
        w.str(&self.action);
        w.ivar(self.at_ms);
    }

    fn decode(r: &mut Reader<'_>) -> Decoded<Self> {
        Ok(Cause {
            actor: r.str()?.to_owned(),
            request_id: r.str()?.to_owned(),
            action: r.str()?.to_owned(),
            at_ms: r.ivar()?,
        })
    }
}

/// The durable trace of one mutation.
#[derive(Debug, Default)]
pub struct Record {
    /// The feed batch this mutation applied, which recovery restores as the source's sequence.
    pub source_seq: Option<(String, u64)>,
    /// The broker stream sequence of the message that carried the batch (a broker feed's
    /// batch only), which recovery restores as the source's broker position.
    pub broker_seq: Option<u64>,
    /// The whole network configuration after a network change (it is small and rarely changes).
    pub network: Option<Vec<u8>>,
    /// Position images, each tagged with its shard sequence number.
    pub effects: Effects,
    /// Reservations as they are after the mutation.
    pub reservations: Vec<Reservation>,
    /// The engine's number for the mutation, settled once the record is durable.
    pub ticket: Option<u64>,
    /// Who asked for the change, set by the application service before the record is queued.
    pub cause: Option<Cause>,
    /// The sync a full-sync commit committed: the source's mark after it.
    pub sync: Option<SyncMark>,
    /// What the mutation replaced outside the index, set by the core; never journaled.
    pub undo: Undo,
}

/// What a mutation replaced outside the index (the index keeps its own in [`Effects`]), held in
/// memory with its record so that a mutation the journal never took can be taken back
/// (the engine's `undo`).
#[derive(Debug, Default)]
pub struct Undo {
    /// Each of the record's reservations as it was before, `None` where the mutation created
    /// it; in the same order as the record's.
    pub(crate) reservations: Vec<Option<Reservation>>,
    /// The network the mutation replaced.
    pub(crate) network: Option<Arc<Network>>,
    /// The batch's source's last applied sequence before the batch.
    pub(crate) last_seq: Option<u64>,
    /// The batch's source's broker position before the batch (a broker feed's batch only).
    pub(crate) broker_seq: Option<u64>,
    /// The sync mark a commit replaced (`Some(None)`: there was none).
    pub(crate) sync_mark: Option<Option<SyncMark>>,
}

impl Record {
    /// Whether replaying this record would change anything.
    pub fn is_empty(&self) -> bool {
        self.source_seq.is_none()
            && self.network.is_none()
            && self.effects.count() == 0
            && self.reservations.is_empty()
            && self.sync.is_none()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(RECORD_VERSION);
        let flag = |present: bool, flag: u8| if present { flag } else { 0 };
        w.u8(flag(self.source_seq.is_some(), HAS_SOURCE)
            | flag(self.network.is_some(), HAS_NETWORK)
            | flag(self.cause.is_some(), HAS_CAUSE)
            | flag(self.sync.is_some(), HAS_SYNC)
            | flag(self.broker_seq.is_some(), HAS_BROKER));
        if let Some((source, seq)) = &self.source_seq {
            w.str(source);
            w.var(*seq);
        }
        if let Some(broker_seq) = self.broker_seq {
            w.var(broker_seq);
        }
        if let Some(network) = &self.network {
            w.bytes(network);
        }
        if let Some(cause) = &self.cause {
            cause.encode(&mut w);
        }
        if let Some(mark) = &self.sync {
            mark.encode(&mut w);
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
    pub broker_seq: Option<u64>,
    pub network: Option<&'a [u8]>,
    pub cause: Option<Cause>,
    pub sync: Option<SyncMark>,
    pub reservations: Vec<Reservation>,
    pub effects: Reader<'a>,
}

impl<'a> StoredRecord<'a> {
    /// The ids of the reservations the record changed.
    pub fn reservation_ids(&self) -> Vec<String> {
        self.reservations.iter().map(|r| r.id.clone()).collect()
    }

    /// The order ids of the committed reservations the record changed.
    pub fn order_ids(&self) -> Vec<String> {
        self.reservations
            .iter()
            .filter(|r| !r.order_id.is_empty())
            .map(|r| r.order_id.clone())
            .collect()
    }

    pub fn decode(bytes: &'a [u8]) -> Decoded<StoredRecord<'a>> {
        let mut r = Reader::new(bytes);
        let layout = match r.u8()? {
            OLDEST_READ_VERSION => Layout::Ownerless,
            OWNED_VERSION => Layout::Owned,
            ANSWERED_VERSION | SYNC_MARK_VERSION | RECORD_VERSION => Layout::Answered,
            _ => return Err(CodecError("unsupported journal record version")),
        };
        let flags = r.u8()?;
        let source_seq = if flags & HAS_SOURCE != 0 {
            Some((r.str()?, r.var()?))
        } else {
            None
        };
        // Older versions never set the flag.
        let broker_seq = if flags & HAS_BROKER != 0 {
            Some(r.var()?)
        } else {
            None
        };
        let network = if flags & HAS_NETWORK != 0 {
            Some(r.bytes()?)
        } else {
            None
        };
        let cause = if flags & HAS_CAUSE != 0 {
            Some(Cause::decode(&mut r)?)
        } else {
            None
        };
        let sync = if flags & HAS_SYNC != 0 {
            Some(SyncMark::decode(&mut r)?)
        } else {
            None
        };
        let reservations = (0..r.len()?)
            .map(|_| Reservation::decode_layout(&mut r, layout))
            .collect::<Decoded<_>>()?;
        Ok(StoredRecord {
            source_seq,
            broker_seq,
            network,
            cause,
            sync,
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
