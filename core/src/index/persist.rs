//! The index's side of durability: effects recorded for the journal, shards encoded for
//! snapshots, and their replay at recovery.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{Index, MapHasher, Pool, PoolHold, Position, Shard, SkuPositions, Whole, MAX_QUANTITY};
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::domain::Day;
use crate::network::NodeIdx;

/// Tags an effect as a position image or as a SKU's pooled holds.
const POSITION: u8 = 0;
const POOLS: u8 = 1;
/// The key replay uses for a SKU's pooled holds, beside its positions' node indices.
const POOLS_KEY: NodeIdx = NodeIdx::MAX;

/// Images written by one mutation, in the order they were made, for the journal; and what
/// each replaced, kept in memory only, so that a mutation the journal never took can be taken
/// back ([`Index::undo`]).
#[derive(Debug, Default)]
pub struct Effects {
    writer: Writer,
    count: u32,
    before: Vec<Before>,
}

/// What one effect replaced.
#[derive(Debug)]
struct Before {
    sku: Box<str>,
    image: BeforeImage,
}

#[derive(Debug)]
enum BeforeImage {
    /// The position at a node, `None` where the mutation created it.
    Position(NodeIdx, Option<Position>),
    Pools(Vec<PoolHold>),
}

impl Effects {
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded effects: for each, shard, shard sequence, SKU, kind and the whole image.
    pub fn as_bytes(&self) -> &[u8] {
        &self.writer.buf
    }

    fn header(&mut self, shard: usize, lsn: u64, sku: &str, kind: u8) {
        self.count += 1;
        self.writer.var(shard as u64);
        self.writer.var(lsn);
        self.writer.str(sku);
        self.writer.u8(kind);
    }

    /// Records `position` as it is now, and `before`, what it replaced.
    pub(super) fn record_position(
        &mut self,
        shard: usize,
        lsn: u64,
        sku: &str,
        position: &Position,
        before: Option<Position>,
    ) {
        self.header(shard, lsn, sku, POSITION);
        position.encode(&mut self.writer);
        self.remember(sku, BeforeImage::Position(position.node(), before));
    }

    /// Records a SKU's pooled holds as they are now, and `before`, what they replaced.
    pub(super) fn record_pools(
        &mut self,
        shard: usize,
        lsn: u64,
        sku: &str,
        pools: &[PoolHold],
        before: Vec<PoolHold>,
    ) {
        self.header(shard, lsn, sku, POOLS);
        encode_pools(&mut self.writer, pools);
        self.remember(sku, BeforeImage::Pools(before));
    }

    fn remember(&mut self, sku: &str, image: BeforeImage) {
        self.before.push(Before {
            sku: sku.into(),
            image,
        });
    }
}

fn encode_pools(w: &mut Writer, pools: &[PoolHold]) {
    w.len(pools.len());
    for hold in pools {
        match hold.pool {
            Pool::Network => w.var(0),
            Pool::Group(g) => w.var(u64::from(g) + 1),
        }
        w.ivar(i64::from(hold.day.0));
        w.ivar(hold.quantity);
    }
}

/// Reads pooled holds [`encode_pools`] wrote; a quantity beyond [`MAX_QUANTITY`] either way
/// is refused, as for positions.
fn decode_pools(r: &mut Reader<'_>) -> Decoded<Vec<PoolHold>> {
    (0..r.len()?)
        .map(|_| {
            let pool = match r.var()? {
                0 => Pool::Network,
                g => Pool::Group(u32::try_from(g - 1).map_err(|_| CodecError("group index"))?),
            };
            let day = i32::try_from(r.ivar()?).map_err(|_| CodecError("day"))?;
            let quantity = r.ivar()?;
            if quantity.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
                return Err(CodecError("quantity beyond the limit"));
            }
            Ok(PoolHold {
                pool,
                day: Day(day),
                quantity,
            })
        })
        .collect()
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

