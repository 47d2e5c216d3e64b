//! Conversions between protobuf messages and domain types. Incoming messages are validated
//! here: a bad field becomes an `InvalidArgument` naming it, never a panic.

use prost_types::Timestamp;

use super::pb;
use crate::checkpoint::DurabilityStatus;
use crate::clock::UnixMillis;
use crate::domain::{
    echo, parse_time_zone, BatchOutcome, Day, Fulfilment, Node, NodeGroup, NodeKind, Qty,
    RejectReason, Rejection, ServiceLevel, Source, SourceKind, SupplyBatch, SupplyType,
    SupplyUpdate, UpdateOp,
};
use crate::engine::{SafetyStockEntry, Stats};
use crate::error::{Error, FieldViolation, Result};
use crate::query::{Availability, AvailabilityQuery, ItemAvailability, NodeAvailability};
use crate::rejections::LoggedRejection;
use crate::spec::{CalendarSpec, FulfilmentSpec, ServiceLevelSpec};

mod audit;
mod explain;
mod orders;
mod pickup;
mod rate_card;
mod sync;
mod watch;

pub use audit::{
    audit_page, audit_query, dead_letter_ids, dead_letter_query, dead_letters, history_limit,
    position_history,
};
pub use explain::explain_response;
pub use orders::{
    promise_request, promise_response, reservation, reserve_request, route_request, route_response,
};
pub use sync::{opened, part_outcome, sync_ack};
pub use watch::{availability_change, band_change, order_change, stock_bands};

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

