//! The vocabulary of the service: nodes, groups, sources, supply updates and calendar days.
//! Plain data with no I/O; the gRPC layer converts to and from these types.

use chrono_tz::Tz;

use crate::calendar::Calendar;
pub use crate::calendar::Day;
use crate::rate_card::RateCard;

/// Whole units of a SKU.
pub type Qty = i64;

/// What is wrong with an identifier (SKU, node, reservation, order, source id), if anything:
/// it must be 1 to `max_len` bytes, without control characters or surrounding white space,
/// so that ids print, compare and log as they read.
pub fn id_problem(id: &str, max_len: usize) -> Option<String> {
    if id.is_empty() {
        Some("must not be empty".into())
    } else if id.len() > max_len {
        Some(format!("longer than {max_len} bytes"))
    } else if has_control(id) {
        Some("must not contain control characters".into())
    } else if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        Some("must not start or end with white space".into())
    } else {
        None
    }
}

/// Whether `id` has a control character. Ids are checked on every feed update, so the
/// usual all-ASCII id takes a byte scan; others are checked character by character.
fn has_control(id: &str) -> bool {
    if id.is_ascii() {
        id.bytes().any(|b| b.is_ascii_control())
    } else {
        id.chars().any(char::is_control)
    }
}

/// At most the first 64 characters of a value a caller sent, for echoing it in an error: an
/// answer must stay small whatever the caller sent.
pub fn echo(value: &str) -> String {
    const MAX_ECHO_CHARS: usize = 64;
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        Some((at, _)) => format!("{:?}...", &value[..at]),
        None => format!("{value:?}"),
    }
}

/// Whether `country` is an ISO 3166-1 alpha-2 code (two capital letters).
pub fn is_country_code(country: &str) -> bool {
    country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())
}

/// An IANA time zone by name, e.g. `America/Chicago`.
pub fn parse_time_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeKind {
    Dc,
    Store,
    #[serde(alias = "3PL")]
    ThirdParty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceKind {
    Wms,
    Erp,
    #[serde(alias = "3PL")]
    ThirdParty,
    Pos,
}

/// The type of a supply quantity. On-hand is available now; the others are dated receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SupplyType {
    OnHand,
    InTransit,
    OnOrder,
}

impl SupplyType {
    pub const ALL: [SupplyType; 3] = [Self::OnHand, Self::InTransit, Self::OnOrder];

    /// Dated receipts carry a reference (PO/ASN line) and an ETA.
    pub fn is_dated(self) -> bool {
        !matches!(self, Self::OnHand)
    }

    /// A dense index, for per-type tables and bit sets.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A fulfilment node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub lat: f64,
    pub lon: f64,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Days at the node (today, ETAs, need dates) are in this zone.
    pub time_zone: Tz,
    /// Lower is preferred.
    pub priority: i32,
    pub group_ids: Vec<String>,
    /// Units held back at every position of the node unless a position overrides it.
    pub safety_stock: Qty,
    /// How and when the node ships.
    pub fulfilment: Fulfilment,
    /// How customers collect orders there; only a store offers it.
    pub pickup: Option<Pickup>,
}

/// Store pickup: when a customer can collect a cart, in the store's local time. The node's
/// holidays close pickup too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pickup {
    /// Per weekday (Monday = 0): local opening and closing minutes after midnight, opening
    /// before closing; `None` is closed.
    pub hours: [Option<(u16, u16)>; 7],
    /// Minutes staff need to pick a cart; a cart is ready that long after the store takes it
    /// (at opening, or at the order's time while open), and only if ready before closing.
    pub pick_minutes: u32,
    /// Carts ordered at or after this local time (minutes after midnight) are picked from the
    /// next opening; `None` picks until closing.
    pub cutoff_minutes: Option<u16>,
    /// Nodes that transfer stock to the store: (node id, calendar days from the node's ship
    /// date to the transfer's arrival at the store, at least 1). A transferred cart is picked
    /// from the first opening on or after its arrival day.
    pub transfers: Vec<(String, u32)>,
}

