//! Delivery-date promises: for a cart and a destination, the earliest delivery per carrier
//! service level, and from where it ships.
//!
//! A node can ship a line from the first day its ATP covers the quantity (future receipts give
//! a later date rather than a "no"); [`crate::delivery`] turns that day into ship and delivery
//! dates. A cart that may split may also take one line's quantity from several nodes. Each
//! shipment is priced as routing prices it ([`crate::cost`], default weights), so its cost
//! means the same in both answers and the option's cost is their sum.

mod cart;

mod kept;
mod pickup;
#[cfg(test)]
mod pickup_tests;

pub use pickup::{
    local_time, ready_at, PickupAt, PickupOption, PickupRequest, Ready, MAX_PICKUP_STORES,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::cost::{self, CostBreakdown, Parcel, Weights};
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
use cart::Cart;

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
    /// Hold exactly the promised plan (of the single service level asked for, or the pickup
    /// when that asks to be held).
    pub reserve: Option<Hold>,
    /// Answer for store pickup too.
    pub pickup: Option<PickupRequest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromiseOption {
    pub service_level: String,
    /// `None` when the level cannot deliver the cart; `reason` says why.
    pub delivery_date: Option<Day>,
    pub shipments: Vec<Shipment>,
    /// The sum of the shipments' costs.
    pub cost: f64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Promise {
    pub options: Vec<PromiseOption>,
    /// Nodes left out, and why (a stale feed under the exclude policy).
    pub skipped: Vec<(NodeIdx, String)>,
    /// Per store asked about, when pickup was asked.
    pub pickup: Vec<PickupOption>,
    pub network: Arc<Network>,
    pub reservation: Option<Held>,
}

/// A level's shipments, not yet priced, or the infeasible option saying why there are none.
type Planned = std::result::Result<Vec<Shipment>, PromiseOption>;

/// What one node could do for a cart under one service level.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Leg {
    node: NodeIdx,
    ship: Day,
    delivery: Day,
    /// The carrier's price, to prefer the cheaper of two legs as fast.
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
        let destination = To {
            at: locate(&network, &request.destination)?,
            postal: &request.destination.postal_code,
        };
        let lines = cart(request, self.config().limits.max_field_len)?;
        let levels = levels(&network, &request.service_levels)?;
        let stores = match &request.pickup {
            Some(pickup) => Some(pickup::stores(&network, pickup, destination.at)?),
            None => None,
        };
        let holds_pickup = request.pickup.as_ref().is_some_and(|p| p.hold);
        if holds_pickup && request.reserve.is_none() {
            return Err(Error::invalid(
                "pickup.hold",
                "holding a pickup needs reserve and a reservation id",
            ));
        }
        if request.reserve.is_some() && !holds_pickup && levels.len() != 1 {
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
        let one_line = lines.len() == 1 && !request.allow_split;
        // The one-line fast path reads no per-node table; pickup and larger carts do.
        let supply = if one_line && stores.is_none() {
            Vec::new()
        } else {
            let split = request.allow_split;
            self.supply(&view, &lines, &Taken::new(), split, deadline)?
        };
        let plans = match lines.as_slice() {
            [(sku, quantity)] if one_line => {
                self.promise_one(&view, sku, *quantity, &levels, destination, now_ms)
            }
            _ => {
                let cart = Cart {
                    network: &network,
                    lines: &lines,
                    supply: &supply,
                    destination,
                    now_ms,
                    request,
                    deadline,
                };
                levels
                    .iter()
                    .map(|level| cart.plan(level))
                    .collect::<Result<_>>()?
            }
        };
        let options = levels
            .iter()
            .zip(plans)
            .map(|(level, plan)| match plan {
                Ok(shipments) => self.option(&network, level, destination, shipments),
                Err(infeasible) => infeasible,
            })
            .collect();
        let picking = pickup::Picking {
            network: &network,
            lines: &lines,
            supply: &supply,
            now_ms,
        };
        let pickup = match &stores {
            Some(stores) => picking.options(stores, deadline)?,
            None => Vec::new(),
        };
        let promise = Promise {
            options,
            skipped,
            pickup,
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
                self.hold_promise(request, &lines, promise, hold)
            }
        }
    }

    /// The product-page fast path: one SKU, one pass over its positions under one read lock,
    /// keeping only the best leg per service level (no per-node tables).
    fn promise_one(
        &self,
        view: &AtpView<'_, '_>,
        sku: &str,
        quantity: Qty,
        levels: &[&ServiceLevel],
        destination: To<'_>,
        now_ms: UnixMillis,
    ) -> Vec<Planned> {
        let network = view.network;
        let mut best: Vec<Option<Leg>> = vec![None; levels.len()];
        view.read(sku, |entry| {
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
                Some(leg) => Ok(vec![Shipment {
                    node: leg.node,
                    ship_date: leg.ship,
                    delivery_date: leg.delivery,
                    lines: vec![line.clone()],
                    cost: CostBreakdown::default(),
                }]),
                None => Err(infeasible(
                    level,
                    format!("no node can ship {quantity} of {sku} by {}", level.name),
                )),
            })
            .collect()
    }

    /// The option of `shipments` under `level`, each priced as routing prices a package with
    /// the default weights; infeasible where the level's rate card carries one of them not.
    fn option(
        &self,
        network: &Network,
        level: &ServiceLevel,
        destination: To<'_>,
        mut shipments: Vec<Shipment>,
    ) -> PromiseOption {
        let weights = Weights::default();
        let priced: Option<Vec<CostBreakdown>> = shipments
            .iter()
            .map(|s| {
                let node = network.node(s.node);
                let items = s.lines.iter().map(|(sku, q)| (network.item(sku), *q));
                let (kg, cm3) = cost::contents(items);
                let parcel = Parcel {
                    kg,
                    cm3,
                    ..destination.parcel(node)
                };
                let capacity = node.fulfilment.daily_capacity;
                let used = self.capacity_pressure(s.node, capacity, Some(s.ship_date));
                let shipping = cost::shipping(level, &parcel)?;
                Some(cost::package(shipping, node, used, &weights))
            })
            .collect();
        let Some(mut packages) = priced else {
            let reason = format!(
                "a package is heavier than {}'s rate card carries",
                level.name
            );
            return infeasible(level, reason);
        };
        let total = cost::plan(&mut packages, &weights);
        for (shipment, package) in shipments.iter_mut().zip(packages) {
            shipment.cost = package;
        }
        PromiseOption {
            service_level: level.name.clone(),
            delivery_date: shipments.iter().map(|s| s.delivery_date).max(),
            cost: total.total(),
            shipments,
            reason: String::new(),
        }
    }
}

/// Where a promise delivers: coordinates, and the postal code rate card zones look at.
#[derive(Debug, Clone, Copy)]
struct To<'a> {
    at: (f64, f64),
    postal: &'a str,
}

impl<'a> To<'a> {
    /// A parcel from `node` to here, of no weight yet.
    fn parcel(self, node: &'a crate::domain::Node) -> Parcel<'a> {
        Parcel {
            node_id: &node.id,
            origin_postal: &node.postal_code,
            destination_postal: self.postal,
            km: distance_km((node.lat, node.lon), self.at),
            kg: 0.0,
            cm3: 0.0,
        }
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

fn leg(
    network: &Network,
    level: &ServiceLevel,
    node: NodeIdx,
    ready: Day,
    destination: To<'_>,
    now_ms: UnixMillis,
) -> Option<Leg> {
    let at = network.node(node);
    let parcel = destination.parcel(at);
    let transit = cost::transit_days(level, &parcel)?;
    let (ship, delivery) = ship_and_deliver(at, level, ready, transit, now_ms)?;
    Some(Leg {
        node,
        ship,
        delivery,
        cost: cost::least_shipping(level, &parcel)?,
    })
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
