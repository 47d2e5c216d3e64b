//! Holds in waves: a wave of orders routed together over shared stock, each order that asks
//! to reserve holding its plan under its own reservation id.
//!
//! All-or-nothing per order, not per wave: an order's hold is every line of its plan or
//! nothing, and an order whose plan cannot be held answers no plan while the others are held.
//! A wave's orders are separate customers' orders; one that cannot be served must not keep
//! the others from shipping. Each hold keeps its order's answer under the order's own
//! fingerprint (as `RouteOrder` with `reserve` does), so the same wave sent again answers each
//! held order's plan and reservation as kept, also after a restart; orders it could not hold
//! are routed again, over the stock as it is then.

use super::batch::{kept, widened};
use super::kept::route_fingerprint;
use super::{BatchRouting, RouteRequest, Routed, Routing};
use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mutation::Record;
use crate::reservation::Hold;
use crate::reserve::Held;

/// One order of a wave, and the hold of its plan when it asks for one.
#[derive(Debug, Clone)]
pub struct WaveOrder {
    pub request: RouteRequest,
    pub hold: Option<Hold>,
}

/// A wave's routing and, per order, the hold of its plan (`None`: it asked for none, or
/// none of its plans could be held).
#[derive(Debug, Clone)]
pub struct HeldWave {
    pub routing: BatchRouting,
    pub reservations: Vec<Option<Held>>,
}

impl Engine {
    /// Routes `orders` together and holds each reserving order's plan (the next-best when
    /// stock moved under it). Orders held by an earlier copy of the same wave answer what they
    /// kept and are not routed again; the totals count kept plans in both the wave's cost and
    /// the one-by-one cost. Past `deadline` (while routing) nothing is held. Returns the
    /// records of the new holds, in the order they were made.
    pub fn route_wave(
        &self,
        orders: &[WaveOrder],
        deadline: &Deadline<'_>,
    ) -> Result<(HeldWave, Vec<Record>)> {
        let mut answers = self.kept_orders(orders)?;
        let kept = totals(answers.iter().flatten().map(|r| &r.routing));
        let fresh: Vec<usize> = (0..orders.len())
            .filter(|&i| answers[i].is_none())
            .collect();
        let requests: Vec<RouteRequest> = fresh.iter().map(|&i| to_route(&orders[i])).collect();
        let batch = self.route_batch(&requests, deadline)?;
        let mut records = Vec::new();
        for (&i, routing) in fresh.iter().zip(batch.routings) {
            match self.hold_order(&orders[i], routing) {
                Ok((routed, record)) => {
                    records.extend(record);
                    answers[i] = Some(routed);
                }
                Err(error) => {
                    // Holds made for earlier orders are taken back: an error changes nothing.
                    self.undo(records);
                    return Err(error);
                }
            }
        }
        let one_by_one = (
            kept.0 + batch.one_by_one_cost,
            kept.1 + batch.one_by_one_served,
        );
        Ok((
            held_wave(answers.into_iter().flatten(), one_by_one),
            records,
        ))
    }

    /// Per order, what an earlier copy of this wave held for it (`None`: nothing, or it asks
    /// for no hold). Checks every hold before anything is held: ids (each at most once in a
    /// wave), lifetimes, and ids another request holds.
    fn kept_orders(&self, orders: &[WaveOrder]) -> Result<Vec<Option<Routed>>> {
        let mut seen = std::collections::HashSet::new();
        let mut kept_orders = Vec::with_capacity(orders.len());
        for (i, order) in orders.iter().enumerate() {
            let Some(hold) = &order.hold else {
                kept_orders.push(None);
                continue;
            };
            if !seen.insert(hold.reservation_id.as_str()) {
                return Err(Error::invalid(
                    format!("orders[{i}].reservation_id"),
                    "another order of the wave holds under this id",
                ));
            }
            self.ttl_ms(hold.ttl_secs)?;
            let fingerprint = route_fingerprint(&order.request, hold);
            let held = self.retried(&hold.reservation_id, fingerprint)?;
            kept_orders.push(held.map(kept).transpose()?);
        }
        Ok(kept_orders)
    }

    /// The answer for one order routed in the wave, holding its plan when it asks to.
    fn hold_order(&self, order: &WaveOrder, routing: Routing) -> Result<(Routed, Option<Record>)> {
        let Some(hold) = order.hold.as_ref().filter(|_| routing.plan.is_some()) else {
            return Ok(unheld(routing));
        };
        let fingerprint = route_fingerprint(&order.request, hold);
        // Holding is quick and bounded by the plans found; the deadline bounded the routing.
        let never = Deadline::never();
        match self.hold_first(&order.request, hold, fingerprint, &routing, &never) {
            Ok(held) => Ok(held.into_parts()),
            // Stock moved under every plan found (a concurrent hold): no plan, nothing held.
            Err(Error::InsufficientStock(_)) => Ok(unheld(Routing {
                plan: None,
                alternatives: Vec::new(),
                ..routing
            })),
            Err(error) => Err(error),
        }
    }
}

/// An order's answer without a hold.
fn unheld(routing: Routing) -> (Routed, Option<Record>) {
    let routed = Routed {
        routing,
        reservation: None,
    };
    (routed, None)
}

/// What the wave routes for `order`: a holding order with runners-up to fall back on.
fn to_route(order: &WaveOrder) -> RouteRequest {
    match order.hold {
        Some(_) => widened(&order.request),
        None => order.request.clone(),
    }
}

/// The wave's answer from its orders' answers and the cost of routing them one by one (and
/// how many that serves).
fn held_wave(answers: impl Iterator<Item = Routed>, one_by_one: (f64, usize)) -> HeldWave {
    let (routings, reservations): (Vec<Routing>, _) =
        answers.map(|r| (r.routing, r.reservation)).unzip();
    let (total_cost, served) = totals(routings.iter());
    HeldWave {
        routing: BatchRouting {
            routings,
            total_cost,
            served,
            one_by_one_cost: one_by_one.0,
            one_by_one_served: one_by_one.1,
        },
        reservations,
    }
}

/// The cost of the plans of `routings`, and how many orders they serve.
fn totals<'a>(routings: impl Iterator<Item = &'a Routing>) -> (f64, usize) {
    routings
        .filter_map(|r| r.plan.as_ref())
        .fold((0.0, 0), |(cost, served), plan| {
            (cost + plan.total_cost, served + 1)
        })
}
