//! What watchers see of the journal: each durable record read back as a change of watched
//! positions (with their figures as of the change) or of reservations, with its cause. Made
//! from journal records only, so a change that was undone is never seen.

pub mod bands;

use std::collections::HashSet;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::index::{position_images, Totals};
use crate::mutation::{Cause, StoredRecord};
use crate::reservation::{Reservation, State};
use crate::view::AtpView;

/// Which positions a watcher is shown; resolved against the network when the watch starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Empty: every SKU.
    pub skus: HashSet<String>,
    /// Node ids, with the members of the groups asked for; empty: every node.
    pub nodes: HashSet<String>,
}

impl WatchFilter {
    /// Checks the filter's ids against the network and bounds its size by `max_pairs`.
    pub fn resolve(
        engine: &Engine,
        skus: Vec<String>,
        node_ids: Vec<String>,
        group_ids: Vec<String>,
    ) -> Result<Self> {
        let network = engine.network();
        let limits = &engine.config().limits;
        let mut violations = Vec::new();
        if skus.len() + node_ids.len() + group_ids.len() > limits.max_pairs {
            violations.push(FieldViolation::new(
                "skus",
                format!(
                    "at most {} SKUs, nodes and groups together",
                    limits.max_pairs
                ),
            ));
        }
        for (i, sku) in skus.iter().enumerate() {
            if sku.is_empty() || sku.len() > limits.max_field_len {
                violations.push(FieldViolation::new(
                    format!("skus[{i}]"),
                    format!("must be 1 to {} bytes", limits.max_field_len),
                ));
            }
        }
        let mut nodes: HashSet<String> = HashSet::new();
        for (i, id) in node_ids.into_iter().enumerate() {
            if network.node_idx(&id).is_none() {
                violations.push(FieldViolation::new(
                    format!("node_ids[{i}]"),
                    "unknown node",
                ));
            }
            nodes.insert(id);
        }
        for (i, id) in group_ids.iter().enumerate() {
            match network.group_members(id) {
                Some(members) => nodes.extend(members.iter().map(|&n| network.node(n).id.clone())),
                None => violations.push(FieldViolation::new(
                    format!("group_ids[{i}]"),
                    "unknown group",
                )),
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(Self {
            skus: skus.into_iter().collect(),
            nodes,
        })
    }

    /// Whether the filter admits every position.
    fn admits_all(&self) -> bool {
        self.skus.is_empty() && self.nodes.is_empty()
    }

    fn admits(&self, sku: &str, node_id: &str) -> bool {
        (self.skus.is_empty() || self.skus.contains(sku))
            && (self.nodes.is_empty() || self.nodes.contains(node_id))
    }
}

/// A position's figures after a change, as of the change's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub sku: String,
    pub node_id: String,
    pub atp: i64,
    pub safety_stock: i64,
    pub totals: Totals,
}

/// The cause of a journaled change, and the ids it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Why {
    pub cause: Cause,
    pub source_seq: Option<(String, u64)>,
    pub reservation_ids: Vec<String>,
    pub order_ids: Vec<String>,
    /// A feed batch that changed reservations shipped them.
    pub shipped: bool,
}

/// One journaled change of watched positions: a watcher's view of the change every watcher
/// shares, so admitting it copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityChange {
    change: Arc<Change>,
    /// The indexes in the change of the positions the watcher is shown; `None`: every one.
    admitted: Option<Vec<usize>>,
}

impl AvailabilityChange {
    pub fn why(&self) -> &Why {
        &self.change.why
    }

    /// The watched positions' figures, in the order the record first changed them.
    pub fn positions(&self) -> impl ExactSizeIterator<Item = &Figures> {
        let all = &self.change.positions;
        let count = self.admitted.as_ref().map_or(all.len(), Vec::len);
        (0..count).map(move |k| match &self.admitted {
            Some(admitted) => &all[admitted[k]],
            None => &all[k],
        })
    }

    pub fn is_empty(&self) -> bool {
        self.positions().len() == 0
    }

    pub fn network_changed(&self) -> bool {
        self.change.network_changed
    }
}

/// One journaled change of reservations, each as the change left it: a view of the shared
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    change: Arc<Change>,
}

impl OrderChange {
    pub fn why(&self) -> &Why {
        &self.change.why
    }

    pub fn reservations(&self) -> &[Reservation] {
        &self.change.reservations
    }
}

fn why(record: &StoredRecord<'_>) -> Why {
    let cause = record.cause.clone().unwrap_or_default();
    Why {
        shipped: cause.action == "apply_batch" && !record.reservations.is_empty(),
        cause,
        source_seq: record.source_seq.map(|(s, seq)| (s.to_owned(), seq)),
        reservation_ids: record.reservation_ids(),
        order_ids: record.order_ids(),
    }
}

/// A durable record as every watcher sees it, decoded once and shared: its cause, the
/// figures of every position it changed and the reservations it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub why: Why,
    /// Each position's figures as the record left them, in the order the record first
    /// changed them.
    pub positions: Vec<Figures>,
    pub network_changed: bool,
    pub reservations: Vec<Reservation>,
}

