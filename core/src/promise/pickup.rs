//! Store pickup: for a cart and a chosen store, or the stores nearest the destination, when
//! the cart can be collected there — from the store's own stock, or transferred from a node
//! that feeds the store — or why it cannot.
//!
//! The store's own stock is promised from its ATP exactly as delivery promises it (holds and
//! safety stock respected): the cart is picked from the first opening at or after the day the
//! whole cart is there. A transfer ships the whole cart from one feeding node on that node's
//! processing rhythm ([`crate::delivery::processed`]), arrives the configured calendar days
//! later, and is picked from the store's first opening on or after its arrival day. A cart
//! partly at the store is transferred whole or not picked up: a customer collects one cart.

use chrono::{Datelike, TimeZone};
use chrono_tz::Tz;

use super::cart::whole_ready;
use crate::clock::UnixMillis;
use crate::deadline::Deadline;
use crate::delivery::{local_now, processed};
use crate::domain::{distance_km, echo, Day, Node, Pickup, Qty};
use crate::error::{Error, Result};
use crate::network::{Network, NodeIdx};
use crate::route::Supply;

/// Most stores one promise answers for.
pub const MAX_PICKUP_STORES: u32 = 10;

/// Days searched for an opening a cart can be ready in.
const SEARCH_DAYS: i32 = 366;

/// Which stores to answer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickupAt {
    /// The store the customer chose, by id.
    Store(String),
    /// The stores offering pickup nearest the destination, at most this many.
    Nearest(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickupRequest {
    pub at: PickupAt,
    /// With the promise's reserve: hold the cart for pickup at the chosen store rather than a
    /// delivery option.
    pub hold: bool,
}

/// One store's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PickupOption {
    pub store: NodeIdx,
    /// When and from where; `None` when the cart cannot be picked up there, `reason` says why.
    pub ready: Option<Ready>,
    pub reason: String,
}

/// A cart ready for pickup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The instant staff have picked the cart, within the store's opening hours.
    pub at_ms: UnixMillis,
    /// The store itself, or the node transferring the cart to it.
    pub from: NodeIdx,
    /// The day, local to `from`, the cart leaves it: what a hold there is due on.
    pub need: Day,
}

/// The stores `request` names, checked: a chosen one must offer pickup, and only a chosen one
/// can be held for.
pub(super) fn stores(
    network: &Network,
    request: &PickupRequest,
    at: (f64, f64),
) -> Result<Vec<NodeIdx>> {
    match &request.at {
        PickupAt::Store(id) => {
            let Some(store) = network.node_idx(id) else {
                let problem = format!("unknown node {}", echo(id));
                return Err(Error::invalid("pickup.store_id", problem));
            };
            if network.node(store).pickup.is_none() {
                let problem = format!("node {} is not a store offering pickup", echo(id));
                return Err(Error::invalid("pickup.store_id", problem));
            }
            Ok(vec![store])
        }
        PickupAt::Nearest(_) if request.hold => Err(Error::invalid(
            "pickup.hold",
            "holding a pickup needs one chosen store_id",
        )),
        &PickupAt::Nearest(count) => {
            if !(1..=MAX_PICKUP_STORES).contains(&count) {
                let problem = format!("1 to {MAX_PICKUP_STORES} stores");
                return Err(Error::invalid("pickup.nearest", problem));
            }
            let mut near: Vec<(f64, NodeIdx)> = (0..network.nodes().len() as NodeIdx)
                .filter(|&n| network.node(n).pickup.is_some())
                .map(|n| {
                    let node = network.node(n);
                    (distance_km((node.lat, node.lon), at), n)
                })
                .collect();
            near.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            Ok(near
                .into_iter()
                .take(count as usize)
                .map(|(_, n)| n)
                .collect())
        }
    }
}

/// What the cart needs to be picked up anywhere: its lines, and per line, per node, what the
/// node has of it and from when.
pub(super) struct Picking<'a> {
    pub(super) network: &'a Network,
    pub(super) lines: &'a [(String, Qty)],
    pub(super) supply: &'a [Vec<Supply>],
    pub(super) now_ms: UnixMillis,
}

