//! Explanations against hand-computed examples, and against the availability answer over
//! random histories of supply, safety stock, reservations, commits, shipments and stale feeds.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use crate::clock::ManualClock;
use crate::domain::{
    Day, NodeGroup, Qty, Source, SourceKind, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp,
};
use crate::engine::{Engine, EngineConfig, SafetyStockEntry, StalePolicy};
use crate::error::Error;
use crate::explain::{ExplainQuery, Explanation, NodeExplanation};
use crate::index::{AtpPolicy, Pool};
use crate::query::{AvailabilityQuery, ItemAvailability};
use crate::reservation::{LineRequest, ReserveRequest, Scope};
use crate::test_support::node;
use crate::view::StaleShare;

/// Monday 2026-03-02 15:00 UTC: still the 2nd in Los Angeles, already the 3rd at Kiritimati.
const START_MS: i64 = 1_772_463_600_000;
const SKU: &str = "SKU";
/// Nodes A (UTC), B (Pacific/Kiritimati) and C (America/Los_Angeles), in index order.
const NODES: [&str; 3] = ["A", "B", "C"];
/// G1 holds A and B, G2 holds B and C.
const GROUPS: [&str; 2] = ["G1", "G2"];
/// WMS owns on-hand at A and B, stale after a minute; POS owns it at C and is never stale;
/// ERP owns receipts everywhere, stale after ten minutes.
const WMS_STALE_MS: i64 = 60_000;
const ERP_STALE_MS: i64 = 600_000;

fn today() -> Day {
    Day::in_zone(chrono_tz::UTC, START_MS)
}

/// The test network, with the given policies and nodes' default safety stock.
fn network_engine(config: EngineConfig, safety: [Qty; 3]) -> (Engine, ManualClock) {
    let clock = ManualClock::new(START_MS);
    let engine = Engine::new(config, Arc::new(clock.clone()));
    let groups = GROUPS.map(|id| NodeGroup {
        id: id.into(),
        description: String::new(),
    });
    let _ = engine.upsert_groups(groups.to_vec()).expect("groups");
    let zones = [
        chrono_tz::UTC,
        chrono_tz::Pacific::Kiritimati,
        chrono_tz::America::Los_Angeles,
    ];
    let memberships: [&[&str]; 3] = [&["G1"], &["G1", "G2"], &["G2"]];
    let nodes = (0..3)
        .map(|i| {
            let mut n = node(NODES[i]);
            n.time_zone = zones[i];
            n.group_ids = memberships[i].iter().map(|g| (*g).into()).collect();
            n.safety_stock = safety[i];
            n
        })
        .collect();
    let _ = engine.upsert_nodes(nodes).expect("nodes");
    let source =
        |id: &str, kind, nodes: &[&str], types: &[SupplyType], stale: Option<i64>| Source {
            id: id.into(),
            kind,
            owned_node_ids: nodes.iter().map(|n| (*n).into()).collect(),
            owned_supply_types: types.to_vec(),
            stale_after_ms: stale,
        };
    let sources = vec![
        source(
            "WMS",
            SourceKind::Wms,
            &["A", "B"],
            &[SupplyType::OnHand],
            Some(WMS_STALE_MS),
        ),
        source("POS", SourceKind::Pos, &["C"], &[SupplyType::OnHand], None),
        source(
            "ERP",
            SourceKind::Erp,
            &[],
            &[SupplyType::InTransit, SupplyType::OnOrder],
            Some(ERP_STALE_MS),
        ),
    ];
    let _ = engine.upsert_sources(sources).expect("sources");
    (engine, clock)
}

/// Sends one update as the next batch of its owner; rejections are the caller's business.
struct Feeds {
    seqs: BTreeMap<&'static str, u64>,
}

impl Feeds {
    fn new() -> Self {
        Self {
            seqs: BTreeMap::new(),
        }
    }

    fn send(&mut self, engine: &Engine, source: &'static str, update: SupplyUpdate) -> usize {
        let seq = self.seqs.entry(source).or_default();
        *seq += 1;
        let batch = SupplyBatch {
            source_id: source.into(),
            seq: *seq,
            updates: vec![update],
        };
        let outcome = engine.apply_batch(&batch).expect("a valid batch").result;
        outcome.rejections.len()
    }

