//! A cart's plan under one service level: the earliest delivery, from one node or, when the
//! cart may split, from several, each line's quantity from one node or from several.

use super::{infeasible, leg, Leg, Planned, PromiseRequest, To};
use crate::deadline::Deadline;
use crate::delivery::Shipment;
use crate::domain::{Day, Qty, ServiceLevel};
use crate::error::Result;
use crate::network::Network;
use crate::route::Supply;

/// The packages of a plan: each one's leg, and the (line index, quantity) pairs it ships.
pub(super) type Packages = Vec<(Leg, Vec<(usize, Qty)>)>;

/// Per line, per node: each quantity the node has of the line, with its leg.
type Legs = Vec<Vec<Vec<(Leg, Qty)>>>;

/// What every service level's plan for a cart is made from.
pub(super) struct Cart<'a> {
    pub(super) network: &'a Network,
    pub(super) lines: &'a [(String, Qty)],
    /// Per line, per node: what the node has of the line, and from when.
    pub(super) supply: &'a [Vec<Supply>],
    pub(super) destination: To<'a>,
    pub(super) now_ms: crate::clock::UnixMillis,
    pub(super) request: &'a PromiseRequest,
    pub(super) deadline: &'a Deadline<'a>,
}

impl Cart<'_> {
    /// Per line, per node: the leg of each quantity the node has of the line under `level`.
    fn legs(&self, level: &ServiceLevel) -> Result<Legs> {
        let nodes = self.network.nodes().len();
        self.supply
            .iter()
            .map(|per_node| {
                self.deadline.spend(nodes as u64)?;
                let legs = per_node.iter().enumerate().map(|(n, steps)| {
                    let step = |&(ready, quantity): &(Day, Qty)| {
                        let found = leg(
                            self.network,
                            level,
                            n as _,
                            ready,
                            self.destination,
                            self.now_ms,
                        );
                        Some((found?, quantity))
                    };
                    steps.iter().filter_map(step).collect()
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
            let last = whole_ready(self.supply, self.lines, n)?;
            leg(network, level, n as _, last, self.destination, self.now_ms)
        });
        Ok(complete.min_by_key(|leg| leg.key(network)))
    }

    /// The best plan for `level`: its shipments, not yet priced, or why there is none.
    pub(super) fn plan(&self, level: &ServiceLevel) -> Result<Planned> {
        let (lines, request) = (self.lines, self.request);
        let legs = self.legs(level)?;
        let whole = self.whole(level)?;
        let split = if request.allow_split {
            self.split(&legs)?
        } else {
            None
        };
        let everything = || (0..lines.len()).map(|i| (i, lines[i].1)).collect();
        let packages: Option<Packages> = match (whole, split) {
            (Some(whole), Some(split)) => {
                let split_delivery = split.iter().map(|(l, _)| l.delivery).max();
                if split_delivery < Some(whole.delivery) {
                    Some(split)
                } else {
                    Some(vec![(whole, everything())])
                }
            }
            (Some(whole), None) => Some(vec![(whole, everything())]),
            (None, split) => split,
        };
        let Some(packages) = packages else {
            return Ok(Err(infeasible(level, self.reason(level, &legs))));
        };
        Ok(Ok(packages
            .into_iter()
            .map(|(leg, on)| Shipment {
                node: leg.node,
                ship_date: leg.ship,
                delivery_date: leg.delivery,
                lines: on
                    .into_iter()
                    .map(|(i, q)| (lines[i].0.clone(), q))
                    .collect(),
                cost: Default::default(),
            })
            .collect()))
    }

    /// Split packages: for the earliest delivery day by which at most `max_packages` nodes can
    /// cover every line, greedily the node that completes most lines, then ships most units.
    fn split(&self, legs: &Legs) -> Result<Option<Packages>> {
        let mut days: Vec<Day> = legs
            .iter()
            .flatten()
            .flatten()
            .map(|(l, _)| l.delivery)
            .collect();
        days.sort_unstable();
        days.dedup();
        let limit = match self.request.max_packages {
            0 => usize::MAX,
            n => n as usize,
        };
        for by in days {
            let mut left: Vec<Qty> = self.lines.iter().map(|(_, q)| *q).collect();
            let mut chosen: Packages = Vec::new();
            while left.iter().any(|&q| q > 0) && chosen.len() < limit {
                let nodes = self.network.nodes().len();
                self.deadline.spend((nodes * left.len()) as u64)?;
                let best = (0..nodes)
                    .filter(|n| chosen.iter().all(|(l, _)| l.node as usize != *n))
                    .filter_map(|n| package(legs, &left, n, by))
                    .max_by(|a, b| {
                        let key = |p: &Pick| std::cmp::Reverse(p.leg.key(self.network));
                        (a.score, key(a)).cmp(&(b.score, key(b)))
                    });
                // No node ships any open line by this day: try a later one.
                let Some(Pick { leg, on, .. }) = best else {
                    break;
                };
                for &(i, q) in &on {
                    left[i] -= q;
                }
                chosen.push((leg, on));
            }
            if left.iter().all(|&q| q == 0) {
                return Ok(Some(chosen));
            }
        }
        Ok(None)
    }

    /// Why a level has no plan.
    fn reason(&self, level: &ServiceLevel, legs: &Legs) -> String {
        let split = self.request.allow_split;
        let most = |per_node: &Vec<Vec<(Leg, Qty)>>| -> Qty {
            let each = per_node.iter().map(|steps| steps.last().map_or(0, |s| s.1));
            if split {
                each.sum()
            } else {
                each.max().unwrap_or(0)
            }
        };
        let short = self
            .lines
            .iter()
            .zip(legs)
            .find(|((_, need), per_node)| most(per_node) < *need);
        if let Some(((sku, quantity), _)) = short {
            let who = if split {
                "the nodes together"
            } else {
                "no node"
            };
            let verb = if split { "cannot" } else { "can" };
            return format!("{who} {verb} ship {quantity} of {sku} by {}", level.name);
        }
        if !split {
            return "no single node can ship the whole cart; allow_split may".into();
        }
        "the cart needs more packages than max_packages allows".into()
    }
}

/// The first day node `n` has every line's whole quantity, by `supply` (per line, per node);
/// `None` if it never has one of them whole.
pub(super) fn whole_ready(
    supply: &[Vec<Supply>],
    lines: &[(String, Qty)],
    n: usize,
) -> Option<Day> {
    supply
        .iter()
        .zip(lines)
        .try_fold(None, |last: Option<Day>, (per_node, (_, need))| {
            let &(day, quantity) = per_node.get(n)?.last()?;
            (quantity == *need).then_some(Some(last.map_or(day, |l| l.max(day))))
        })
        .flatten()
}

/// What one node would ship of the lines left.
struct Pick {
    /// (lines it completes, units it ships): more is better.
    score: (usize, Qty),
    leg: Leg,
    /// (line index, quantity) pairs.
    on: Vec<(usize, Qty)>,
}

/// What node `n` would ship of the lines `left` by day `by`; `None` if nothing.
fn package(legs: &Legs, left: &[Qty], n: usize, by: Day) -> Option<Pick> {
    let mut on = Vec::new();
    let mut last: Option<Leg> = None;
    let mut completes = 0;
    for (i, per_node) in legs.iter().enumerate() {
        if left[i] <= 0 {
            continue;
        }
        // Steps rise in quantity and date, so the last in time is the most.
        let Some(&(leg, has)) = per_node[n].iter().rfind(|(l, _)| l.delivery <= by) else {
            continue;
        };
        let quantity = has.min(left[i]);
        completes += usize::from(quantity == left[i]);
        on.push((i, quantity));
        last = Some(last.map_or(leg, |l| {
            if (leg.delivery, leg.ship) > (l.delivery, l.ship) {
                leg
            } else {
                l
            }
        }));
    }
    let units = on.iter().map(|(_, q)| q).sum();
    Some(Pick {
        score: (completes, units),
        leg: last?,
        on,
    })
}
