//! Conversions of the order-facing calls: reservations, promises and routes.

use super::pickup::{pickup_option, pickup_request};
use super::{day_text, node_kind, timestamp, timestamp_ms};
use crate::delivery::Destination;
use crate::domain::Day;
use crate::error::{Error, FieldViolation, Result};
use crate::grpc::pb;
use crate::index::Pool;
use crate::network::{Network, NodeIdx};
use crate::promise::{Promise, PromiseRequest};
use crate::reservation::{Hold, Line, LineRequest, ReserveRequest, Scope, State};
use crate::reserve::Held;
use crate::route::{Constraints, CostBreakdown, Plan, RouteRequest, Routing, Weights};

fn date(text: &str, field: String) -> Result<Option<Day>, FieldViolation> {
    match text {
        "" => Ok(None),
        text => Day::parse(text).map(Some).ok_or_else(|| {
            FieldViolation::new(field, format!("{text:?} is not a YYYY-MM-DD date"))
        }),
    }
}

/// A reservation request from `owner` (the caller's credential id).
pub fn reserve_request(request: pb::ReserveRequest, owner: &str) -> Result<ReserveRequest> {
    let mut violations = Vec::new();
    let lines = request
        .lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let need_date =
                date(&line.need_date, format!("lines[{i}].need_date")).unwrap_or_else(|v| {
                    violations.push(v);
                    None
                });
            LineRequest {
                sku: line.sku,
                node_id: line.node_id,
                group_id: line.group_id,
                quantity: line.quantity,
                need_date,
            }
        })
        .collect();
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(ReserveRequest {
        reservation_id: request.reservation_id,
        lines,
        ttl_secs: u64::from(request.ttl_seconds),
        owner: owner.to_owned(),
    })
}

pub fn reservation(held: Held) -> pb::Reservation {
    let (reservation, network) = (held.reservation, held.network);
    let state = match reservation.state {
        State::Held => pb::ReservationState::Held,
        State::Committed => pb::ReservationState::Committed,
        State::Released => pb::ReservationState::Released,
        State::Expired => pb::ReservationState::Expired,
        State::Shipped => pb::ReservationState::Shipped,
    };
    let lines = reservation
        .lines
        .into_iter()
        .map(|line| reservation_line(line, &network))
        .collect();
    pb::Reservation {
        reservation_id: reservation.id,
        state: state.into(),
        lines,
        expires_at: Some(timestamp(reservation.expires_at_ms)),
        order_id: reservation.order_id,
    }
}

/// A node's id, or empty for an index the network no longer has.
fn node_id(network: &Network, node: NodeIdx) -> String {
    network
        .nodes()
        .get(node as usize)
        .map(|n| n.id.clone())
        .unwrap_or_default()
}

fn reservation_line(line: Line, network: &Network) -> pb::ReservationLine {
    let (node, group) = match line.scope {
        Scope::Node(node) => (node_id(network, node), String::new()),
        Scope::Pool(Pool::Group(group)) => {
            let group = network.group(group).map(|g| g.id.clone());
            (String::new(), group.unwrap_or_default())
        }
        Scope::Pool(Pool::Network) => (String::new(), String::new()),
    };
    let allocations = line
        .allocations
        .iter()
        .map(|a| pb::Allocation {
            node_id: node_id(network, a.node),
            quantity: a.quantity,
            shipped: a.shipped,
        })
        .collect();
    pb::ReservationLine {
        sku: line.sku,
        node_id: node,
        group_id: group,
        quantity: line.quantity,
        need_date: line.need.to_string(),
        allocations,
    }
}

fn destination(destination: Option<pb::Destination>) -> Destination {
    let destination = destination.unwrap_or_default();
    let has_coordinates = destination.lat != 0.0 || destination.lon != 0.0;
    Destination {
        coordinates: has_coordinates.then_some((destination.lat, destination.lon)),
        postal_code: destination.postal_code,
        country: destination.country,
    }
}

/// A promise request; a plan it reserves is owned by `owner` (the caller's credential id).
pub fn promise_request(request: pb::PromiseRequest, owner: &str) -> Result<PromiseRequest> {
    let reserve = if request.reserve {
        if request.reservation_id.is_empty() {
            return Err(Error::invalid(
                "reservation_id",
                "reserving a promise needs a reservation id",
            ));
        }
        Some(Hold {
            reservation_id: request.reservation_id,
            ttl_secs: u64::from(request.ttl_seconds),
            owner: owner.to_owned(),
        })
    } else {
        None
    };
    Ok(PromiseRequest {
        lines: request
            .lines
            .into_iter()
            .map(|l| (l.sku, l.quantity))
            .collect(),
        destination: destination(request.destination),
        service_levels: request.service_levels,
        allow_split: request.allow_split,
        max_packages: request.max_packages,
        now_ms: request.now.as_ref().map(timestamp_ms),
        reserve,
        pickup: pickup_request(request.pickup)?,
    })
}

