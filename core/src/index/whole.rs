//! Changes that readers see whole without waiting for them.
//!
//! A full sync's commit changes up to millions of positions, shard by shard; an answer that
//! reads several SKUs must see all of it or none of it, and must not wait for it. So a whole
//! change ([`Whole`]) keeps, in each shard, every SKU it changes as it was before its first
//! change there, and tags what it kept with its number. A reader ([`Reader`]) notes the number
//! of the last whole change published when it begins and, for a SKU a later change kept,
//! reads what was kept instead of the SKU as it is now. Publishing is one atomic store: readers
//! that begin after it read the SKUs as they are. The kept copies go once every reader that
//! began before the publish has ended; the change waits for that, readers never wait.
//!
//! Readers are counted by the parity of the number they noted, so the change waits only for
//! those that began before its publish, never for the ones that begin after it. Whole changes
//! come one at a time and each ends only once the readers older than it have, so no reader is
//! ever more than one publish behind. Writers that are not part of the change are not held
//! off here (the engine holds them off while a sync's commit runs); one that changes a SKU the
//! change kept changes the SKU as it is, and the readers of the kept copy see neither change.

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError, RwLockWriteGuard};
use std::thread;
use std::time::Duration;

use super::{Effects, Index, Position, Shard, SkuPositions};
use crate::network::NodeIdx;

/// How long a retiring change sleeps between looks at the readers it waits for, once
/// yielding a while has not seen them end: a reader is a few microseconds to milliseconds.
const READER_POLL: Duration = Duration::from_micros(50);
/// Looks at the readers, yielding between them, before the change starts to sleep.
const YIELDS_BEFORE_SLEEPING: u32 = 64;

/// One reader's view of the index: every SKU as of the same whole changes.
#[derive(Debug)]
pub struct Reader<'a> {
    index: &'a Index,
    /// The number of the last whole change published when the reader began.
    seen: u64,
}

impl Reader<'_> {
    /// Runs `read` on the SKU's positions (`None` for an unknown SKU) under the shard's read
    /// lock: what a whole change published after the reader began kept, else the SKU now.
    pub fn read<R>(&self, sku: &str, read: impl FnOnce(Option<&SkuPositions>) -> R) -> R {
        let shard = self.index.read_shard(self.index.shard_of(sku));
        if shard.kept_for > self.seen {
            if let Some(kept) = shard.kept.get(sku) {
                return read(kept.as_ref());
            }
        }
        read(shard.skus.get(sku))
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        self.index
            .readers_of(self.seen)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// A change readers see whole: made through its methods, published by [`Whole::publish`] or
/// when dropped. Dropping it waits for the readers that began before it was published, then
/// lets go of what it kept.
#[derive(Debug)]
pub struct Whole<'a> {
    index: &'a Index,
    number: u64,
    /// Which shards hold something kept for this change.
    kept: Vec<bool>,
    published: bool,
    /// The index's one whole change at a time.
    _alone: MutexGuard<'a, ()>,
}

impl Index {
    /// A reader that sees every whole change whole: what it reads of any SKU is as of the
    /// same whole changes. Take one per answer and drop it when the answer is made; a
    /// whole change waits for the readers older than it, so never hold one while making one.
    pub fn reader(&self) -> Reader<'_> {
        loop {
            let seen = self.published.load(Ordering::SeqCst);
            let readers = self.readers_of(seen);
            readers.fetch_add(1, Ordering::SeqCst);
            // Counted before the publish it noted was superseded: the change that supersedes
            // it sees this reader and waits for it. Otherwise, it may not have: note again.
            if self.published.load(Ordering::SeqCst) == seen {
                return Reader { index: self, seen };
            }
            readers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Starts a whole change, once the one in flight (if any) is over.
    pub fn whole(&self) -> Whole<'_> {
        let alone = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        Whole {
            index: self,
            number: self.published.load(Ordering::SeqCst) + 1,
            kept: vec![false; self.shards.len()],
            published: false,
            _alone: alone,
        }
    }

    /// Readers that began when `published` was the last whole change published.
    fn readers_of(&self, published: u64) -> &std::sync::atomic::AtomicUsize {
        &self.readers[(published % 2) as usize]
    }
}

impl Shard {
    /// Keeps the SKU as it is for the readers of whole change `number`, unless kept already.
    fn keep(&mut self, number: u64, sku: &str) {
        self.kept_for = number;
        if !self.kept.contains_key(sku) {
            let now = self.skus.get(sku).cloned();
            self.kept.insert(sku.into(), now);
        }
    }
}