/// A node's shipping rhythm, in its local time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fulfilment {
    pub calendar: Calendar,
    /// Orders after this local time (minutes after midnight) count as next day's; `None` takes
    /// orders until midnight.
    pub cutoff_minutes: Option<u16>,
    /// Open days from an order's day to its ship date (0 ships the same day).
    pub processing_days: u32,
    /// Orders the node can ship a day; 0 is unlimited.
    pub daily_capacity: u32,
}

/// A carrier service level: how long it takes by distance, when it moves, what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceLevel {
    /// e.g. `GROUND`, `TWO_DAY`, `OVERNIGHT`.
    pub name: String,
    /// `(up to km, transit days)`, ascending by distance; beyond the last band it does not serve.
    pub transit: Vec<(f64, u32)>,
    /// Days the carrier picks up and delivers.
    pub calendar: Calendar,
    /// Cost of one package: base plus per kilometre.
    pub base_cost: f64,
    pub cost_per_km: f64,
    /// Prices by zone and billable weight and transit days by zone, where the carrier has a
    /// card; `None` keeps the distance bands and the base plus per kilometre above.
    pub rate_card: Option<RateCard>,
}

impl ServiceLevel {
    /// Transit business days for a distance; `None` beyond the last band.
    pub fn transit_days(&self, km: f64) -> Option<u32> {
        self.transit
            .iter()
            .find(|(max_km, _)| km <= *max_km)
            .map(|(_, days)| *days)
    }

    pub fn cost(&self, km: f64) -> f64 {
        self.base_cost + self.cost_per_km * km
    }
}

/// Great-circle distance in kilometres.
pub fn distance_km(from: (f64, f64), to: (f64, f64)) -> f64 {
    const EARTH_KM: f64 = 6_371.0;
    let (lat1, lat2) = (from.0.to_radians(), to.0.to_radians());
    let (dlat, dlon) = ((to.0 - from.0).to_radians(), (to.1 - from.1).to_radians());
    let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_KM * a.sqrt().asin()
}

/// A named set of nodes; membership is declared on the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    pub id: String,
    pub description: String,
}

/// A system of record feeding supply, and the slice of supply it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: String,
    pub kind: SourceKind,
    /// Owned nodes; empty means every node, including nodes added later.
    pub owned_node_ids: Vec<String>,
    pub owned_supply_types: Vec<SupplyType>,
    /// Silence longer than this makes the source stale; `None` never goes stale.
    pub stale_after_ms: Option<i64>,
}

/// How an update changes a quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOp {
    /// Absolute, as of the source's time in Unix milliseconds (`None` if the feed sent none,
    /// which the ingest rejects).
    Set { as_of_ms: Option<i64> },
    /// A signed delta.
    Adjust,
    /// A shipment of an order's allocation: takes the quantity off the allocation and off
    /// on-hand together.
    Ship { order_id: String },
}

/// One supply update as a feed sent it. Enums the feed left unspecified are `None`: the ingest
/// rejects such updates individually instead of failing the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyUpdate {
    pub sku: String,
    pub node_id: String,
    pub supply_type: Option<SupplyType>,
    pub op: Option<UpdateOp>,
    pub quantity: Qty,
    /// PO/ASN line of a dated receipt; empty for on-hand.
    pub reference: String,
    /// `YYYY-MM-DD` arrival date of a dated receipt, as sent; empty if not sent.
    pub eta: String,
}

/// A batch of updates from one source under one sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyBatch {
    pub source_id: String,
    pub seq: u64,
    pub updates: Vec<SupplyUpdate>,
}

