//! Routing with a hold, and routing a wave of orders together.

use super::{Plan, RouteRequest, Routing, Taken};
use crate::deadline::Deadline;
use crate::engine::Engine;
use crate::error::{Error, Result};

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
    /// The cost of the plans of `routings`, which serve `served` orders.
    pub total_cost: f64,
    pub served: usize,
    /// The cost of routing one at a time in arrival order, serving `one_by_one_served`.
    pub one_by_one_cost: f64,
    pub one_by_one_served: usize,
}

impl Engine {
    /// Routes the order and reserves the chosen plan atomically; if stock moved under it, the
    /// next-best plan is tried. Never a partial hold; past `deadline`, no hold at all.
    pub fn route_and_reserve(
        &self,
        request: &RouteRequest,
        hold: &crate::reservation::Hold,
        deadline: &Deadline<'_>,
    ) -> Result<crate::mutation::Mutation<Routed>> {
        let wider = RouteRequest {
            alternatives: request.alternatives.max(3),
            ..request.clone()
        };
        let mut routing = self.route(&wider, deadline)?;
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
                reservation_id: hold.reservation_id.clone(),
                lines,
                ttl_secs: hold.ttl_secs,
                owner: hold.owner.clone(),
            };
            deadline.check()?;
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