/// One decoded effect.
enum Image {
    Position(Position),
    Pools(Vec<PoolHold>),
}

/// Decodes the next effect: shard, shard sequence, SKU and image.
fn next_effect<'a>(r: &mut Reader<'a>) -> Decoded<(usize, u64, &'a str, Image)> {
    let at = usize::try_from(r.var()?).map_err(|_| CodecError("shard"))?;
    let lsn = r.var()?;
    let sku = r.str()?;
    let image = match r.u8()? {
        POSITION => Image::Position(Position::decode(r)?),
        POOLS => Image::Pools(decode_pools(r)?),
        _ => return Err(CodecError("effect kind")),
    };
    Ok((at, lsn, sku, image))
}

/// The position images among encoded effects (pooled holds left out), in their order: what
/// a journal record did to each (SKU, node), for the audit trail.
pub fn position_images<'a>(effects: &mut Reader<'a>) -> Decoded<Vec<(&'a str, Position)>> {
    let mut images = Vec::new();
    while !effects.is_empty() {
        if let (_, _, sku, Image::Position(position)) = next_effect(effects)? {
            images.push((sku, position));
        }
    }
    Ok(images)
}

impl Index {
    /// Encodes one shard (its sequence number, every position and pooled hold) under its read
    /// lock, which blocks writers of that shard only for the copy; returns the positions written.
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
            encode_pools(w, &entry.pools);
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
            // Lookups are binary searches by node.
            if !positions.windows(2).all(|w| w[0].node() < w[1].node()) {
                return Err(CodecError("positions out of node order"));
            }
            let pools = decode_pools(r)?;
            positions_total += count as u64;
            if skus
                .insert(sku, SkuPositions { positions, pools })
                .is_some()
            {
                return Err(CodecError("a SKU twice in one shard"));
            }
        }
        let mut shard = self.write_shard(at);
        // What the shard held leaves the counts, so a shard restored twice counts once.
        let held: u64 = shard.skus.values().map(|e| e.positions.len() as u64).sum();
        self.counts
            .skus
            .fetch_sub(shard.skus.len() as u64, Ordering::Relaxed);
        self.counts.positions.fetch_sub(held, Ordering::Relaxed);
        self.counts
            .skus
            .fetch_add(skus.len() as u64, Ordering::Relaxed);
        self.counts
            .positions
            .fetch_add(positions_total, Ordering::Relaxed);
        *shard = Shard {
            skus,
            lsn,
            ..Shard::default()
        };
        Ok(())
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
    /// position (or the same SKU's pools) already replayed.
    pub fn replay(&self, effects: &mut Reader<'_>, replay: &mut Replay) -> Decoded<()> {
        while !effects.is_empty() {
            let (at, lsn, sku, image) = next_effect(effects)?;
            if at >= self.shards.len() || self.shard_of(sku) != at {
                return Err(CodecError("effect in the wrong shard"));
            }
            let node = match &image {
                Image::Position(position) => position.node(),
                Image::Pools(_) => POOLS_KEY,
            };
            let key = (Box::<str>::from(sku), node);
            let seen = replay.newest.get(&key).is_some_and(|&seen| seen >= lsn);
            if lsn <= replay.floors[at] || seen {
                continue;
            }
            replay.newest.insert(key, lsn);
            replay.applied += 1;
            self.install(at, lsn, sku, image);
        }
        Ok(())
    }

    /// Puts a replayed image in place.
    fn install(&self, at: usize, lsn: u64, sku: &str, image: Image) {
        let mut shard = self.write_shard(at);
        shard.lsn = shard.lsn.max(lsn);
        self.install_in(&mut shard, sku, image);
    }

    /// Puts an image in place in a locked shard, counting what it creates.
    fn install_in(&self, shard: &mut Shard, sku: &str, image: Image) {
        if !shard.skus.contains_key(sku) {
            shard.skus.insert(sku.into(), SkuPositions::default());
            self.counts.skus.fetch_add(1, Ordering::Relaxed);
        }
        let Some(entry) = shard.skus.get_mut(sku) else {
            return;
        };
        match image {
            Image::Position(position) => {
                let (slot, created) = entry.get_or_create(position.node());
                if created {
                    self.counts.positions.fetch_add(1, Ordering::Relaxed);
                }
                *slot = position;
            }
            Image::Pools(pools) => entry.pools = pools,
        }
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
                if entry.is_empty() {
                    self.counts.skus.fetch_sub(1, Ordering::Relaxed);
                    return false;
                }
                true
            });
        }
        self.counts.positions.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }
}

