//! ATP as of one instant against one network version and one published state of the index:
//! each node's day, the stale-feed policy, safety stock, and whether a SKU's pooled holds
//! (group or network reservations not yet bound to a node) can still be served by its nodes.

use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::domain::{Day, Qty};
use crate::engine::{Engine, StalePolicy};
use crate::flow::{max_flow, Demand};
use crate::index::{AtpPolicy, Pool, PoolHold, Position, Reader, SkuPositions};
use crate::network::{Degraded, Network, NodeIdx};

pub struct AtpView<'a, 'i> {
    pub network: &'a Network,
    /// The instant the view is of: which feeds are stale, and each node's today.
    pub now_ms: UnixMillis,
    /// The day ATP is answered for in each time zone of the network: today there, or a later
    /// date asked for (per zone, not per node: a query makes no vector of the nodes).
    zone_day: Arc<[Day]>,
    degraded: Degraded,
    policy: AtpPolicy,
    stale: StalePolicy,
    /// Every SKU the view reads is as of the same full syncs: one sync's commit is in all of
    /// them or in none.
    index: Reader<'i>,
}

/// A position's figures as an answer reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// ATP on the node's day (0 where the node is excluded as degraded).
    pub atp: Qty,
    /// Safety stock in force, including any stale-feed buffer; where the node is excluded, the
    /// safety stock it would keep.
    pub safety_stock: Qty,
}

/// What the stale-feed policy does to a position's ATP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleShare {
    /// The node's feeds are fresh: nothing.
    Fresh,
    /// The node is degraded and, by policy, promises nothing.
    Excluded,
    /// The node is degraded and holds back `quantity`, `percent` of its on-hand rounded up,
    /// on top of its safety stock.
    Buffer { percent: u32, quantity: Qty },
}

impl<'a, 'i> AtpView<'a, 'i> {
    /// The view now; `date`, if later than a node's today, is used instead of it.
    pub fn new(engine: &'i Engine, network: &'a Network, date: Option<Day>) -> Self {
        let mut view = Self::at(engine, network, engine.now_ms());
        if let Some(date) = date {
            view.zone_day = view
                .zone_day
                .iter()
                .map(|today| (*today).max(date))
                .collect();
        }
        view
    }

    /// The view at the instant `now_ms` (a what-if question may ask for another than now).
    pub fn at(engine: &'i Engine, network: &'a Network, now_ms: i64) -> Self {
        Self {
            network,
            now_ms,
            zone_day: network.today_per_zone(now_ms),
            degraded: network.degraded(now_ms),
            policy: engine.config().atp,
            stale: engine.config().stale,
            index: engine.index().reader(),
        }
    }

    /// Runs `read` on the SKU's positions (`None` for an unknown SKU), as the view sees them.
    pub fn read<R>(&self, sku: &str, read: impl FnOnce(Option<&SkuPositions>) -> R) -> R {
        self.index.read(sku, read)
    }

    /// Degraded and, by policy, promising nothing.
    pub fn is_excluded(&self, node: NodeIdx) -> bool {
        self.degraded.contains(node) && self.stale == StalePolicy::Exclude
    }

    pub fn is_degraded(&self, node: NodeIdx) -> bool {
        self.degraded.contains(node)
    }

    /// The day ATP is answered for at `node`: today there, or the later date asked for.
    pub fn day(&self, node: NodeIdx) -> Day {
        self.zone_day[self.network.zone_of(node)]
    }

    /// The earliest "today" of any node: the default day of pooled holds.
    pub fn first_day(&self) -> Day {
        self.zone_day.iter().copied().min().unwrap_or(Day(0))
    }

    /// Safety stock of a position before any stale-feed buffer.
    pub fn base_safety(&self, node: NodeIdx, position: Option<&Position>) -> Qty {
        let default = self.network.node(node).safety_stock;
        position.map_or(default, |p| p.safety(default))
    }

    /// Safety stock in force at a position, or `None` if the node is excluded as degraded.
    pub fn safety(&self, node: NodeIdx, position: Option<&Position>) -> Option<Qty> {
        self.in_force(node, position, self.base_safety(node, position))
    }

    /// Safety stock in force given the base figure, or `None` if the node is excluded.
    fn in_force(&self, node: NodeIdx, position: Option<&Position>, base: Qty) -> Option<Qty> {
        match self.stale_share(node, position) {
            StaleShare::Fresh => Some(base),
            StaleShare::Excluded => None,
            StaleShare::Buffer { quantity, .. } => Some(base + quantity),
        }
    }

