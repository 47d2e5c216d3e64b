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
use std::sync::{PoisonError, RwLock};

pub use position::{
    Applied, AtpPolicy, Change, ChangeKind, DatedDemand, Position, Totals, MAX_QUANTITY,
};

use crate::network::NodeIdx;

type Hasher = foldhash::fast::RandomState;

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
    skus: HashMap<Box<str>, SkuPositions, Hasher>,
}

/// The sharded position index.
#[derive(Debug)]
pub struct Index {
    shards: Box<[RwLock<Shard>]>,
    /// Picks a SKU's shard.
    hasher: Hasher,
    skus: AtomicU64,
    positions: AtomicU64,
}

impl Index {
    /// An empty index with `shards` shards (rounded up to a power of two, at least one).
    pub fn new(shards: usize) -> Self {
        let count = shards.max(1).next_power_of_two();
        Self {
            shards: (0..count).map(|_| RwLock::default()).collect(),
            hasher: Hasher::default(),
            skus: AtomicU64::new(0),
            positions: AtomicU64::new(0),
        }
    }

    pub fn sku_count(&self) -> u64 {
        self.skus.load(Ordering::Relaxed)
    }

    pub fn position_count(&self) -> u64 {
        self.positions.load(Ordering::Relaxed)
    }

    fn shard(&self, sku: &str) -> &RwLock<Shard> {
        let hash = self.hasher.hash_one(sku) as usize;
        &self.shards[hash & (self.shards.len() - 1)]
    }

    /// Runs `read` on the SKU's positions (`None` for an unknown SKU) under the shard's read lock.
    pub fn read<R>(&self, sku: &str, read: impl FnOnce(Option<&SkuPositions>) -> R) -> R {
        let shard = self
            .shard(sku)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        read(shard.skus.get(sku))
    }

    /// Runs `update` on the position at (`sku`, `node`), creating it if needed. `update` returns
    /// its result and whether it changed the position; a position created for an update that
    /// changed nothing is removed again, so refused updates leave no trace.
    pub fn update<R>(
        &self,
        sku: &str,
        node: NodeIdx,
        update: impl FnOnce(&mut Position) -> (R, bool),
    ) -> R {
        let mut shard = self
            .shard(sku)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(positions) = shard.skus.get_mut(sku) {
            return self.update_position(positions, node, update).0;
        }
        let mut positions = SkuPositions::default();
        let (result, kept) = self.update_position(&mut positions, node, update);
        if kept {
            shard.skus.insert(sku.into(), positions);
            self.skus.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Applies `update` at `node` of one SKU; the flag tells whether the position exists after.
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
        (result, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_update_on_a_new_position_leaves_no_trace() {
        let index = Index::new(4);
        index.update("SKU-1", 3, |_| ((), false));
        assert_eq!(index.sku_count(), 0);
        assert_eq!(index.position_count(), 0);
        assert!(index.read("SKU-1", |p| p.is_none()));
    }

    #[test]
    fn positions_of_a_sku_stay_sorted_by_node() {
        let index = Index::new(4);
        for node in [5, 1, 3] {
            index.update("SKU-1", node, |_| ((), true));
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
