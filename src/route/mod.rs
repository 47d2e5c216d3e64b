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

mod batch;
mod search;

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

pub use batch::{BatchRouting, Routed};
use search::Search;

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
        // The search counts a package penalty for every package; a plan only for the extra ones.
        lower_bound: (bound - weights.package_penalty).max(0.0),
    }
}
