//! A sync's commit: the staged positions are set, every position in the sync's scope it did
//! not mention is zeroed, and the source's mark moves to the sync, in one mutation. Other
//! mutations wait for it; readers do not: it is one whole change of the index
//! ([`crate::index::Whole`]), so an answer sees the holding from before the sync or after it,
//! never a mix.

use super::stage::unknown_sync;
use crate::domain::{Qty, SupplyType};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::{Applied, Change, ChangeKind, Effects, Position, Whole};
use crate::mutation::{Mutation, Record, Undo};
use crate::sync::{OpenSync, SyncCommit, SyncMark, SyncOutcome};

impl Engine {
    /// Commits an open sync. A commit of the source's last committed sync answers its counts
    /// again as a duplicate; a stale sync, or one the wipe guard refuses, stays open and
    /// changes nothing.
    pub fn commit_sync(&self, commit: &SyncCommit) -> Result<Mutation<SyncOutcome>> {
        if self.network().source(&commit.source_id).is_none() {
            return Err(Error::NotFound(format!("source {:?}", commit.source_id)));
        }
        let now_ms = self.now_ms();
        let taken = self
            .shared
            .staging
            .lock()
            .take(&commit.source_id, &commit.sync_id, now_ms);
        let Some(sync) = taken else {
            let mark = self
                .shared
                .sync_marks
                .committed(&commit.source_id, &commit.sync_id);
            return match mark {
                // Answering a duplicate before the first commit is durable could acknowledge
                // what a crash would lose.
                Some((_, Some(ticket))) if self.is_unsettled(ticket) => {
                    Err(Error::Unavailable(format!(
                        "sync {:?} is applied but not yet durable; retry",
                        commit.sync_id
                    )))
                }
                Some((mark, _)) => Ok(Mutation {
                    result: outcome(&mark, true),
                    record: None,
                }),
                None => Err(unknown_sync(&commit.sync_id)),
            };
        };
        // Other mutations wait from here until the change is published, so the wipe guard
        // counts what the change then changes.
        let alone = self.writers_alone();
        if let Err(refusal) = self.check_commit(&sync, commit.force) {
            self.shared.staging.lock().put_back(sync);
            return Err(refusal);
        }
        let ticket = self.begin_alone(&alone);
        let mut effects = self.effects();
        let mut whole = self.shared.index.whole();
        let zeroed = self.zero_unmentioned(&mut whole, &sync, effects.as_mut());
        let (set, unchanged) = self.set_staged(&mut whole, &sync, effects.as_mut());
        let mark = SyncMark {
            source_id: commit.source_id.clone(),
            supply_type: sync.supply_type,
            sync_id: commit.sync_id.clone(),
            as_of_ms: sync.as_of_ms,
            set,
            zeroed: zeroed.0,
            unchanged: unchanged + zeroed.1,
        };
        let previous = self.shared.sync_marks.put(mark.clone(), ticket.number());
        whole.publish();
        drop(alone);
        // `whole` is dropped on return: it waits for the readers that began before the
        // publish, which mutations need not do.
        Ok(self.mutation(ticket, outcome(&mark, false), || Record {
            effects: effects.unwrap_or_default(),
            sync: Some(mark),
            undo: Undo {
                sync_mark: Some(previous),
                ..Undo::default()
            },
            ..Record::default()
        }))
    }

    /// Refuses a stale sync, and one that would zero more than the guard's share of what the
    /// source holds in the sync's scope (unless `force`).
    fn check_commit(&self, sync: &OpenSync, force: bool) -> Result<()> {
        self.check_not_stale(&sync.begin.source_id, sync.supply_type, sync.as_of_ms)?;
        let (mut held, mut unmentioned) = (0u64, 0u64);
        self.shared.index.visit_all(|sku, position| {
            for_each_held(sync, position, |reference, _| {
                held += 1;
                unmentioned += u64::from(!sync.staged_at(sku, position.node(), reference));
            });
        });
        let percent = u64::from(self.shared.config.sync.wipe_guard_percent);
        if force || unmentioned * 100 <= held * percent {
            return Ok(());
        }
        Err(Error::FailedPrecondition(format!(
            "the sync would zero {unmentioned} of the source's {held} positions in its scope, \
             more than {percent}% (--sync-wipe-guard-percent); commit with force if that is meant"
        )))
    }

