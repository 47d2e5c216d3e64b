//! Watch events to protobuf.

use std::sync::Arc;

use super::{reservation, timestamp};
use crate::band::{Band, Bands};
use crate::checkpoint::tail::EntryId;
use crate::error::{Error, Result};
use crate::grpc::pb;
use crate::network::Network;
use crate::reserve::Held;
use crate::watch::bands::{BandChange, BandToken};
use crate::watch::{AvailabilityChange, Figures, OrderChange, OrderEventKind, Why};

fn kind(why: &Why) -> pb::ChangeKind {
    use pb::ChangeKind::*;
    match why.cause.action.as_str() {
        "apply_batch" if why.shipped => Ship,
        "apply_batch" | "commit_sync" => Feed,
        "reserve" | "update_reservation" | "extend" | "release" | "promise"
        | "route_and_reserve" => Reservation,
        "expire" => Expiry,
        "commit" => Commit,
        "repair" => Repair,
        action if action.starts_with("upsert_") || action == "set_safety_stock" => Network,
        _ => Unspecified,
    }
}

fn cause(why: &Why) -> pb::ChangeCause {
    let (source_id, seq) = why.source_seq.clone().unwrap_or_default();
    pb::ChangeCause {
        kind: kind(why).into(),
        at: Some(timestamp(why.cause.at_ms)),
        action: why.cause.action.clone(),
        actor: why.cause.actor.clone(),
        request_id: why.cause.request_id.clone(),
        source_id,
        seq,
        reservation_ids: why.reservation_ids.clone(),
        order_ids: why.order_ids.clone(),
    }
}

/// The id of the event of the change at `token` about `what` (`position:<sku>@<node>` or
/// `reservation:<id>`: a record changes each at most once): unique, the same on every
/// delivery of it, whatever a consumer's filter.
fn event_id(token: EntryId, what: &str, id: &str) -> String {
    format!("{token}:{what}:{id}")
}

/// A position's figures after the change at `token`, with the id of its event.
fn position(token: EntryId, f: &Figures) -> pb::WatchedPosition {
    pb::WatchedPosition {
        event_id: event_id(token, "position", &format!("{}@{}", f.sku, f.node_id)),
        sku: f.sku.clone(),
        node_id: f.node_id.clone(),
        atp: f.atp,
        on_hand: f.totals.on_hand,
        reserved: f.totals.reserved,
        allocated: f.totals.allocated,
        safety_stock: f.safety_stock,
        inbound: f.totals.inbound,
    }
}

pub fn availability_change(token: EntryId, change: AvailabilityChange) -> pb::AvailabilityChange {
    pb::AvailabilityChange {
        token: token.to_string(),
        cause: Some(cause(change.why())),
        positions: change.positions().map(|f| position(token, f)).collect(),
        network_changed: change.network_changed(),
        crossings: Vec::new(),
    }
}

fn band(band: Option<Band>) -> pb::StockBand {
    match band {
        None => pb::StockBand::Unspecified,
        Some(Band::OutOfStock) => pb::StockBand::OutOfStock,
        Some(Band::Low) => pb::StockBand::Low,
        Some(Band::InStock) => pb::StockBand::InStock,
    }
}

/// A band watch's change: its crossings, under a token naming the watch's anchor.
pub fn band_change(token: BandToken, change: BandChange) -> pb::AvailabilityChange {
    let crossings = change
        .crossings
        .into_iter()
        .map(|c| pb::BandCrossing {
            from: band(c.from).into(),
            to: band(Some(c.to)).into(),
            back_in_stock: c.back_in_stock(),
            position: Some(position(token.last, &c.figures)),
        })
        .collect();
    pb::AvailabilityChange {
        token: token.to_string(),
        cause: Some(cause(&change.why)),
        positions: Vec::new(),
        network_changed: false,
        crossings,
    }
}

/// The bands a watch asks for, checked.
pub fn stock_bands(bands: pb::StockBands) -> Result<Bands> {
    Bands::new(bands.low_at_most, bands.margin, "bands").map_err(Error::InvalidArgument)
}

/// `network` names the reservations' nodes and groups.
pub fn order_change(
    token: EntryId,
    change: OrderChange,
    network: &Arc<Network>,
) -> pb::OrderChange {
    let events = change
        .reservations()
        .iter()
        .map(|r| {
            let kind = match OrderEventKind::of(change.why(), r) {
                OrderEventKind::Held => pb::OrderEventKind::Held,
                OrderEventKind::Updated => pb::OrderEventKind::Updated,
                OrderEventKind::Released => pb::OrderEventKind::Released,
                OrderEventKind::Expired => pb::OrderEventKind::Expired,
                OrderEventKind::Committed => pb::OrderEventKind::Committed,
                OrderEventKind::Shipped => pb::OrderEventKind::Shipped,
            };
            let version = r.version;
            let event_id = event_id(token, "reservation", &r.id);
            let held = Held {
                reservation: r.clone(),
                network: network.clone(),
            };
            pb::OrderEvent {
                kind: kind.into(),
                reservation: Some(reservation(held)),
                version,
                event_id,
            }
        })
        .collect();
    pb::OrderChange {
        token: token.to_string(),
        cause: Some(cause(change.why())),
        events,
    }
}