    fn heartbeat(&mut self, engine: &Engine, source: &'static str) {
        let batch = SupplyBatch {
            source_id: source.into(),
            seq: 0,
            updates: Vec::new(),
        };
        let _ = engine.apply_batch(&batch).expect("a heartbeat");
    }
}

fn on_hand_owner(node: usize) -> &'static str {
    if node == 2 {
        "POS"
    } else {
        "WMS"
    }
}

fn on_hand(node: usize, op: UpdateOp, quantity: Qty) -> SupplyUpdate {
    SupplyUpdate {
        sku: SKU.into(),
        node_id: NODES[node].into(),
        supply_type: Some(SupplyType::OnHand),
        op: Some(op),
        quantity,
        reference: String::new(),
        eta: String::new(),
    }
}

fn receipt(
    node: usize,
    supply_type: SupplyType,
    reference: &str,
    eta: Day,
    quantity: Qty,
) -> SupplyUpdate {
    SupplyUpdate {
        sku: SKU.into(),
        node_id: NODES[node].into(),
        supply_type: Some(supply_type),
        op: Some(UpdateOp::Set {
            as_of_ms: Some(START_MS),
        }),
        quantity,
        reference: reference.into(),
        eta: eta.to_string(),
    }
}

/// A one-line reservation at `node_id` or in `group_id` (both empty: the network).
fn hold(
    id: &str,
    node_id: &str,
    group_id: &str,
    quantity: Qty,
    need: Option<Day>,
) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id.into(),
        lines: vec![LineRequest {
            sku: SKU.into(),
            node_id: node_id.into(),
            group_id: group_id.into(),
            quantity,
            need_date: need,
        }],
        ttl_secs: 0,
        owner: String::new(),
    }
}

fn explain(engine: &Engine, node_id: &str, group_id: &str, date: Option<Day>) -> Explanation {
    let query = ExplainQuery {
        sku: SKU.into(),
        node_id: node_id.into(),
        group_id: group_id.into(),
        date,
    };
    engine.explain(&query).expect("explained")
}

/// `(need, reservation, order, quantity)` of a node's commitments.
fn commitments(node: &NodeExplanation) -> Vec<(Day, &str, &str, Qty)> {
    let listed = node.commitments.iter();
    listed
        .map(|c| (c.need, &*c.reservation_id, &*c.order_id, c.quantity))
        .collect()
}

/// A: 50 on hand as of a minute ago, safety stock 3 (its own, over the node's 5), 20 in
/// transit due in 2 days, 100 on order due in 5 of which 40 % count; held 4 today, 30 committed
/// to ORDER-2 for day 3, 10 held for day 6.
///
/// | day             | 0  | 2  | 3  | 5  | 6  |
/// |-----------------|----|----|----|----|----|
/// | receipts        |    | 20 |    | 40 |    |
/// | demand          | 4  |    | 30 |    | 10 |
/// | net (50 - 3 ...)| 43 | 63 | 33 | 73 | 63 |
///
/// Today's ATP is 33, set by day 3; on day 5 it is 63, set by the hold due on day 6.
fn worked_example() -> Engine {
    let config = EngineConfig {
        atp: AtpPolicy {
            promisable_permille: [1000, 1000, 400],
        },
        ..EngineConfig::default()
    };
    let (engine, _clock) = network_engine(config, [5, 0, 0]);
    let mut feeds = Feeds::new();
    let set = UpdateOp::Set {
        as_of_ms: Some(START_MS - 60_000),
    };
    assert_eq!(feeds.send(&engine, "WMS", on_hand(0, set, 50)), 0);
    let asn = receipt(0, SupplyType::InTransit, "ASN-1", today().plus(2), 20);
    assert_eq!(feeds.send(&engine, "ERP", asn), 0);
    let po = receipt(0, SupplyType::OnOrder, "PO-1", today().plus(5), 100);
    assert_eq!(feeds.send(&engine, "ERP", po), 0);
    let entry = SafetyStockEntry {
        sku: SKU.into(),
        node_id: "A".into(),
        quantity: 3,
    };
    let _ = engine.set_safety_stock(&[entry]).expect("override");
    let _ = engine.reserve(&hold("R1", "A", "", 4, None)).expect("R1");
    let _ = engine
        .reserve(&hold("R2", "A", "", 30, Some(today().plus(3))))
        .expect("R2");
    let _ = engine.commit("R2", "ORDER-2").expect("committed");
    let _ = engine
        .reserve(&hold("R3", "A", "", 10, Some(today().plus(6))))
        .expect("R3");
    engine
}