/// Decodes a journal record into the change watchers see; figures are as of the record's time.
pub fn decode(engine: &Engine, bytes: &[u8]) -> Result<Arc<Change>> {
    let mut record = StoredRecord::decode(bytes).map_err(damaged)?;
    let images = position_images(&mut record.effects).map_err(damaged)?;
    let network = engine.network();
    let why = why(&record);
    let view = AtpView::at(engine, &network, why.cause.at_ms);
    let mut positions: Vec<Figures> = Vec::new();
    for (sku, position) in images {
        let Some(node) = network.nodes().get(position.node() as usize) else {
            continue;
        };
        let figures = Figures {
            sku: sku.to_owned(),
            node_id: node.id.clone(),
            atp: view.atp(&position),
            safety_stock: view.base_safety(position.node(), Some(&position)),
            totals: position.totals(),
        };
        // A record's last image of a position is what its change left there.
        match positions
            .iter_mut()
            .find(|f| f.sku == figures.sku && f.node_id == figures.node_id)
        {
            Some(earlier) => *earlier = figures,
            None => positions.push(figures),
        }
    }
    Ok(Arc::new(Change {
        why,
        positions,
        network_changed: record.network.is_some(),
        reservations: record.reservations,
    }))
}

impl Change {
    /// What an outbound sink of the positions `availability` watches (if any) and, when
    /// `orders`, of reservations is shown of this change; `None` when nothing.
    pub fn sink(
        self: &Arc<Self>,
        availability: Option<&WatchFilter>,
        orders: bool,
    ) -> Option<Changes> {
        let availability = availability
            .and_then(|filter| self.availability(filter))
            .filter(|change| !change.is_empty());
        let orders = if orders { self.orders() } else { None };
        (availability.is_some() || orders.is_some()).then_some(Changes {
            availability,
            orders,
        })
    }

    /// The change to positions `filter` watches, if any (every network change).
    pub fn availability(self: &Arc<Self>, filter: &WatchFilter) -> Option<AvailabilityChange> {
        let admitted = (!filter.admits_all()).then(|| {
            (self.positions.iter().enumerate())
                .filter(|(_, f)| filter.admits(&f.sku, &f.node_id))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        });
        let change = AvailabilityChange {
            change: self.clone(),
            admitted,
        };
        (self.network_changed || !change.is_empty()).then_some(change)
    }

    /// The change to reservations, if any.
    pub fn orders(self: &Arc<Self>) -> Option<OrderChange> {
        (!self.reservations.is_empty()).then(|| OrderChange {
            change: self.clone(),
        })
    }
}

/// One journaled change as an outbound sink sees it: of the positions it watches, of
/// reservations, or both (a hold changes both), in one journal order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub availability: Option<AvailabilityChange>,
    pub orders: Option<OrderChange>,
}

/// What happened to a reservation in a change of `why`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEventKind {
    Held,
    Updated,
    Released,
    Expired,
    Committed,
    Shipped,
}

impl OrderEventKind {
    pub fn of(why: &Why, reservation: &Reservation) -> Self {
        match reservation.state {
            State::Released => Self::Released,
            State::Expired => Self::Expired,
            State::Shipped => Self::Shipped,
            State::Committed if why.shipped => Self::Shipped,
            State::Committed if why.cause.action == "commit" => Self::Committed,
            State::Held if reservation.version <= 1 => Self::Held,
            State::Committed | State::Held => Self::Updated,
        }
    }
}

fn damaged(error: crate::codec::CodecError) -> Error {
    tracing::warn!(%error, "a journal record a watcher read does not decode");
    Error::Unavailable(format!("a journal record does not decode: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(sku: &str, node_id: &str, atp: i64) -> Figures {
        Figures {
            sku: sku.into(),
            node_id: node_id.into(),
            atp,
            safety_stock: 0,
            totals: Totals::default(),
        }
    }

    fn change(network_changed: bool) -> Arc<Change> {
        Arc::new(Change {
            why: Why::default(),
            positions: vec![
                figures("SKU-A", "DC-1", 1),
                figures("SKU-B", "DC-1", 2),
                figures("SKU-A", "DC-2", 3),
            ],
            network_changed,
            reservations: Vec::new(),
        })
    }

    fn filter(skus: &[&str], nodes: &[&str]) -> WatchFilter {
        WatchFilter {
            skus: skus.iter().map(|s| (*s).to_owned()).collect(),
            nodes: nodes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn atps(change: &AvailabilityChange) -> Vec<i64> {
        change.positions().map(|f| f.atp).collect()
    }

    #[test]
    fn a_watcher_is_shown_the_positions_its_filter_admits_in_the_records_order() {
        let shared = change(false);
        let every = shared.availability(&WatchFilter::default()).expect("all");
        assert_eq!(atps(&every), [1, 2, 3]);
        let sku_a = shared
            .availability(&filter(&["SKU-A"], &[]))
            .expect("SKU-A");
        assert_eq!(atps(&sku_a), [1, 3]);
        let dc_1 = shared.availability(&filter(&[], &["DC-1"])).expect("DC-1");
        assert_eq!(atps(&dc_1), [1, 2]);
        let one = shared.availability(&filter(&["SKU-A"], &["DC-2"]));
        assert_eq!(one.as_ref().map(atps), Some(vec![3]));
        assert_eq!(shared.availability(&filter(&["SKU-C"], &[])), None);
        assert_eq!(
            Arc::strong_count(&shared),
            5,
            "every view shares the one change"
        );
    }

    #[test]
    fn a_network_change_reaches_every_watcher_and_a_sink_only_with_positions() {
        let shared = change(true);
        let none = shared
            .availability(&filter(&["SKU-C"], &[]))
            .expect("shown");
        assert!(none.network_changed() && none.is_empty());
        assert_eq!(shared.sink(Some(&filter(&["SKU-C"], &[])), false), None);
        let sink = shared
            .sink(Some(&filter(&["SKU-B"], &[])), true)
            .expect("sink");
        assert_eq!(sink.availability.as_ref().map(atps), Some(vec![2]));
        assert_eq!(sink.orders, None, "no reservation changed");
    }
}
