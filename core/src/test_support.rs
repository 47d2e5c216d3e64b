//! Engines with nodes and on-hand stock, for the core's unit tests.

use std::sync::Arc;

use crate::clock::ManualClock;
use crate::domain::{
    Node, NodeKind, Qty, Source, SourceKind, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp,
};
use crate::engine::{Engine, EngineConfig};
use crate::reservation::{LineRequest, Reservation, ReserveRequest};

/// An engine whose network has one DC per id (indexed in the given order) and a WMS source
/// owning their on-hand.
pub(crate) fn engine(node_ids: &[&str]) -> Engine {
    let engine = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(1_000)));
    let nodes = node_ids.iter().map(|id| node(id)).collect();
    // Tests keep no journal: the records are not needed.
    let _ = engine.upsert_nodes(nodes).expect("nodes");
    let _ = engine.upsert_sources(vec![wms()]).expect("source");
    engine
}

/// An engine with DCs `N0`, `N1`, ... (as [`engine`]), each node placed by `place` (its index
/// and the node), and the ids.
pub(crate) fn placed_engine(
    count: usize,
    place: impl Fn(usize, &mut Node),
) -> (Engine, Vec<String>) {
    let ids: Vec<String> = (0..count).map(|n| format!("N{n}")).collect();
    let engine = engine(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let nodes = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut node = node(id);
            place(n, &mut node);
            node
        })
        .collect();
    let _ = engine.upsert_nodes(nodes).expect("nodes");
    (engine, ids)
}

/// Source WMS, owning on-hand at every node.
pub(crate) fn wms() -> Source {
    Source {
        id: "WMS".into(),
        kind: SourceKind::Wms,
        owned_node_ids: Vec::new(),
        owned_supply_types: vec![SupplyType::OnHand],
        stale_after_ms: None,
    }
}

/// A DC at (0, 0) in UTC with default fulfilment.
pub(crate) fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        kind: NodeKind::Dc,
        lat: 0.0,
        lon: 0.0,
        postal_code: String::new(),
        country: "US".into(),
        time_zone: chrono_tz::UTC,
        priority: 0,
        group_ids: Vec::new(),
        safety_stock: 0,
        fulfilment: Default::default(),
        pickup: None,
    }
}

/// Adds `quantity` on hand of `sku` at each `(node_id, quantity)`, as one feed batch `seq`.
pub(crate) fn stock(engine: &Engine, seq: u64, sku: &str, at: &[(&str, Qty)]) {
    let updates = at
        .iter()
        .map(|&(node_id, quantity)| SupplyUpdate {
            sku: sku.into(),
            node_id: node_id.into(),
            supply_type: Some(SupplyType::OnHand),
            op: Some(UpdateOp::Adjust),
            quantity,
            reference: String::new(),
            eta: String::new(),
        })
        .collect();
    let batch = SupplyBatch {
        source_id: "WMS".into(),
        seq,
        updates,
    };
    let outcome = engine.apply_batch(&batch).expect("batch").result;
    assert!(outcome.rejections.is_empty(), "{:?}", outcome.rejections);
}

/// A reservation request of today's lines `(sku, node_id, quantity)`; an empty node id holds
/// on the whole network.
pub(crate) fn hold(id: &str, lines: &[(&str, &str, Qty)]) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id.into(),
        lines: lines
            .iter()
            .map(|&(sku, node_id, quantity)| LineRequest {
                sku: sku.into(),
                node_id: node_id.into(),
                group_id: String::new(),
                quantity,
                need_date: None,
            })
            .collect(),
        ttl_secs: 0,
        owner: String::new(),
    }
}

/// Holds the request, which must succeed, and returns the reservation.
pub(crate) fn reserve(engine: &Engine, request: &ReserveRequest) -> Reservation {
    engine.reserve(request).expect("held").result.reservation
}