#[test]
fn a_nodes_atp_is_its_parts_up_to_the_day_of_the_lowest_net() {
    let engine = worked_example();
    let explanation = explain(&engine, "A", "", None);
    assert_eq!(explanation.atp, 33);
    let a = &explanation.nodes[0];
    assert_eq!(
        (a.day, a.atp, a.lowest),
        (today(), 33, Some((today().plus(3), 33)))
    );
    assert_eq!(
        (a.on_hand, a.on_hand_as_of_ms),
        (50, Some(START_MS - 60_000))
    );
    let sources: Vec<(&str, bool)> = a
        .on_hand_sources
        .iter()
        .map(|s| (&*s.source_id, s.stale))
        .collect();
    assert_eq!(sources, [("WMS", false)]);
    assert_eq!((a.safety_stock, a.safety_override), (3, true));
    assert_eq!((a.stale, a.stale_sources.len()), (StaleShare::Fresh, 0));
    let receipts: Vec<(&str, Qty, Qty, bool)> = a
        .receipts
        .iter()
        .map(|r| (&*r.reference, r.quantity, r.promisable, r.counted))
        .collect();
    assert_eq!(
        receipts,
        [("ASN-1", 20, 20, true), ("PO-1", 100, 40, false)]
    );
    let demand: Vec<(Day, Qty, Qty, bool)> = a
        .demand
        .iter()
        .map(|d| (d.day, d.reserved, d.allocated, d.counted))
        .collect();
    assert_eq!(
        demand,
        [
            (today(), 4, 0, true),
            (today().plus(3), 0, 30, true),
            (today().plus(6), 10, 0, false)
        ]
    );
    assert_eq!((a.counted_receipts(), a.counted_demand()), (20, 34));
    assert_eq!(
        commitments(a),
        [
            (today(), "R1", "", 4),
            (today().plus(3), "R2", "ORDER-2", 30),
            (today().plus(6), "R3", "", 10)
        ]
    );
    assert!(!explanation.truncated);
}

#[test]
fn a_later_date_is_set_by_the_demand_after_it() {
    let engine = worked_example();
    let a = explain(&engine, "A", "", Some(today().plus(5)))
        .nodes
        .remove(0);
    assert_eq!(
        (a.day, a.atp, a.lowest),
        (today().plus(5), 63, Some((today().plus(6), 63)))
    );
    assert!(a.receipts.iter().all(|r| r.counted));
    assert!(a.demand.iter().all(|d| d.counted));
    // 50 - 3 + 20 + 40 - 4 - 30 - 10
    assert_eq!((a.counted_receipts(), a.counted_demand()), (60, 44));
}

/// A with 45 on hand whose WMS has not been heard for longer than its limit.
fn stale_node(stale: StalePolicy) -> Explanation {
    let config = EngineConfig {
        stale,
        ..EngineConfig::default()
    };
    let (engine, clock) = network_engine(config, [2, 0, 0]);
    let mut feeds = Feeds::new();
    assert_eq!(
        feeds.send(&engine, "WMS", on_hand(0, UpdateOp::Adjust, 45)),
        0
    );
    clock.advance_ms(WMS_STALE_MS + 1);
    feeds.heartbeat(&engine, "ERP");
    explain(&engine, "A", "", None)
}

