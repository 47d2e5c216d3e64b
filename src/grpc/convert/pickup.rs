//! Conversions of store pickup: a store's pickup settings, a promise's pickup request and its
//! pickup options.

use super::{pb, timestamp, Violations};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::promise::{local_time, PickupAt, PickupOption, PickupRequest};
use crate::spec::{nested, HoursSpec, PickupSpec, TransferSpec};

/// A node's pickup settings, checked; violations are named under `pickup.`.
pub(super) fn pickup(
    pickup: Option<pb::Pickup>,
) -> Result<Option<crate::domain::Pickup>, Violations> {
    let Some(pickup) = pickup else {
        return Ok(None);
    };
    let spec = PickupSpec {
        hours: pickup
            .hours
            .into_iter()
            .map(|h| HoursSpec {
                days: h.days,
                open: h.open,
                close: h.close,
            })
            .collect(),
        pick_minutes: pickup.pick_minutes,
        cutoff: pickup.cutoff,
        transfers: pickup
            .transfers
            .into_iter()
            .map(|t| TransferSpec {
                from_node_id: t.from_node_id,
                days: t.days,
            })
            .collect(),
    };
    spec.resolve().map(Some).map_err(|v| nested("pickup", v))
}

/// A promise's pickup request: a chosen store or a count of nearest, not both.
pub(super) fn pickup_request(request: Option<pb::PickupRequest>) -> Result<Option<PickupRequest>> {
    let Some(request) = request else {
        return Ok(None);
    };
    let at = match (request.store_id.is_empty(), request.nearest) {
        (false, 0) => PickupAt::Store(request.store_id),
        (true, 0) => {
            return Err(Error::invalid(
                "pickup",
                "give a store_id or a count of nearest stores",
            ))
        }
        (true, nearest) => PickupAt::Nearest(nearest),
        (false, _) => {
            return Err(Error::invalid(
                "pickup.nearest",
                "give a store_id or nearest, not both",
            ))
        }
    };
    Ok(Some(PickupRequest {
        at,
        hold: request.hold,
    }))
}

pub(super) fn pickup_option(network: &Network, option: PickupOption) -> pb::PickupOption {
    let store = network.node(option.store);
    match option.ready {
        Some(ready) => pb::PickupOption {
            store_id: store.id.clone(),
            feasible: true,
            ready_at: Some(timestamp(ready.at_ms)),
            ready_local: local_time(store, ready.at_ms),
            from_node_id: network.node(ready.from).id.clone(),
            transfer: ready.from != option.store,
            reason: String::new(),
        },
        None => pb::PickupOption {
            store_id: store.id.clone(),
            reason: option.reason,
            ..Default::default()
        },
    }
}