    /// What the stale-feed policy does at a position.
    pub fn stale_share(&self, node: NodeIdx, position: Option<&Position>) -> StaleShare {
        if !self.degraded.contains(node) {
            return StaleShare::Fresh;
        }
        match self.stale {
            StalePolicy::Exclude => StaleShare::Excluded,
            StalePolicy::Buffer { percent } => {
                let on_hand = position.map_or(0, |p| p.totals().on_hand);
                let quantity = (on_hand.max(0) * Qty::from(percent) + 99) / 100;
                StaleShare::Buffer { percent, quantity }
            }
        }
    }

    /// How much of each supply type counts.
    pub fn policy(&self) -> &AtpPolicy {
        &self.policy
    }

    /// ATP of a position on its node's day.
    pub fn atp(&self, position: &Position) -> Qty {
        self.atp_on(position, Day(i32::MIN))
    }

    /// A position's ATP on its node's day and its safety stock, worked out together: an
    /// answer reports both and sums the ATP into its totals. Given the position's step
    /// function ([`AtpView::push_profile`]), the ATP is its first step's.
    pub fn figures(&self, position: &Position, profile: Option<&[(Day, Qty)]>) -> Figures {
        let node = position.node();
        let base = self.base_safety(node, Some(position));
        let in_force = self.in_force(node, Some(position), base);
        let atp = match (in_force, profile) {
            (None, _) => 0,
            (Some(_), Some(steps)) => steps.first().map_or(0, |step| step.1),
            (Some(safety), None) => position
                .lowest(self.day(node), safety, &self.policy)
                .1
                .max(0),
        };
        Figures {
            atp,
            safety_stock: in_force.unwrap_or(base),
        }
    }

    /// ATP of a position on `day`, or on its node's day if that is later.
    pub fn atp_on(&self, position: &Position, day: Day) -> Qty {
        self.lowest_on(position, day)
            .map_or(0, |(_, net)| net.max(0))
    }

    /// The lowest net position from `day` (or the node's day, if later) on and the first day
    /// it is reached, as [`Position::lowest`]; `None` if the node is excluded.
    pub fn lowest_on(&self, position: &Position, day: Day) -> Option<(Day, Qty)> {
        let node = position.node();
        let day = day.max(self.day(node));
        let safety = self.safety(node, Some(position))?;
        Some(position.lowest(day, safety, &self.policy))
    }

    /// ATP step function from the node's day; `None` if the node is excluded.
    pub fn profile(&self, position: &Position) -> Option<Vec<(Day, Qty)>> {
        let node = position.node();
        let safety = self.safety(node, Some(position))?;
        Some(position.atp_profile(self.day(node), safety, &self.policy))
    }

    /// Appends the ATP step function from the node's day to `steps`; nothing if the node is
    /// excluded.
    pub fn push_profile(&self, position: &Position, steps: &mut Vec<(Day, Qty)>) {
        let node = position.node();
        if let Some(safety) = self.safety(node, Some(position)) {
            position.push_atp_profile(self.day(node), safety, &self.policy, steps);
        }
    }

    /// First day with at least `quantity` available at the position.
    pub fn earliest(&self, position: &Position, quantity: Qty) -> Option<Day> {
        let node = position.node();
        let safety = self.safety(node, Some(position))?;
        position.earliest(self.day(node), quantity, safety, &self.policy)
    }

    pub fn in_pool(&self, pool: Pool, node: NodeIdx) -> bool {
        match pool {
            Pool::Network => true,
            Pool::Group(group) => self.network.is_member(group, node),
        }
    }

    /// The day node capacities are taken on for pooled holds and a new demand due on `due`:
    /// the earliest of them (each node answers for its own day if that is later). ATP never
    /// decreases with the date, so the earliest day serves all of them; a later one would
    /// count receipts that are not there yet when the earliest is due.
    fn pool_day(&self, pools: &[PoolHold], due: Day) -> Day {
        pools.iter().map(|h| h.day).fold(due, Day::min)
    }

    /// Node capacities for pooled holds and a new demand due on `due`: ATP on
    /// [`AtpView::pool_day`].
    fn capacities(&self, positions: &[Position], pools: &[PoolHold], due: Day) -> Vec<Qty> {
        let day = self.pool_day(pools, due);
        positions.iter().map(|p| self.atp_on(p, day)).collect()
    }

    /// ATP of a pool on each node's day: its members' ATP (`atp` of the i-th position), less
    /// the pooled holds it serves jointly with the others.
    pub fn pool_atp(
        &self,
        positions: &[Position],
        pools: &[PoolHold],
        atp: impl Fn(usize) -> Qty,
        pool: Pool,
    ) -> Qty {
        if !pools.is_empty() {
            return self.pool_headroom(positions, pools, pool, Day(i32::MIN));
        }
        let members = positions.iter().enumerate();
        match pool {
            Pool::Network => members.map(|(i, _)| atp(i)).sum(),
            Pool::Group(_) => members
                .filter(|(_, p)| self.in_pool(pool, p.node()))
                .map(|(i, _)| atp(i))
                .sum(),
        }
    }

