//! Taking mutations back: after any run of mutations, undoing the newest ones leaves the
//! engine exactly as it was before them (positions, pooled holds, reservations and their order
//! and capacity indexes, the network, feed sequences), and nothing that was never undone.

use std::sync::Arc;

use proptest::prelude::*;

use crate::clock::ManualClock;
use crate::domain::{Qty, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp};
use crate::engine::{Engine, EngineConfig, SafetyStockEntry};
use crate::error::{Error, Result};
use crate::index::{Index, SkuPositions};
use crate::mutation::{Mutation, Record};
use crate::network::Network;
use crate::reservation::Reservation;
use crate::test_support::{hold, node, wms};

const SKUS: [&str; 3] = ["SKU-A", "SKU-B", "SKU-C"];
const NODES: [&str; 3] = ["DC-0", "DC-1", "DC-2"];
const IDS: [&str; 4] = ["R-0", "R-1", "R-2", "R-3"];

#[derive(Debug, Clone)]
enum Op {
    Adjust(usize, usize, Qty),
    Set(usize, usize, Qty),
    /// Holds at a node, or on the whole network (`None`).
    Reserve(usize, usize, Option<usize>, Qty),
    Release(usize),
    Commit(usize),
    Ship(usize, usize, usize, Qty),
    Safety(usize, usize, Qty),
    AddNode(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let sku = 0..SKUS.len();
    let node = 0..NODES.len();
    let id = 0..IDS.len();
    prop_oneof![
        (sku.clone(), node.clone(), -5..20i64).prop_map(|(s, n, q)| Op::Adjust(s, n, q)),
        (sku.clone(), node.clone(), 0..20i64).prop_map(|(s, n, q)| Op::Set(s, n, q)),
        (
            id.clone(),
            sku.clone(),
            proptest::option::of(node.clone()),
            1..6i64
        )
            .prop_map(|(i, s, n, q)| Op::Reserve(i, s, n, q)),
        id.clone().prop_map(Op::Release),
        id.clone().prop_map(Op::Commit),
        (id, sku.clone(), node.clone(), 1..4i64).prop_map(|(i, s, n, q)| Op::Ship(i, s, n, q)),
        (sku, node, 0..4i64).prop_map(|(s, n, q)| Op::Safety(s, n, q)),
        any::<u8>().prop_map(Op::AddNode),
    ]
}

/// A journaling engine with three DCs and the WMS source.
fn journaled() -> Engine {
    let clock = Arc::new(ManualClock::new(1_000));
    let engine = Engine::journaled(
        EngineConfig::default(),
        clock,
        Network::default(),
        Index::new(2),
    );
    let nodes = NODES.iter().map(|id| node(id)).collect();
    settle(&engine, record(engine.upsert_nodes(nodes)));
    settle(&engine, record(engine.upsert_sources(vec![wms()])));
    engine
}

/// Settles a record as the journal writer does once it is durable.
fn settle(engine: &Engine, record: Option<Record>) {
    if let Some(record) = record {
        if let Some((source, seq)) = &record.source_seq {
            engine.mark_durable(source, *seq);
        }
        engine.settle(
            record
                .ticket
                .expect("a journaling engine numbers its records"),
        );
    }
}

fn batch(engine: &Engine, update: SupplyUpdate) -> Result<Mutation<crate::domain::BatchOutcome>> {
    let seq = engine
        .network()
        .source("WMS")
        .map_or(0, |s| s.feed.seqs().0)
        + 1;
    engine.apply_batch(&SupplyBatch {
        source_id: "WMS".into(),
        seq,
        updates: vec![update],
    })
}

fn update(sku: usize, node: usize, op: UpdateOp, quantity: Qty) -> SupplyUpdate {
    SupplyUpdate {
        sku: SKUS[sku].into(),
        node_id: NODES[node].into(),
        supply_type: Some(SupplyType::OnHand),
        op: Some(op),
        quantity,
        reference: String::new(),
        eta: String::new(),
    }
}

/// A mutation's record, when it succeeded and changed anything.
fn record<T>(mutation: Result<Mutation<T>>) -> Option<Record> {
    mutation.ok().and_then(|m| m.record)
}

/// Runs one operation; its record when it changed anything.
fn run(engine: &Engine, op: &Op) -> Option<Record> {
    match *op {
        Op::Adjust(s, n, q) => record(batch(engine, update(s, n, UpdateOp::Adjust, q))),
        Op::Set(s, n, q) => {
            let as_of_ms = Some(engine.now_ms());
            record(batch(engine, update(s, n, UpdateOp::Set { as_of_ms }, q)))
        }
        Op::Reserve(i, s, n, q) => {
            let node_id = n.map_or("", |n| NODES[n]);
            record(engine.reserve(&hold(IDS[i], &[(SKUS[s], node_id, q)])))
        }
        Op::Release(i) => record(engine.release(IDS[i])),
        Op::Commit(i) => record(engine.commit(IDS[i], &format!("ORDER-{i}"))),
        Op::Ship(i, s, n, q) => {
            let order_id = format!("ORDER-{i}");
            record(batch(engine, update(s, n, UpdateOp::Ship { order_id }, q)))
        }
        Op::Safety(s, n, q) => record(engine.set_safety_stock(&[SafetyStockEntry {
            sku: SKUS[s].into(),
            node_id: NODES[n].into(),
            quantity: q,
        }])),
        Op::AddNode(k) => record(engine.upsert_nodes(vec![node(&format!("DC-NEW-{k}"))])),
    }
}

/// Everything the operations can change, as the engine answers it.
#[derive(Debug, PartialEq)]
struct State {
    positions: Vec<Option<SkuPositions>>,
    reservations: Vec<Option<Reservation>>,
    orders: Vec<Option<String>>,
    network: Vec<u8>,
    seqs: (u64, u64),
    orders_per_day: u32,
    counts: (u64, u64),
}

fn state(engine: &Engine) -> State {
    let index = engine.index();
    let network = engine.network();
    let today = crate::domain::Day(0);
    State {
        positions: SKUS
            .iter()
            .map(|sku| index.read(sku, |p| p.cloned()))
            .collect(),
        reservations: IDS
            .iter()
            .map(|id| engine.get_reservation(id).ok().map(|h| h.reservation))
            .collect(),
        orders: (0..IDS.len())
            .map(|i| engine.shared.book.reservation_of(&format!("ORDER-{i}")))
            .collect(),
        network: network.encode(),
        seqs: network.source("WMS").map_or((0, 0), |s| s.feed.seqs()),
        orders_per_day: (0..NODES.len())
            .map(|n| {
                (0..3)
                    .map(|d| {
                        engine
                            .shared
                            .book
                            .orders_on(n as u32, crate::domain::Day(today.0 + d))
                    })
                    .sum::<u32>()
            })
            .sum(),
        counts: (index.sku_count(), index.position_count()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn undoing_the_newest_mutations_restores_the_state_before_them(
        kept in proptest::collection::vec(op(), 0..25),
        undone in proptest::collection::vec(op(), 1..15),
    ) {
        let engine = journaled();
        for op in &kept {
            settle(&engine, run(&engine, op));
        }
        let before = state(&engine);
        let records: Vec<Record> = undone.iter().filter_map(|op| run(&engine, op)).collect();
        engine.undo(records);
        prop_assert_eq!(state(&engine), before);
        prop_assert_eq!(engine.settled_below(), engine.next_ticket(), "every ticket settled");
    }
}

#[test]
fn an_undone_batch_can_be_sent_again_and_applies() {
    let engine = journaled();
    let first = run(&engine, &Op::Adjust(0, 0, 5)).expect("applied");
    engine.undo(vec![first]);
    let again = batch(&engine, update(0, 0, UpdateOp::Adjust, 5)).expect("applies");
    assert_eq!(
        again.peek().applied,
        1,
        "not a duplicate: {:?}",
        again.peek()
    );
    let on_hand = engine.index().read(SKUS[0], |p| {
        p.and_then(|p| p.get(0)).map(|p| p.totals().on_hand)
    });
    assert_eq!(on_hand, Some(5));
}

/// An engine with a hold of 3 under `R-0` whose record the journal has not taken yet: the
/// request and that record.
fn held_in_flight() -> (Engine, crate::reservation::ReserveRequest, Record) {
    let engine = journaled();
    settle(&engine, run(&engine, &Op::Set(0, 0, 10)));
    let request = hold(IDS[0], &[(SKUS[0], NODES[0], 3)]);
    let first = record(engine.reserve(&request)).expect("held");
    (engine, request, first)
}

/// A hold whose record the journal has not confirmed may still be taken back: a retry, a read
/// or a change of it is refused until the record is durable, then answered as usual.
#[test]
fn nothing_is_answered_on_a_hold_until_its_record_is_durable() {
    let (engine, request, first) = held_in_flight();
    let unavailable = |answer: Result<()>| matches!(answer, Err(Error::Unavailable(_)));
    assert!(unavailable(engine.reserve(&request).map(drop)));
    assert!(unavailable(engine.get_reservation(IDS[0]).map(drop)));
    assert!(unavailable(engine.extend(IDS[0], 60).map(drop)));
    assert!(unavailable(engine.release(IDS[0]).map(drop)));
    assert!(unavailable(engine.commit(IDS[0], "O-1").map(drop)));
    assert_eq!(
        engine.reservation_owner(IDS[0]),
        Some(request.owner.clone()),
        "who may act on it is known meanwhile"
    );
    settle(&engine, Some(first));
    let retry = engine.reserve(&request).expect("durable now");
    assert!(retry.record.is_none(), "a retry of a durable hold");
    assert_eq!(retry.result.reservation.version, 1);
}

#[test]
fn an_undone_hold_leaves_its_id_free() {
    let (engine, request, first) = held_in_flight();
    engine.undo(vec![first]);
    assert!(matches!(
        engine.get_reservation(IDS[0]),
        Err(Error::NotFound(_))
    ));
    let again = engine.reserve(&request).expect("holds again");
    assert!(again.record.is_some(), "a new hold, not a retry");
}
