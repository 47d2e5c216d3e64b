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

/// The marks, by source and supply type.
#[derive(Debug, Default)]
pub(crate) struct SyncMarks {
    marks: Mutex<HashMap<(String, SupplyType), SyncMark>>,
}

impl SyncMarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, SupplyType), SyncMark>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, source_id: &str, supply_type: SupplyType) -> Option<SyncMark> {
        self.lock()
            .get(&(source_id.to_owned(), supply_type))
            .cloned()
    }

    /// The source's mark of any supply type for `sync_id`, when that sync was its last.
    pub(crate) fn committed(&self, source_id: &str, sync_id: &str) -> Option<SyncMark> {
        self.lock()
            .values()
            .find(|m| m.source_id == source_id && m.sync_id == sync_id)
            .cloned()
    }

    /// Installs `mark`, returning the one it replaces.
    pub(crate) fn put(&self, mark: SyncMark) -> Option<SyncMark> {
        self.lock()
            .insert((mark.source_id.clone(), mark.supply_type), mark)
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
            Some(mark) => marks.insert(key, mark),
            None => marks.remove(&key),
        };
    }

    /// Installs a recovered mark unless a newer one is known.
    pub(crate) fn recover(&self, mark: SyncMark) {
        let mut marks = self.lock();
        let key = (mark.source_id.clone(), mark.supply_type);
        if marks
            .get(&key)
            .is_none_or(|known| known.as_of_ms <= mark.as_of_ms)
        {
            marks.insert(key, mark);
        }
    }

    pub(crate) fn all(&self) -> Vec<SyncMark> {
        let mut marks: Vec<SyncMark> = self.lock().values().cloned().collect();
        marks.sort_by(|a, b| {
            let key = |m: &SyncMark| (m.source_id.clone(), m.supply_type.index());
            key(a).cmp(&key(b))
        });
        marks
    }
}
