//! Fulfilment routing: which nodes ship which lines of an order, at the lowest cost within the
//! order's constraints, with the runners-up and why every other node is in none of them.
//!
//! A plan's cost depends only on the nodes it ships from ([`crate::cost`]: per package, the
//! carrier's price, the node's priority and how full its day already is, and a penalty per
//! extra package); under a rate card the price also depends on what each package weighs,
//! which the nodes fix too (each line from the first of them that has it, see `pricing`). Lines are independent SKUs, so a line that the chosen nodes can ship costs
//! nothing more; with `split_lines` a line may take its quantity from several nodes, each
//! giving what it has in time. A branch and bound over the lines still short of their
//! quantity, cheapest nodes first, with "the dearest of the remaining lines' cheapest new
//! nodes" as the lower bound, finds the proven optimum of typical orders in microseconds, and
//! the runners-up are the next cheapest plans in which every node is needed (a plan with a
//! node it could ship without is never one of them). Past a node budget it returns the best
//! plans found, not marked optimal, with the bound it proved.

mod batch;
mod excluded;
mod judge;
mod kept;
mod pricing;
mod search;
mod wave;

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::cost;
use crate::deadline::Deadline;
use crate::delivery::{check_order_line, Destination, Shipment};
use crate::domain::{Day, NodeKind, Qty, ServiceLevel};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::network::{Network, NodeIdx};
use crate::view::AtpView;
use pricing::Pricing;

pub use crate::cost::{CostBreakdown, Weights};

/// Search nodes after which the best plan found so far is returned.
pub const DEFAULT_SEARCH_BUDGET: u64 = 200_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    pub ship_complete: bool,
    /// 0 is no limit.
    pub max_packages: u32,
    pub deliver_by: Option<Day>,
    pub excluded_node_ids: Vec<String>,
    /// Empty allows every kind.
    pub allowed_node_kinds: Vec<NodeKind>,
    /// May one line's quantity ship from several nodes (a package each)?
    pub split_lines: bool,
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
pub struct Plan {
    pub shipments: Vec<Shipment>,
    /// The sum of the shipments' costs.
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
    /// Every node in neither the plan nor an alternative, and why.
    pub excluded: Vec<Excluded>,
    /// Nodes that could ship some of the order within its constraints, in a plan or not.
    pub candidates: usize,
    pub network: Arc<Network>,
}

/// What one node can do for one line: ship `quantity` of it (the whole line, or with split
/// lines what the node has in time, if less), leaving on `ship` and arriving on `delivery`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Offer {
    quantity: Qty,
    ship: Day,
    delivery: Day,
}

/// What one node offers this order.
#[derive(Debug, Clone)]
struct Candidate {
    node: NodeIdx,
    /// What the search adds per package from here: all terms and one package penalty.
    cost: f64,
    /// One package's terms, without the penalty (which depends on the plan).
    breakdown: CostBreakdown,
    /// Per line, what the node can ship of it in time.
    offers: Vec<Option<Offer>>,
    /// From the destination.
    km: f64,
}

impl Candidate {
    /// How much of line `i` the node can ship.
    fn offered(&self, i: usize) -> Qty {
        self.offers[i].map_or(0, |o| o.quantity)
    }
}

/// A node ruled out, and why.
type Excluded = (NodeIdx, String);

/// Stock already promised to other orders of a batch, by (sku, node).
pub(crate) type Taken = HashMap<(String, NodeIdx), Qty>;