#[test]
fn a_stale_feed_buffer_is_held_back_on_top_of_safety_stock() {
    let a = stale_node(StalePolicy::Buffer { percent: 10 })
        .nodes
        .remove(0);
    // 10 % of 45 is 4.5, rounded up; 45 - 2 - 5.
    let buffer = StaleShare::Buffer {
        percent: 10,
        quantity: 5,
    };
    assert_eq!((a.stale, a.stale_buffer(), a.atp), (buffer, 5, 38));
    assert_eq!(a.stale_sources, ["WMS"]);
    assert!(a.on_hand_sources[0].stale);
    assert_eq!(a.on_hand_as_of_ms, None, "on-hand was only adjusted");
}

#[test]
fn a_node_excluded_as_stale_counts_nothing() {
    let a = stale_node(StalePolicy::Exclude).nodes.remove(0);
    assert_eq!((a.stale, a.atp, a.lowest), (StaleShare::Excluded, 0, None));
    assert_eq!(a.on_hand, 45, "what is there is still shown");
}

#[test]
fn a_pool_is_its_nodes_less_what_pooled_holds_take_from_them() {
    // A (5) is outside G2; B (10) is in it; the network holds 12, of which G2 must serve 7.
    let (engine, _clock) = network_engine(EngineConfig::default(), [0; 3]);
    let mut feeds = Feeds::new();
    assert_eq!(
        feeds.send(&engine, "WMS", on_hand(0, UpdateOp::Adjust, 5)),
        0
    );
    assert_eq!(
        feeds.send(&engine, "WMS", on_hand(1, UpdateOp::Adjust, 10)),
        0
    );
    let _ = engine
        .reserve(&hold("NET", "", "", 12, None))
        .expect("held");
    let group = explain(&engine, "", "G2", None);
    let nodes: Vec<(&str, Qty)> = group
        .nodes
        .iter()
        .map(|n| (&*group.network.node(n.node).id, n.atp))
        .collect();
    assert_eq!(nodes, [("B", 10)], "C holds nothing");
    assert_eq!((group.atp, group.pooled_reduction), (3, 7));
    let pooled: Vec<(Pool, Qty)> = group.pooled.iter().map(|h| (h.pool, h.quantity)).collect();
    assert_eq!(pooled, [(Pool::Network, 12)]);
    let held: Vec<(&str, Qty, Scope)> = group
        .pooled_commitments
        .iter()
        .map(|c| (&*c.reservation_id, c.quantity, c.scope))
        .collect();
    assert_eq!(held, [("NET", 12, Scope::Pool(Pool::Network))]);
    let network = explain(&engine, "", "", None);
    assert_eq!((network.atp, network.pooled_reduction), (3, 12));
    let node = explain(&engine, "B", "", None);
    assert_eq!(
        (node.atp, node.pooled.len()),
        (10, 0),
        "pooled holds leave nodes alone"
    );
}

/// Network ATP of the SKU on `date` (`None`: today), as the availability answer has it.
fn network_atp(engine: &Engine, date: Option<Day>) -> Qty {
    let query = AvailabilityQuery {
        skus: vec![SKU.into()],
        node_ids: Vec::new(),
        group_ids: Vec::new(),
        date,
        quantity: None,
        totals_only: false,
    };
    engine.availability(&query).expect("answered").items[0].network_atp
}

