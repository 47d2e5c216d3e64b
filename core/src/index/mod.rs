//! The in-memory index of positions, sharded by SKU.
//!
//! All nodes of a SKU live in one shard entry, so an availability read of a SKU across the whole
//! network takes one read lock and walks one small vector. Shards are our own `RwLock`s rather
//! than a concurrent map's, because operations that must be atomic over several SKUs (a
//! multi-line reservation) lock the shards they touch in ascending shard order, which is
//! deadlock-free; a concurrent map does not expose its shard locks for that. Guards never leave
//! this module: callers pass closures.

mod persist;
mod position;
mod whole;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use persist::{position_images, Effects, Replay};
pub use position::{
    Applied, AtpPolicy, Change, ChangeKind, DatedDemand, Position, Receipt, Totals, MAX_QUANTITY,
};
pub use whole::{Reader, Whole};

use crate::domain::{Day, Qty};
use crate::network::NodeIdx;

/// Hasher of the per-shard maps; randomly seeded per process.
type MapHasher = foldhash::fast::RandomState;

/// Seed of the SKU-to-shard hash. Fixed, so a SKU lands in the same shard in every process
/// and journaled shard sequence numbers stay meaningful across restarts.
const SHARD_SEED: u64 = 0x7072_6f6d_6973_6564;

/// Most shards an index has. Each is a lock and a map, so more only cost memory; and a
/// snapshot states its shard count, which recovery allocates before reading any shard.
pub const MAX_SHARDS: usize = 1 << 16;

/// Where a pooled hold may be served from: a node group, or the whole network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    /// A group, by its index in the network.
    Group(u32),
    Network,
}

/// Quantity held for a SKU in a pool on one day, not yet bound to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolHold {
    pub pool: Pool,
    pub day: Day,
    pub quantity: Qty,
}

/// Every position of one SKU, ascending by node, and the SKU's pooled holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SkuPositions {
    positions: Vec<Position>,
    /// One entry per (pool, day), quantities positive.
    pools: Vec<PoolHold>,
}

impl SkuPositions {
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    pub fn pools(&self) -> &[PoolHold] {
        &self.pools
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

    fn is_empty(&self) -> bool {
        self.positions.is_empty() && self.pools.is_empty()
    }
}

/// Adds `quantity` (negative to remove) to the pooled hold on (`pool`, `day`).
pub fn add_pool_hold(pools: &mut Vec<PoolHold>, pool: Pool, day: Day, quantity: Qty) {
    match pools.iter().position(|h| h.pool == pool && h.day == day) {
        Some(i) => {
            pools[i].quantity += quantity;
            if pools[i].quantity == 0 {
                pools.remove(i);
            }
        }
        None if quantity != 0 => pools.push(PoolHold {
            pool,
            day,
            quantity,
        }),
        None => {}
    }
}

#[derive(Debug, Default)]
struct Shard {
    skus: HashMap<Box<str>, SkuPositions, MapHasher>,
    /// Sequence number of the shard's last change. Journal effects carry it and snapshots
    /// record it, which makes the cut between a snapshot and the journal exact: recovery applies
    /// an effect only if it is newer than the snapshot's shard.
    lsn: u64,
    /// Each SKU a whole change in flight has changed, as it was before (`None`: it did not
    /// exist), for the readers that began before that change was published ([`whole`]).
    kept: HashMap<Box<str>, Option<SkuPositions>, MapHasher>,
    /// The number of the whole change `kept` is for; 0 when none is.
    kept_for: u64,
}

/// Counters shared by every way of changing shards.
#[derive(Debug, Default)]
struct Counts {
    skus: AtomicU64,
    positions: AtomicU64,
}

impl Shard {
    /// Changes the position at (`sku`, `node`) as [`Index::update`] describes.
    fn update<R>(
        &mut self,
        at: usize,
        counts: &Counts,
        sku: &str,
        node: NodeIdx,
        effects: Option<&mut Effects>,
        update: impl FnOnce(&mut Position) -> (R, bool),
    ) -> R {
        let keep_before = effects.is_some();
        let (result, changed, before) = match self.skus.get_mut(sku) {
            Some(positions) => update_position(counts, positions, node, keep_before, update),
            None => {
                let mut positions = SkuPositions::default();
                let updated = update_position(counts, &mut positions, node, keep_before, update);
                if updated.1 {
                    self.skus.insert(sku.into(), positions);
                    counts.skus.fetch_add(1, Ordering::Relaxed);
                }
                updated
            }
        };
        if changed {
            self.lsn += 1;
            if let Some(effects) = effects {
                if let Some(position) = self.skus.get(sku).and_then(|p| p.get(node)) {
                    effects.record_position(at, self.lsn, sku, position, before);
                }
            }
        }
        result
    }

