//! The reservation invariants, checked against the index: every position's reserved and
//! allocated demand equals the sum of the live holds and allocations on it, and every SKU's
//! pooled holds equal its live group and network lines (drift, which must stay 0; a repair
//! rewrites the index from the book); and no position is oversold (commitments above supply,
//! which a feed lowering on-hand under existing holds can cause: an alert, not drift).

use std::collections::{BTreeMap, HashMap};

use crate::domain::{Day, Qty};
use crate::engine::Engine;
use crate::index::{add_pool_hold, DatedDemand, PoolHold};
use crate::mutation::{Mutation, Record};
use crate::network::NodeIdx;
use crate::reservation::{Scope, State};
use crate::view::AtpView;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub positions: u64,
    /// Positions and SKUs whose demand or pooled holds disagree with the book.
    pub drift: u64,
    /// Positions whose commitments exceed their supply.
    pub oversold: u64,
    /// Whether the drift found was repaired.
    pub repaired: bool,
}

/// Demand the book says each position carries: (sku, node) -> day -> (reserved, allocated).
type Expected = HashMap<(String, NodeIdx), BTreeMap<Day, (Qty, Qty)>>;

impl Engine {
    /// Checks the invariants (and with `repair`, restores them). The book is locked throughout,
    /// so reservations wait; supply feeds only wait for one index shard at a time.
    pub fn audit(&self, repair: bool) -> Mutation<AuditReport> {
        let network = self.network();
        let view = AtpView::new(self, &network, None);
        let book = self.shared.book.lock_all();
        let mut expected: Expected = HashMap::new();
        let mut pools: HashMap<String, Vec<PoolHold>> = HashMap::new();
        for reservation in book.iter().flat_map(|shard| shard.iter()) {
            for line in &reservation.lines {
                match (reservation.state, line.scope) {
                    (State::Held, Scope::Node(node)) => {
                        let day = expected
                            .entry((line.sku.clone(), node))
                            .or_default()
                            .entry(line.need)
                            .or_default();
                        day.0 += line.quantity;
                    }
                    (State::Held, Scope::Pool(pool)) => {
                        add_pool_hold(
                            pools.entry(line.sku.clone()).or_default(),
                            pool,
                            line.need,
                            line.quantity,
                        );
                    }
                    (State::Committed, _) => {
                        for allocation in &line.allocations {
                            let key = (line.sku.clone(), allocation.node);
                            let day = expected
                                .entry(key)
                                .or_default()
                                .entry(line.need)
                                .or_default();
                            day.1 += allocation.quantity - allocation.shipped;
                        }
                    }
                    _ => {}
                }
            }
        }
        let demand = |sku: &str, node: NodeIdx| -> Vec<DatedDemand> {
            expected
                .get(&(sku.to_owned(), node))
                .into_iter()
                .flatten()
                .filter(|(_, (reserved, allocated))| *reserved != 0 || *allocated != 0)
                .map(|(&day, &(reserved, allocated))| DatedDemand {
                    day,
                    reserved,
                    allocated,
                })
                .collect()
        };
        let pooled = |sku: &str| pools.get(sku).cloned().unwrap_or_default();
        let mut report = AuditReport {
            repaired: repair,
            ..AuditReport::default()
        };
        // Oversold: commitments above supply itself (safety stock aside, which holds never
        // take but a falling on-hand may).
        let mut visit = |position: &crate::index::Position| {
            report.positions += 1;
            let today = view.day[position.node() as usize];
            let committed = !position.demand().is_empty();
            if committed && position.lowest_net(today, 0, &self.config().atp) < 0 {
                report.oversold += 1;
            }
        };
        let ticket = self.begin();
        let mut effects = self.effects();
        let drift =
            self.shared
                .index
                .reconcile(&demand, &pooled, &mut visit, repair, effects.as_mut());
        drop(book);
        report.drift = drift;
        report.repaired = repair && drift > 0;
        crate::metrics::audited(report.drift, report.oversold);
        self.mutation(ticket, report, || Record {
            effects: effects.unwrap_or_default(),
            ..Record::default()
        })
    }
}
