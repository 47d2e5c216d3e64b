//! Judging every node for an order: what it can ship of each line and at what cost, or why
//! it cannot take part at all.

use super::{taken_at, Candidate, Excluded, Offer, RouteRequest, Taken};
use crate::clock::UnixMillis;
use crate::cost::{self, Parcel};
use crate::deadline::Deadline;
use crate::delivery::{locate, ship_and_deliver};
use crate::domain::{distance_km, echo, Day, Node, Qty, ServiceLevel};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::network::{Network, NodeIdx};
use crate::rate_card::ItemAttributes;
use crate::view::AtpView;

/// When a node has how much of a line: `(first day, quantity)` steps, days and quantities
/// rising, quantities at most the line's; empty when it has none.
pub(crate) type Supply = Vec<(Day, Qty)>;

/// What every node is judged against when routing one order.
struct Order<'a> {
    view: &'a AtpView<'a, 'a>,
    request: &'a RouteRequest,
    /// The order's lines, one per SKU.
    lines: &'a [(String, Qty)],
    level: &'a ServiceLevel,
    destination: (f64, f64),
    now_ms: UnixMillis,
    /// Per line, per node: what the node has of the line, and from when.
    supply: Vec<Vec<Supply>>,
    /// Per line, one of its items.
    items: Vec<ItemAttributes>,
}

impl Engine {
    /// Nodes that can ship at least part of a line, with their costs; and every other node
    /// with the reason it cannot.
    pub(super) fn candidates(
        &self,
        view: &AtpView<'_, '_>,
        request: &RouteRequest,
        lines: &[(String, Qty)],
        now_ms: UnixMillis,
        taken: &Taken,
        deadline: &Deadline<'_>,
    ) -> Result<(Vec<Candidate>, Vec<Excluded>)> {
        let network = view.network;
        let destination = locate(network, &request.destination)?;
        let level = service_level(network, &request.service_level)?;
        if lines.is_empty() {
            return Err(Error::invalid("lines", "an order needs at least one line"));
        }
        check_excluded_ids(network, &request.constraints)?;
        let split = request.constraints.split_lines;
        let order = Order {
            view,
            request,
            lines,
            level,
            destination,
            now_ms,
            supply: self.supply(view, lines, taken, split, deadline)?,
            items: super::pricing::items(network, lines),
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
            deadline.spend(order.supply.len() as u64)?;
            match self.judge(order, n, node) {
                Ok(candidate) => candidates.push(candidate),
                Err(reason) => excluded.push((n as NodeIdx, reason)),
            }
        }
        Ok((candidates, excluded))
    }

