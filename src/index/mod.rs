//! The in-memory index of positions, sharded by SKU.
//!
//! All nodes of a SKU live in one shard entry, so an availability read of a SKU across the whole
//! network takes one read lock and walks one small vector. Shards are our own `RwLock`s rather
//! than a concurrent map's, because operations that must be atomic over several SKUs (a
//! multi-line reservation) lock the shards they touch in ascending shard order, which is
//! deadlock-free; a concurrent map does not expose its shard locks for that. Guards never leave
//! this module: callers pass closures.

mod position;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use position::{
    Applied, AtpPolicy, Change, ChangeKind, DatedDemand, Position, Totals, MAX_QUANTITY,
};

use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::network::NodeIdx;

/// Hasher of the per-shard maps; randomly seeded per process.
type MapHasher = foldhash::fast::RandomState;

/// Every position of one SKU, ascending by node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SkuPositions {
    positions: Vec<Position>,
}

impl SkuPositions {
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    pub fn get(&self, node: NodeIdx) -> Option<&Position> {
        self.positions
            .binary_search_by_key(&node, Position::node)
            .ok()
            .map(|i| &self.positions[i])
    }

    /// The position at `node`, created if absent; the flag tells whether it was created.
    fn get_or_create(&mut self, node: NodeIdx) -> (&mut Position, bool) {
        match self.positions.binary_search_by_key(&node, Position::node) {
            Ok(i) => (&mut self.positions[i], false),
            Err(i) => {
                self.positions.insert(i, Position::new(node));
                (&mut self.positions[i], true)
            }
        }
    }