impl<'a> Whole<'a> {
    pub(super) fn index(&self) -> &'a Index {
        self.index
    }

    /// Write-locks shard `at` for the change.
    fn write_shard(&mut self, at: usize) -> RwLockWriteGuard<'a, Shard> {
        self.kept[at] = true;
        self.index.write_shard(at)
    }

    /// Write-locks the SKU's shard for the change, keeping the SKU as it is first; with the
    /// shard's index.
    pub(super) fn keeping(&mut self, sku: &str) -> (usize, RwLockWriteGuard<'a, Shard>) {
        let at = self.index.shard_of(sku);
        let mut shard = self.write_shard(at);
        shard.keep(self.number, sku);
        (at, shard)
    }

    /// [`Index::update`], as part of the change.
    pub fn update<R>(
        &mut self,
        sku: &str,
        node: NodeIdx,
        effects: Option<&mut Effects>,
        update: impl FnOnce(&mut Position) -> (R, bool),
    ) -> R {
        let (at, mut shard) = self.keeping(sku);
        shard.update(at, &self.index.counts, sku, node, effects, update)
    }

    /// Runs `change` on every position `touches` picks, one shard at a time under its write
    /// lock. A position `change` changed (it says so) is numbered in its shard and, with
    /// `effects`, recorded with what it replaced.
    pub fn sweep(
        &mut self,
        touches: impl Fn(&str, &Position) -> bool,
        mut change: impl FnMut(&str, &mut Position) -> bool,
        mut effects: Option<&mut Effects>,
    ) {
        let number = self.number;
        for at in 0..self.kept.len() {
            let mut guard = self.write_shard(at);
            let Shard {
                skus, kept, lsn, ..
            } = &mut *guard;
            for (sku, entry) in skus.iter_mut() {
                for i in 0..entry.positions.len() {
                    if !touches(sku, &entry.positions[i]) {
                        continue;
                    }
                    if !kept.contains_key(sku) {
                        kept.insert(sku.clone(), Some(entry.clone()));
                    }
                    let position = &mut entry.positions[i];
                    let before = position.clone();
                    if change(sku, position) {
                        *lsn += 1;
                        if let Some(effects) = effects.as_deref_mut() {
                            effects.record_position(at, *lsn, sku, position, Some(before));
                        }
                    }
                }
            }
            guard.kept_for = number;
        }
    }

    /// Readers that begin from now on see the change; the ones that began before still do
    /// not, until they end.
    pub fn publish(&mut self) {
        if !self.published {
            self.index.published.store(self.number, Ordering::SeqCst);
            self.published = true;
        }
    }
}

impl Drop for Whole<'_> {
    fn drop(&mut self) {
        self.publish();
        let older = self.index.readers_of(self.number - 1);
        let mut looks = 0;
        while older.load(Ordering::SeqCst) != 0 {
            if looks < YIELDS_BEFORE_SLEEPING {
                looks += 1;
                thread::yield_now();
            } else {
                thread::sleep(READER_POLL);
            }
        }
        for at in (0..self.kept.len()).filter(|&at| self.kept[at]) {
            let kept = {
                let mut shard = self.index.write_shard(at);
                shard.kept_for = 0;
                std::mem::take(&mut shard.kept)
            };
            // Freed outside the lock: readers of the shard need not wait for it.
            drop(kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::domain::Day;

    /// Adds `quantity` of demand at (`sku`, node 0) through `whole`.
    fn demand(whole: &mut Whole<'_>, sku: &str, quantity: i64) {
        whole.update(sku, 0, None, |position| {
            position.add_demand(Day(0), quantity, 0);
            ((), true)
        });
    }

    /// The demand a reader sees at (`sku`, node 0); `None` if the SKU is unknown to it.
    fn seen(reader: &Reader<'_>, sku: &str) -> Option<i64> {
        reader.read(sku, |p| p.map(|p| p.positions()[0].totals().reserved))
    }

    #[test]
    fn a_reader_older_than_a_whole_change_sees_none_of_it_until_it_ends() {
        let index = Index::new(4);
        demand(&mut index.whole(), "A", 1);
        let older = index.reader();
        assert_eq!(seen(&older, "A"), Some(1));
        let (published, told) = mpsc::channel();
        let (retired, done) = mpsc::channel();
        thread::scope(|scope| {
            scope.spawn(|| {
                let mut whole = index.whole();
                demand(&mut whole, "A", 1);
                demand(&mut whole, "B", 5);
                whole.publish();
                published.send(()).expect("told");
                drop(whole);
                retired.send(()).expect("told");
            });
            told.recv().expect("published");
            assert_eq!((seen(&older, "A"), seen(&older, "B")), (Some(1), None));
            let newer = index.reader();
            assert_eq!((seen(&newer, "A"), seen(&newer, "B")), (Some(2), Some(5)));
            assert!(
                done.try_recv().is_err(),
                "the change waits for the older reader"
            );
            drop(newer);
            drop(older);
            done.recv().expect("retired once the older reader ended");
        });
        let shards = (0..index.shard_count()).map(|at| index.read_shard(at));
        assert!(shards
            .into_iter()
            .all(|s| s.kept.is_empty() && s.kept_for == 0));
        assert_eq!(seen(&index.reader(), "B"), Some(5));
    }

    #[test]
    fn a_reader_never_waits_for_a_whole_change_in_flight() {
        let index = Index::new(4);
        demand(&mut index.whole(), "A", 1);
        let mut whole = index.whole();
        demand(&mut whole, "A", 1);
        // On this thread: a reader that waited for the change would never return.
        assert_eq!(seen(&index.reader(), "A"), Some(1), "not published yet");
        whole.publish();
        assert_eq!(seen(&index.reader(), "A"), Some(2));
        drop(whole);
        assert_eq!(seen(&index.reader(), "A"), Some(2));
    }
}