    /// The maximum flow of `wanted` (pool, quantity) demands into `capacity`, and what each
    /// demand draws from each position.
    fn flow(
        &self,
        positions: &[Position],
        wanted: &[(Pool, Qty)],
        capacity: &[Qty],
    ) -> (Qty, Vec<Vec<(usize, Qty)>>) {
        let members: Vec<Vec<usize>> = wanted
            .iter()
            .map(|(pool, _)| {
                (0..positions.len())
                    .filter(|&i| self.in_pool(*pool, positions[i].node()))
                    .collect()
            })
            .collect();
        let demands: Vec<Demand<'_>> = wanted
            .iter()
            .zip(&members)
            .map(|((_, quantity), nodes)| Demand {
                quantity: *quantity,
                nodes,
            })
            .collect();
        max_flow(&demands, capacity)
    }

    /// Whether the SKU's nodes can serve all its pooled holds at once.
    pub fn coverable(&self, positions: &[Position], pools: &[PoolHold]) -> bool {
        if pools.is_empty() {
            return true;
        }
        let wanted = by_pool(pools);
        let total: Qty = wanted.iter().map(|(_, q)| q).sum();
        let capacity = self.capacities(positions, pools, Day(i32::MAX));
        self.flow(positions, &wanted, &capacity).0 >= total
    }

    /// Binds `own` pooled holds to nodes while `others` stay covered: per own hold, the nodes
    /// and quantities; `None` if they cannot all be served.
    pub fn assign(
        &self,
        positions: &[Position],
        others: &[PoolHold],
        own: &[(Pool, Qty)],
    ) -> Option<Vec<Vec<(NodeIdx, Qty)>>> {
        let mut wanted: Vec<(Pool, Qty)> = own.to_vec();
        wanted.extend(by_pool(others));
        let total: Qty = wanted.iter().map(|(_, q)| q).sum();
        let capacity = self.capacities(positions, others, Day(i32::MAX));
        let (flow, assignment) = self.flow(positions, &wanted, &capacity);
        if flow < total {
            return None;
        }
        let bound = assignment
            .into_iter()
            .take(own.len())
            .map(|flows| {
                flows
                    .into_iter()
                    .map(|(i, q)| (positions[i].node(), q))
                    .collect()
            })
            .collect();
        Some(bound)
    }

    /// How much more a pool could hold, due on `due`, without leaving other holds uncovered.
    pub fn pool_headroom(
        &self,
        positions: &[Position],
        pools: &[PoolHold],
        pool: Pool,
        due: Day,
    ) -> Qty {
        let capacity = self.capacities(positions, pools, due);
        if pools.is_empty() {
            return (0..positions.len())
                .filter(|&i| self.in_pool(pool, positions[i].node()))
                .map(|i| capacity[i])
                .sum();
        }
        let mut wanted = by_pool(pools);
        let held: Qty = wanted.iter().map(|(_, q)| q).sum();
        wanted.push((pool, capacity.iter().sum()));
        (self.flow(positions, &wanted, &capacity).0 - held).max(0)
    }

    /// How much a node could still promise on `day` without leaving pooled holds uncovered.
    pub fn node_headroom(
        &self,
        positions: &[Position],
        pools: &[PoolHold],
        node: NodeIdx,
        day: Day,
    ) -> Qty {
        let Some(at) = positions.iter().position(|p| p.node() == node) else {
            return 0;
        };
        let atp = self.atp_on(&positions[at], day);
        if pools.is_empty() {
            return atp;
        }
        // With one node's capacity c, the flow is min(flow with c = 0 + c, flow unbounded): the
        // node must keep (held - flow without it) for the pools.
        let wanted = by_pool(pools);
        let held: Qty = wanted.iter().map(|(_, q)| q).sum();
        let mut capacity = self.capacities(positions, pools, Day(i32::MAX));
        capacity[at] = 0;
        let needed = (held - self.flow(positions, &wanted, &capacity).0).max(0);
        (atp - needed).max(0)
    }
}