impl Whole<'_> {
    /// Puts back what `effects` replaced, newest first, as part of the change: the mutation
    /// that recorded them is taken back. Only correct while nothing has changed those
    /// positions since, which the durability layer ensures by applying mutations in journal
    /// order and taking back only the newest ones. Each restore is numbered in its shard like
    /// any change.
    pub fn undo(&mut self, effects: Effects) {
        for before in effects.before.into_iter().rev() {
            let sku = &*before.sku;
            let (_, mut shard) = self.keeping(sku);
            let index = self.index();
            shard.lsn += 1;
            match before.image {
                BeforeImage::Position(_, Some(image)) => {
                    index.install_in(&mut shard, sku, Image::Position(image));
                }
                BeforeImage::Position(node, None) => {
                    if let Some(entry) = shard.skus.get_mut(sku) {
                        if entry.get(node).is_some() {
                            entry.remove(node);
                            index.counts.positions.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
                BeforeImage::Pools(pools) => index.install_in(&mut shard, sku, Image::Pools(pools)),
            }
            if shard.skus.get(sku).is_some_and(SkuPositions::is_empty) {
                shard.skus.remove(sku);
                index.counts.skus.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;
    use crate::index::{Pool, PoolHold};

    /// Sets `quantity` of demand on (`sku`, node 0), recording the image in `effects`.
    fn change(index: &Index, sku: &str, quantity: i64, effects: &mut Effects) {
        index.update(sku, 0, Some(effects), |position| {
            position.add_demand(Day(0), quantity, 0);
            ((), true)
        });
    }

    fn reserved(index: &Index, sku: &str) -> i64 {
        index.read(sku, |p| {
            p.and_then(|p| p.get(0)).map_or(0, |p| p.totals().reserved)
        })
    }

    /// Restores `source`'s shards into a new index, as recovery does from a snapshot.
    fn restored(source: &Index) -> Index {
        let target = Index::new(source.shard_count());
        for shard in 0..source.shard_count() {
            let mut w = Writer::default();
            source.encode_shard(shard, &mut w);
            target
                .restore_shard(&mut Reader::new(&w.buf))
                .expect("a shard decodes");
        }
        target
    }

    #[test]
    fn replay_skips_every_effect_the_snapshot_already_holds() {
        let index = Index::new(1);
        let mut journal = Effects::default();
        change(&index, "SKU-1", 3, &mut journal);
        change(&index, "SKU-1", 2, &mut journal);
        change(&index, "SKU-2", 1, &mut journal);
        let recovered = restored(&index);
        let mut replay = recovered.begin_replay();
        recovered
            .replay(&mut Reader::new(journal.as_bytes()), &mut replay)
            .expect("effects decode");
        assert_eq!(replay.applied, 0, "everything is in the snapshot");
        assert_eq!(reserved(&recovered, "SKU-1"), 5);
    }

    #[test]
    fn replay_applies_only_images_newer_than_the_snapshot_in_any_order() {
        let index = Index::new(1);
        let mut before = Effects::default();
        change(&index, "SKU-1", 3, &mut before);
        let recovered = restored(&index);
        let mut after = Effects::default();
        change(&index, "SKU-1", 4, &mut after);
        change(&index, "SKU-1", 1, &mut after);
        // The journal holds the snapshot's own image, then the newest, then older ones.
        let mut newest = Effects::default();
        change(&index, "SKU-1", 2, &mut newest);
        let mut replay = recovered.begin_replay();
        for effects in [&before, &newest, &after] {
            recovered
                .replay(&mut Reader::new(effects.as_bytes()), &mut replay)
                .expect("effects decode");
        }
        assert_eq!(replay.applied, 1, "only the newest image lands");
        assert_eq!(reserved(&recovered, "SKU-1"), 10);
    }

    fn pooled(index: &Index, sku: &str) -> Vec<PoolHold> {
        index.read(sku, |p| p.map(|p| p.pools().to_vec()).unwrap_or_default())
    }

    /// Group and network holds of one SKU, recorded in `effects`.
    fn hold_pools(index: &Index, effects: &mut Effects) -> Vec<PoolHold> {
        let pools = vec![
            PoolHold {
                pool: Pool::Network,
                day: Day(3),
                quantity: 4,
            },
            PoolHold {
                pool: Pool::Group(2),
                day: Day(5),
                quantity: 7,
            },
        ];
        index.with_locked(["SKU-1"], |locked| {
            locked.set_pools("SKU-1", pools.clone(), Some(effects));
        });
        pools
    }

    #[test]
    fn pooled_holds_survive_a_snapshot_and_the_journal() {
        let index = Index::new(1);
        let mut journal = Effects::default();
        let pools = hold_pools(&index, &mut journal);
        assert_eq!(journal.count(), 1, "the change is recorded");
        assert_eq!(
            pooled(&restored(&index), "SKU-1"),
            pools,
            "through a snapshot"
        );
        let replayed = Index::new(1);
        let mut replay = replayed.begin_replay();
        replayed
            .replay(&mut Reader::new(journal.as_bytes()), &mut replay)
            .expect("effects decode");
        assert_eq!(pooled(&replayed, "SKU-1"), pools, "through the journal");
    }

    #[test]
    fn a_shard_counts_the_positions_it_writes() {
        let index = Index::new(1);
        let mut effects = Effects::default();
        for node in 0..3 {
            index.update("SKU-1", node, Some(&mut effects), |p| {
                p.add_demand(Day(0), 1, 0);
                ((), true)
            });
        }
        index.update("SKU-2", 0, Some(&mut effects), |p| {
            p.add_demand(Day(0), 1, 0);
            ((), true)
        });
        assert_eq!(effects.count(), 4);
        assert_eq!(index.encode_shard(0, &mut Writer::default()), 4);
    }

    #[test]
    fn an_effect_filed_under_another_shard_is_refused() {
        let index = Index::new(4);
        let mut effects = Effects::default();
        change(&index, "SKU-1", 2, &mut effects);
        let right = index.shard_of("SKU-1");
        let mut bytes = effects.as_bytes().to_vec();
        // The first byte is the shard number (a one-byte varint for 4 shards).
        bytes[0] = ((right + 1) % 4) as u8;
        let target = Index::new(4);
        let mut replay = target.begin_replay();
        let refused = target.replay(&mut Reader::new(&bytes), &mut replay);
        assert!(refused.is_err(), "wrong shard accepted");
    }

    #[test]
    fn dropping_nodes_removes_exactly_those_at_and_above_the_index() {
        let index = Index::new(2);
        for (sku, nodes) in [("SKU-1", 0..3), ("SKU-2", 1..2)] {
            for node in nodes {
                index.update(sku, node, None, |p| {
                    p.add_demand(Day(0), 1, 0);
                    ((), true)
                });
            }
        }
        assert_eq!(
            index.drop_nodes_from(1),
            3,
            "nodes 1 and 2 of SKU-1, node 1 of SKU-2"
        );
        assert_eq!(index.position_count(), 1);
        assert_eq!(index.sku_count(), 1, "SKU-2 had nothing left");
        assert_eq!(reserved(&index, "SKU-1"), 1, "node 0 stays");
    }
}