    fn remove(&mut self, node: NodeIdx) {
        if let Ok(i) = self.positions.binary_search_by_key(&node, Position::node) {
            self.positions.remove(i);
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    skus: HashMap<Box<str>, SkuPositions, MapHasher>,
    /// Sequence number of the shard's last change. Journal effects carry it and snapshots
    /// record it, which makes the cut between a snapshot and the journal exact: recovery applies
    /// an effect only if it is newer than the snapshot's shard.
    lsn: u64,
}

/// Seed of the SKU-to-shard hash. Fixed, so a SKU lands in the same shard in every process
/// and journaled shard sequence numbers stay meaningful across restarts.
const SHARD_SEED: u64 = 0x7072_6f6d_6973_6564;

/// Position images written by one mutation, in the order they were made, for the journal.
#[derive(Debug, Default)]
pub struct Effects {
    writer: Writer,
    count: u32,
}

impl Effects {
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded effects: for each, shard, shard sequence, SKU and the whole position.
    pub fn as_bytes(&self) -> &[u8] {
        &self.writer.buf
    }

    fn record(&mut self, shard: usize, lsn: u64, sku: &str, position: &Position) {
        self.count += 1;
        self.writer.var(shard as u64);
        self.writer.var(lsn);
        self.writer.str(sku);
        position.encode(&mut self.writer);
    }
}

/// What journal replay has applied so far, so that among several images of one position only
/// the newest wins, whatever order the journal holds them in.
#[derive(Debug, Default)]
pub struct Replay {
    /// Shard sequence numbers of the snapshot the replay starts from.
    floors: Vec<u64>,
    newest: HashMap<(Box<str>, NodeIdx), u64>,
    /// Effects applied.
    pub applied: u64,
}

/// The sharded position index.
#[derive(Debug)]
pub struct Index {
    shards: Box<[RwLock<Shard>]>,
    /// Picks a SKU's shard.
    hasher: foldhash::fast::FixedState,
    skus: AtomicU64,
    positions: AtomicU64,
}

impl Index {
    /// An empty index with `shards` shards (rounded up to a power of two, at least one).
    pub fn new(shards: usize) -> Self {
        let count = shards.max(1).next_power_of_two();
        Self {
            shards: (0..count).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::FixedState::with_seed(SHARD_SEED),
            skus: AtomicU64::new(0),
            positions: AtomicU64::new(0),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn sku_count(&self) -> u64 {
        self.skus.load(Ordering::Relaxed)
    }

    pub fn position_count(&self) -> u64 {
        self.positions.load(Ordering::Relaxed)
    }

    fn shard_of(&self, sku: &str) -> usize {
        (self.hasher.hash_one(sku) as usize) & (self.shards.len() - 1)
    }

    fn read_shard(&self, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_shard(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on the SKU's positions (`None` for an unknown SKU) under the shard's read lock.
    pub fn read<R>(&self, sku: &str, read: impl FnOnce(Option<&SkuPositions>) -> R) -> R {
        let shard = self.read_shard(self.shard_of(sku));
        read(shard.skus.get(sku))
    }

    /// Runs `update` on the position at (`sku`, `node`), creating it if needed. `update` returns
    /// its result and whether it changed the position; a position created for an update that
    /// changed nothing is removed again, so refused updates leave no trace. A change is numbered
    /// in its shard and, with `effects`, its resulting position is recorded for the journal.
    pub fn update<R>(
        &self,
        sku: &str,
        node: NodeIdx,
        effects: Option<&mut Effects>,
        update: impl FnOnce(&mut Position) -> (R, bool),
    ) -> R {
        let at = self.shard_of(sku);
        let mut guard = self.write_shard(at);
        let shard = &mut *guard;
        let (result, changed) = match shard.skus.get_mut(sku) {
            Some(positions) => self.update_position(positions, node, update),
            None => {
                let mut positions = SkuPositions::default();
                let (result, changed) = self.update_position(&mut positions, node, update);
                if changed {
                    shard.skus.insert(sku.into(), positions);
                    self.skus.fetch_add(1, Ordering::Relaxed);
                }
                (result, changed)
            }
        };
        if changed {
            shard.lsn += 1;
            if let Some(effects) = effects {
                let position = shard.skus.get(sku).and_then(|p| p.get(node));
                if let Some(position) = position {
                    effects.record(at, shard.lsn, sku, position);
                }
            }
        }
        result
    }

    /// Applies `update` at `node` of one SKU; the flag tells whether it changed anything.
    fn update_position<R>(
        &self,
        positions: &mut SkuPositions,
        node: NodeIdx,
        update: impl FnOnce(&mut Position) -> (R, bool),
    ) -> (R, bool) {
        let (position, created) = positions.get_or_create(node);
        let (result, changed) = update(position);
        if created {
            if !changed {
                positions.remove(node);
                return (result, false);
            }
            self.positions.fetch_add(1, Ordering::Relaxed);
        }
        (result, changed)
    }

    /// Encodes one shard (its sequence number and every position) under its read lock, which
    /// blocks writers of that shard only for the copy; returns the positions written.
    pub fn encode_shard(&self, shard: usize, w: &mut Writer) -> u64 {
        let guard = self.read_shard(shard);
        w.var(shard as u64);
        w.var(guard.lsn);
        w.len(guard.skus.len());
        let mut positions = 0;
        for (sku, entry) in &guard.skus {
            w.str(sku);
            w.len(entry.positions.len());
            for position in &entry.positions {
                position.encode(w);
            }
            positions += entry.positions.len() as u64;
        }
        positions
    }

    /// Loads one shard as [`Index::encode_shard`] wrote it, replacing what the shard held.
    pub fn restore_shard(&self, r: &mut Reader<'_>) -> Decoded<()> {
        let at = usize::try_from(r.var()?).map_err(|_| CodecError("shard"))?;
        if at >= self.shards.len() {
            return Err(CodecError("shard beyond the shard count"));
        }
        let lsn = r.var()?;
        let sku_count = r.len()?;
        let mut skus = HashMap::with_capacity_and_hasher(sku_count, MapHasher::default());
        let mut positions_total = 0;
        for _ in 0..sku_count {
            let sku: Box<str> = r.str()?.into();
            if self.shard_of(&sku) != at {
                return Err(CodecError("SKU in the wrong shard"));
            }
            let count = r.len()?;
            let positions = (0..count)
                .map(|_| Position::decode(r))
                .collect::<Decoded<Vec<_>>>()?;
            positions_total += count as u64;
            skus.insert(sku, SkuPositions { positions });
        }
        let mut shard = self.write_shard(at);
        self.skus.fetch_add(skus.len() as u64, Ordering::Relaxed);
        self.positions.fetch_add(positions_total, Ordering::Relaxed);
        *shard = Shard { skus, lsn };
        Ok(())
    }

    /// Removes positions at node indices `nodes` and above: a node whose configuration did not
    /// survive a crash while supply for it did. Returns how many were removed.
    pub fn drop_nodes_from(&self, nodes: usize) -> u64 {
        let mut dropped = 0;
        for at in 0..self.shards.len() {
            let mut shard = self.write_shard(at);
            shard.skus.retain(|_, entry| {
                let before = entry.positions.len();
                entry.positions.retain(|p| (p.node() as usize) < nodes);
                dropped += (before - entry.positions.len()) as u64;
                if entry.positions.is_empty() {
                    self.skus.fetch_sub(1, Ordering::Relaxed);
                    return false;
                }
                true
            });
        }
        self.positions.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }

    /// Starts a journal replay on top of what the index holds now (a restored snapshot).
    pub fn begin_replay(&self) -> Replay {
        Replay {
            floors: (0..self.shards.len())
                .map(|s| self.read_shard(s).lsn)
                .collect(),
            ..Replay::default()
        }
    }

    /// Applies journaled effects newer than both the snapshot and any image of the same
    /// position already replayed.
    pub fn replay(&self, effects: &mut Reader<'_>, replay: &mut Replay) -> Decoded<()> {
        while !effects.is_empty() {
            let at = usize::try_from(effects.var()?).map_err(|_| CodecError("shard"))?;
            let lsn = effects.var()?;
            let sku = effects.str()?;
            let position = Position::decode(effects)?;
            if at >= self.shards.len() || self.shard_of(sku) != at {
                return Err(CodecError("effect in the wrong shard"));
            }
            let key = (Box::<str>::from(sku), position.node());
            if lsn <= replay.floors[at] || replay.newest.get(&key).is_some_and(|&seen| seen >= lsn)
            {
                continue;
            }
            replay.newest.insert(key, lsn);
            replay.applied += 1;
            let mut shard = self.write_shard(at);
            shard.lsn = shard.lsn.max(lsn);
            if !shard.skus.contains_key(sku) {
                shard.skus.insert(sku.into(), SkuPositions::default());
                self.skus.fetch_add(1, Ordering::Relaxed);
            }
            let Some(positions) = shard.skus.get_mut(sku) else {
                continue;
            };
            let (slot, created) = positions.get_or_create(position.node());
            if created {
                self.positions.fetch_add(1, Ordering::Relaxed);
            }
            *slot = position;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_update_on_a_new_position_leaves_no_trace() {
        let index = Index::new(4);
        index.update("SKU-1", 3, None, |_| ((), false));
        assert_eq!(index.sku_count(), 0);
        assert_eq!(index.position_count(), 0);
        assert!(index.read("SKU-1", |p| p.is_none()));
    }

    #[test]
    fn positions_of_a_sku_stay_sorted_by_node() {
        let index = Index::new(4);
        for node in [5, 1, 3] {
            index.update("SKU-1", node, None, |_| ((), true));
        }
        let nodes = index.read("SKU-1", |p| {
            p.map(|p| p.positions().iter().map(Position::node).collect::<Vec<_>>())
        });
        assert_eq!(nodes, Some(vec![1, 3, 5]));
        assert_eq!(index.position_count(), 3);
        assert_eq!(index.sku_count(), 1);
    }
}

#[cfg(test)]
mod atp_tests;
