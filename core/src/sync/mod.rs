//! Full syncs, their requests, answers and state: a source's complete holding of one supply
//! type at some of its nodes, as of a time, sent in parts under a sync id and applied at
//! commit. Positions the sync does not mention become zero at commit, in the same mutation as
//! the rest, while readers wait. Parts are staged in memory only ([`staging`]): a sync the
//! process does not commit (abandoned, expired, or lost with a crash) changes nothing, and is
//! sent again. The operations on the engine are in `full_sync`.

mod mark;
mod staging;

pub use mark::SyncMark;
pub(crate) use mark::SyncMarks;
pub(crate) use staging::{OpenSync, Staged, Staging};

use crate::clock::UnixMillis;
use crate::domain::{Qty, Rejection, SupplyType};

/// Bounds of full syncs; every one is configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// How long an open sync lives without a part or commit; then it expires, changing nothing.
    pub ttl_secs: u64,
    /// Syncs open at once, across all sources.
    pub max_open: usize,
    /// Positions staged at once, across all open syncs: the memory the staging may take.
    pub max_staged_positions: usize,
    /// Largest share, in percent, of a source's positions in a sync's scope one commit may
    /// zero without `force`: a truncated file must not wipe a warehouse.
    pub wipe_guard_percent: u32,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            ttl_secs: 3_600,
            max_open: 16,
            max_staged_positions: 2_000_000,
            wipe_guard_percent: 50,
        }
    }
}

/// Opens a sync: "what follows is all of `source_id`'s `supply_type` at `node_ids` as of
/// `as_of_ms`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncBegin {
    pub source_id: String,
    /// The client's id for the sync, unique per source; a retried commit answers the same.
    pub sync_id: String,
    /// `None` when the edge received none, which is refused.
    pub supply_type: Option<SupplyType>,
    /// The nodes the sync covers; empty for every node where the source owns the supply type.
    pub node_ids: Vec<String>,
    /// The source's time of the holding; `None` when the edge received none, which is refused.
    pub as_of_ms: Option<UnixMillis>,
}

/// One position of a sync: a SKU's quantity at a node (for dated supply, one receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPosition {
    pub sku: String,
    pub node_id: String,
    pub quantity: Qty,
    /// PO or ASN line of a dated receipt; empty for on-hand.
    pub reference: String,
    /// `YYYY-MM-DD` arrival date of a dated receipt; empty for on-hand.
    pub eta: String,
}

/// Positions for an open sync. A position sent twice counts once, as last sent, so a part
/// may be resent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPart {
    pub source_id: String,
    pub sync_id: String,
    pub positions: Vec<SyncPosition>,
}

/// Ends a sync by applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCommit {
    pub source_id: String,
    pub sync_id: String,
    /// Commit even when the wipe guard would refuse it.
    pub force: bool,
}

/// An open sync, as begun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub sync_id: String,
    /// When the sync expires unless a part or the commit comes first.
    pub expires_at_ms: UnixMillis,
}

/// What a part did: positions staged, positions rejected (they are not part of the sync).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartOutcome {
    pub staged: u32,
    pub rejections: Vec<Rejection>,
    /// Distinct positions the sync holds so far.
    pub total_staged: u64,
}

/// What a commit did. `duplicate`: the sync had been committed already; the counts are
/// those of that commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOutcome {
    pub source_id: String,
    pub sync_id: String,
    /// Positions the sync gave a new quantity (or created).
    pub set: u64,
    /// Positions it did not mention, which held something and now hold zero.
    pub zeroed: u64,
    /// Positions it mentioned with the quantity they already had, or that a later SET of the
    /// source had already changed.
    pub unchanged: u64,
    pub duplicate: bool,
}
