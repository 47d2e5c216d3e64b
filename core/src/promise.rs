//! Delivery-date promises: for a cart and a destination, the earliest delivery per carrier
//! service level, and from where it ships.
//!
//! A node can ship a line from the first day its ATP covers the quantity (future receipts give
//! a later date rather than a "no"); [`crate::delivery`] turns that day into ship and delivery
//! dates.

mod kept;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::deadline::Deadline;
use crate::delivery::{check_order_line, locate, ship_and_deliver, Destination, Shipment};
use crate::domain::{distance_km, Day, Qty, ServiceLevel};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::network::{Network, NodeIdx};
use crate::reservation::Hold;
use crate::reserve::Held;
use crate::route::Taken;
use crate::view::AtpView;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromiseRequest {
    /// (sku, quantity); lines of one SKU are added together.
    pub lines: Vec<(String, Qty)>,
    pub destination: Destination,
    /// Service levels to answer for; empty is every one.
    pub service_levels: Vec<String>,
    /// May the cart ship from several nodes (one package each)?
    pub allow_split: bool,
    /// Most packages; 0 is no limit.
    pub max_packages: u32,
    /// The instant to promise at (what-if); `None` is now.
    pub now_ms: Option<UnixMillis>,
    /// Hold exactly the promised plan (of the single service level asked for).
    pub reserve: Option<Hold>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromiseOption {
    pub service_level: String,
    /// `None` when the level cannot deliver the cart; `reason` says why.
    pub delivery_date: Option<Day>,
    pub shipments: Vec<Shipment>,
    pub cost: f64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Promise {
    pub options: Vec<PromiseOption>,
    /// Nodes left out, and why (a stale feed under the exclude policy).
    pub skipped: Vec<(NodeIdx, String)>,
    pub network: Arc<Network>,
    pub reservation: Option<Held>,
}

/// What one node could do for a cart under one service level.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Leg {
    node: NodeIdx,
    ship: Day,
    delivery: Day,
    cost: f64,
}

impl Leg {
    /// Earlier delivery first, then cheaper, then the node's priority and index.
    fn key(&self, network: &Network) -> (Day, i64, i32, NodeIdx) {
        let cents = (self.cost * 100.0).round() as i64;
        (
            self.delivery,
            cents,
            network.node(self.node).priority,
            self.node,
        )
    }
}

/// The packages of a plan: each one's leg, and the lines (by index) it ships.
type Packages = Vec<(Leg, Vec<usize>)>;

/// What every service level's plan for a cart is made from.
struct Cart<'a> {
    network: &'a Network,
    lines: &'a [(String, Qty)],
    /// Per line, per node: the first day the node has the line's quantity.
    ready: &'a [Vec<Option<Day>>],
    destination: (f64, f64),
    now_ms: UnixMillis,
    request: &'a PromiseRequest,
    deadline: &'a Deadline<'a>,
}

impl Cart<'_> {
    /// What each node could do for each line under `level`: a leg, or nothing.
    fn legs(&self, level: &ServiceLevel) -> Result<Vec<Vec<Option<Leg>>>> {
        let nodes = self.network.nodes().len();
        self.ready
            .iter()
            .map(|per_node| {
                self.deadline.spend(nodes as u64)?;
                let legs = per_node.iter().enumerate().map(|(n, ready)| {
                    let ready = (*ready)?;
                    leg(
                        self.network,
                        level,
                        n as NodeIdx,
                        ready,
                        self.destination,
                        self.now_ms,
                    )
                });
                Ok(legs.collect())
            })
            .collect()
    }

    /// The best leg of a node that can ship the whole cart, ready when its last line is.
    fn whole(&self, level: &ServiceLevel) -> Result<Option<Leg>> {
        let network = self.network;
        self.deadline
            .spend((network.nodes().len() * self.lines.len()) as u64)?;
        let complete = (0..network.nodes().len()).filter_map(|n| {
            let all_ready = self
                .ready
                .iter()
                .map(|per_node| per_node[n])
                .collect::<Option<Vec<Day>>>()?;
            let last = all_ready.into_iter().max()?;
            leg(
                network,
                level,
                n as NodeIdx,
                last,
                self.destination,
                self.now_ms,
            )
        });
        Ok(complete.min_by_key(|leg| leg.key(network)))
    }
}

