//! Fulfilment routing: which nodes ship which lines of an order, at the lowest cost within the
//! order's constraints, with the runners-up and why other nodes were ruled out.
//!
//! A plan's cost depends only on the nodes it ships from: per package, the carrier's cost for
//! the distance, a package penalty, the node's priority and how full its day already is. Lines
//! are independent SKUs, so a line that a chosen node can ship costs nothing more there; a
//! branch and bound over the lines that need a new node, cheapest nodes first, with "the
//! dearest of the remaining lines' cheapest nodes" as the lower bound, finds the proven optimum
//! of typical orders in microseconds. Past a node budget it returns the best plan found, not
//! marked optimal, with the bound it proved.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::domain::{distance_km, Day, NodeKind, Qty};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::network::{Network, NodeIdx};
use crate::promise::{ship_and_deliver, Destination};
use crate::view::AtpView;

/// Search nodes after which the best plan found so far is returned.
pub const DEFAULT_SEARCH_BUDGET: u64 = 200_000;

/// The objective's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Added per package beyond the first.
    pub package_penalty: f64,
    /// Per package, times the node's priority (lower is preferred).
    pub priority: f64,
    /// Per package, times the share of the node's daily capacity already used.
    pub capacity: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            package_penalty: 3.0,
            priority: 0.5,
            capacity: 2.0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    pub ship_complete: bool,
    /// 0 is no limit.
    pub max_packages: u32,
    pub deliver_by: Option<Day>,
    pub excluded_node_ids: Vec<String>,
    /// Empty allows every kind.
    pub allowed_node_kinds: Vec<NodeKind>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteRequest {
    pub order_id: String,
    /// (sku, quantity); lines of one SKU are added together.
    pub lines: Vec<(String, Qty)>,
    pub destination: Destination,
    pub service_level: String,
    pub constraints: Constraints,
    pub weights: Weights,
    /// Alternatives to return besides the chosen plan.
    pub alternatives: usize,
    pub now_ms: Option<UnixMillis>,
    pub search_budget: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutedShipment {
    pub node: NodeIdx,
    pub lines: Vec<(String, Qty)>,
    pub ship_date: Day,
    pub delivery_date: Day,
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostBreakdown {
    pub shipping: f64,
    pub packages: f64,
    pub priority: f64,
    pub capacity: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub shipments: Vec<RoutedShipment>,
    pub total_cost: f64,
    pub breakdown: CostBreakdown,
    /// Proven optimal within the constraints.
    pub optimal: bool,
    /// The lowest cost any plan could have, as far as the search proved.
    pub lower_bound: f64,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub plan: Option<Plan>,
    pub alternatives: Vec<Plan>,
    /// Every node ruled out for the whole order, and why.
    pub excluded: Vec<Excluded>,
    pub network: Arc<Network>,
}

/// What one node offers this order.
#[derive(Debug, Clone)]
struct Candidate {
    node: NodeIdx,
    /// Cost of one package from here, all terms.
    cost: f64,
    breakdown: CostBreakdown,
    /// Per line: (ship, delivery) if the node can ship it in time.
    legs: Vec<Option<(Day, Day)>>,
}

/// A node ruled out, and why.
type Excluded = (NodeIdx, String);

/// Stock already promised to other orders of a batch, by (sku, node).
type Taken = HashMap<(String, NodeIdx), Qty>;

impl Engine {
    pub fn route(&self, request: &RouteRequest) -> Result<Routing> {
        self.route_with_taken(request, &Taken::new())
    }

    /// Routes as if `taken` were already gone.
    fn route_with_taken(&self, request: &RouteRequest, taken: &Taken) -> Result<Routing> {
        let network = self.network();
        let now_ms = request.now_ms.unwrap_or_else(|| self.now_ms());
        let view = AtpView::at(self, &network, now_ms);
        let (candidates, excluded) = self.candidates(&view, request, now_ms, taken)?;
        let lines = aggregate(&request.lines);
        let limit = match (
            request.constraints.ship_complete,
            request.constraints.max_packages,
        ) {
            (true, _) => 1,
            (false, 0) => usize::MAX,
            (false, n) => n as usize,
        };
        let budget = if request.search_budget == 0 {
            DEFAULT_SEARCH_BUDGET
        } else {
            request.search_budget
        };
        let search = Search::run(
            &candidates,
            lines.len(),
            limit,
            request.alternatives + 1,
            budget,
        );
        let mut plans = search.solutions.iter().map(|(_, nodes)| {
            plan(
                &candidates,
                &lines,
                nodes,
                &request.weights,
                search.optimal,
                search.bound,
            )
        });
        let chosen = plans.next();
        Ok(Routing {
            plan: chosen,
            alternatives: plans.collect(),
            excluded,
            network,
        })
    }

    /// Nodes that can ship at least one line, with their costs; and every other node with the
    /// reason it cannot.
    fn candidates(
        &self,
        view: &AtpView<'_>,
        request: &RouteRequest,
        now_ms: UnixMillis,
        taken: &Taken,
    ) -> Result<(Vec<Candidate>, Vec<Excluded>)> {
        let network = view.network;
        let destination = crate::promise::locate(network, &request.destination)?;
        let level = network
            .service_levels()
            .iter()
            .find(|l| l.name == request.service_level)
            .ok_or_else(|| {
                Error::invalid(
                    "service_level",
                    format!("unknown service level {:?}", request.service_level),
                )
            })?;
        let lines = aggregate(&request.lines);
        if lines.is_empty() {
            return Err(Error::invalid("lines", "an order needs at least one line"));
        }
        for (i, id) in request.constraints.excluded_node_ids.iter().enumerate() {
            if network.node_idx(id).is_none() {
                return Err(Error::InvalidArgument(vec![FieldViolation::new(
                    format!("constraints.excluded_node_ids[{i}]"),
                    format!("unknown node {id:?}"),
                )]));
            }
        }
        let ready: Vec<Vec<Option<Day>>> = lines
            .iter()
            .map(|(sku, quantity)| {
                let mut ready = vec![None; network.nodes().len()];
                self.shared.index.read(sku, |entry| {
                    for position in entry.map_or(&[][..], |e| e.positions()) {
                        let gone = taken
                            .get(&(sku.clone(), position.node()))
                            .copied()
                            .unwrap_or(0);
                        ready[position.node() as usize] = view.earliest(position, *quantity + gone);
                    }
                });
                ready
            })
            .collect();
        let mut candidates = Vec::new();
        let mut excluded = Vec::new();
        for (n, node) in network.nodes().iter().enumerate() {
            let idx = n as NodeIdx;
            let constraints = &request.constraints;
            let ruled_out = if constraints.excluded_node_ids.contains(&node.id) {
                Some("excluded by the order".to_owned())
            } else if !constraints.allowed_node_kinds.is_empty()
                && !constraints.allowed_node_kinds.contains(&node.kind)
            {
                Some(format!("{:?} nodes are not allowed", node.kind))
            } else if view.is_excluded(idx) {
                Some("feed is stale beyond its limit".to_owned())
            } else {
                None
            };
            if let Some(reason) = ruled_out {
                excluded.push((idx, reason));
                continue;
            }
            let km = distance_km((node.lat, node.lon), destination);
            let Some(transit) = level.transit_days(km) else {
                excluded.push((idx, format!("beyond {}'s reach", level.name)));
                continue;
            };
            let stocked: Vec<Option<(Day, Day)>> = ready
                .iter()
                .map(|per_node| ship_and_deliver(node, level, per_node[n]?, transit, now_ms))
                .collect();
            if stocked.iter().all(Option::is_none) {
                excluded.push((idx, "no stock for any line".to_owned()));
                continue;
            }
            let capacity = self.capacity_pressure(
                idx,
                node.fulfilment.daily_capacity,
                stocked.iter().flatten().map(|l| l.0).min(),
            );
            if capacity >= 1.0 {
                excluded.push((idx, "over capacity for its ship date".to_owned()));
                continue;
            }
            let legs: Vec<Option<(Day, Day)>> = stocked
                .into_iter()
                .map(|leg| {
                    leg.filter(|(_, delivery)| {
                        constraints.deliver_by.is_none_or(|by| *delivery <= by)
                    })
                })
                .collect();
            if legs.iter().all(Option::is_none) {
                excluded.push((idx, "too slow for deliver_by".to_owned()));
                continue;
            }
            let weights = &request.weights;
            let breakdown = CostBreakdown {
                shipping: level.cost(km),
                packages: weights.package_penalty,
                priority: weights.priority * f64::from(node.priority),
                capacity: weights.capacity * capacity,
            };
            let cost =
                breakdown.shipping + breakdown.packages + breakdown.priority + breakdown.capacity;
            candidates.push(Candidate {
                node: idx,
                cost,
                breakdown,
                legs,
            });
        }
        Ok((candidates, excluded))
    }

    /// Share of a node's daily capacity already committed on `day`; 0 for unlimited.
    fn capacity_pressure(&self, node: NodeIdx, capacity: u32, day: Option<Day>) -> f64 {
        match (capacity, day) {
            (0, _) | (_, None) => 0.0,
            (capacity, Some(day)) => {
                f64::from(self.shared.book.orders_on(node, day)) / f64::from(capacity)
            }
        }
    }
}

/// Lines of one SKU added together, in first-seen order.
fn aggregate(lines: &[(String, Qty)]) -> Vec<(String, Qty)> {
    let mut merged: Vec<(String, Qty)> = Vec::new();
    for (sku, quantity) in lines {
        match merged.iter_mut().find(|(s, _)| s == sku) {
            Some(line) => line.1 += quantity,
            None => merged.push((sku.clone(), *quantity)),
        }
    }
    merged
}

/// Builds the plan that ships each line from the first of `nodes` that can.
fn plan(
    candidates: &[Candidate],
    lines: &[(String, Qty)],
    nodes: &[usize],
    weights: &Weights,
    optimal: bool,
    bound: f64,
) -> Plan {
    let mut shipments: Vec<RoutedShipment> = Vec::new();
    let mut breakdown = CostBreakdown::default();
    for &c in nodes {
        let candidate = &candidates[c];
        let on: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                candidate.legs[i].is_some()
                    && !shipments
                        .iter()
                        .any(|s| s.lines.iter().any(|(sku, _)| *sku == lines[i].0))
            })
            .collect();
        if on.is_empty() {
            continue;
        }
        let ship = on
            .iter()
            .filter_map(|&i| candidate.legs[i])
            .map(|l| l.0)
            .max()
            .unwrap_or(Day(0));
        let delivery = on
            .iter()
            .filter_map(|&i| candidate.legs[i])
            .map(|l| l.1)
            .max()
            .unwrap_or(Day(0));
        breakdown.shipping += candidate.breakdown.shipping;
        breakdown.priority += candidate.breakdown.priority;
        breakdown.capacity += candidate.breakdown.capacity;
        shipments.push(RoutedShipment {
            node: candidate.node,
            lines: on.into_iter().map(|i| lines[i].clone()).collect(),
            ship_date: ship,
            delivery_date: delivery,
            cost: candidate.cost,
        });
    }
    breakdown.packages = weights.package_penalty * shipments.len().saturating_sub(1) as f64;
    Plan {
        total_cost: breakdown.shipping
            + breakdown.packages
            + breakdown.priority
            + breakdown.capacity,
        breakdown,
        shipments,
        optimal,
        lower_bound: bound,
    }
}

