//! Ship and delivery dates of one node for one service level, and where a cart goes: the
//! rule promising and routing share.
//!
//! A node ships from the first open processing slot at or after the day the goods are there:
//! an order at or after the local cutoff counts from the next day, processing takes the node's
//! processing days (open days only), and the carrier must pick up that day. Delivery is the
//! ship date plus the transit business days, on the carrier's calendar. Days are local to the
//! node, so cutoffs and DST follow its time zone.

use chrono::{TimeZone, Timelike};

use crate::clock::UnixMillis;
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::cost::CostBreakdown;
use crate::domain::{echo, id_problem, Day, Node, Qty, ServiceLevel};
use crate::error::{Error, FieldViolation, Result};
use crate::network::{Network, NodeIdx};

/// Where the cart goes: coordinates, or a postal code the network can locate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Destination {
    pub coordinates: Option<(f64, f64)>,
    pub postal_code: String,
    pub country: String,
}

/// What one node ships: its lines, when it ships and arrives, and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Shipment {
    pub node: NodeIdx,
    pub ship_date: Day,
    pub delivery_date: Day,
    pub lines: Vec<(String, Qty)>,
    /// Its part of its plan's cost ([`crate::cost`]); the shipments' costs add up to the plan's.
    pub cost: CostBreakdown,
}

impl Destination {
    /// For a request's fingerprint: coordinates or postal code, whichever it names.
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self.coordinates {
            Some((lat, lon)) => {
                w.u8(1);
                w.f64(lat);
                w.f64(lon);
            }
            None => w.u8(0),
        }
        w.str(&self.postal_code);
        w.str(&self.country);
    }
}

impl Shipment {
    /// For the answer a promise or route keeps with the hold of its plan.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.var(u64::from(self.node));
        w.ivar(i64::from(self.ship_date.0));
        w.ivar(i64::from(self.delivery_date.0));
        encode_lines(w, &self.lines);
        self.cost.encode(w);
    }

    /// Reads a shipment [`Shipment::encode`] wrote, from a node below `nodes`.
    pub(crate) fn decode(r: &mut Reader<'_>, nodes: usize) -> Decoded<Shipment> {
        let node = read_node(r, nodes)?;
        let day = |r: &mut Reader<'_>| {
            i32::try_from(r.ivar()?)
                .map(Day)
                .map_err(|_| CodecError("day"))
        };
        let ship_date = day(r)?;
        let delivery_date = day(r)?;
        let lines = (0..r.len()?)
            .map(|_| Ok((r.str()?.to_owned(), r.ivar()?)))
            .collect::<Decoded<_>>()?;
        Ok(Shipment {
            node,
            ship_date,
            delivery_date,
            lines,
            cost: CostBreakdown::decode(r)?,
        })
    }
}

/// An order's or a shipment's (sku, quantity) lines, for a kept answer or a fingerprint.
pub(crate) fn encode_lines(w: &mut Writer, lines: &[(String, Qty)]) {
    w.len(lines.len());
    for (sku, quantity) in lines {
        w.str(sku);
        w.ivar(*quantity);
    }
}

/// Nodes left out of an answer and why, as a hold keeps them (see [`Shipment::encode`]).
pub(crate) fn encode_reasons(w: &mut Writer, reasons: &[(NodeIdx, String)]) {
    w.len(reasons.len());
    for (node, reason) in reasons {
        w.var(u64::from(*node));
        w.str(reason);
    }
}

/// Reads what [`encode_reasons`] wrote, of nodes below `nodes`.
pub(crate) fn decode_reasons(r: &mut Reader<'_>, nodes: usize) -> Decoded<Vec<(NodeIdx, String)>> {
    (0..r.len()?)
        .map(|_| Ok((read_node(r, nodes)?, r.str()?.to_owned())))
        .collect()
}

/// Reads a node index below `nodes`.
pub(crate) fn read_node(r: &mut Reader<'_>, nodes: usize) -> Decoded<NodeIdx> {
    NodeIdx::try_from(r.var()?)
        .ok()
        .filter(|&node| (node as usize) < nodes)
        .ok_or(CodecError("node"))
}

/// Checks line `i` of a promise or route: its SKU an id of at most `max_len` bytes, its
/// quantity positive.
pub(crate) fn check_order_line(
    i: usize,
    sku: &str,
    quantity: Qty,
    max_len: usize,
    violations: &mut Vec<FieldViolation>,
) {
    if let Some(problem) = id_problem(sku, max_len) {
        violations.push(FieldViolation::new(format!("lines[{i}].sku"), problem));
    }
    if !(1..=crate::index::MAX_QUANTITY).contains(&quantity) {
        violations.push(FieldViolation::new(
            format!("lines[{i}].quantity"),
            "must be positive",
        ));
    }
}