/// A pooled hold due later once made its nodes count on its day: with nothing on hand and
/// 10 arriving at A in five days, a network hold of 1 due in a week made today's network ATP
/// 9 while every node had 0, and a network hold of those 9 was refused "requested 9
/// available 9". A pool counts its nodes on the day asked.
#[test]
fn a_pool_counts_its_nodes_on_the_day_asked_not_on_a_later_pooled_holds_day() {
    let (engine, _clock) = network_engine(EngineConfig::default(), [0; 3]);
    let mut feeds = Feeds::new();
    let asn = receipt(0, SupplyType::InTransit, "ASN-1", today().plus(5), 10);
    assert_eq!(feeds.send(&engine, "ERP", asn), 0);
    let later = hold("LATER", "", "", 1, Some(today().plus(7)));
    let _ = engine.reserve(&later).expect("held");
    assert_eq!(network_atp(&engine, None), 0, "nothing is there today");
    assert_eq!(explain(&engine, "", "", None).atp, 0);
    assert_eq!(explain(&engine, "", "G1", None).atp, 0);
    match engine.reserve(&hold("NOW", "", "", 9, None)) {
        Err(Error::InsufficientStock(shortfalls)) => {
            let answered: Vec<(Qty, Qty)> = shortfalls
                .iter()
                .map(|s| (s.requested, s.available))
                .collect();
            assert_eq!(answered, [(9, 0)]);
        }
        other => panic!("a hold of stock not yet there: {other:?}"),
    }
    assert_eq!(network_atp(&engine, Some(today().plus(5))), 9);
    let arrived = hold("ARRIVED", "", "", 9, Some(today().plus(5)));
    let _ = engine.reserve(&arrived).expect("held once it is there");
    assert_eq!(network_atp(&engine, Some(today().plus(5))), 0);
}

#[test]
fn an_unknown_sku_is_explained_as_nothing_available() {
    let (engine, _clock) = network_engine(EngineConfig::default(), [4, 0, 0]);
    let a = explain(&engine, "A", "", None).nodes.remove(0);
    assert_eq!((a.atp, a.on_hand, a.safety_stock), (0, 0, 4));
    assert_eq!(a.lowest, Some((today(), -4)));
    assert!(explain(&engine, "", "", None).nodes.is_empty());
}