pub(super) fn node_kind(raw: i32) -> Option<NodeKind> {
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
        let fulfilment = fulfilment(&node).map_err(|v| violations.extend(v)).ok();
        let pickup = pickup::pickup(node.pickup)
            .map_err(|v| violations.extend(v))
            .ok();
        let (Some(kind), Some(time_zone), Some(fulfilment), Some(pickup)) =
            (kind, time_zone, fulfilment, pickup)
        else {
            return Err(violations);
        };
        Ok(Node {
            fulfilment,
            pickup,
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

/// A node's calendar, cutoff, processing days and capacity, checked.
fn fulfilment(node: &pb::Node) -> Result<Fulfilment, Violations> {
    let spec = FulfilmentSpec {
        calendar: CalendarSpec {
            open_days: node.open_days.clone(),
            holidays: node.holidays.clone(),
        },
        cutoff: node.cutoff.clone(),
        processing_days: node.processing_days,
        daily_capacity: node.daily_capacity,
    };
    spec.resolve()
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
            rate_card: level.rate_card.map(Into::into),
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
        let kind = source_kind(source.kind);
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

fn source_kind(raw: i32) -> Option<SourceKind> {
    match pb::SourceKind::try_from(raw) {
        Ok(pb::SourceKind::Wms) => Some(SourceKind::Wms),
        Ok(pb::SourceKind::Erp) => Some(SourceKind::Erp),
        Ok(pb::SourceKind::ThirdParty) => Some(SourceKind::ThirdParty),
        Ok(pb::SourceKind::Pos) => Some(SourceKind::Pos),
        _ => None,
    }
}

pub(crate) fn supply_type_pb(supply_type: SupplyType) -> pb::SupplyType {
    match supply_type {
        SupplyType::OnHand => pb::SupplyType::OnHand,
        SupplyType::InTransit => pb::SupplyType::InTransit,
        SupplyType::OnOrder => pb::SupplyType::OnOrder,
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
        Ok(AvailabilityQuery {
            date: as_of_date(&request.as_of_date)?,
            skus: request.skus,
            node_ids: request.node_ids,
            group_ids: request.group_ids,
            quantity: (request.quantity != 0).then_some(request.quantity),
            totals_only: request.totals_only,
        })
    }
}

/// The day an `as_of_date` field asks for; empty asks for today.
fn as_of_date(text: &str) -> Result<Option<Day>> {
    match text {
        "" => Ok(None),
        text => Day::parse(text).map(Some).ok_or_else(|| {
            Error::invalid(
                "as_of_date",
                format!("{} is not a YYYY-MM-DD date", echo(text)),
            )
        }),
    }
}

pub(super) fn day_text(day: Option<Day>) -> String {
    day.map(|d| d.to_string()).unwrap_or_default()
}

/// How an availability answer gives each SKU's node figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeLayout {
    /// One `nodes` entry per node, naming it.
    Entries,
    /// One packed `columns` list per figure, the nodes named once for the whole answer, or
    /// not at all while they are the list the caller holds (`known`, a [`node_list`]; 0:
    /// none).
    Columns { known: u64 },
}

impl NodeLayout {
    pub fn asked(request: &pb::AvailabilityRequest) -> Result<NodeLayout> {
        match (request.columns, request.known_node_list) {
            (true, known) => Ok(NodeLayout::Columns { known }),
            (false, 0) => Ok(NodeLayout::Entries),
            (false, _) => Err(Error::invalid(
                "known_node_list",
                "names the nodes of columns: it needs `columns`",
            )),
        }
    }
}

/// The fingerprint of a list of node ids, in order: FNV-1a over the ids, each ended by a
/// byte no UTF-8 text holds. The same on every member of a cluster and across restarts, so a
/// caller may keep one answer's node ids for any later answer of any member.
pub fn node_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let step = |hash: u64, byte: u8| (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    ids.into_iter()
        .fold(OFFSET, |hash, id| step(id.bytes().fold(hash, step), 0xff))
}

pub fn availability_response(answer: Availability, layout: NodeLayout) -> pb::AvailabilityResponse {
    let network = &answer.network;
    // Every item answers the same nodes in the same order: the first names them.
    let (node_ids, node_list) = match (layout, answer.items.first()) {
        (NodeLayout::Columns { known }, Some(first)) => {
            let ids = || first.nodes.iter().map(|n| network.node(n.node).id.as_str());
            let list = node_list(ids());
            match list == known {
                true => (Vec::new(), list),
                false => (ids().map(str::to_owned).collect(), list),
            }
        }
        _ => (Vec::new(), 0),
    };
    let columns = matches!(layout, NodeLayout::Columns { .. });
    let item = |item: ItemAvailability| pb::ItemAvailability {
        nodes: match layout {
            NodeLayout::Entries => item
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
            NodeLayout::Columns { .. } => Vec::new(),
        },
        columns: columns.then(|| node_columns(&item.nodes)),
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
        node_ids,
        node_list,
    }
}

/// A SKU's node figures as one list per figure; earliest dates only when one was found.
fn node_columns(nodes: &[NodeAvailability]) -> pb::NodeColumns {
    let column = |figure: fn(&NodeAvailability) -> Qty| nodes.iter().map(figure).collect();
    let dated = nodes.iter().any(|n| n.earliest.is_some());
    pb::NodeColumns {
        atp: column(|n| n.atp),
        on_hand: column(|n| n.on_hand),
        reserved: column(|n| n.reserved),
        allocated: column(|n| n.allocated),
        safety_stock: column(|n| n.safety_stock),
        inbound: column(|n| n.inbound),
        earliest_date: match dated {
            true => nodes.iter().map(|n| day_text(n.earliest)).collect(),
            false => Vec::new(),
        },
        degraded: nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.degraded)
            .map(|(i, _)| i as u32)
            .collect(),
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
        RejectReason::InvalidId => pb::RejectReason::InvalidId,
        RejectReason::AsOfInFuture => pb::RejectReason::AsOfInFuture,
        RejectReason::UnknownSkuCode => pb::RejectReason::UnknownSkuCode,
        RejectReason::UnknownLocationCode => pb::RejectReason::UnknownLocationCode,
        RejectReason::UnitNotConvertible => pb::RejectReason::UnitNotConvertible,
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
        held_reservations: stats.held_reservations,
        committed_reservations: stats.committed_reservations,
        ended_reservations: stats.ended_reservations,
    }
}
