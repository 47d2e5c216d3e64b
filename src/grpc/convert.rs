//! Conversions between protobuf messages and domain types. Incoming messages are validated
//! here: a bad field becomes an `InvalidArgument` naming it, never a panic.

use prost_types::Timestamp;

use super::pb;
use crate::calendar::{CalendarSpec, FulfilmentSpec, ServiceLevelSpec};
use crate::checkpoint::DurabilityStatus;
use crate::clock::UnixMillis;
use crate::domain::{
    parse_time_zone, BatchOutcome, Day, Node, NodeGroup, NodeKind, RejectReason, Rejection,
    ServiceLevel, Source, SourceKind, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp,
};
use crate::engine::{SafetyStockEntry, Stats};
use crate::error::{Error, FieldViolation, Result};
use crate::index::Pool;
use crate::ingest::LoggedRejection;
use crate::network::NodeIdx;
use crate::promise::{Destination, Promise, PromiseRequest};
use crate::query::{Availability, AvailabilityQuery, ItemAvailability};
use crate::reservation::{LineRequest, ReserveRequest, Scope, State};
use crate::reserve::Held;
use crate::route::{Constraints, Plan, RouteRequest, Routing, Weights};

type Violations = Vec<FieldViolation>;

/// Converts every item of a repeated field; violations are reported as `list[i].field`.
pub fn convert_list<P, D>(items: Vec<P>, list: &str) -> Result<Vec<D>>
where
    D: TryFrom<P, Error = Violations>,
{
    let mut violations = Vec::new();
    let mut converted = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match D::try_from(item) {
            Ok(item) => converted.push(item),
            Err(item_violations) => {
                violations.extend(item_violations.into_iter().map(|v| {
                    FieldViolation::new(format!("{list}[{i}].{}", v.field), v.description)
                }))
            }
        }
    }
    if violations.is_empty() {
        Ok(converted)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

fn node_kind(raw: i32) -> Option<NodeKind> {
    match pb::NodeKind::try_from(raw) {
        Ok(pb::NodeKind::Dc) => Some(NodeKind::Dc),
        Ok(pb::NodeKind::Store) => Some(NodeKind::Store),
        Ok(pb::NodeKind::ThirdParty) => Some(NodeKind::ThirdParty),
        _ => None,
    }
}

impl TryFrom<pb::Node> for Node {
    type Error = Violations;

    fn try_from(node: pb::Node) -> Result<Self, Violations> {
        let mut violations = Vec::new();
        let kind = node_kind(node.kind);
        if kind.is_none() {
            violations.push(FieldViolation::new(
                "kind",
                "must be DC, STORE or THIRD_PARTY",
            ));
        }
        let time_zone = parse_time_zone(&node.time_zone);
        if time_zone.is_none() {
            let problem = format!("{:?} is not an IANA time zone name", node.time_zone);
            violations.push(FieldViolation::new("time_zone", problem));
        }
        let spec = FulfilmentSpec {
            calendar: CalendarSpec {
                open_days: node.open_days,
                holidays: node.holidays,
            },
            cutoff: node.cutoff,
            processing_days: node.processing_days,
            daily_capacity: node.daily_capacity,
        };
        let fulfilment = spec.resolve().map_err(|v| violations.extend(v)).ok();
        let (Some(kind), Some(time_zone), Some(fulfilment)) = (kind, time_zone, fulfilment) else {
            return Err(violations);
        };
        Ok(Node {
            fulfilment,
            id: node.id,
            kind,
            lat: node.lat,
            lon: node.lon,
            postal_code: node.postal_code,
            country: node.country,
            time_zone,
            priority: node.priority,
            group_ids: node.group_ids,
            safety_stock: node.safety_stock,
        })
    }
}

impl TryFrom<pb::ServiceLevel> for ServiceLevel {
    type Error = Violations;

    fn try_from(level: pb::ServiceLevel) -> Result<Self, Violations> {
        ServiceLevelSpec {
            name: level.name,
            transit: level.transit.iter().map(|b| (b.max_km, b.days)).collect(),
            calendar: CalendarSpec {
                open_days: level.pickup_days,
                holidays: level.holidays,
            },
            base_cost: level.base_cost,
            cost_per_km: level.cost_per_km,
        }
        .resolve()
    }
}

/// Postal code locations; coordinates must be on the globe.
impl TryFrom<pb::PostalCode> for ((String, String), (f64, f64)) {
    type Error = Violations;

    fn try_from(code: pb::PostalCode) -> Result<Self, Violations> {
        let mut violations = Vec::new();
        if code.postal_code.is_empty() {
            violations.push(FieldViolation::new("postal_code", "must not be empty"));
        }
        if !(-90.0..=90.0).contains(&code.lat) || !(-180.0..=180.0).contains(&code.lon) {
            violations.push(FieldViolation::new(
                "lat",
                "coordinates must be within [-90, 90] and [-180, 180]",
            ));
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        let country = if code.country.is_empty() {
            "US".to_owned()
        } else {
            code.country
        };
        Ok(((country, code.postal_code), (code.lat, code.lon)))
    }
}

impl TryFrom<pb::NodeGroup> for NodeGroup {
    type Error = Violations;

    fn try_from(group: pb::NodeGroup) -> Result<Self, Violations> {
        Ok(NodeGroup {
            id: group.id,
            description: group.description,
        })
    }
}

impl TryFrom<pb::Source> for Source {
    type Error = Violations;

    fn try_from(source: pb::Source) -> Result<Self, Violations> {
        let mut violations = Vec::new();
        let kind = match pb::SourceKind::try_from(source.kind) {
            Ok(pb::SourceKind::Wms) => Some(SourceKind::Wms),
            Ok(pb::SourceKind::Erp) => Some(SourceKind::Erp),
            Ok(pb::SourceKind::ThirdParty) => Some(SourceKind::ThirdParty),
            Ok(pb::SourceKind::Pos) => Some(SourceKind::Pos),
            _ => None,
        };
        if kind.is_none() {
            violations.push(FieldViolation::new(
                "kind",
                "must be WMS, ERP, THIRD_PARTY or POS",
            ));
        }
        let mut owned_supply_types = Vec::new();
        for (j, raw) in source.owned_supply_types.iter().enumerate() {
            match supply_type(*raw) {
                Some(t) => owned_supply_types.push(t),
                None => violations.push(FieldViolation::new(
                    format!("owned_supply_types[{j}]"),
                    "must be ON_HAND, IN_TRANSIT or ON_ORDER",
                )),
            }
        }
        let Some(kind) = kind.filter(|_| violations.is_empty()) else {
            return Err(violations);
        };
        Ok(Source {
            id: source.id,
            kind,
            owned_node_ids: source.owned_node_ids,
            owned_supply_types,
            stale_after_ms: (source.stale_after_seconds > 0)
                .then(|| i64::from(source.stale_after_seconds) * 1000),
        })
    }
}

fn supply_type(raw: i32) -> Option<SupplyType> {
    match pb::SupplyType::try_from(raw) {
        Ok(pb::SupplyType::OnHand) => Some(SupplyType::OnHand),
        Ok(pb::SupplyType::InTransit) => Some(SupplyType::InTransit),
        Ok(pb::SupplyType::OnOrder) => Some(SupplyType::OnOrder),
        _ => None,
    }
}

/// Unspecified enums stay `None` so the ingest rejects that update alone.
impl From<pb::SupplyBatch> for SupplyBatch {
    fn from(batch: pb::SupplyBatch) -> Self {
        let updates = batch
            .updates
            .into_iter()
            .map(|update| SupplyUpdate {
                supply_type: supply_type(update.supply_type),
                op: match pb::UpdateOp::try_from(update.op) {
                    Ok(pb::UpdateOp::Set) => Some(UpdateOp::Set {
                        as_of_ms: update.as_of.as_ref().map(timestamp_ms),
                    }),
                    Ok(pb::UpdateOp::Adjust) => Some(UpdateOp::Adjust),
                    Ok(pb::UpdateOp::Ship) => Some(UpdateOp::Ship {
                        order_id: update.order_id.clone(),
                    }),
                    _ => None,
                },
                sku: update.sku,
                node_id: update.node_id,
                quantity: update.quantity,
                reference: update.reference,
                eta: update.eta,
            })
            .collect();
        SupplyBatch {
            source_id: batch.source_id,
            seq: batch.seq,
            updates,
        }
    }
}

pub fn timestamp_ms(timestamp: &Timestamp) -> UnixMillis {
    timestamp
        .seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(timestamp.nanos) / 1_000_000)
}

pub fn timestamp(unix_ms: UnixMillis) -> Timestamp {
    Timestamp {
        seconds: unix_ms.div_euclid(1000),
        nanos: (unix_ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn safety_entries(request: pb::SetSafetyStockRequest) -> Vec<SafetyStockEntry> {
    request
        .entries
        .into_iter()
        .map(|entry| SafetyStockEntry {
            sku: entry.sku,
            node_id: entry.node_id,
            quantity: entry.quantity,
        })
        .collect()
}

impl TryFrom<pb::AvailabilityRequest> for AvailabilityQuery {
    type Error = Error;

    fn try_from(request: pb::AvailabilityRequest) -> Result<Self> {
        let date = match request.as_of_date.as_str() {
            "" => None,
            text => Some(Day::parse(text).ok_or_else(|| {
                Error::invalid("as_of_date", format!("{text:?} is not a YYYY-MM-DD date"))
            })?),
        };
        Ok(AvailabilityQuery {
            skus: request.skus,
            node_ids: request.node_ids,
            group_ids: request.group_ids,
            date,
            quantity: (request.quantity != 0).then_some(request.quantity),
        })
    }
}

fn day_text(day: Option<Day>) -> String {
    day.map(|d| d.to_string()).unwrap_or_default()
}

pub fn availability_response(answer: Availability) -> pb::AvailabilityResponse {
    let network = &answer.network;
    let item = |item: ItemAvailability| pb::ItemAvailability {
        nodes: item
            .nodes
            .iter()
            .map(|n| pb::NodeAvailability {
                node_id: network.node(n.node).id.clone(),
                atp: n.atp,
                on_hand: n.on_hand,
                reserved: n.reserved,
                allocated: n.allocated,
                safety_stock: n.safety_stock,
                inbound: n.inbound,
                earliest_date: day_text(n.earliest),
                degraded: n.degraded,
            })
            .collect(),
        groups: item
            .groups
            .into_iter()
            .map(|g| pb::GroupAvailability {
                group_id: g.group_id,
                atp: g.atp,
                earliest_date: day_text(g.earliest),
            })
            .collect(),
        sku: item.sku,
        network_atp: item.network_atp,
        network_earliest_date: day_text(item.network_earliest),
    };
    pb::AvailabilityResponse {
        items: answer.items.into_iter().map(item).collect(),
    }
}

fn reject_reason(reason: RejectReason) -> pb::RejectReason {
    match reason {
        RejectReason::NotOwned => pb::RejectReason::NotOwned,
        RejectReason::UnknownNode => pb::RejectReason::UnknownNode,
        RejectReason::NegativeQuantity => pb::RejectReason::NegativeQuantity,
        RejectReason::NegativeResult => pb::RejectReason::NegativeResult,
        RejectReason::MissingReference => pb::RejectReason::MissingReference,
        RejectReason::MissingEta => pb::RejectReason::MissingEta,
        RejectReason::InvalidEta => pb::RejectReason::InvalidEta,
        RejectReason::OversizedField => pb::RejectReason::OversizedField,
        RejectReason::MissingSku => pb::RejectReason::MissingSku,
        RejectReason::InvalidSupplyType => pb::RejectReason::InvalidSupplyType,
        RejectReason::InvalidOp => pb::RejectReason::InvalidOp,
        RejectReason::MissingAsOf => pb::RejectReason::MissingAsOf,
        RejectReason::UnexpectedReference => pb::RejectReason::UnexpectedReference,
        RejectReason::UnknownOrder => pb::RejectReason::UnknownOrder,
        RejectReason::NotAllocated => pb::RejectReason::NotAllocated,
    }
}

fn rejection(rejection: Rejection) -> pb::Rejection {
    pb::Rejection {
        index: rejection.index,
        sku: rejection.sku,
        node_id: rejection.node_id,
        reason: reject_reason(rejection.reason).into(),
        detail: rejection.detail,
    }
}

pub fn ack(outcome: BatchOutcome) -> pb::SupplyAck {
    pb::SupplyAck {
        source_id: outcome.source_id,
        seq: outcome.seq,
        duplicate: outcome.duplicate,
        applied: outcome.applied,
        stale: outcome.stale,
        rejected: outcome.rejections.len() as u32,
        rejections: outcome.rejections.into_iter().map(rejection).collect(),
        durable_seq: outcome.durable_seq,
    }
}

pub fn rejections(logged: Vec<LoggedRejection>, total: u64) -> pb::ListRejectionsResponse {
    pb::ListRejectionsResponse {
        rejections: logged
            .into_iter()
            .map(|logged| pb::LoggedRejection {
                source_id: logged.source_id,
                seq: logged.seq,
                at: Some(timestamp(logged.at_ms)),
                rejection: Some(rejection(logged.rejection)),
            })
            .collect(),
        total,
    }
}

pub fn stats(stats: Stats, durability: DurabilityStatus) -> pb::Stats {
    pb::Stats {
        nodes: stats.nodes,
        groups: stats.groups,
        sources: stats.sources,
        skus: stats.skus,
        positions: stats.positions,
        degraded_nodes: stats.degraded_nodes,
        durability: durability.mode.to_owned(),
        redis_up: durability.redis_up,
        redis_persistence: durability.redis_persistence,
        snapshot_generation: durability.snapshot_generation,
        recovery_seconds: durability.recovery.took.as_secs_f64(),
        recovered_positions: durability.recovery.positions,
        replayed_journal_entries: durability.recovery.journal_entries,
        source_stats: stats
            .source_stats
            .into_iter()
            .map(|s| pb::SourceStats {
                source_id: s.source_id,
                last_seq: s.last_seq,
                durable_seq: s.durable_seq,
                age_seconds: s.age_ms as f64 / 1000.0,
                stale: s.stale,
            })
            .collect(),
        rejections_logged: stats.rejections_logged,
    }
}

fn date(text: &str, field: String) -> Result<Option<Day>, FieldViolation> {
    match text {
        "" => Ok(None),
        text => Day::parse(text).map(Some).ok_or_else(|| {
            FieldViolation::new(field, format!("{text:?} is not a YYYY-MM-DD date"))
        }),
    }
}

pub fn reserve_request(request: pb::ReserveRequest) -> Result<ReserveRequest> {
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
    })
}

pub fn reservation(held: Held) -> pb::Reservation {
    let (reservation, network) = (held.reservation, held.network);
    let node_id = |node: NodeIdx| {
        network
            .nodes()
            .get(node as usize)
            .map(|n| n.id.clone())
            .unwrap_or_default()
    };
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
        .map(|line| {
            let (node, group) = match line.scope {
                Scope::Node(node) => (node_id(node), String::new()),
                Scope::Pool(Pool::Group(group)) => (
                    String::new(),
                    network
                        .group(group)
                        .map(|g| g.id.clone())
                        .unwrap_or_default(),
                ),
                Scope::Pool(Pool::Network) => (String::new(), String::new()),
            };
            pb::ReservationLine {
                sku: line.sku,
                node_id: node,
                group_id: group,
                quantity: line.quantity,
                need_date: line.need.to_string(),
                allocations: line
                    .allocations
                    .iter()
                    .map(|a| pb::Allocation {
                        node_id: node_id(a.node),
                        quantity: a.quantity,
                        shipped: a.shipped,
                    })
                    .collect(),
            }
        })
        .collect();
    pb::Reservation {
        reservation_id: reservation.id,
        state: state.into(),
        lines,
        expires_at: Some(timestamp(reservation.expires_at_ms)),
        order_id: reservation.order_id,
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

pub fn promise_request(request: pb::PromiseRequest) -> Result<PromiseRequest> {
    let reserve = if request.reserve {
        if request.reservation_id.is_empty() {
            return Err(Error::invalid(
                "reservation_id",
                "reserving a promise needs a reservation id",
            ));
        }
        Some((request.reservation_id, u64::from(request.ttl_seconds)))
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
                    cost: s.cost,
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
    }
}

/// A route request, and the reservation (id, TTL) to hold its plan under, if asked.
pub fn route_request(
    request: pb::RouteRequest,
    prefix: &str,
) -> Result<(RouteRequest, Option<(String, u64)>)> {
    let constraints = request.constraints.unwrap_or_default();
    let weights = request.weights.unwrap_or_default();
    let defaults = Weights::default();
    let mut violations = Vec::new();
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
    if request.reserve && request.reservation_id.is_empty() {
        violations.push(FieldViolation::new(
            format!("{prefix}reservation_id"),
            "reserving a route needs a reservation id",
        ));
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    let reserve = request.reserve.then(|| {
        (
            request.reservation_id.clone(),
            u64::from(request.ttl_seconds),
        )
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
        constraints: Constraints {
            ship_complete: constraints.ship_complete,
            max_packages: constraints.max_packages,
            deliver_by,
            excluded_node_ids: constraints.excluded_node_ids,
            allowed_node_kinds: kinds,
        },
        weights: Weights {
            package_penalty: weights.package_penalty.unwrap_or(defaults.package_penalty),
            priority: weights.priority.unwrap_or(defaults.priority),
            capacity: weights.capacity.unwrap_or(defaults.capacity),
        },
        alternatives: request.alternatives.min(20) as usize,
        now_ms: request.now.as_ref().map(timestamp_ms),
        search_budget: 0,
    };
    Ok((route, reserve))
}

fn route_plan(plan: Plan, network: &crate::network::Network) -> pb::RoutePlan {
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
                cost: s.cost,
            })
            .collect(),
        total_cost: plan.total_cost,
        cost_breakdown: Some(pb::CostBreakdown {
            shipping: plan.breakdown.shipping,
            packages: plan.breakdown.packages,
            priority: plan.breakdown.priority,
            capacity: plan.breakdown.capacity,
        }),
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
