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
mod kept;
mod search;

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::deadline::Deadline;
use crate::delivery::{check_order_line, locate, ship_and_deliver, Destination, Shipment};
use crate::domain::{distance_km, echo, Day, Node, NodeKind, Qty, ServiceLevel};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::network::{Network, NodeIdx};
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

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostBreakdown {
    pub shipping: f64,
    pub packages: f64,
    pub priority: f64,
    pub capacity: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub shipments: Vec<Shipment>,
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

impl CostBreakdown {
    /// The sum of the terms.
    fn total(&self) -> f64 {
        self.shipping + self.packages + self.priority + self.capacity
    }

    /// Adds one more package's per-package terms; the package penalty is counted per plan.
    fn add_package(&mut self, package: &CostBreakdown) {
        self.shipping += package.shipping;
        self.priority += package.priority;
        self.capacity += package.capacity;
    }
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
pub(crate) type Taken = HashMap<(String, NodeIdx), Qty>;

pub use batch::{BatchRouting, Routed};
use search::Search;

/// Highest weight of a routing objective term.
const MAX_WEIGHT: f64 = 1_000_000.0;

/// Refuses SKUs that are not ids, quantities that are not positive, and weights that are not
/// numbers from 0 to [`MAX_WEIGHT`] (a NaN or infinite weight makes every cost meaningless).
fn check_request(request: &RouteRequest, max_len: usize) -> Result<()> {
    let mut violations = Vec::new();
    for (i, (sku, quantity)) in request.lines.iter().enumerate() {
        check_order_line(i, sku, *quantity, max_len, &mut violations);
    }
    let weights = &request.weights;
    let terms = [
        ("package_penalty", weights.package_penalty),
        ("priority", weights.priority),
        ("capacity", weights.capacity),
    ];
    for (name, weight) in terms {
        if !(weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&weight)) {
            let problem = format!("must be a number from 0 to {MAX_WEIGHT}");
            violations.push(FieldViolation::new(format!("weights.{name}"), problem));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

impl Engine {
    /// Routes the order; past `deadline` it stops.
    pub fn route(&self, request: &RouteRequest, deadline: &Deadline<'_>) -> Result<Routing> {
        self.route_with_taken(request, &Taken::new(), deadline)
    }

    /// Routes as if `taken` were already gone.
    fn route_with_taken(
        &self,
        request: &RouteRequest,
        taken: &Taken,
        deadline: &Deadline<'_>,
    ) -> Result<Routing> {
        self.check_order_lines(request.lines.len())?;
        check_request(request, self.config().limits.max_field_len)?;
        let now_ms = self.request_now(request.now_ms)?;
        let network = self.network();
        let view = AtpView::at(self, &network, now_ms);
        let (candidates, excluded) = self.candidates(&view, request, now_ms, taken, deadline)?;
        let lines = aggregate(&request.lines);
        let search = Search::run(
            &candidates,
            lines.len(),
            package_limit(&request.constraints),
            request.alternatives + 1,
            search_budget(request.search_budget),
            deadline,
        )?;
        let proof = (search.optimal, search.bound);
        let mut plans = Vec::with_capacity(search.solutions.len());
        for (_, nodes) in &search.solutions {
            deadline.spend((nodes.len() * lines.len()) as u64)?;
            plans.push(plan(&candidates, &lines, nodes, &request.weights, proof));
        }
        let mut plans = plans.into_iter();
        Ok(Routing {
            plan: plans.next(),
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
        deadline: &Deadline<'_>,
    ) -> Result<(Vec<Candidate>, Vec<Excluded>)> {
        let network = view.network;
        let destination = locate(network, &request.destination)?;
        let level = service_level(network, &request.service_level)?;
        let lines = aggregate(&request.lines);
        if lines.is_empty() {
            return Err(Error::invalid("lines", "an order needs at least one line"));
        }
        check_excluded_ids(network, &request.constraints)?;
        let order = Order {
            view,
            request,
            level,
            destination,
            now_ms,
            ready: self.ready_days(view, &lines, taken, deadline)?,
        };
        self.judge_all(&order, deadline)
    }

    /// Every node judged for the order: the candidates, and the others with their reasons.
    fn judge_all(
        &self,
        order: &Order<'_>,
        deadline: &Deadline<'_>,
    ) -> Result<(Vec<Candidate>, Vec<Excluded>)> {
        let mut candidates = Vec::new();
        let mut excluded = Vec::new();
        for (n, node) in order.view.network.nodes().iter().enumerate() {
            deadline.spend(order.ready.len() as u64)?;
            match self.judge(order, n, node) {
                Ok(candidate) => candidates.push(candidate),
                Err(reason) => excluded.push((n as NodeIdx, reason)),
            }
        }
        Ok((candidates, excluded))
    }

    /// Per line, per node: the first day the node has the line's quantity on top of what is
    /// `taken` (`None`: never, or the node is excluded).
    pub(crate) fn ready_days(
        &self,
        view: &AtpView<'_>,
        lines: &[(String, Qty)],
        taken: &Taken,
        deadline: &Deadline<'_>,
    ) -> Result<Vec<Vec<Option<Day>>>> {
        let nodes = view.network.nodes().len();
        lines
            .iter()
            .map(|(sku, quantity)| {
                deadline.spend(nodes as u64)?;
                let mut ready = vec![None; nodes];
                self.shared.index.read(sku, |entry| {
                    for position in entry.map_or(&[][..], |e| e.positions()) {
                        let gone = taken_at(taken, sku, position.node());
                        ready[position.node() as usize] = view.earliest(position, *quantity + gone);
                    }
                });
                Ok(ready)
            })
            .collect()
    }

    /// What node `n` offers the order, or why it cannot take part.
    fn judge(
        &self,
        order: &Order<'_>,
        n: usize,
        node: &Node,
    ) -> std::result::Result<Candidate, String> {
        let idx = n as NodeIdx;
        let constraints = &order.request.constraints;
        if let Some(reason) = ruled_out(order.view, constraints, idx, node) {
            return Err(reason);
        }
        let level = order.level;
        let km = distance_km((node.lat, node.lon), order.destination);
        let transit = level
            .transit_days(km)
            .ok_or_else(|| format!("beyond {}'s reach", level.name))?;
        let stocked = order.legs(n, node, transit);
        if stocked.iter().all(Option::is_none) {
            return Err("no stock for any line".to_owned());
        }
        let capacity = self.capacity_pressure(
            idx,
            node.fulfilment.daily_capacity,
            stocked.iter().flatten().map(|l| l.0).min(),
        );
        if capacity >= 1.0 {
            return Err("over capacity for its ship date".to_owned());
        }
        let legs = in_time(stocked, constraints.deliver_by);
        if legs.iter().all(Option::is_none) {
            return Err("too slow for deliver_by".to_owned());
        }
        let breakdown = order.breakdown(km, node, capacity);
        Ok(Candidate {
            node: idx,
            cost: breakdown.total(),
            breakdown,
            legs,
        })
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

/// What every node is judged against when routing one order.
struct Order<'a> {
    view: &'a AtpView<'a>,
    request: &'a RouteRequest,
    level: &'a ServiceLevel,
    destination: (f64, f64),
    now_ms: UnixMillis,
    /// Per line, per node: the day the line's quantity is ready there.
    ready: Vec<Vec<Option<Day>>>,
}

/// Most packages the order may ship in.
fn package_limit(constraints: &Constraints) -> usize {
    match (constraints.ship_complete, constraints.max_packages) {
        (true, _) => 1,
        (false, 0) => usize::MAX,
        (false, n) => n as usize,
    }
}

/// The search budget asked for, or the default when 0.
fn search_budget(asked: u64) -> u64 {
    if asked == 0 {
        DEFAULT_SEARCH_BUDGET
    } else {
        asked
    }
}

impl Order<'_> {
    /// Per line: (ship, delivery) from node `n`, if it has the line's stock in time to ship.
    fn legs(&self, n: usize, node: &Node, transit: u32) -> Vec<Option<(Day, Day)>> {
        self.ready
            .iter()
            .map(|per_node| ship_and_deliver(node, self.level, per_node[n]?, transit, self.now_ms))
            .collect()
    }

    /// The cost terms of one package from `node`, `km` away, with `capacity` of its day used.
    fn breakdown(&self, km: f64, node: &Node, capacity: f64) -> CostBreakdown {
        let weights = &self.request.weights;
        CostBreakdown {
            shipping: self.level.cost(km),
            packages: weights.package_penalty,
            priority: weights.priority * f64::from(node.priority),
            capacity: weights.capacity * capacity,
        }
    }
}

/// The network's service level called `name`.
fn service_level<'n>(network: &'n Network, name: &str) -> Result<&'n ServiceLevel> {
    network
        .service_levels()
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| {
            Error::invalid(
                "service_level",
                format!("unknown service level {}", echo(name)),
            )
        })
}

/// Fails the order if it excludes a node the network does not have.
fn check_excluded_ids(network: &Network, constraints: &Constraints) -> Result<()> {
    for (i, id) in constraints.excluded_node_ids.iter().enumerate() {
        if network.node_idx(id).is_none() {
            return Err(Error::InvalidArgument(vec![FieldViolation::new(
                format!("constraints.excluded_node_ids[{i}]"),
                format!("unknown node {}", echo(id)),
            )]));
        }
    }
    Ok(())
}

/// Why the order's constraints or the node's feed rule the node out, if they do.
fn ruled_out(
    view: &AtpView<'_>,
    constraints: &Constraints,
    idx: NodeIdx,
    node: &Node,
) -> Option<String> {
    if constraints.excluded_node_ids.contains(&node.id) {
        Some("excluded by the order".to_owned())
    } else if !constraints.allowed_node_kinds.is_empty()
        && !constraints.allowed_node_kinds.contains(&node.kind)
    {
        Some(format!("{:?} nodes are not allowed", node.kind))
    } else if view.is_excluded(idx) {
        Some("feed is stale beyond its limit".to_owned())
    } else {
        None
    }
}

/// How much of `sku` at `node` other orders of the batch have taken.
fn taken_at(taken: &Taken, sku: &str, node: NodeIdx) -> Qty {
    if taken.is_empty() {
        // A lone order takes nothing; skip building the lookup key.
        return 0;
    }
    taken.get(&(sku.to_owned(), node)).copied().unwrap_or(0)
}

/// The legs that deliver by `deliver_by`, if the order has one.
fn in_time(legs: Vec<Option<(Day, Day)>>, deliver_by: Option<Day>) -> Vec<Option<(Day, Day)>> {
    legs.into_iter()
        .map(|leg| leg.filter(|(_, delivery)| deliver_by.is_none_or(|by| *delivery <= by)))
        .collect()
}

/// Lines the candidate can ship that none of `shipments` ships yet.
fn new_lines(candidate: &Candidate, lines: &[(String, Qty)], shipments: &[Shipment]) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| {
            candidate.legs[i].is_some()
                && !shipments
                    .iter()
                    .any(|s| s.lines.iter().any(|(sku, _)| *sku == lines[i].0))
        })
        .collect()
}

/// The package shipping lines `on` from the candidate, leaving when its last line is ready.
fn shipment(candidate: &Candidate, lines: &[(String, Qty)], on: Vec<usize>) -> Shipment {
    let legs = || on.iter().filter_map(|&i| candidate.legs[i]);
    let ship = legs().map(|l| l.0).max().unwrap_or(Day(0));
    let delivery = legs().map(|l| l.1).max().unwrap_or(Day(0));
    Shipment {
        node: candidate.node,
        lines: on.iter().map(|&i| lines[i].clone()).collect(),
        ship_date: ship,
        delivery_date: delivery,
        cost: candidate.cost,
    }
}

/// Builds the plan that ships each line from the first of `nodes` that can; `(optimal, bound)`
/// is what the search proved.
fn plan(
    candidates: &[Candidate],
    lines: &[(String, Qty)],
    nodes: &[usize],
    weights: &Weights,
    (optimal, bound): (bool, f64),
) -> Plan {
    let mut shipments: Vec<Shipment> = Vec::new();
    let mut breakdown = CostBreakdown::default();
    for &c in nodes {
        let candidate = &candidates[c];
        let on = new_lines(candidate, lines, &shipments);
        if on.is_empty() {
            continue;
        }
        breakdown.add_package(&candidate.breakdown);
        shipments.push(shipment(candidate, lines, on));
    }
    breakdown.packages = weights.package_penalty * shipments.len().saturating_sub(1) as f64;
    Plan {
        total_cost: breakdown.total(),
        breakdown,
        shipments,
        optimal,
        // The search counts a package penalty for every package; a plan only for the extra ones.
        lower_bound: (bound - weights.package_penalty).max(0.0),
    }
}
