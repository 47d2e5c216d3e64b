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
use crate::reservation::{Line, Reservation, Scope, State};
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

/// What the live reservations say the index should hold.
#[derive(Default)]
struct BookDemand {
    expected: Expected,
    pools: HashMap<String, Vec<PoolHold>>,
}

impl BookDemand {
    /// Adds up the holds and open allocations of `reservations`.
    fn of<'r>(reservations: impl Iterator<Item = &'r Reservation>) -> Self {
        let mut book = Self::default();
        for reservation in reservations {
            for line in &reservation.lines {
                book.add(reservation.state, line);
            }
        }
        book
    }

    /// Adds one line of a reservation in `state`; ended reservations carry nothing.
    fn add(&mut self, state: State, line: &Line) {
        for (scope, quantity) in line.demand(state) {
            match scope {
                Scope::Node(node) => {
                    let day = self.day(&line.sku, node, line.need);
                    if state == State::Held {
                        day.0 += quantity;
                    } else {
                        day.1 += quantity;
                    }
                }
                Scope::Pool(pool) => add_pool_hold(
                    self.pools.entry(line.sku.clone()).or_default(),
                    pool,
                    line.need,
                    quantity,
                ),
            }
        }
    }

    /// The (reserved, allocated) demand of `sku` at `node` on `day`, created empty if new.
    fn day(&mut self, sku: &str, node: NodeIdx, day: Day) -> &mut (Qty, Qty) {
        self.expected
            .entry((sku.to_owned(), node))
            .or_default()
            .entry(day)
            .or_default()
    }

    /// The position's expected demand, without empty days.
    fn demand(&self, sku: &str, node: NodeIdx) -> Vec<DatedDemand> {
        self.expected
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
    }

    /// The SKU's expected pooled holds.
    fn pooled(&self, sku: &str) -> Vec<PoolHold> {
        self.pools.get(sku).cloned().unwrap_or_default()
    }
}

impl Engine {
    /// Checks the invariants (and with `repair`, restores them). The book is locked throughout,
    /// so reservations wait; supply feeds only wait for one index shard at a time.
    pub fn audit(&self, repair: bool) -> Mutation<AuditReport> {
        let network = self.network();
        let view = AtpView::new(self, &network, None);
        let book = self.shared.book.lock_all();
        let expected = BookDemand::of(book.iter().flat_map(|shard| shard.iter()));
        let demand = |sku: &str, node: NodeIdx| expected.demand(sku, node);
        let pooled = |sku: &str| expected.pooled(sku);
        let mut report = AuditReport {
            repaired: repair,
            ..AuditReport::default()
        };
        // Oversold: commitments above supply itself (safety stock aside, which holds never
        // take but a falling on-hand may).
        let mut visit = |position: &crate::index::Position| {
            report.positions += 1;
            let today = view.day(position.node());
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
        self.mutation(ticket, report, || Record {
            effects: effects.unwrap_or_default(),
            ..Record::default()
        })
    }
}