    /// Per line, per node: what the node has of the line on top of what is `taken`, and from
    /// when; without `split`, only the first day it has the whole line, if it ever does.
    pub(crate) fn supply(
        &self,
        view: &AtpView<'_, '_>,
        lines: &[(String, Qty)],
        taken: &Taken,
        split: bool,
        deadline: &Deadline<'_>,
    ) -> Result<Vec<Vec<Supply>>> {
        let nodes = view.network.nodes().len();
        lines
            .iter()
            .map(|(sku, quantity)| {
                deadline.spend(nodes as u64)?;
                let mut supply = vec![Supply::new(); nodes];
                view.read(sku, |entry| {
                    for position in entry.map_or(&[][..], |e| e.positions()) {
                        let gone = taken_at(taken, sku, position.node());
                        let node = position.node() as usize;
                        let whole = view.earliest(position, *quantity + gone);
                        // All of it on the node's first day: no part comes any earlier.
                        supply[node] = match whole {
                            Some(day) if !split || day <= view.day(position.node()) => {
                                vec![(day, *quantity)]
                            }
                            _ => partial(view.profile(position), gone, *quantity),
                        };
                    }
                });
                Ok(supply)
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
        let parcel = Parcel {
            node_id: &node.id,
            origin_postal: &node.postal_code,
            destination_postal: &order.request.destination.postal_code,
            km,
            kg: 0.0,
            cm3: 0.0,
        };
        let transit = cost::transit_days(level, &parcel)
            .ok_or_else(|| format!("beyond {}'s reach", level.name))?;
        let stocked = order.offers(n, node, transit, None);
        if stocked.iter().all(Option::is_none) {
            return Err(order.short(n));
        }
        let capacity = self.capacity_pressure(
            idx,
            node.fulfilment.daily_capacity,
            stocked.iter().flatten().map(|o| o.ship).min(),
        );
        if capacity >= 1.0 {
            return Err("over capacity for its ship date".to_owned());
        }
        let offers = match constraints.deliver_by {
            None => stocked,
            by => order.offers(n, node, transit, by),
        };
        if offers.iter().all(Option::is_none) {
            return Err("too slow for deliver_by".to_owned());
        }
        let lightest = Parcel {
            kg: order.lightest(&offers),
            ..parcel
        };
        let shipping = cost::least_shipping(level, &lightest)
            .ok_or_else(|| format!("heavier than {}'s rate card carries", level.name))?;
        let breakdown = cost::package(shipping, node, capacity, &order.request.weights);
        Ok(Candidate {
            node: idx,
            cost: breakdown.total() + order.request.weights.package_penalty,
            breakdown,
            offers,
            km,
        })
    }

    /// Share of a node's daily capacity already committed on `day`; 0 for unlimited.
    pub(crate) fn capacity_pressure(&self, node: NodeIdx, capacity: u32, day: Option<Day>) -> f64 {
        match (capacity, day) {
            (0, _) | (_, None) => 0.0,
            (capacity, Some(day)) => {
                f64::from(self.shared.book.orders_on(node, day)) / f64::from(capacity)
            }
        }
    }
}

/// The steps of an ATP profile net of what is `gone`, capped at `need`: each quantity from the
/// first day it is there.
fn partial(profile: Option<Vec<(Day, Qty)>>, gone: Qty, need: Qty) -> Supply {
    let mut steps = Supply::new();
    for (day, atp) in profile.into_iter().flatten() {
        let quantity = (atp - gone).min(need);
        if quantity <= 0 || steps.last().is_some_and(|&(_, q)| q >= quantity) {
            continue;
        }
        steps.push((day, quantity));
        if quantity == need {
            break;
        }
    }
    steps
}

impl Order<'_> {
    /// The least weight a package of `offers` can have: one of its lightest items with split
    /// lines, else its lightest whole line.
    fn lightest(&self, offers: &[Option<Offer>]) -> f64 {
        let split = self.request.constraints.split_lines;
        let lines = offers.iter().zip(self.lines).zip(&self.items);
        let weights = lines.filter_map(|((offer, (_, need)), item)| {
            offer.map(|_| item.weight_kg * if split { 1.0 } else { *need as f64 })
        });
        weights.min_by(f64::total_cmp).unwrap_or(0.0)
    }

    /// Per line, the most node `n` can ship of it (all of it unless lines split), delivered by
    /// `by` if given.
    fn offers(&self, n: usize, node: &Node, transit: u32, by: Option<Day>) -> Vec<Option<Offer>> {
        let split = self.request.constraints.split_lines;
        self.supply
            .iter()
            .zip(self.lines)
            .map(|(per_node, (_, need))| {
                let usable = per_node[n].iter().filter(|(_, q)| split || q == need);
                // Later steps have more and ship no earlier, so the last in time is the most; look
                // from the end.
                let mut in_time = usable.filter_map(|&(ready, quantity)| {
                    let (ship, delivery) =
                        ship_and_deliver(node, self.level, ready, transit, self.now_ms)?;
                    let offer = Offer {
                        quantity,
                        ship,
                        delivery,
                    };
                    by.is_none_or(|by| delivery <= by).then_some(offer)
                });
                in_time.next_back()
            })
            .collect()
    }

    /// Why node `n`, which can ship no line, cannot: it has only part of one, or nothing.
    fn short(&self, n: usize) -> String {
        let split = self.request.constraints.split_lines;
        let part = self
            .supply
            .iter()
            .zip(self.lines)
            .find_map(|(per_node, (sku, need))| {
                let &(_, has) = per_node[n].last().filter(|_| !split)?;
                Some(format!(
                    "has only {has} of the {need} of {sku}, and lines do not split"
                ))
            });
        part.unwrap_or_else(|| "no stock for any line".to_owned())
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
fn check_excluded_ids(network: &Network, constraints: &super::Constraints) -> Result<()> {
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
    view: &AtpView<'_, '_>,
    constraints: &super::Constraints,
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