/// The branch and bound over which nodes ship.
struct Search<'a> {
    candidates: &'a [Candidate],
    /// Per line, candidate indices that can ship it, cheapest first.
    options: Vec<Vec<usize>>,
    /// Lines, fewest options first.
    order: Vec<usize>,
    limit: usize,
    keep: usize,
    budget: u64,
    expanded: u64,
    /// Best plans found: (cost, candidate indices), ascending.
    solutions: Vec<(f64, Vec<usize>)>,
    optimal: bool,
    bound: f64,
}

impl<'a> Search<'a> {
    fn run(
        candidates: &'a [Candidate],
        lines: usize,
        limit: usize,
        keep: usize,
        budget: u64,
    ) -> Search<'a> {
        let options: Vec<Vec<usize>> = (0..lines)
            .map(|i| {
                let mut options: Vec<usize> = (0..candidates.len())
                    .filter(|&c| candidates[c].legs[i].is_some())
                    .collect();
                options.sort_by(|&a, &b| {
                    candidates[a]
                        .cost
                        .total_cmp(&candidates[b].cost)
                        .then(a.cmp(&b))
                });
                options
            })
            .collect();
        let mut order: Vec<usize> = (0..lines).collect();
        order.sort_by_key(|&i| (options[i].len(), i));
        let mut search = Search {
            candidates,
            options,
            order,
            limit,
            keep,
            budget,
            expanded: 0,
            solutions: Vec::new(),
            optimal: true,
            bound: 0.0,
        };
        search.bound = search.lower_bound(0, &[]);
        if search.options.iter().all(|o| !o.is_empty()) {
            search.descend(0, &mut Vec::new(), 0.0);
        }
        search.optimal = search.expanded <= search.budget;
        if search.optimal {
            search.bound = search.solutions.first().map_or(search.bound, |s| s.0);
        }
        search
    }

    /// The dearest of the cheapest new nodes the lines from `depth` on still need.
    fn lower_bound(&self, depth: usize, used: &[usize]) -> f64 {
        self.order[depth..]
            .iter()
            .filter(|&&i| !self.options[i].iter().any(|c| used.contains(c)))
            .map(|&i| {
                self.options[i]
                    .first()
                    .map_or(f64::INFINITY, |&c| self.candidates[c].cost)
            })
            .fold(0.0, f64::max)
    }

    /// The cost a plan must beat to be kept.
    fn cutoff(&self) -> f64 {
        if self.solutions.len() < self.keep {
            f64::INFINITY
        } else {
            self.solutions.last().map_or(f64::INFINITY, |s| s.0)
        }
    }

    fn descend(&mut self, depth: usize, used: &mut Vec<usize>, cost: f64) {
        self.expanded += 1;
        if self.expanded > self.budget {
            return;
        }
        let Some(&line) = self.order.get(depth) else {
            self.record(cost, used);
            return;
        };
        // A node already shipping costs nothing more for this line.
        if self.options[line].iter().any(|c| used.contains(c)) {
            self.descend(depth + 1, used, cost);
            return;
        }
        if used.len() == self.limit {
            return;
        }
        for k in 0..self.options[line].len() {
            let c = self.options[line][k];
            let next = cost + self.candidates[c].cost;
            used.push(c);
            if next + self.lower_bound(depth + 1, used) < self.cutoff() {
                self.descend(depth + 1, used, next);
            }
            used.pop();
        }
    }

    fn record(&mut self, cost: f64, used: &[usize]) {
        let mut nodes = used.to_vec();
        nodes.sort_unstable();
        if self.solutions.iter().any(|(_, s)| *s == nodes) {
            return;
        }
        let at = self
            .solutions
            .partition_point(|(c, s)| (*c, s) < (cost, &nodes));
        self.solutions.insert(at, (cost, nodes));
        self.solutions.truncate(self.keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidates(costs: &[f64], serves: &[Vec<bool>]) -> Vec<Candidate> {
        costs
            .iter()
            .enumerate()
            .map(|(n, &cost)| Candidate {
                node: n as NodeIdx,
                cost,
                breakdown: CostBreakdown::default(),
                legs: serves
                    .iter()
                    .map(|line| line[n].then_some((Day(0), Day(1))))
                    .collect(),
            })
            .collect()
    }

    /// Every assignment of lines to nodes, the cheapest set of nodes within the limit.
    fn brute_force(costs: &[f64], serves: &[Vec<bool>], limit: usize) -> Option<f64> {
        let nodes = costs.len();
        let mut best: Option<f64> = None;
        for mask in 1u32..(1 << nodes) {
            let chosen: Vec<usize> = (0..nodes).filter(|n| mask & (1 << n) != 0).collect();
            let covers = serves.iter().all(|line| chosen.iter().any(|&n| line[n]));
            if covers && chosen.len() <= limit {
                let cost: f64 = chosen.iter().map(|&n| costs[n]).sum();
                best = Some(best.map_or(cost, |b: f64| b.min(cost)));
            }
        }
        best
    }

    proptest! {
        #[test]
        fn branch_and_bound_finds_the_brute_force_optimum(
            costs in prop::collection::vec(1.0..50.0f64, 1..9),
            lines in 1..6usize,
            seed in any::<u64>(),
            limit in 1..4usize,
        ) {
            let nodes = costs.len();
            let serves: Vec<Vec<bool>> = (0..lines)
                .map(|i| (0..nodes).map(|n| (seed >> ((i * nodes + n) % 64)) & 1 == 1 || (i + n) % 5 == 0).collect())
                .collect();
            let candidates = candidates(&costs, &serves);
            let search = Search::run(&candidates, lines, limit, 1, DEFAULT_SEARCH_BUDGET);
            let found = search.solutions.first().map(|s| s.0);
            let expected = brute_force(&costs, &serves, limit);
            prop_assert!(search.optimal);
            match (found, expected) {
                (Some(f), Some(e)) => prop_assert!((f - e).abs() < 1e-9, "found {f}, optimum {e}"),
                (f, e) => prop_assert_eq!(f.is_some(), e.is_some()),
            }
        }
    }
}

/// A routed and reserved order.
#[derive(Debug, Clone)]
pub struct Routed {
    pub routing: Routing,
    /// The hold of the chosen plan, when asked to reserve.
    pub reservation: Option<crate::reserve::Held>,
}

/// Orders routed together, with the cost of routing them one at a time in arrival order.
#[derive(Debug, Clone)]
pub struct BatchRouting {
    pub routings: Vec<Routing>,
    pub total_cost: f64,
    pub one_by_one_cost: f64,
}

impl Engine {
    /// Routes the order and reserves the chosen plan atomically; if stock moved under it, the
    /// next-best plan is tried. Never a partial hold.
    pub fn route_and_reserve(
        &self,
        request: &RouteRequest,
        reservation_id: &str,
        ttl_secs: u64,
    ) -> Result<crate::mutation::Mutation<Routed>> {
        let mut routing = self.route(&RouteRequest {
            alternatives: request.alternatives.max(3),
            ..request.clone()
        })?;
        let plans: Vec<Plan> = routing
            .plan
            .iter()
            .chain(&routing.alternatives)
            .cloned()
            .collect();
        let mut last =
            Error::FailedPrecondition("no plan satisfies the order's constraints".into());
        for (i, plan) in plans.iter().enumerate() {
            let lines = plan
                .shipments
                .iter()
                .flat_map(|s| {
                    let node_id = routing.network.node(s.node).id.clone();
                    s.lines
                        .iter()
                        .map(move |(sku, quantity)| crate::reservation::LineRequest {
                            sku: sku.clone(),
                            node_id: node_id.clone(),
                            group_id: String::new(),
                            quantity: *quantity,
                            need_date: Some(s.ship_date),
                        })
                })
                .collect();
            let reserve = crate::reservation::ReserveRequest {
                reservation_id: reservation_id.to_owned(),
                lines,
                ttl_secs,
            };
            match self.reserve(&reserve) {
                Ok(held) => {
                    routing.plan = Some(plan.clone());
                    routing.alternatives = plans
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, p)| p.clone())
                        .collect();
                    routing.alternatives.truncate(request.alternatives);
                    return Ok(crate::mutation::Mutation {
                        result: Routed {
                            routing,
                            reservation: Some(held.result),
                        },
                        record: held.record,
                    });
                }
                Err(error @ Error::InsufficientStock(_)) => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// Routes orders together over shared stock: most constrained orders first (they have the
    /// fewest places to go), and also one at a time in arrival order; answers the cheaper.
    pub fn route_batch(&self, requests: &[RouteRequest]) -> Result<BatchRouting> {
        let mut arrival: Vec<usize> = (0..requests.len()).collect();
        let one_by_one = self.route_in_order(requests, &arrival)?;
        let choice: Vec<usize> = {
            let breadth: Vec<usize> = one_by_one
                .iter()
                .map(|r| {
                    r.plan
                        .as_ref()
                        .map_or(0, |_| r.network.nodes().len() - r.excluded.len())
                })
                .collect();
            arrival.sort_by_key(|&i| (breadth[i], std::cmp::Reverse(requests[i].lines.len()), i));
            arrival
        };
        let constrained = self.route_in_order(requests, &choice)?;
        let total = |routings: &[Routing]| -> f64 {
            routings
                .iter()
                .filter_map(|r| r.plan.as_ref())
                .map(|p| p.total_cost)
                .sum()
        };
        let served = |routings: &[Routing]| routings.iter().filter(|r| r.plan.is_some()).count();
        let one_by_one_cost = total(&one_by_one);
        let better =
            (served(&constrained), -total(&constrained)) > (served(&one_by_one), -one_by_one_cost);
        let routings = if better { constrained } else { one_by_one };
        Ok(BatchRouting {
            total_cost: total(&routings),
            routings,
            one_by_one_cost,
        })
    }

    /// Routes `requests` in `order`, each taking stock from what the ones before it left.
    fn route_in_order(&self, requests: &[RouteRequest], order: &[usize]) -> Result<Vec<Routing>> {
        let mut taken = Taken::new();
        let mut routings: Vec<Option<Routing>> = vec![None; requests.len()];
        for &i in order {
            let routing = self.route_with_taken(&requests[i], &taken)?;
            if let Some(plan) = &routing.plan {
                for shipment in &plan.shipments {
                    for (sku, quantity) in &shipment.lines {
                        *taken.entry((sku.clone(), shipment.node)).or_default() += quantity;
                    }
                }
            }
            routings[i] = Some(routing);
        }
        Ok(routings.into_iter().flatten().collect())
    }
}
