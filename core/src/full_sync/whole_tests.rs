//! A large commit seen whole: readers that read many SKUs while a sync commits, or while its
//! commit is taken back, see all of it or none of it in every answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use crate::clock::ManualClock;
use crate::domain::{Qty, SupplyType};
use crate::engine::{Engine, EngineConfig};
use crate::error::Error;
use crate::index::Index;
use crate::mutation::Record;
use crate::network::Network;
use crate::query::AvailabilityQuery;
use crate::sync::{SyncBegin, SyncCommit, SyncPart, SyncPosition};
use crate::test_support::{node, wms};

const SKUS: usize = 20_000;
/// Every `READ_EVERY`-th SKU is read, so that one answer spans every shard.
const READ_EVERY: usize = 10;
/// Positions per part.
const PART: usize = 10_000;

fn sku(i: usize) -> String {
    format!("SKU-{i:05}")
}

/// The second sync: every 7th SKU left out (zeroed), the others at 20.
fn restated(i: usize) -> Option<Qty> {
    (!i.is_multiple_of(7)).then_some(20)
}

/// What the second sync leaves at SKU `i`.
fn second(i: usize) -> Qty {
    restated(i).unwrap_or(0)
}

/// A journaling engine with node DC and source WMS, holding 10 of every SKU there through a
/// first, settled sync.
fn stocked_engine() -> Engine {
    let clock = Arc::new(ManualClock::new(1_000));
    let index = Index::new(64);
    let engine = Engine::journaled(EngineConfig::default(), clock, Network::default(), index);
    let _ = engine.upsert_nodes(vec![node("DC")]).expect("node");
    let _ = engine.upsert_sources(vec![wms()]).expect("source");
    let first = sync(&engine, "first", 1_000, |_| Some(10), false);
    engine.settle(first.ticket.expect("numbered"));
    engine
}

/// Opens, stages and commits sync `sync_id` of `quantity(i)` of each SKU `i` it mentions;
/// the commit's record.
fn sync(
    engine: &Engine,
    sync_id: &str,
    as_of_ms: i64,
    quantity: impl Fn(usize) -> Option<Qty>,
    force: bool,
) -> Record {
    open(engine, sync_id, as_of_ms, quantity);
    let commit = SyncCommit {
        source_id: "WMS".into(),
        sync_id: sync_id.into(),
        force,
    };
    let (_, record) = engine.commit_sync(&commit).expect("commits").into_parts();
    record.expect("journaled")
}

/// Opens sync `sync_id` and stages `quantity(i)` of each SKU `i` it mentions.
fn open(engine: &Engine, sync_id: &str, as_of_ms: i64, quantity: impl Fn(usize) -> Option<Qty>) {
    let begin = SyncBegin {
        source_id: "WMS".into(),
        sync_id: sync_id.into(),
        supply_type: Some(SupplyType::OnHand),
        node_ids: Vec::new(),
        as_of_ms: Some(as_of_ms),
    };
    engine.begin_sync(&begin).expect("opens");
    let positions: Vec<SyncPosition> = (0..SKUS)
        .filter_map(|i| {
            quantity(i).map(|quantity| SyncPosition {
                sku: sku(i),
                node_id: "DC".into(),
                quantity,
                reference: String::new(),
                eta: String::new(),
            })
        })
        .collect();
    for chunk in positions.chunks(PART) {
        let part = SyncPart {
            source_id: "WMS".into(),
            sync_id: sync_id.into(),
            positions: chunk.to_vec(),
        };
        engine.stage_sync_part(&part).expect("staged");
    }
}

/// The on-hand at DC of every read SKU, as one availability answer gives it.
fn read(engine: &Engine) -> Vec<Qty> {
    let query = AvailabilityQuery {
        skus: (0..SKUS).step_by(READ_EVERY).map(sku).collect(),
        node_ids: vec!["DC".into()],
        ..AvailabilityQuery::default()
    };
    let answer = engine.availability(&query).expect("answers");
    answer
        .items
        .iter()
        .map(|item| item.nodes[0].on_hand)
        .collect()
}

