//! What a promise that holds its plan keeps with its hold: the request's fingerprint, which
//! the same request sent again matches, and the answer, which it is given again (also after a
//! restart: the hold and its answer are journaled and snapshotted together).

use std::sync::Arc;

use super::{PickupAt, PickupOption, PickupRequest, Promise, PromiseOption, PromiseRequest, Ready};
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::delivery::{decode_reasons, encode_lines, encode_reasons, read_node, Shipment};
use crate::domain::{Day, Qty};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mutation::Mutation;
use crate::network::Network;
use crate::reservation::{fingerprint, Hold};
use crate::reserve::{Held, Origin};

/// Leads a promise's kept answer and fingerprint, so neither is taken for a route's. Answers
/// kept before store pickup lead with it and have no pickup options.
const PROMISE: u8 = 2;

/// Leads a promise's kept answer since store pickup: the answer ends with its pickup options.
const PROMISE_WITH_PICKUP: u8 = 3;

impl Engine {
    /// The answer a promise holding under `hold` was given, if this request made that hold
    /// (a retry); `None` if the id is free. An id another request holds is refused.
    pub(super) fn retried_promise(
        &self,
        request: &PromiseRequest,
        hold: &Hold,
    ) -> Result<Option<Promise>> {
        self.retried(&hold.reservation_id, promise_fingerprint(request, hold))?
            .map(kept)
            .transpose()
    }

    /// Reserves the promised plan ([`Hold::of_shipments`]); the hold keeps the answer, for a
    /// retry of the call.
    pub(super) fn hold_promise(
        &self,
        request: &PromiseRequest,
        lines: &[(String, Qty)],
        promise: Promise,
        hold: &Hold,
    ) -> Result<Mutation<Promise>> {
        let reserve = hold.of_shipments(&promise.network, &held_plan(request, lines, &promise)?);
        let origin = Origin {
            fingerprint: promise_fingerprint(request, hold),
            answer: encode_promise(&promise),
        };
        let (held, record) = self
            .reserve_for(&reserve, Some(origin.clone()))?
            .into_parts();
        // The hold made here answers as built; one a concurrent twin of this call made first
        // (nothing changed here) answers what it kept.
        let result = if held.reservation.answer == origin.answer {
            Promise {
                reservation: Some(held),
                ..promise
            }
        } else {
            kept(held)?
        };
        Ok(Mutation { result, record })
    }
}

/// What a promise holds: the cart where its pickup is ready from, when the pickup is to be
/// held, else the shipments of its one delivery option.
fn held_plan(
    request: &PromiseRequest,
    lines: &[(String, Qty)],
    promise: &Promise,
) -> Result<Vec<Shipment>> {
    let nothing = |reason: &str| Error::FailedPrecondition(format!("nothing to reserve: {reason}"));
    if request.pickup.as_ref().is_some_and(|p| p.hold) {
        let option = &promise.pickup[0];
        let ready = option.ready.ok_or_else(|| nothing(&option.reason))?;
        return Ok(vec![Shipment {
            node: ready.from,
            ship_date: ready.need,
            delivery_date: ready.need,
            lines: lines.to_vec(),
            cost: Default::default(),
        }]);
    }
    let option = &promise.options[0];
    if option.delivery_date.is_none() {
        return Err(nothing(&option.reason));
    }
    Ok(option.shipments.clone())
}

/// Identifies a promise-and-reserve call: every field of the cart and how long to hold.
/// Destructured in full, so a field added to the request is a decision here too.
fn promise_fingerprint(request: &PromiseRequest, hold: &Hold) -> u64 {
    let PromiseRequest {
        lines,
        destination,
        service_levels,
        allow_split,
        max_packages,
        now_ms,
        reserve: _,
        pickup,
    } = request;
    let mut w = Writer::default();
    w.u8(PROMISE);
    encode_lines(&mut w, lines);
    destination.encode(&mut w);
    w.len(service_levels.len());
    for level in service_levels {
        w.str(level);
    }
    w.u8(u8::from(*allow_split));
    w.var(u64::from(*max_packages));
    w.ivar(now_ms.unwrap_or(i64::MIN));
    w.var(hold.ttl_secs);
    // Written only when asked, so the fingerprints of holds made before pickup still match.
    if let Some(PickupRequest { at, hold }) = pickup {
        match at {
            PickupAt::Store(id) => {
                w.u8(1);
                w.str(id);
            }
            PickupAt::Nearest(count) => {
                w.u8(2);
                w.var(u64::from(*count));
            }
        }
        w.u8(u8::from(*hold));
    }
    fingerprint(&w.buf)
}

