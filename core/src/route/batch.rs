//! Routing with a hold, and routing a wave of orders together.

use super::kept::{decode_routing, encode_routing, route_fingerprint};
use super::{Plan, RouteRequest, Routing, Taken};
use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mutation::Mutation;
use crate::reservation::Hold;
use crate::reserve::{Held, Origin};

/// A routed and reserved order.
#[derive(Debug, Clone)]
pub struct Routed {
    pub routing: Routing,
    /// The hold of the chosen plan, when asked to reserve.
    pub reservation: Option<Held>,
}

/// Orders routed together, with the cost of routing them one at a time in arrival order.
#[derive(Debug, Clone)]
pub struct BatchRouting {
    pub routings: Vec<Routing>,
    /// The cost of the plans of `routings`, which serve `served` orders.
    pub total_cost: f64,
    pub served: usize,
    /// The cost of routing one at a time in arrival order, serving `one_by_one_served`.
    pub one_by_one_cost: f64,
    pub one_by_one_served: usize,
}

impl Engine {
    /// Routes the order and reserves the chosen plan atomically; if stock moved under it, the
    /// next-best plan is tried. Never a partial hold; past `deadline`, no hold at all. The
    /// hold keeps the answer: the same request again (a retry) is given the same plan and
    /// reservation without routing again, even when the stock would not cover a second copy.
    pub fn route_and_reserve(
        &self,
        request: &RouteRequest,
        hold: &Hold,
        deadline: &Deadline<'_>,
    ) -> Result<Mutation<Routed>> {
        let fingerprint = route_fingerprint(request, hold);
        match self.retried(&hold.reservation_id, fingerprint) {
            Ok(Some(held)) => {
                return Ok(Mutation {
                    result: kept(held)?,
                    record: None,
                })
            }
            Ok(None) => {}
            // Another request holds the id; bad input is still answered as bad input.
            Err(taken @ Error::AlreadyExists(_)) => {
                return Err(match self.route(request, deadline) {
                    Err(invalid @ Error::InvalidArgument(_)) => invalid,
                    _ => taken,
                })
            }
            Err(error) => return Err(error),
        }
        let routing = self.route(&widened(request), deadline)?;
        self.hold_first(request, hold, fingerprint, &routing, deadline)
    }

    /// Holds the first plan of `routing` (the chosen one, then the runners-up) that the stock
    /// covers, keeping the answer with the hold; `request` says how many runners-up to
    /// answer. A hold a concurrent twin of the call made first answers what it kept.
    pub(super) fn hold_first(
        &self,
        request: &RouteRequest,
        hold: &Hold,
        fingerprint: u64,
        routing: &Routing,
        deadline: &Deadline<'_>,
    ) -> Result<Mutation<Routed>> {
        let plans: Vec<&Plan> = routing.plan.iter().chain(&routing.alternatives).collect();
        let mut last =
            Error::FailedPrecondition("no plan satisfies the order's constraints".into());
        for (i, plan) in plans.iter().enumerate() {
            let answer = Routing {
                plan: Some((*plan).clone()),
                alternatives: (plans.iter().enumerate())
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| (*p).clone())
                    .take(request.alternatives)
                    .collect(),
                excluded: routing.excluded.clone(),
                candidates: routing.candidates,
                network: routing.network.clone(),
            };
            let origin = Origin {
                fingerprint,
                answer: encode_routing(&answer),
            };
            deadline.check()?;
            let reserve = hold.of_shipments(&routing.network, &plan.shipments);
            match self.reserve_for(&reserve, Some(origin.clone())) {
                Ok(held) => {
                    let (held, record) = held.into_parts();
                    let result = if held.reservation.answer == origin.answer {
                        Routed {
                            routing: answer,
                            reservation: Some(held),
                        }
                    } else {
                        kept(held)?
                    };
                    return Ok(Mutation { result, record });
                }
                Err(error @ Error::InsufficientStock(_)) => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// Routes orders together over shared stock: most constrained orders first (they have the
    /// fewest places to go), and also one at a time in arrival order; answers the cheaper.
    pub fn route_batch(
        &self,
        requests: &[RouteRequest],
        deadline: &Deadline<'_>,
    ) -> Result<BatchRouting> {
        let mut arrival: Vec<usize> = (0..requests.len()).collect();
        let one_by_one = self.route_in_order(requests, &arrival, deadline)?;
        let choice: Vec<usize> = {
            let breadth: Vec<usize> = one_by_one
                .iter()
                .map(|r| r.plan.as_ref().map_or(0, |_| r.candidates))
                .collect();
            arrival.sort_by_key(|&i| (breadth[i], std::cmp::Reverse(requests[i].lines.len()), i));
            arrival
        };
        let constrained = self.route_in_order(requests, &choice, deadline)?;
        let total = |routings: &[Routing]| -> f64 {
            routings
                .iter()
                .filter_map(|r| r.plan.as_ref())
                .map(|p| p.total_cost)
                .sum()
        };
        let served = |routings: &[Routing]| routings.iter().filter(|r| r.plan.is_some()).count();
        let one_by_one_cost = total(&one_by_one);
        let one_by_one_served = served(&one_by_one);
        let better =
            (served(&constrained), -total(&constrained)) > (one_by_one_served, -one_by_one_cost);
        let routings = if better { constrained } else { one_by_one };
        Ok(BatchRouting {
            total_cost: total(&routings),
            served: served(&routings),
            routings,
            one_by_one_cost,
            one_by_one_served,
        })
    }

    /// Routes `requests` in `order`, each taking stock from what the ones before it left.
    fn route_in_order(
        &self,
        requests: &[RouteRequest],
        order: &[usize],
        deadline: &Deadline<'_>,
    ) -> Result<Vec<Routing>> {
        let mut taken = Taken::new();
        let mut routings: Vec<Option<Routing>> = vec![None; requests.len()];
        for &i in order {
            let routing = self.route_with_taken(&requests[i], &taken, deadline)?;
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

/// `request` asking for at least three runners-up: the plans to fall back on when stock
/// moved under the chosen one before it could be held.
pub(super) fn widened(request: &RouteRequest) -> RouteRequest {
    RouteRequest {
        alternatives: request.alternatives.max(3),
        ..request.clone()
    }
}

/// The answer a hold kept, with the hold as it is now.
pub(super) fn kept(held: Held) -> Result<Routed> {
    let routing = decode_routing(&held.reservation.answer, held.network.clone()).map_err(|e| {
        Error::FailedPrecondition(format!(
            "reservation {:?} keeps no route of this request: {e}",
            held.reservation.id
        ))
    })?;
    Ok(Routed {
        routing,
        reservation: Some(held),
    })
}