impl Engine {
    /// Promises the cart; past `deadline` it stops, holding nothing.
    pub fn promise(
        &self,
        request: &PromiseRequest,
        deadline: &Deadline<'_>,
    ) -> Result<crate::mutation::Mutation<Promise>> {
        self.check_order_lines(request.lines.len())?;
        let now_ms = self.request_now(request.now_ms)?;
        let network = self.network();
        let destination = locate(&network, &request.destination)?;
        let lines = cart(request, self.config().limits.max_field_len)?;
        let levels = levels(&network, &request.service_levels)?;
        if request.reserve.is_some() && levels.len() != 1 {
            return Err(Error::invalid(
                "service_levels",
                "reserving a promise needs exactly one service level",
            ));
        }
        if let Some(hold) = &request.reserve {
            // A retry is answered as before, without planning again.
            if let Some(kept) = self.retried_promise(request, hold)? {
                return Ok(crate::mutation::Mutation {
                    result: kept,
                    record: None,
                });
            }
        }
        let view = AtpView::at(self, &network, now_ms);
        let skipped: Vec<(NodeIdx, String)> = (0..network.nodes().len() as NodeIdx)
            .filter(|&n| view.is_excluded(n))
            .map(|n| (n, "feed is stale beyond its limit".to_owned()))
            .collect();
        let options: Vec<PromiseOption> = match lines.as_slice() {
            [(sku, quantity)] => {
                self.promise_one(&view, sku, *quantity, &levels, destination, now_ms)
            }
            _ => {
                let ready = self.ready_days(&view, &lines, &Taken::new(), deadline)?;
                let cart = Cart {
                    network: &network,
                    lines: &lines,
                    ready: &ready,
                    destination,
                    now_ms,
                    request,
                    deadline,
                };
                levels
                    .iter()
                    .map(|level| plan(&cart, level))
                    .collect::<Result<_>>()?
            }
        };
        let promise = Promise {
            options,
            skipped,
            network: network.clone(),
            reservation: None,
        };
        match &request.reserve {
            None => Ok(crate::mutation::Mutation {
                result: promise,
                record: None,
            }),
            Some(hold) => {
                deadline.check()?;
                self.hold_promise(request, promise, hold)
            }
        }
    }

    /// The product-page fast path: one SKU, one pass over its positions under one read lock,
    /// keeping only the best leg per service level (no per-node tables).
    fn promise_one(
        &self,
        view: &AtpView<'_>,
        sku: &str,
        quantity: Qty,
        levels: &[&ServiceLevel],
        destination: (f64, f64),
        now_ms: UnixMillis,
    ) -> Vec<PromiseOption> {
        let network = view.network;
        let mut best: Vec<Option<Leg>> = vec![None; levels.len()];
        self.shared.index.read(sku, |entry| {
            for position in entry.map_or(&[][..], |e| e.positions()) {
                let Some(ready) = view.earliest(position, quantity) else {
                    continue;
                };
                for (slot, level) in best.iter_mut().zip(levels) {
                    let found = leg(network, level, position.node(), ready, destination, now_ms);
                    let better = match (found, &slot) {
                        (Some(found), Some(current)) => found.key(network) < current.key(network),
                        (found, _) => found.is_some() && slot.is_none(),
                    };
                    if better {
                        *slot = found;
                    }
                }
            }
        });
        let line = (sku.to_owned(), quantity);
        levels
            .iter()
            .zip(best)
            .map(|(level, leg)| match leg {
                Some(leg) => PromiseOption {
                    service_level: level.name.clone(),
                    delivery_date: Some(leg.delivery),
                    shipments: vec![Shipment {
                        node: leg.node,
                        ship_date: leg.ship,
                        delivery_date: leg.delivery,
                        lines: vec![line.clone()],
                        cost: leg.cost,
                    }],
                    cost: leg.cost,
                    reason: String::new(),
                },
                None => infeasible(
                    level,
                    format!("no node can ship {quantity} of {sku} by {}", level.name),
                ),
            })
            .collect()
    }
}