/// The destination's coordinates.
pub fn locate(network: &Network, destination: &Destination) -> Result<(f64, f64)> {
    if let Some((lat, lon)) = destination.coordinates {
        if !(-90.0..=90.0).contains(&lat) {
            let problem = "latitude must be within [-90, 90]";
            return Err(Error::invalid("destination.lat", problem));
        }
        if !(-180.0..=180.0).contains(&lon) {
            let problem = "longitude must be within [-180, 180]";
            return Err(Error::invalid("destination.lon", problem));
        }
        return Ok((lat, lon));
    }
    if destination.postal_code.is_empty() {
        return Err(Error::invalid(
            "destination",
            "give coordinates or a postal code",
        ));
    }
    let country = if destination.country.is_empty() {
        "US"
    } else {
        &destination.country
    };
    network
        .locate(country, &destination.postal_code)
        .ok_or_else(|| {
            let problem = format!(
                "unknown postal code {} in {}; give coordinates",
                echo(&destination.postal_code),
                echo(country)
            );
            Error::invalid("destination.postal_code", problem)
        })
}

/// Local date and minutes after midnight at a node.
pub(crate) fn local_now(node: &Node, now_ms: UnixMillis) -> (Day, u16) {
    match node.time_zone.timestamp_millis_opt(now_ms).single() {
        Some(local) => {
            let minutes = local.hour() * 60 + local.minute();
            (Day::from_date(local.date_naive()), minutes as u16)
        }
        None => (Day::in_zone(node.time_zone, now_ms), 0),
    }
}

/// The day a node has processed an order whose goods are there from `ready`: its first open
/// day at or after then (tomorrow's if past today's cutoff) plus its processing days.
pub fn processed(node: &Node, ready: Day, now_ms: UnixMillis) -> Option<Day> {
    let fulfilment = &node.fulfilment;
    let (today, minutes) = local_now(node, now_ms);
    let mut start = ready.max(today);
    if start == today
        && fulfilment
            .cutoff_minutes
            .is_some_and(|cutoff| minutes >= cutoff)
    {
        start = today.plus(1);
    }
    let first = fulfilment.calendar.next_open(start)?;
    fulfilment
        .calendar
        .add_open_days(first, fulfilment.processing_days)
}

/// When a node ships and the carrier delivers an order whose goods are there from `ready`.
pub fn ship_and_deliver(
    node: &Node,
    level: &ServiceLevel,
    ready: Day,
    transit_days: u32,
    now_ms: UnixMillis,
) -> Option<(Day, Day)> {
    let fulfilment = &node.fulfilment;
    let mut ship = processed(node, ready, now_ms)?;
    // The carrier must pick up on a day the node is open too.
    for _ in 0..366 {
        if fulfilment.calendar.is_open(ship) && level.calendar.is_open(ship) {
            let delivery = level.calendar.add_open_days(ship, transit_days)?;
            return Some((ship, delivery));
        }
        ship = ship.plus(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Fulfilment;

    /// Monday 2026-03-02 15:00 UTC.
    const MONDAY_15H_MS: UnixMillis = 1_772_463_600_000;

    fn node_with_cutoff(cutoff_minutes: u16) -> Node {
        let mut node = crate::test_support::node("DC");
        node.fulfilment = Fulfilment {
            cutoff_minutes: Some(cutoff_minutes),
            ..Fulfilment::default()
        };
        node
    }

    fn next_day_service() -> ServiceLevel {
        ServiceLevel {
            name: "NEXT_DAY".into(),
            transit: vec![(f64::MAX, 1)],
            calendar: Default::default(),
            base_cost: 1.0,
            cost_per_km: 0.0,
            rate_card: None,
        }
    }

    fn day(text: &str) -> Day {
        Day::parse(text).expect("a valid date")
    }

    #[test]
    fn an_order_at_exactly_the_cutoff_ships_the_next_open_day() {
        let node = node_with_cutoff(15 * 60);
        let level = next_day_service();
        let monday = day("2026-03-02");
        let before = ship_and_deliver(&node, &level, monday, 1, MONDAY_15H_MS - 1);
        assert_eq!(
            before,
            Some((monday, day("2026-03-03"))),
            "a millisecond early"
        );
        let at = ship_and_deliver(&node, &level, monday, 1, MONDAY_15H_MS);
        assert_eq!(
            at,
            Some((day("2026-03-03"), day("2026-03-04"))),
            "at the cutoff"
        );
    }
}