impl Picking<'_> {
    /// Each store's answer; past `deadline` it stops.
    pub(super) fn options(
        &self,
        stores: &[NodeIdx],
        deadline: &Deadline<'_>,
    ) -> Result<Vec<PickupOption>> {
        stores
            .iter()
            .map(|&store| {
                let pickup = self.network.node(store).pickup.as_ref();
                let transfers = pickup.map_or(0, |p| p.transfers.len());
                deadline.spend(((1 + transfers) * self.lines.len()) as u64)?;
                Ok(self.option(store))
            })
            .collect()
    }

    /// The earliest of the store's own stock and each transfer, the store's own on a tie.
    fn option(&self, store: NodeIdx) -> PickupOption {
        let network = self.network;
        let node = network.node(store);
        let Some(pickup) = &node.pickup else {
            return not_possible(store, format!("{} does not offer pickup", node.id));
        };
        let own = whole_ready(self.supply, self.lines, store as usize).and_then(|day| {
            let at_ms = ready_at(node, pickup, day, self.now_ms)?;
            let need = Day::in_zone(node.time_zone, at_ms);
            Some(Ready {
                at_ms,
                from: store,
                need,
            })
        });
        let transferred = pickup.transfers.iter().filter_map(|(from_id, days)| {
            let from = network.node_idx(from_id)?;
            let day = whole_ready(self.supply, self.lines, from as usize)?;
            let ship = processed(network.node(from), day, self.now_ms)?;
            let arrival = ship.plus(i32::try_from(*days).ok()?);
            let at_ms = ready_at(node, pickup, arrival, self.now_ms)?;
            Some(Ready {
                at_ms,
                from,
                need: ship,
            })
        });
        match own.into_iter().chain(transferred).min_by_key(|r| r.at_ms) {
            Some(ready) => PickupOption {
                store,
                ready: Some(ready),
                reason: String::new(),
            },
            None if pickup.transfers.is_empty() => {
                not_possible(store, format!("the whole cart is not at {}", node.id))
            }
            None => not_possible(
                store,
                format!(
                    "neither {} nor a node transferring to it has the whole cart",
                    node.id
                ),
            ),
        }
    }
}

fn not_possible(store: NodeIdx, reason: String) -> PickupOption {
    PickupOption {
        store,
        ready: None,
        reason,
    }
}

/// When a cart whose goods are at the store from its local `day` is ready: on the first
/// pickup day at or after it (today only before the cutoff), at opening or now if later, plus
/// the pick time, if that is not after closing. Instants, not local times, are added, so a
/// pick across a DST change takes its real length.
pub fn ready_at(node: &Node, pickup: &Pickup, day: Day, now_ms: UnixMillis) -> Option<UnixMillis> {
    let (today, minutes) = local_now(node, now_ms);
    let past_cutoff = pickup
        .cutoff_minutes
        .is_some_and(|cutoff| minutes >= cutoff);
    let pick_ms = i64::from(pickup.pick_minutes) * 60_000;
    let first = day.max(today);
    (0..SEARCH_DAYS)
        .map(|n| first.plus(n))
        .filter(|&d| !(d == today && past_cutoff))
        .filter(|d| node.fulfilment.calendar.holidays.binary_search(d).is_err())
        .find_map(|d| {
            let weekday = d.to_date()?.weekday().num_days_from_monday() as usize;
            let (open, close) = pickup.hours[weekday]?;
            let open_ms = local_instant(node.time_zone, d, open)?;
            let close_ms = local_instant(node.time_zone, d, close)?;
            let ready = open_ms.max(now_ms) + pick_ms;
            (ready <= close_ms).then_some(ready)
        })
}

/// The instant of local `minutes` after midnight on `day` in `zone`: the earlier of a repeated
/// hour, and the end of a skipped one.
pub(super) fn local_instant(zone: Tz, day: Day, minutes: u16) -> Option<UnixMillis> {
    let local = day
        .to_date()?
        .and_hms_opt(u32::from(minutes / 60), u32::from(minutes % 60), 0)?;
    (0..=180).find_map(|shift| {
        let at = local + chrono::Duration::minutes(shift);
        zone.from_local_datetime(&at)
            .earliest()
            .map(|t| t.timestamp_millis())
    })
}

/// An instant as the store's local time, with its zone's abbreviation: `2026-03-02 10:30 EST`.
pub fn local_time(node: &Node, at_ms: UnixMillis) -> String {
    match node.time_zone.timestamp_millis_opt(at_ms).single() {
        Some(local) => local.format("%Y-%m-%d %H:%M %Z").to_string(),
        None => String::new(),
    }
}