/// The answer a hold keeps: the promised options and the nodes left out.
fn encode_promise(promise: &Promise) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(PROMISE_WITH_PICKUP);
    w.len(promise.options.len());
    for option in &promise.options {
        let PromiseOption {
            service_level,
            delivery_date,
            shipments,
            cost,
            reason,
        } = option;
        w.str(service_level);
        w.ivar(delivery_date.map_or(i64::MIN, |day| i64::from(day.0)));
        w.len(shipments.len());
        for shipment in shipments {
            shipment.encode(&mut w);
        }
        w.f64(*cost);
        w.str(reason);
    }
    encode_reasons(&mut w, &promise.skipped);
    w.len(promise.pickup.len());
    for PickupOption {
        store,
        ready,
        reason,
    } in &promise.pickup
    {
        w.var(u64::from(*store));
        match ready {
            None => w.u8(0),
            Some(Ready { at_ms, from, need }) => {
                w.u8(1);
                w.ivar(*at_ms);
                w.var(u64::from(*from));
                w.ivar(i64::from(need.0));
            }
        }
        w.str(reason);
    }
    w.buf
}

/// Reads the pickup options [`encode_promise`] wrote, of nodes below `nodes`.
fn decode_pickup(r: &mut Reader<'_>, nodes: usize) -> Decoded<Vec<PickupOption>> {
    (0..r.len()?)
        .map(|_| {
            let store = read_node(r, nodes)?;
            let ready = match r.u8()? {
                0 => None,
                _ => Some(Ready {
                    at_ms: r.ivar()?,
                    from: read_node(r, nodes)?,
                    need: Day(i32::try_from(r.ivar()?).map_err(|_| CodecError("day"))?),
                }),
            };
            Ok(PickupOption {
                store,
                ready,
                reason: r.str()?.to_owned(),
            })
        })
        .collect()
}

/// Reads what [`encode_promise`] wrote, naming nodes of `network`.
fn decode_promise(bytes: &[u8], network: Arc<Network>) -> Decoded<Promise> {
    let nodes = network.nodes().len();
    let mut r = Reader::new(bytes);
    let with_pickup = match r.u8()? {
        PROMISE => false,
        PROMISE_WITH_PICKUP => true,
        _ => return Err(CodecError("not a promise's answer")),
    };
    let options = (0..r.len()?)
        .map(|_| {
            let service_level = r.str()?.to_owned();
            let delivery_date = match r.ivar()? {
                i64::MIN => None,
                day => Some(Day(i32::try_from(day).map_err(|_| CodecError("day"))?)),
            };
            let shipments = (0..r.len()?)
                .map(|_| Shipment::decode(&mut r, nodes))
                .collect::<Decoded<_>>()?;
            Ok(PromiseOption {
                service_level,
                delivery_date,
                shipments,
                cost: r.f64()?,
                reason: r.str()?.to_owned(),
            })
        })
        .collect::<Decoded<_>>()?;
    let skipped = decode_reasons(&mut r, nodes)?;
    let pickup = if with_pickup {
        decode_pickup(&mut r, nodes)?
    } else {
        Vec::new()
    };
    Ok(Promise {
        options,
        skipped,
        pickup,
        network,
        reservation: None,
    })
}

/// The answer a hold kept, with the hold as it is now.
fn kept(held: Held) -> Result<Promise> {
    let mut promise =
        decode_promise(&held.reservation.answer, held.network.clone()).map_err(|e| {
            Error::FailedPrecondition(format!(
                "reservation {:?} keeps no promise of this request: {e}",
                held.reservation.id
            ))
        })?;
    promise.reservation = Some(held);
    Ok(promise)
}
