//! Open syncs and their staged positions, held in memory within bounds: a sync count, a
//! position count across all syncs, and an idle time after which a sync expires.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::SyncBegin;
use crate::clock::UnixMillis;
use crate::domain::{Day, Qty, SupplyType};
use crate::network::NodeIdx;

/// One staged position: a quantity at a node, for dated supply of one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Staged {
    pub(crate) node: NodeIdx,
    pub(crate) reference: Box<str>,
    pub(crate) quantity: Qty,
    pub(crate) eta: Option<Day>,
}

/// A sync between its begin and its commit.
#[derive(Debug)]
pub(crate) struct OpenSync {
    pub(crate) begin: SyncBegin,
    pub(crate) supply_type: SupplyType,
    pub(crate) as_of_ms: UnixMillis,
    /// `covers[node]`: the sync states the whole holding at that node.
    pub(crate) covers: Vec<bool>,
    pub(crate) expires_at_ms: UnixMillis,
    /// Staged positions by SKU.
    pub(crate) positions: HashMap<Box<str>, Vec<Staged>>,
    pub(crate) staged: usize,
}

impl OpenSync {
    /// Stages `staged` for `sku`, replacing what the sync held for the same position; true
    /// when the position is new to the sync.
    pub(crate) fn stage(&mut self, sku: &str, staged: Staged) -> bool {
        let entries = self.positions.entry(sku.into()).or_default();
        let same = entries
            .iter_mut()
            .find(|s| s.node == staged.node && s.reference == staged.reference);
        match same {
            Some(existing) => {
                *existing = staged;
                false
            }
            None => {
                entries.push(staged);
                self.staged += 1;
                true
            }
        }
    }

    pub(crate) fn staged_at(&self, sku: &str, node: NodeIdx, reference: &str) -> bool {
        self.positions.get(sku).is_some_and(|e| {
            e.iter()
                .any(|s| s.node == node && &*s.reference == reference)
        })
    }
}

/// The open syncs, by (source, sync id), and the positions they stage together.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    state: Mutex<StagingState>,
}

#[derive(Debug, Default)]
pub(crate) struct StagingState {
    pub(crate) open: HashMap<(String, String), OpenSync>,
    /// Positions staged across the open syncs.
    pub(crate) staged: usize,
}

impl StagingState {
    /// Takes the sync out of the staging, as its commit does; an expired one is dropped.
    pub(crate) fn take(
        &mut self,
        source_id: &str,
        sync_id: &str,
        now_ms: UnixMillis,
    ) -> Option<OpenSync> {
        let sync = self
            .open
            .remove(&(source_id.to_owned(), sync_id.to_owned()))?;
        self.staged -= sync.staged;
        (now_ms < sync.expires_at_ms).then_some(sync)
    }

    /// Reopens a sync whose commit was refused, as it was.
    pub(crate) fn put_back(&mut self, sync: OpenSync) {
        self.staged += sync.staged;
        let key = (sync.begin.source_id.clone(), sync.begin.sync_id.clone());
        self.open.insert(key, sync);
    }
}

impl Staging {
    pub(crate) fn lock(&self) -> MutexGuard<'_, StagingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every sync idle past its expiry; returns how many.
    pub(crate) fn expire(&self, now_ms: UnixMillis) -> usize {
        let mut state = self.lock();
        let before = state.open.len();
        let mut freed = 0;
        state.open.retain(|_, sync| {
            let live = now_ms < sync.expires_at_ms;
            if !live {
                freed += sync.staged;
            }
            live
        });
        state.staged -= freed;
        before - state.open.len()
    }

    pub(crate) fn open_count(&self) -> usize {
        self.lock().open.len()
    }
}
