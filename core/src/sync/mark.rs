//! The last committed sync of each source and supply type: what refuses an older sync as
//! stale and answers a resent commit as a duplicate. Journaled with its commit and kept in
//! snapshots.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::clock::UnixMillis;
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::domain::SupplyType;

/// A committed sync and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMark {
    pub source_id: String,
    pub supply_type: SupplyType,
    pub sync_id: String,
    pub as_of_ms: UnixMillis,
    pub set: u64,
    pub zeroed: u64,
    pub unchanged: u64,
}

impl SyncMark {
    pub fn encode(&self, w: &mut Writer) {
        w.str(&self.source_id);
        w.u8(self.supply_type.index() as u8);
        w.str(&self.sync_id);
        w.ivar(self.as_of_ms);
        w.var(self.set);
        w.var(self.zeroed);
        w.var(self.unchanged);
    }

    pub fn decode(r: &mut Reader<'_>) -> Decoded<Self> {
        let source_id = r.str()?.to_owned();
        let supply_type = *SupplyType::ALL
            .get(usize::from(r.u8()?))
            .ok_or(CodecError("supply type"))?;
        Ok(Self {
            source_id,
            supply_type,
            sync_id: r.str()?.to_owned(),
            as_of_ms: r.ivar()?,
            set: r.var()?,
            zeroed: r.var()?,
            unchanged: r.var()?,
        })
    }
}

/// A mark, and the number of the commit that set it while that may not be durable yet.
type Entry = (SyncMark, Option<u64>);

/// The marks, by source and supply type.
#[derive(Debug, Default)]
pub(crate) struct SyncMarks {
    marks: Mutex<HashMap<(String, SupplyType), Entry>>,
}

impl SyncMarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, SupplyType), Entry>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, source_id: &str, supply_type: SupplyType) -> Option<SyncMark> {
        self.lock()
            .get(&(source_id.to_owned(), supply_type))
            .map(|(mark, _)| mark.clone())
    }

    /// The source's mark of any supply type for `sync_id`, when that sync was its last, with
    /// the number of its commit.
    pub(crate) fn committed(&self, source_id: &str, sync_id: &str) -> Option<Entry> {
        self.lock()
            .values()
            .find(|(m, _)| m.source_id == source_id && m.sync_id == sync_id)
            .cloned()
    }

    /// Installs `mark`, set by the commit numbered `ticket`; returns the mark it replaces.
    pub(crate) fn put(&self, mark: SyncMark, ticket: Option<u64>) -> Option<SyncMark> {
        let key = (mark.source_id.clone(), mark.supply_type);
        self.lock().insert(key, (mark, ticket)).map(|(m, _)| m)
    }

    /// Takes back [`SyncMarks::put`]: `previous` is what it returned.
    pub(crate) fn restore(
        &self,
        source_id: &str,
        supply_type: SupplyType,
        previous: Option<SyncMark>,
    ) {
        let key = (source_id.to_owned(), supply_type);
        let mut marks = self.lock();
        match previous {
            Some(mark) => marks.insert(key, (mark, None)),
            None => marks.remove(&key),
        };
    }

    /// Installs a recovered mark unless a newer one is known.
    pub(crate) fn recover(&self, mark: SyncMark) {
        let mut marks = self.lock();
        let key = (mark.source_id.clone(), mark.supply_type);
        if marks
            .get(&key)
            .is_none_or(|(known, _)| known.as_of_ms <= mark.as_of_ms)
        {
            marks.insert(key, (mark, None));
        }
    }

    /// Every mark but those whose commit `pending` says is not durable yet.
    pub(crate) fn all(&self, pending: impl Fn(u64) -> bool) -> Vec<SyncMark> {
        let marks = self.lock();
        let durable = marks.values().filter(|(_, t)| !t.is_some_and(&pending));
        let mut marks: Vec<SyncMark> = durable.map(|(m, _)| m.clone()).collect();
        marks.sort_by(|a, b| {
            let key = |m: &SyncMark| (m.source_id.clone(), m.supply_type.index());
            key(a).cmp(&key(b))
        });
        marks
    }
}
