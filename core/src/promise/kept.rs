//! What a promise that holds its plan keeps with its hold: the request's fingerprint, which
//! the same request sent again matches, and the answer, which it is given again (also after a
//! restart: the hold and its answer are journaled and snapshotted together).

use std::sync::Arc;

use super::{Promise, PromiseOption, PromiseRequest};
use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::delivery::{decode_reasons, encode_lines, encode_reasons, Shipment};
use crate::domain::Day;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mutation::Mutation;
use crate::network::Network;
use crate::reservation::{fingerprint, Hold};
use crate::reserve::{Held, Origin};

/// Leads a promise's kept answer and fingerprint, so neither is taken for a route's.
const PROMISE: u8 = 2;

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
        promise: Promise,
        hold: &Hold,
    ) -> Result<Mutation<Promise>> {
        let option = &promise.options[0];
        if option.delivery_date.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "nothing to reserve: {}",
                option.reason
            )));
        }
        let reserve = hold.of_shipments(&promise.network, &option.shipments);
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
    fingerprint(&w.buf)
}

/// The answer a hold keeps: the promised options and the nodes left out.
fn encode_promise(promise: &Promise) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(PROMISE);
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
    w.buf
}

/// Reads what [`encode_promise`] wrote, naming nodes of `network`.
fn decode_promise(bytes: &[u8], network: Arc<Network>) -> Decoded<Promise> {
    let nodes = network.nodes().len();
    let mut r = Reader::new(bytes);
    if r.u8()? != PROMISE {
        return Err(CodecError("not a promise's answer"));
    }
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
    Ok(Promise {
        options,
        skipped: decode_reasons(&mut r, nodes)?,
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