pub fn promise_response(promise: Promise) -> pb::PromiseResponse {
    let network = &promise.network;
    let line = |(sku, quantity): (String, i64)| pb::PromiseLine { sku, quantity };
    let options = promise
        .options
        .into_iter()
        .map(|option| pb::PromiseOption {
            service_level: option.service_level,
            feasible: option.delivery_date.is_some(),
            delivery_date: day_text(option.delivery_date),
            shipments: option
                .shipments
                .into_iter()
                .map(|s| pb::Shipment {
                    node_id: network.node(s.node).id.clone(),
                    ship_date: s.ship_date.to_string(),
                    delivery_date: s.delivery_date.to_string(),
                    lines: s.lines.into_iter().map(line).collect(),
                    cost: s.cost.total(),
                    cost_breakdown: Some(cost_breakdown(&s.cost)),
                })
                .collect(),
            cost: option.cost,
            reason: option.reason,
        })
        .collect();
    pb::PromiseResponse {
        options,
        skipped: promise
            .skipped
            .into_iter()
            .map(|(node, reason)| pb::SkippedNode {
                node_id: network.node(node).id.clone(),
                reason,
            })
            .collect(),
        reservation: promise.reservation.map(reservation),
        pickup_options: promise
            .pickup
            .into_iter()
            .map(|option| pickup_option(network, option))
            .collect(),
    }
}

/// A route request, and the reservation to hold its plan under for `owner`, if asked.
pub fn route_request(
    request: pb::RouteRequest,
    prefix: &str,
    owner: &str,
) -> Result<(RouteRequest, Option<Hold>)> {
    let mut violations = Vec::new();
    let constraints = constraints(
        request.constraints.unwrap_or_default(),
        prefix,
        &mut violations,
    );
    if request.reserve && request.reservation_id.is_empty() {
        violations.push(FieldViolation::new(
            format!("{prefix}reservation_id"),
            "reserving a route needs a reservation id",
        ));
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    let reserve = request.reserve.then(|| Hold {
        reservation_id: request.reservation_id.clone(),
        ttl_secs: u64::from(request.ttl_seconds),
        owner: owner.to_owned(),
    });
    let route = RouteRequest {
        order_id: request.order_id,
        lines: request
            .lines
            .into_iter()
            .map(|l| (l.sku, l.quantity))
            .collect(),
        destination: destination(request.destination),
        service_level: request.service_level,
        constraints,
        weights: weights(request.weights.unwrap_or_default()),
        alternatives: request.alternatives.min(20) as usize,
        now_ms: request.now.as_ref().map(timestamp_ms),
        search_budget: request.search_budget,
    };
    Ok((route, reserve))
}

/// A route's hard constraints; problems go to `violations`, named under `prefix`.
fn constraints(
    constraints: pb::RouteConstraints,
    prefix: &str,
    violations: &mut Vec<FieldViolation>,
) -> Constraints {
    let deliver_by = date(
        &constraints.deliver_by,
        format!("{prefix}constraints.deliver_by"),
    )
    .unwrap_or_else(|v| {
        violations.push(v);
        None
    });
    let mut kinds = Vec::new();
    for (i, raw) in constraints.allowed_node_kinds.iter().enumerate() {
        match node_kind(*raw) {
            Some(kind) => kinds.push(kind),
            None => violations.push(FieldViolation::new(
                format!("{prefix}constraints.allowed_node_kinds[{i}]"),
                "must be DC, STORE or THIRD_PARTY",
            )),
        }
    }
    Constraints {
        ship_complete: constraints.ship_complete,
        max_packages: constraints.max_packages,
        deliver_by,
        excluded_node_ids: constraints.excluded_node_ids,
        allowed_node_kinds: kinds,
        split_lines: constraints.split_lines,
    }
}

/// The cost weights asked for, each defaulting to the service's own.
fn weights(weights: pb::ObjectiveWeights) -> Weights {
    let defaults = Weights::default();
    Weights {
        package_penalty: weights.package_penalty.unwrap_or(defaults.package_penalty),
        priority: weights.priority.unwrap_or(defaults.priority),
        capacity: weights.capacity.unwrap_or(defaults.capacity),
    }
}

fn cost_breakdown(cost: &CostBreakdown) -> pb::CostBreakdown {
    pb::CostBreakdown {
        shipping: cost.shipping,
        packages: cost.packages,
        priority: cost.priority,
        capacity: cost.capacity,
    }
}

fn route_plan(plan: Plan, network: &Network) -> pb::RoutePlan {
    pb::RoutePlan {
        shipments: plan
            .shipments
            .into_iter()
            .map(|s| pb::RoutedShipment {
                node_id: network.node(s.node).id.clone(),
                lines: s
                    .lines
                    .into_iter()
                    .map(|(sku, quantity)| pb::PromiseLine { sku, quantity })
                    .collect(),
                ship_date: s.ship_date.to_string(),
                delivery_date: s.delivery_date.to_string(),
                cost: s.cost.total(),
                cost_breakdown: Some(cost_breakdown(&s.cost)),
            })
            .collect(),
        total_cost: plan.total_cost,
        cost_breakdown: Some(cost_breakdown(&plan.breakdown)),
        optimal: plan.optimal,
        lower_bound: plan.lower_bound,
    }
}

pub fn route_response(order_id: &str, routing: Routing, held: Option<Held>) -> pb::RouteResponse {
    let network = routing.network.clone();
    pb::RouteResponse {
        order_id: order_id.to_owned(),
        plan: routing.plan.map(|p| route_plan(p, &network)),
        alternatives: routing
            .alternatives
            .into_iter()
            .map(|p| route_plan(p, &network))
            .collect(),
        excluded: routing
            .excluded
            .into_iter()
            .map(|(node, reason)| pb::ExcludedNode {
                node_id: network.node(node).id.clone(),
                reason,
            })
            .collect(),
        reservation: held.map(reservation),
    }
}