/// The cart's lines, one per SKU.
fn cart(request: &PromiseRequest, max_len: usize) -> Result<Vec<(String, Qty)>> {
    let mut violations = Vec::new();
    if request.lines.is_empty() {
        violations.push(FieldViolation::new(
            "lines",
            "a promise needs at least one line",
        ));
    }
    let mut by_sku: BTreeMap<&str, Qty> = BTreeMap::new();
    for (i, (sku, quantity)) in request.lines.iter().enumerate() {
        check_order_line(i, sku, *quantity, max_len, &mut violations);
        *by_sku.entry(sku).or_default() += quantity;
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(by_sku
        .into_iter()
        .map(|(sku, q)| (sku.to_owned(), q))
        .collect())
}

/// The service levels asked for, in the network's order.
fn levels<'n>(network: &'n Network, names: &[String]) -> Result<Vec<&'n ServiceLevel>> {
    if network.service_levels().is_empty() {
        return Err(Error::FailedPrecondition(
            "no carrier service levels are configured".into(),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if !network.service_levels().iter().any(|l| &l.name == name) {
            return Err(Error::invalid(
                format!("service_levels[{i}]"),
                format!("unknown service level {name:?}"),
            ));
        }
    }
    Ok(network
        .service_levels()
        .iter()
        .filter(|level| names.is_empty() || names.contains(&level.name))
        .collect())
}

/// The best plan for one service level.
fn plan(cart: &Cart<'_>, level: &ServiceLevel) -> Result<PromiseOption> {
    let (lines, request) = (cart.lines, cart.request);
    let legs = cart.legs(level)?;
    let whole = cart.whole(level)?;
    let split = if request.allow_split && lines.len() > 1 {
        split_plan(cart.network, &legs, request.max_packages, cart.deadline)?
    } else {
        None
    };
    let shipments: Option<Packages> = match (whole, split) {
        (Some(whole), Some(split)) => {
            let split_delivery = split.iter().map(|(l, _)| l.delivery).max();
            if split_delivery < Some(whole.delivery) {
                Some(split)
            } else {
                Some(vec![(whole, (0..lines.len()).collect())])
            }
        }
        (Some(whole), None) => Some(vec![(whole, (0..lines.len()).collect())]),
        (None, split) => split,
    };
    let Some(shipments) = shipments else {
        return Ok(infeasible(
            level,
            reason(level, lines, &legs, request.allow_split),
        ));
    };
    let shipments: Vec<Shipment> = shipments
        .into_iter()
        .map(|(leg, on)| Shipment {
            node: leg.node,
            ship_date: leg.ship,
            delivery_date: leg.delivery,
            lines: on.into_iter().map(|i| lines[i].clone()).collect(),
            cost: leg.cost,
        })
        .collect();
    Ok(PromiseOption {
        service_level: level.name.clone(),
        delivery_date: shipments.iter().map(|s| s.delivery_date).max(),
        cost: shipments.iter().map(|s| s.cost).sum(),
        shipments,
        reason: String::new(),
    })
}

fn leg(
    network: &Network,
    level: &ServiceLevel,
    node: NodeIdx,
    ready: Day,
    destination: (f64, f64),
    now_ms: UnixMillis,
) -> Option<Leg> {
    let at = network.node(node);
    let km = distance_km((at.lat, at.lon), destination);
    let (ship, delivery) = ship_and_deliver(at, level, ready, level.transit_days(km)?, now_ms)?;
    Some(Leg {
        node,
        ship,
        delivery,
        cost: level.cost(km),
    })
}

/// Lines split over nodes: for the earliest delivery day by which at most `max_packages`
/// nodes can cover every line (each line from one node), greedily picking the node covering
/// most lines.
fn split_plan(
    network: &Network,
    legs: &[Vec<Option<Leg>>],
    max_packages: u32,
    deadline: &Deadline<'_>,
) -> Result<Option<Packages>> {
    let mut days: Vec<Day> = legs
        .iter()
        .flatten()
        .flatten()
        .map(|l| l.delivery)
        .collect();
    days.sort_unstable();
    days.dedup();
    let limit = if max_packages == 0 {
        usize::MAX
    } else {
        max_packages as usize
    };
    let nodes = network.nodes().len();
    for by in days {
        let mut open: Vec<usize> = (0..legs.len()).collect();
        let mut chosen: Packages = Vec::new();
        while !open.is_empty() && chosen.len() < limit {
            deadline.spend((nodes * open.len()) as u64)?;
            let best = (0..nodes)
                .filter_map(|n| {
                    let covers: Vec<usize> = open
                        .iter()
                        .copied()
                        .filter(|&i| legs[i][n].is_some_and(|l| l.delivery <= by))
                        .collect();
                    let leg = covers
                        .iter()
                        .filter_map(|&i| legs[i][n])
                        .max_by_key(|l| l.delivery)?;
                    Some((
                        covers.len(),
                        std::cmp::Reverse(leg.key(network)),
                        leg,
                        covers,
                    ))
                })
                .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            // No node ships any open line by this day: try a later one.
            let Some(best) = best else { break };
            open.retain(|i| !best.3.contains(i));
            chosen.push((best.2, best.3));
        }
        if open.is_empty() {
            return Ok(Some(chosen));
        }
    }
    Ok(None)
}

fn infeasible(level: &ServiceLevel, reason: String) -> PromiseOption {
    PromiseOption {
        service_level: level.name.clone(),
        delivery_date: None,
        shipments: Vec::new(),
        cost: 0.0,
        reason,
    }
}

/// Why a level has no plan.
fn reason(
    level: &ServiceLevel,
    lines: &[(String, Qty)],
    legs: &[Vec<Option<Leg>>],
    allow_split: bool,
) -> String {
    if let Some((sku, quantity)) = lines
        .iter()
        .zip(legs)
        .find(|(_, per_node)| per_node.iter().all(Option::is_none))
        .map(|(line, _)| line)
    {
        return format!("no node can ship {quantity} of {sku} by {}", level.name);
    }
    if !allow_split {
        return "no single node can ship the whole cart; allow_split may".into();
    }
    "the cart needs more packages than max_packages allows".into()
}