    /// Replaces the pooled holds of `sku`.
    fn set_pools(
        &mut self,
        at: usize,
        counts: &Counts,
        sku: &str,
        pools: Vec<PoolHold>,
        effects: Option<&mut Effects>,
    ) {
        if !self.skus.contains_key(sku) {
            if pools.is_empty() {
                return;
            }
            self.skus.insert(sku.into(), SkuPositions::default());
            counts.skus.fetch_add(1, Ordering::Relaxed);
        }
        let Some(entry) = self.skus.get_mut(sku) else {
            return;
        };
        if entry.pools == pools {
            return;
        }
        let before = std::mem::replace(&mut entry.pools, pools);
        self.lsn += 1;
        if let Some(effects) = effects {
            effects.record_pools(at, self.lsn, sku, &entry.pools, before);
        }
        if entry.is_empty() {
            self.skus.remove(sku);
            counts.skus.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Applies `update` at `node` of one SKU; the flag tells whether it changed anything, and with
/// `keep_before`, the position before the change comes back too (`None`: it did not exist). A
/// position created for a change that changed nothing is removed again.
fn update_position<R>(
    counts: &Counts,
    positions: &mut SkuPositions,
    node: NodeIdx,
    keep_before: bool,
    update: impl FnOnce(&mut Position) -> (R, bool),
) -> (R, bool, Option<Position>) {
    let (position, created) = positions.get_or_create(node);
    let before = (keep_before && !created).then(|| position.clone());
    let (result, changed) = update(position);
    if created {
        if !changed {
            positions.remove(node);
            return (result, false, None);
        }
        counts.positions.fetch_add(1, Ordering::Relaxed);
    }
    (result, changed, before)
}

/// The sharded position index.
#[derive(Debug)]
pub struct Index {
    shards: Box<[RwLock<Shard>]>,
    /// Picks a SKU's shard.
    hasher: foldhash::fast::FixedState,
    counts: Counts,
    /// The number of the last whole change published to readers ([`whole`]).
    published: AtomicU64,
    /// Readers in flight, by the parity of the last whole change published when each began.
    readers: [AtomicUsize; 2],
    /// Held by the whole change in flight: one at a time.
    whole: Mutex<()>,
}

/// Several SKUs' shards, write-locked together for one atomic change.
pub struct Locked<'a> {
    index: &'a Index,
    /// Ascending by shard index.
    guards: Vec<(usize, RwLockWriteGuard<'a, Shard>)>,
}

impl Locked<'_> {
    fn shard(&self, sku: &str) -> Option<&Shard> {
        let at = self.index.shard_of(sku);
        self.guards
            .iter()
            .find(|(s, _)| *s == at)
            .map(|(_, g)| &**g)
    }

    fn shard_mut(&mut self, sku: &str) -> Option<(usize, &mut Shard)> {
        let at = self.index.shard_of(sku);
        self.guards
            .iter_mut()
            .find(|(s, _)| *s == at)
            .map(|(s, g)| (*s, &mut **g))
    }

    /// The SKU's positions; `None` if unknown or not among the locked SKUs.
    pub fn get(&self, sku: &str) -> Option<&SkuPositions> {
        self.shard(sku)?.skus.get(sku)
    }

    /// [`Index::update`] within the lock; `None` if the SKU is not among the locked ones.
    pub fn update<R>(
        &mut self,
        sku: &str,
        node: NodeIdx,
        effects: Option<&mut Effects>,
        update: impl FnOnce(&mut Position) -> (R, bool),
    ) -> Option<R> {
        let counts = &self.index.counts;
        let (at, shard) = self.shard_mut(sku)?;
        Some(shard.update(at, counts, sku, node, effects, update))
    }

    /// Replaces the SKU's pooled holds; ignored if the SKU is not among the locked ones.
    pub fn set_pools(&mut self, sku: &str, pools: Vec<PoolHold>, effects: Option<&mut Effects>) {
        let counts = &self.index.counts;
        if let Some((at, shard)) = self.shard_mut(sku) {
            shard.set_pools(at, counts, sku, pools, effects);
        }
    }
}

impl Index {
    /// An empty index with `shards` shards (rounded up to a power of two, at least one, at
    /// most [`MAX_SHARDS`]).
    pub fn new(shards: usize) -> Self {
        let count = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        Self {
            shards: (0..count).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::FixedState::with_seed(SHARD_SEED),
            counts: Counts::default(),
            published: AtomicU64::default(),
            readers: Default::default(),
            whole: Mutex::default(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn sku_count(&self) -> u64 {
        self.counts.skus.load(Ordering::Relaxed)
    }

    pub fn position_count(&self) -> u64 {
        self.counts.positions.load(Ordering::Relaxed)
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

    /// Runs `read` on the SKU's positions (`None` for an unknown SKU) under the shard's read
    /// lock, as of the last whole change published; a read of several SKUs that must agree
    /// on that takes one [`Index::reader`] for all of them.
    pub fn read<R>(&self, sku: &str, read: impl FnOnce(Option<&SkuPositions>) -> R) -> R {
        self.reader().read(sku, read)
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
        self.write_shard(at)
            .update(at, &self.counts, sku, node, effects, update)
    }

    /// Compares every position's demand and every SKU's pooled holds with what they should be
    /// (`demand`, `pools`), calling `visit` on each position; with `repair`, mismatches are
    /// overwritten (and recorded in `effects`). Returns the mismatches found. Shards are locked
    /// one at a time.
    pub fn reconcile(
        &self,
        demand: &dyn Fn(&str, NodeIdx) -> Vec<DatedDemand>,
        pools: &dyn Fn(&str) -> Vec<PoolHold>,
        visit: &mut dyn FnMut(&Position),
        repair: bool,
        mut effects: Option<&mut Effects>,
    ) -> u64 {
        let mut drift = 0;
        for at in 0..self.shards.len() {
            // Checked under the read lock, so readers never wait for an audit; only a repair
            // takes the write lock, for the SKUs that drifted.
            let drifted: Vec<Box<str>> = {
                let shard = self.read_shard(at);
                let mut drifted = Vec::new();
                for (sku, entry) in &shard.skus {
                    let mut wrong = 0;
                    for position in &entry.positions {
                        visit(position);
                        wrong +=
                            u64::from(position.demand() != demand(sku, position.node()).as_slice());
                    }
                    let mut expected = pools(sku);
                    let mut actual = entry.pools.clone();
                    expected.sort_by_key(|h| (h.pool, h.day));
                    actual.sort_by_key(|h| (h.pool, h.day));
                    wrong += u64::from(actual != expected);
                    if wrong > 0 {
                        drift += wrong;
                        drifted.push(sku.clone());
                    }
                }
                drifted
            };
            if repair && !drifted.is_empty() {
                let mut guard = self.write_shard(at);
                let shard = &mut *guard;
                for sku in drifted {
                    let Some(entry) = shard.skus.get_mut(&sku) else {
                        continue;
                    };
                    for position in &mut entry.positions {
                        let before = position.clone();
                        position.set_demand(demand(&sku, position.node()));
                        shard.lsn += 1;
                        if let Some(effects) = effects.as_deref_mut() {
                            effects.record_position(at, shard.lsn, &sku, position, Some(before));
                        }
                    }
                    let before = std::mem::replace(&mut entry.pools, pools(&sku));
                    shard.lsn += 1;
                    if let Some(effects) = effects.as_deref_mut() {
                        effects.record_pools(at, shard.lsn, &sku, &entry.pools, before);
                    }
                }
            }
        }
        drift
    }

    /// Runs `visit` on every position, one shard at a time under its read lock.
    pub fn visit_all(&self, mut visit: impl FnMut(&str, &Position)) {
        for at in 0..self.shards.len() {
            let shard = self.read_shard(at);
            for (sku, entry) in &shard.skus {
                entry.positions.iter().for_each(|p| visit(sku, p));
            }
        }
    }

    /// Write-locks the shards of all `skus` at once, in ascending shard order, and runs `change`
    /// on them. Every thread that holds more than one shard lock takes them through here, in
    /// that order, so two multi-SKU changes cannot deadlock.
    pub fn with_locked<'s, R>(
        &self,
        skus: impl IntoIterator<Item = &'s str>,
        change: impl FnOnce(&mut Locked<'_>) -> R,
    ) -> R {
        let mut shards: Vec<usize> = skus.into_iter().map(|sku| self.shard_of(sku)).collect();
        shards.sort_unstable();
        shards.dedup();
        let guards = shards
            .into_iter()
            .map(|at| (at, self.write_shard(at)))
            .collect();
        change(&mut Locked {
            index: self,
            guards,
        })
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