#[test]
fn a_bad_query_names_each_bad_field() {
    let (engine, _clock) = network_engine(EngineConfig::default(), [0; 3]);
    let fields = |query: ExplainQuery| match engine.explain(&query) {
        Err(Error::InvalidArgument(violations)) => {
            violations.into_iter().map(|v| v.field).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    let query = |sku: &str, node_id: &str, group_id: &str| ExplainQuery {
        sku: sku.into(),
        node_id: node_id.into(),
        group_id: group_id.into(),
        date: None,
    };
    assert_eq!(fields(query("", "NOPE", "")), ["sku", "node_id"]);
    assert_eq!(
        fields(query(&"S".repeat(200), "", "NOPE")),
        ["sku", "group_id"]
    );
    assert_eq!(fields(query(SKU, "A", "G1")), ["group_id"]);
}

// Random histories.

#[derive(Debug, Clone)]
enum Op {
    SetOnHand {
        node: usize,
        quantity: Qty,
        age_ms: i64,
    },
    AdjustOnHand {
        node: usize,
        delta: Qty,
    },
    Receipt {
        node: usize,
        in_transit: bool,
        line: u8,
        eta: i32,
        quantity: Qty,
    },
    AdjustReceipt {
        node: usize,
        in_transit: bool,
        line: u8,
        delta: Qty,
    },
    Safety {
        node: usize,
        quantity: Qty,
    },
    /// At node 0..3, group 3..5 or the network (5).
    Reserve {
        scope: usize,
        quantity: Qty,
        need: i32,
    },
    Commit {
        reservation: usize,
    },
    Release {
        reservation: usize,
    },
    Ship {
        reservation: usize,
        quantity: Qty,
    },
    Advance {
        ms: i64,
    },
    Heartbeat {
        source: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..3usize;
    prop_oneof![
        (node.clone(), 0..60i64, 0..120_000i64).prop_map(|(node, quantity, age_ms)| {
            Op::SetOnHand {
                node,
                quantity,
                age_ms,
            }
        }),
        (node.clone(), -20..30i64).prop_map(|(node, delta)| Op::AdjustOnHand { node, delta }),
        (node.clone(), any::<bool>(), 0..3u8, -2..12i32, 0..40i64).prop_map(
            |(node, in_transit, line, eta, quantity)| Op::Receipt {
                node,
                in_transit,
                line,
                eta,
                quantity
            }
        ),
        (node.clone(), any::<bool>(), 0..3u8, -20..20i64).prop_map(
            |(node, in_transit, line, delta)| Op::AdjustReceipt {
                node,
                in_transit,
                line,
                delta
            }
        ),
        (node, 0..8i64).prop_map(|(node, quantity)| Op::Safety { node, quantity }),
        (0..6usize, 1..15i64, -1..10i32).prop_map(|(scope, quantity, need)| Op::Reserve {
            scope,
            quantity,
            need
        }),
        (0..10usize).prop_map(|reservation| Op::Commit { reservation }),
        (0..10usize).prop_map(|reservation| Op::Release { reservation }),
        (0..10usize, 1..10i64).prop_map(|(reservation, quantity)| Op::Ship {
            reservation,
            quantity
        }),
        (0..100_000i64).prop_map(|ms| Op::Advance { ms }),
        (0..3usize).prop_map(|source| Op::Heartbeat { source }),
    ]
}

/// One random state: the engine's policies and the history that made it.
#[derive(Debug, Clone)]
struct History {
    stale: StalePolicy,
    promisable_permille: [u32; 3],
    safety: [Qty; 3],
    ops: Vec<Op>,
}

fn history() -> impl Strategy<Value = History> {
    let stale = prop_oneof![
        Just(StalePolicy::Exclude),
        (0..=100u32).prop_map(|percent| StalePolicy::Buffer { percent }),
    ];
    let permille = prop::sample::select(vec![0u32, 333, 400, 1000]);
    (
        stale,
        permille.clone(),
        permille,
        prop::array::uniform3(0..6i64),
        prop::collection::vec(op(), 1..40),
    )
        .prop_map(|(stale, in_transit, on_order, safety, ops)| History {
            stale,
            promisable_permille: [1000, in_transit, on_order],
            safety,
            ops,
        })
}

impl History {
    fn engine(&self) -> Engine {
        let config = EngineConfig {
            stale: self.stale,
            atp: AtpPolicy {
                promisable_permille: self.promisable_permille,
            },
            ..EngineConfig::default()
        };
        let (engine, clock) = network_engine(config, self.safety);
        let mut feeds = Feeds::new();
        let mut reservations = 0;
        for op in &self.ops {
            apply(&engine, &clock, &mut feeds, &mut reservations, op);
        }
        engine
    }
}

/// Applies one operation; refusals (short stock, negative results) are part of the history.
fn apply(
    engine: &Engine,
    clock: &ManualClock,
    feeds: &mut Feeds,
    reservations: &mut usize,
    op: &Op,
) {
    let id = |k: usize| format!("R{}", k % (*reservations).max(1));
    let receipt_type = |in_transit: bool| {
        if in_transit {
            SupplyType::InTransit
        } else {
            SupplyType::OnOrder
        }
    };
    match *op {
        Op::SetOnHand {
            node,
            quantity,
            age_ms,
        } => {
            let as_of_ms = Some(START_MS.max(engine.now_ms() - age_ms));
            let update = on_hand(node, UpdateOp::Set { as_of_ms }, quantity);
            feeds.send(engine, on_hand_owner(node), update);
        }
        Op::AdjustOnHand { node, delta } => {
            let update = on_hand(node, UpdateOp::Adjust, delta);
            feeds.send(engine, on_hand_owner(node), update);
        }
        Op::Receipt {
            node,
            in_transit,
            line,
            eta,
            quantity,
        } => {
            let reference = format!("LINE-{line}");
            let update = receipt(
                node,
                receipt_type(in_transit),
                &reference,
                today().plus(eta),
                quantity,
            );
            feeds.send(engine, "ERP", update);
        }
        Op::AdjustReceipt {
            node,
            in_transit,
            line,
            delta,
        } => {
            let mut update = receipt(
                node,
                receipt_type(in_transit),
                &format!("LINE-{line}"),
                today(),
                delta,
            );
            (update.op, update.eta) = (Some(UpdateOp::Adjust), String::new());
            feeds.send(engine, "ERP", update);
        }
        Op::Safety { node, quantity } => {
            let entry = SafetyStockEntry {
                sku: SKU.into(),
                node_id: NODES[node].into(),
                quantity,
            };
            let _ = engine.set_safety_stock(&[entry]).expect("known node");
        }
        Op::Reserve {
            scope,
            quantity,
            need,
        } => {
            let (node_id, group_id) = match scope {
                0..3 => (NODES[scope], ""),
                3..5 => ("", GROUPS[scope - 3]),
                _ => ("", ""),
            };
            let need = (need >= 0).then(|| today().plus(need));
            let request = hold(
                &format!("R{reservations}"),
                node_id,
                group_id,
                quantity,
                need,
            );
            if engine.reserve(&request).is_ok() {
                *reservations += 1;
            }
        }
        Op::Commit { reservation } => {
            let _ = engine.commit(&id(reservation), &format!("ORDER-{}", id(reservation)));
        }
        Op::Release { reservation } => {
            let _ = engine.release(&id(reservation));
        }
        Op::Ship {
            reservation,
            quantity,
        } => {
            let Ok(held) = engine.get_reservation(&id(reservation)) else {
                return;
            };
            let reservation = held.reservation;
            let open = reservation.lines.iter().flat_map(|l| &l.allocations);
            let Some(allocation) = open.into_iter().find(|a| a.shipped < a.quantity) else {
                return;
            };
            let node = allocation.node as usize;
            let quantity = quantity.min(allocation.quantity - allocation.shipped);
            let order_id = reservation.order_id.clone();
            let update = on_hand(node, UpdateOp::Ship { order_id }, quantity);
            feeds.send(engine, on_hand_owner(node), update);
        }
        Op::Advance { ms } => {
            clock.advance_ms(ms);
            let _ = engine.expire_due();
        }
        Op::Heartbeat { source } => feeds.heartbeat(engine, ["WMS", "POS", "ERP"][source]),
    }
}

/// `net(day)` from a node's listed parts: everything due by `day`.
fn net_from_parts(node: &NodeExplanation, day: Day) -> Qty {
    let receipts: Qty = node
        .receipts
        .iter()
        .filter(|r| r.eta <= day)
        .map(|r| r.promisable)
        .sum();
    let demand: Qty = node
        .demand
        .iter()
        .filter(|d| d.day <= day)
        .map(|d| d.reserved + d.allocated)
        .sum();
    node.on_hand - node.safety_stock - node.stale_buffer() + receipts - demand
}

/// A node's parts add up to its ATP, and its lowest net is the first lowest from its day on.
fn check_node(node: &NodeExplanation, policy: &[u32; 3]) -> Result<(), TestCaseError> {
    for r in &node.receipts {
        let share = Qty::from(policy[r.supply_type.index()]);
        prop_assert_eq!(r.promisable, r.quantity * share / 1000);
    }
    let Some((low_day, low_net)) = node.lowest else {
        prop_assert_eq!(node.stale, StaleShare::Excluded);
        prop_assert_eq!(node.atp, 0);
        prop_assert!(node.receipts.iter().all(|r| !r.counted));
        prop_assert!(node.demand.iter().all(|d| !d.counted));
        return Ok(());
    };
    let counted: Qty = node
        .receipts
        .iter()
        .filter(|r| r.counted)
        .map(|r| r.promisable)
        .sum::<Qty>()
        - node
            .demand
            .iter()
            .filter(|d| d.counted)
            .map(|d| d.reserved + d.allocated)
            .sum::<Qty>();
    let parts = node.on_hand - node.safety_stock - node.stale_buffer() + counted;
    prop_assert_eq!(parts, low_net, "{:?}", node);
    prop_assert_eq!(node.atp, low_net.max(0));
    prop_assert!(low_day >= node.day);
    let events = node
        .receipts
        .iter()
        .map(|r| r.eta)
        .chain(node.demand.iter().map(|d| d.day));
    for day in events.chain([node.day]).filter(|d| *d >= node.day) {
        let net = net_from_parts(node, day);
        prop_assert!(
            net >= low_net,
            "net {} on {} below {:?}",
            net,
            day,
            node.lowest
        );
        prop_assert!(
            day >= low_day || net > low_net,
            "an earlier day {} reaches {}",
            day,
            low_net
        );
    }
    if let StaleShare::Buffer { percent, quantity } = node.stale {
        prop_assert_eq!(
            quantity,
            (node.on_hand.max(0) * Qty::from(percent) + 99) / 100
        );
    }
    Ok(())
}

/// The book's holds and allocations make up the index's day totals.
fn check_commitments(explanation: &Explanation) -> Result<(), TestCaseError> {
    prop_assert!(!explanation.truncated);
    for node in &explanation.nodes {
        let mut listed: BTreeMap<Day, (Qty, Qty)> = BTreeMap::new();
        for c in &node.commitments {
            let day = listed.entry(c.need).or_default();
            if c.order_id.is_empty() {
                day.0 += c.quantity;
            } else {
                day.1 += c.quantity;
            }
        }
        let totals: BTreeMap<Day, (Qty, Qty)> = node
            .demand
            .iter()
            .map(|d| (d.day, (d.reserved, d.allocated)))
            .collect();
        prop_assert_eq!(listed, totals);
    }
    let mut pooled: BTreeMap<(Pool, Day), Qty> = BTreeMap::new();
    for c in &explanation.pooled_commitments {
        let Scope::Pool(pool) = c.scope else {
            return Err(TestCaseError::fail("a node commitment among pooled ones"));
        };
        *pooled.entry((pool, c.need)).or_default() += c.quantity;
    }
    let held: BTreeMap<(Pool, Day), Qty> = explanation
        .pooled
        .iter()
        .map(|h| ((h.pool, h.day), h.quantity))
        .collect();
    prop_assert_eq!(pooled, held);
    Ok(())
}

/// The explanation of one scope against the availability answer for the same SKU and date.
fn check_scope(
    explanation: &Explanation,
    item: &ItemAvailability,
    expected_atp: Qty,
    policy: &[u32; 3],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(explanation.atp, expected_atp);
    for node in &explanation.nodes {
        check_node(node, policy)?;
    }
    let members: Qty = explanation.nodes.iter().map(|n| n.atp).sum();
    prop_assert_eq!(members - explanation.pooled_reduction, explanation.atp);
    let pooled: Qty = explanation.pooled.iter().map(|h| h.quantity).sum();
    prop_assert!((0..=pooled).contains(&explanation.pooled_reduction));
    if explanation.pooled.is_empty() || matches!(explanation.scope, Scope::Node(_)) {
        // Nodes are explained on the day asked, as the availability answer has them.
        for node in &explanation.nodes {
            let answered = item.nodes.iter().find(|n| n.node == node.node);
            let answered = answered.ok_or_else(|| TestCaseError::fail("node not answered"))?;
            prop_assert_eq!(node.atp, answered.atp);
            prop_assert_eq!(node.on_hand, answered.on_hand);
            let excluded = node.stale == StaleShare::Excluded;
            let buffer = if excluded { 0 } else { node.stale_buffer() };
            prop_assert_eq!(node.safety_stock + buffer, answered.safety_stock);
            prop_assert_eq!(node.stale != StaleShare::Fresh, answered.degraded);
        }
    }
    check_commitments(explanation)
}

proptest! {
    #[test]
    fn explanations_add_up_to_the_availability_answer(history in history()) {
        let engine = history.engine();
        let dates = [None].into_iter().chain((-1..12).map(|k| Some(today().plus(k))));
        for date in dates {
            let query = AvailabilityQuery {
                skus: vec![SKU.into()],
                group_ids: GROUPS.map(String::from).to_vec(),
                date,
                ..AvailabilityQuery::default()
            };
            let item = engine.availability(&query).expect("answered").items.remove(0);
            let policy = &history.promisable_permille;
            for (i, node_id) in NODES.iter().enumerate() {
                let explanation = explain(&engine, node_id, "", date);
                check_scope(&explanation, &item, item.nodes[i].atp, policy)?;
            }
            for (i, group_id) in GROUPS.iter().enumerate() {
                let explanation = explain(&engine, "", group_id, date);
                check_scope(&explanation, &item, item.groups[i].atp, policy)?;
            }
            let explanation = explain(&engine, "", "", date);
            check_scope(&explanation, &item, item.network_atp, policy)?;
        }
    }
}