    /// Zeroes every held position in the sync's scope it does not stage; returns how many
    /// were zeroed and how many a newer SET of the source keeps.
    fn zero_unmentioned(
        &self,
        whole: &mut Whole<'_>,
        sync: &OpenSync,
        effects: Option<&mut Effects>,
    ) -> (u64, u64) {
        let (mut zeroed, mut kept) = (0, 0);
        let unmentioned = |sku: &str, position: &Position| {
            let mut any = false;
            for_each_held(sync, position, |reference, _| {
                any |= !sync.staged_at(sku, position.node(), reference);
            });
            any
        };
        let zero = |sku: &str, position: &mut Position| {
            let mut targets = Vec::new();
            for_each_held(sync, position, |reference, _| {
                if !sync.staged_at(sku, position.node(), reference) {
                    targets.push(Box::<str>::from(reference));
                }
            });
            let mut changed = false;
            for reference in targets {
                match position.apply(&set(sync, &reference, 0, None)) {
                    Applied::Applied => {
                        zeroed += 1;
                        changed = true;
                    }
                    _ => kept += 1,
                }
            }
            changed
        };
        whole.sweep(unmentioned, zero, effects);
        (zeroed, kept)
    }

    /// Sets every staged position; returns how many changed and how many already held their
    /// quantity (or were kept by a newer SET of the source).
    fn set_staged(
        &self,
        whole: &mut Whole<'_>,
        sync: &OpenSync,
        mut effects: Option<&mut Effects>,
    ) -> (u64, u64) {
        let (mut changed, mut unchanged) = (0, 0);
        for (sku, entries) in &sync.positions {
            for staged in entries {
                let change = set(sync, &staged.reference, staged.quantity, staged.eta);
                let moved = whole.update(sku, staged.node, effects.as_deref_mut(), |position| {
                    let before = held(sync, position, &staged.reference);
                    let applied = position.apply(&change) == Applied::Applied;
                    let moved = applied && before.unwrap_or(0) != staged.quantity;
                    (moved, applied)
                });
                if moved {
                    changed += 1;
                } else {
                    unchanged += 1;
                }
            }
        }
        (changed, unchanged)
    }
}

/// The sync's SET of one position (`reference` empty for on-hand).
fn set<'a>(
    sync: &OpenSync,
    reference: &'a str,
    quantity: Qty,
    eta: Option<crate::domain::Day>,
) -> Change<'a> {
    Change {
        supply_type: sync.supply_type,
        kind: ChangeKind::Set {
            as_of_ms: sync.as_of_ms,
        },
        quantity,
        reference,
        eta,
    }
}

/// Calls `visit` with the reference and quantity of everything `position` holds of the
/// sync's supply type, when the sync covers its node: its on-hand, or each receipt.
fn for_each_held(sync: &OpenSync, position: &Position, mut visit: impl FnMut(&str, Qty)) {
    if !sync
        .covers
        .get(position.node() as usize)
        .copied()
        .unwrap_or(false)
    {
        return;
    }
    match sync.supply_type {
        SupplyType::OnHand => {
            let on_hand = position.totals().on_hand;
            if on_hand != 0 {
                visit("", on_hand);
            }
        }
        dated => position
            .receipts()
            .iter()
            .filter(|r| r.supply_type == dated)
            .for_each(|r| visit(&r.reference, r.quantity)),
    }
}