/// Why an individual update was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    NotOwned,
    UnknownNode,
    NegativeQuantity,
    NegativeResult,
    MissingReference,
    MissingEta,
    InvalidEta,
    OversizedField,
    MissingSku,
    InvalidSupplyType,
    InvalidOp,
    MissingAsOf,
    UnexpectedReference,
    /// A shipment for an order that is not committed here.
    UnknownOrder,
    /// A shipment larger than the order's open allocation at that node.
    NotAllocated,
    /// A SKU or reference with control characters or surrounding white space.
    InvalidId,
    /// A SET whose `as_of` is further ahead of the server clock than the allowed skew.
    AsOfInFuture,
    /// An item code (or GTIN) the source's item table does not map.
    UnknownSkuCode,
    /// A location code the source's location table does not map.
    UnknownLocationCode,
    /// A quantity the source's unit factor does not turn into whole eaches.
    UnitNotConvertible,
}

impl RejectReason {
    pub const ALL: [RejectReason; 20] = [
        Self::NotOwned,
        Self::UnknownNode,
        Self::NegativeQuantity,
        Self::NegativeResult,
        Self::MissingReference,
        Self::MissingEta,
        Self::InvalidEta,
        Self::OversizedField,
        Self::MissingSku,
        Self::InvalidSupplyType,
        Self::InvalidOp,
        Self::MissingAsOf,
        Self::UnexpectedReference,
        Self::UnknownOrder,
        Self::NotAllocated,
        Self::InvalidId,
        Self::AsOfInFuture,
        Self::UnknownSkuCode,
        Self::UnknownLocationCode,
        Self::UnitNotConvertible,
    ];

    /// A stable, machine-readable label (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOwned => "not_owned",
            Self::UnknownNode => "unknown_node",
            Self::NegativeQuantity => "negative_quantity",
            Self::NegativeResult => "negative_result",
            Self::MissingReference => "missing_reference",
            Self::MissingEta => "missing_eta",
            Self::InvalidEta => "invalid_eta",
            Self::OversizedField => "oversized_field",
            Self::MissingSku => "missing_sku",
            Self::InvalidSupplyType => "invalid_supply_type",
            Self::InvalidOp => "invalid_op",
            Self::MissingAsOf => "missing_as_of",
            Self::UnexpectedReference => "unexpected_reference",
            Self::UnknownOrder => "unknown_order",
            Self::NotAllocated => "not_allocated",
            Self::InvalidId => "invalid_id",
            Self::AsOfInFuture => "as_of_in_future",
            Self::UnknownSkuCode => "unknown_sku_code",
            Self::UnknownLocationCode => "unknown_location_code",
            Self::UnitNotConvertible => "unit_not_convertible",
        }
    }
}

/// An update that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Position of the update in its batch.
    pub index: u32,
    pub sku: String,
    pub node_id: String,
    pub reason: RejectReason,
    pub detail: String,
}

/// What happened to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    pub source_id: String,
    pub seq: u64,
    /// The sequence had already been applied; nothing was applied again.
    pub duplicate: bool,
    pub applied: u32,
    /// SETs older than the last SET applied to their position.
    pub stale: u32,
    pub rejections: Vec<Rejection>,
    /// Highest sequence of the source that survives a crash.
    pub durable_seq: u64,
    /// How far the newest applied SET's `as_of` is behind the server clock, if it had SETs.
    pub lag_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_round_trips_through_iso_text() {
        let day = Day::parse("2026-03-08").expect("valid date");
        assert_eq!(day.to_string(), "2026-03-08");
        assert_eq!(Day::parse("1970-01-02"), Some(Day(1)));
        assert_eq!(Day::parse("2026-02-30"), None);
        assert_eq!(Day::parse("tomorrow"), None);
    }

    #[test]
    fn local_day_follows_the_zone() {
        // 2026-07-01T03:00:00Z is still June 30th in Chicago (UTC-5 in summer).
        let instant_ms = 1_782_874_800_000;
        assert_eq!(
            Day::in_zone(chrono_tz::UTC, instant_ms).to_string(),
            "2026-07-01"
        );
        assert_eq!(
            Day::in_zone(chrono_tz::America::Chicago, instant_ms).to_string(),
            "2026-06-30"
        );
    }
}