/// Pooled holds summed per pool, whatever their day.
fn by_pool(pools: &[PoolHold]) -> Vec<(Pool, Qty)> {
    let mut wanted: Vec<(Pool, Qty)> = Vec::new();
    for hold in pools {
        match wanted.iter_mut().find(|(pool, _)| *pool == hold.pool) {
            Some(entry) => entry.1 += hold.quantity,
            None => wanted.push((hold.pool, hold.quantity)),
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::add_pool_hold;
    use crate::test_support::{engine, stock};

    /// Copies of the SKU's positions at nodes A (10 on hand) and B (5), and a view of now.
    fn stocked() -> (Engine, Vec<Position>) {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        let positions = engine
            .index()
            .read("SKU", |entry| entry.map(|e| e.positions().to_vec()))
            .unwrap_or_default();
        (engine, positions)
    }

    fn network_hold(quantity: Qty) -> Vec<PoolHold> {
        let mut pools = Vec::new();
        add_pool_hold(&mut pools, Pool::Network, Day(0), quantity);
        pools
    }

    #[test]
    fn pool_headroom_is_total_atp_less_pooled_holds() {
        let (engine, positions) = stocked();
        let network = engine.network();
        let view = AtpView::new(&engine, &network, None);
        assert_eq!(
            view.pool_headroom(&positions, &[], Pool::Network, Day(i32::MIN)),
            15
        );
        let pools = network_hold(4);
        assert_eq!(
            view.pool_headroom(&positions, &pools, Pool::Network, Day(i32::MIN)),
            11
        );
    }

    #[test]
    fn node_headroom_keeps_what_pooled_holds_need_from_that_node() {
        let (engine, positions) = stocked();
        let network = engine.network();
        let view = AtpView::new(&engine, &network, None);
        let today = view.first_day();
        // 12 pooled: B's 5 cover part of it, so A must keep 7 of its 10.
        let pools = network_hold(12);
        assert_eq!(view.node_headroom(&positions, &pools, 0, today), 3);
        assert_eq!(view.node_headroom(&positions, &pools, 1, today), 3);
        assert_eq!(view.node_headroom(&positions, &[], 1, today), 5);
    }

    /// Network holds due on two different days: 9 + 6 pooled.
    fn holds_on_two_days() -> Vec<PoolHold> {
        let mut pools = network_hold(9);
        add_pool_hold(&mut pools, Pool::Network, Day(40_000), 6);
        pools
    }

    #[test]
    fn pooled_holds_of_one_pool_count_together_whatever_their_day() {
        let (engine, positions) = stocked();
        let network = engine.network();
        let view = AtpView::new(&engine, &network, None);
        let today = view.first_day();
        let pools = holds_on_two_days();
        assert!(view.coverable(&positions, &pools), "15 pooled fit in 15");
        let mut more = pools.clone();
        add_pool_hold(&mut more, Pool::Network, Day(40_001), 1);
        assert!(!view.coverable(&positions, &more), "16 pooled do not");
        assert_eq!(
            view.pool_headroom(&positions, &pools, Pool::Network, Day(i32::MIN)),
            0
        );
        assert_eq!(view.node_headroom(&positions, &pools, 0, today), 0);
    }

    #[test]
    fn holds_of_a_group_and_of_the_network_are_covered_apart() {
        // A (5 on hand) is in group G; B (10) is not.
        let engine = engine(&["A", "B"]);
        let group = crate::domain::NodeGroup {
            id: "G".into(),
            description: String::new(),
        };
        let _ = engine.upsert_groups(vec![group]).expect("group");
        let mut a = crate::test_support::node("A");
        a.group_ids = vec!["G".into()];
        let _ = engine.upsert_nodes(vec![a]).expect("A joins G");
        stock(&engine, 1, "SKU", &[("A", 5), ("B", 10)]);
        let positions = engine
            .index()
            .read("SKU", |entry| entry.map(|e| e.positions().to_vec()))
            .unwrap_or_default();
        let network = engine.network();
        let view = AtpView::new(&engine, &network, None);
        let mut pools = Vec::new();
        add_pool_hold(&mut pools, Pool::Group(0), Day(0), 5);
        add_pool_hold(&mut pools, Pool::Network, Day(0), 10);
        assert!(
            view.coverable(&positions, &pools),
            "A covers G, B the network"
        );
        add_pool_hold(&mut pools, Pool::Group(0), Day(0), 1);
        assert!(
            !view.coverable(&positions, &pools),
            "G cannot take a sixth unit"
        );
    }

    #[test]
    fn pooled_holds_are_coverable_only_up_to_total_atp() {
        let (engine, positions) = stocked();
        let network = engine.network();
        let view = AtpView::new(&engine, &network, None);
        assert!(view.coverable(&positions, &network_hold(15)));
        assert!(!view.coverable(&positions, &network_hold(16)));
    }

    #[test]
    fn assign_places_a_pooled_quantity_within_each_nodes_atp() {
        let (engine, positions) = stocked();
        let network = engine.network();
        let view = AtpView::new(&engine, &network, None);
        let assignment = view
            .assign(&positions, &[], &[(Pool::Network, 12)])
            .expect("15 available");
        let placed: Qty = assignment[0].iter().map(|(_, q)| q).sum();
        assert_eq!(placed, 12);
        for &(node, quantity) in &assignment[0] {
            assert!(quantity <= view.atp(&positions[node as usize]));
        }
        assert_eq!(view.assign(&positions, &[], &[(Pool::Network, 16)]), None);
    }
}