/// Every answer two readers on other threads give, reading in a loop from before `change`
/// starts (each has answered once) until it is over.
fn answers_while(engine: &Engine, change: impl FnOnce()) -> Vec<Vec<Qty>> {
    let stop = AtomicBool::new(false);
    let (started, first_answers) = mpsc::channel();
    thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, started) = (&stop, started.clone());
                scope.spawn(move || {
                    let mut answers = vec![read(engine)];
                    started.send(()).expect("told");
                    while !stop.load(Ordering::SeqCst) {
                        answers.push(read(engine));
                    }
                    answers
                })
            })
            .collect();
        first_answers.iter().take(2).for_each(drop);
        change();
        stop.store(true, Ordering::SeqCst);
        let answers = readers.into_iter().map(|r| r.join().expect("reader"));
        answers.flatten().collect()
    })
}

/// How many answers saw everything `from(i)` and how many everything `to(i)`; fails on an
/// answer that saw some of each.
fn whole_answers(
    answers: &[Vec<Qty>],
    from: impl Fn(usize) -> Qty,
    to: impl Fn(usize) -> Qty,
) -> (usize, usize) {
    let read_skus = || (0..SKUS).step_by(READ_EVERY);
    let before: Vec<Qty> = read_skus().map(&from).collect();
    let after: Vec<Qty> = read_skus().map(&to).collect();
    for answer in answers {
        let changed = answer.iter().zip(&after).filter(|(q, a)| q == a).count();
        assert!(
            *answer == before || *answer == after,
            "an answer saw part of a change: {changed} of {} SKUs as after it",
            answer.len()
        );
    }
    let count = |state: &Vec<Qty>| answers.iter().filter(|a| *a == state).count();
    (count(&before), count(&after))
}

#[test]
fn readers_of_many_skus_see_a_large_commit_whole_or_not_at_all() {
    let engine = stocked_engine();
    open(&engine, "second", 2_000, restated);
    let commit = SyncCommit {
        source_id: "WMS".into(),
        sync_id: "second".into(),
        force: false,
    };
    let answers = answers_while(&engine, || {
        let committed = engine.commit_sync(&commit).expect("commits").into_result();
        assert_eq!(committed.zeroed as usize, SKUS.div_ceil(7));
    });
    let (before, after) = whole_answers(&answers, |_| 10, second);
    assert!(before >= 2, "each reader answered before the commit");
    assert!(after >= 2, "and after it");
    assert_eq!(
        read(&engine),
        (0..SKUS)
            .step_by(READ_EVERY)
            .map(second)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_commit_taken_back_shows_nothing_of_it_and_readers_see_the_taking_back_whole() {
    let engine = stocked_engine();
    let record = sync(&engine, "second", 2_000, restated, false);
    let answers = answers_while(&engine, || engine.undo(vec![record]));
    let (before, after) = whole_answers(&answers, second, |_| 10);
    assert!(before >= 2 && after >= 2, "{before} and {after} answers");
    assert_eq!(read(&engine), vec![10; SKUS / READ_EVERY]);
    let resent = engine.commit_sync(&SyncCommit {
        source_id: "WMS".into(),
        sync_id: "second".into(),
        force: false,
    });
    assert!(matches!(resent, Err(Error::NotFound(_))), "{resent:?}");
}

#[test]
fn a_commit_the_wipe_guard_refuses_shows_nothing_of_it() {
    let engine = stocked_engine();
    open(&engine, "truncated", 2_000, |i| (i % 3 == 0).then_some(20));
    let commit = SyncCommit {
        source_id: "WMS".into(),
        sync_id: "truncated".into(),
        force: false,
    };
    let refused = engine.commit_sync(&commit);
    assert!(
        matches!(refused, Err(Error::FailedPrecondition(_))),
        "{refused:?}"
    );
    assert_eq!(read(&engine), vec![10; SKUS / READ_EVERY]);
}