/// What `position` holds under `reference` of the sync's type; `None` if nothing.
fn held(sync: &OpenSync, position: &Position, reference: &str) -> Option<Qty> {
    let mut found = None;
    for_each_held(sync, position, |r, quantity| {
        if r == reference {
            found = Some(quantity);
        }
    });
    found
}

fn outcome(mark: &SyncMark, duplicate: bool) -> SyncOutcome {
    SyncOutcome {
        source_id: mark.source_id.clone(),
        sync_id: mark.sync_id.clone(),
        set: mark.set,
        zeroed: mark.zeroed,
        unchanged: mark.unchanged,
        duplicate,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::EngineConfig;
    use crate::index::Index;
    use crate::mutation::StoredRecord;
    use crate::network::Network;
    use crate::sync::{SyncBegin, SyncPart, SyncPosition};
    use crate::test_support::{node, wms};

    fn journaled_engine() -> Engine {
        let clock = Arc::new(ManualClock::new(1_000));
        let engine = Engine::journaled(
            EngineConfig::default(),
            clock,
            Network::default(),
            Index::new(4),
        );
        let _ = engine.upsert_nodes(vec![node("DC")]).expect("node");
        let _ = engine.upsert_sources(vec![wms()]).expect("source");
        engine
    }

    fn sync_of_one(engine: &Engine) -> Mutation<SyncOutcome> {
        let begin = SyncBegin {
            source_id: "WMS".into(),
            sync_id: "s".into(),
            supply_type: Some(SupplyType::OnHand),
            node_ids: Vec::new(),
            as_of_ms: Some(1_000),
        };
        engine.begin_sync(&begin).expect("opens");
        let position = SyncPosition {
            sku: "SKU-1".into(),
            node_id: "DC".into(),
            quantity: 4,
            reference: String::new(),
            eta: String::new(),
        };
        let part = SyncPart {
            source_id: "WMS".into(),
            sync_id: "s".into(),
            positions: vec![position],
        };
        engine.stage_sync_part(&part).expect("staged");
        engine.commit_sync(&commit()).expect("commits")
    }

    fn commit() -> SyncCommit {
        SyncCommit {
            source_id: "WMS".into(),
            sync_id: "s".into(),
            force: false,
        }
    }

    #[test]
    fn a_resent_commit_is_a_duplicate_only_once_the_first_is_durable() {
        let engine = journaled_engine();
        let (answer, record) = sync_of_one(&engine).into_parts();
        assert_eq!((answer.set, answer.duplicate), (1, false));
        let record = record.expect("journaled");
        assert!(
            matches!(engine.commit_sync(&commit()), Err(Error::Unavailable(_))),
            "the first commit is not durable yet: no acknowledgement"
        );
        assert!(engine.sync_marks().is_empty(), "a snapshot leaves it out");
        engine.settle(record.ticket.expect("numbered"));
        let again = engine
            .commit_sync(&commit())
            .expect("answered")
            .into_result();
        assert_eq!((again.set, again.duplicate), (1, true));
        assert_eq!(engine.sync_marks().len(), 1);
    }

    #[test]
    fn a_commit_record_carries_its_mark_and_undoing_it_restores_the_mark_before() {
        let engine = journaled_engine();
        let (_, record) = sync_of_one(&engine).into_parts();
        let record = record.expect("journaled");
        let bytes = record.encode();
        let stored = StoredRecord::decode(&bytes).expect("decodes");
        let mark = stored.sync.expect("the mark");
        assert_eq!(
            (mark.sync_id.as_str(), mark.as_of_ms, mark.set),
            ("s", 1_000, 1)
        );
        engine.undo(vec![record]);
        let resent = engine.commit_sync(&commit());
        assert!(matches!(resent, Err(Error::NotFound(_))), "{resent:?}");
        let on_hand = engine
            .index()
            .read("SKU-1", |p| p.map(|p| p.positions().len()));
        assert_eq!(on_hand, None, "the position the sync created is gone again");
    }
}