pub use batch::{BatchRouting, Routed};
pub(crate) use judge::Supply;
use search::Search;
pub use wave::{HeldWave, WaveOrder};

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
        let lines = aggregate(&request.lines);
        let (candidates, mut excluded) =
            self.candidates(&view, request, &lines, now_ms, taken, deadline)?;
        let needs: Vec<Qty> = lines.iter().map(|(_, quantity)| *quantity).collect();
        let pricing = level_of(&network, request).filter(|l| l.rate_card.is_some());
        let order = Ordered {
            candidates: &candidates,
            needs: &needs,
            limit: package_limit(&request.constraints),
            budget: search_budget(request.search_budget),
            pricing: pricing.map(|level| Pricing {
                level,
                network: &network,
                destination_postal: &request.destination.postal_code,
                items: pricing::items(&network, &lines),
                penalty: request.weights.package_penalty,
            }),
        };
        let search = Search::run(&order, request.alternatives + 1, None, deadline)?;
        let proof = (search.optimal, search.bound);
        let mut plans = Vec::with_capacity(search.solutions.len());
        for (_, nodes) in &search.solutions {
            deadline.spend((nodes.len() * lines.len()) as u64)?;
            plans.extend(plan(&order, &lines, nodes, &request.weights, proof));
        }
        let why = excluded::Explainer {
            order: &order,
            lines: &lines,
            constraints: &request.constraints,
            search: &search,
        };
        excluded.extend(why.unplaced(deadline)?);
        let mut plans = plans.into_iter();
        Ok(Routing {
            plan: plans.next(),
            alternatives: plans.collect(),
            excluded,
            candidates: candidates.len(),
            network,
        })
    }
}

/// What the search over one order's nodes works from.
struct Ordered<'a> {
    candidates: &'a [Candidate],
    /// Per line, the quantity the order needs.
    needs: &'a [Qty],
    /// Most packages.
    limit: usize,
    /// Search nodes to expand before answering with the best found.
    budget: u64,
    /// Where the level has a rate card: packages priced by what they hold.
    pricing: Option<Pricing<'a>>,
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

/// How much of `sku` at `node` other orders of the batch have taken.
fn taken_at(taken: &Taken, sku: &str, node: NodeIdx) -> Qty {
    if taken.is_empty() {
        // A lone order takes nothing; skip building the lookup key.
        return 0;
    }
    taken.get(&(sku.to_owned(), node)).copied().unwrap_or(0)
}

/// The package shipping `on` (line index, quantity) from the candidate, leaving when the last
/// of them is ready; its cost is set with the plan's.
fn shipment(candidate: &Candidate, lines: &[(String, Qty)], on: &[(usize, Qty)]) -> Shipment {
    let offers = || on.iter().filter_map(|&(i, _)| candidate.offers[i]);
    Shipment {
        node: candidate.node,
        lines: on.iter().map(|&(i, q)| (lines[i].0.clone(), q)).collect(),
        ship_date: offers().map(|o| o.ship).max().unwrap_or(Day(0)),
        delivery_date: offers().map(|o| o.delivery).max().unwrap_or(Day(0)),
        cost: CostBreakdown::default(),
    }
}

/// Builds the plan that ships from `nodes`: each line from the first of them that has any of
/// it left, as much as that one offers; `(optimal, bound)` is what the search proved. `None`
/// only where a rate card carries none of a package, which the search never keeps.
fn plan(
    order: &Ordered<'_>,
    lines: &[(String, Qty)],
    nodes: &[usize],
    weights: &Weights,
    (optimal, bound): (bool, f64),
) -> Option<Plan> {
    let packages = order.packages(nodes)?;
    let mut costs: Vec<CostBreakdown> = packages.iter().map(|p| p.2).collect();
    let breakdown = cost::plan(&mut costs, weights);
    let shipments = packages
        .iter()
        .zip(costs)
        .map(|((c, on, _), cost)| Shipment {
            cost,
            ..shipment(&order.candidates[*c], lines, on)
        })
        .collect();
    Some(Plan {
        total_cost: breakdown.total(),
        breakdown,
        shipments,
        optimal,
        // The search counts a package penalty for every package; a plan only for the extra ones.
        lower_bound: (bound - weights.package_penalty).max(0.0),
    })
}

/// The service level the request names, if the network has it.
fn level_of<'n>(network: &'n Network, request: &RouteRequest) -> Option<&'n ServiceLevel> {
    let levels = network.service_levels().iter();
    levels.into_iter().find(|l| l.name == request.service_level)
}

#[cfg(test)]
mod route_tests;
