//! What a route that holds its plan keeps with its hold: the request's fingerprint, which the
//! same request sent again matches, and the answer, which it is given again (also after a
//! restart: the hold and its answer are journaled and snapshotted together).

use std::sync::Arc;

use super::{Constraints, CostBreakdown, Plan, RouteRequest, Routing, Weights};
use crate::codec::{Decoded, Reader, Writer};
use crate::delivery::{decode_reasons, encode_lines, encode_reasons, Shipment};
use crate::network::Network;
use crate::reservation::{fingerprint, Hold};

/// Leads a route's kept answer and fingerprint, so neither is taken for a promise's.
const ROUTE: u8 = 1;

/// Identifies a route-and-reserve call: every field of the order and how long to hold.
/// Destructured in full, so a field added to the request is a decision here too.
pub(crate) fn route_fingerprint(request: &RouteRequest, hold: &Hold) -> u64 {
    let RouteRequest {
        order_id,
        lines,
        destination,
        service_level,
        constraints,
        weights,
        alternatives,
        now_ms,
        search_budget,
    } = request;
    let Constraints {
        ship_complete,
        max_packages,
        deliver_by,
        excluded_node_ids,
        allowed_node_kinds,
        split_lines,
    } = constraints;
    let Weights {
        package_penalty,
        priority,
        capacity,
    } = weights;
    let mut w = Writer::default();
    w.u8(ROUTE);
    w.str(order_id);
    encode_lines(&mut w, lines);
    destination.encode(&mut w);
    w.str(service_level);
    w.u8(u8::from(*ship_complete));
    w.u8(u8::from(*split_lines));
    w.var(u64::from(*max_packages));
    w.ivar(deliver_by.map_or(i64::MIN, |day| i64::from(day.0)));
    w.len(excluded_node_ids.len());
    for id in excluded_node_ids {
        w.str(id);
    }
    w.len(allowed_node_kinds.len());
    for kind in allowed_node_kinds {
        w.u8(*kind as u8);
    }
    for weight in [package_penalty, priority, capacity] {
        w.f64(*weight);
    }
    w.len(*alternatives);
    w.ivar(now_ms.unwrap_or(i64::MIN));
    w.var(*search_budget);
    w.var(hold.ttl_secs);
    fingerprint(&w.buf)
}

/// The answer a hold keeps: the chosen plan (first), the runners-up and the nodes ruled out.
pub(crate) fn encode_routing(routing: &Routing) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(ROUTE);
    let plans: Vec<&Plan> = routing.plan.iter().chain(&routing.alternatives).collect();
    w.len(plans.len());
    for plan in plans {
        encode_plan(&mut w, plan);
    }
    encode_reasons(&mut w, &routing.excluded);
    w.var(routing.candidates as u64);
    w.buf
}

/// Reads what [`encode_routing`] wrote, naming nodes of `network`.
pub(crate) fn decode_routing(bytes: &[u8], network: Arc<Network>) -> Decoded<Routing> {
    let nodes = network.nodes().len();
    let mut r = Reader::new(bytes);
    if r.u8()? != ROUTE {
        return Err(crate::codec::CodecError("not a route's answer"));
    }
    let mut plans = (0..r.len()?)
        .map(|_| decode_plan(&mut r, nodes))
        .collect::<Decoded<Vec<_>>>()?
        .into_iter();
    Ok(Routing {
        plan: plans.next(),
        alternatives: plans.collect(),
        excluded: decode_reasons(&mut r, nodes)?,
        candidates: usize::try_from(r.var()?)
            .map_err(|_| crate::codec::CodecError("candidates"))?,
        network,
    })
}

fn encode_plan(w: &mut Writer, plan: &Plan) {
    let Plan {
        shipments,
        total_cost,
        breakdown,
        optimal,
        lower_bound,
    } = plan;
    w.len(shipments.len());
    for shipment in shipments {
        shipment.encode(w);
    }
    w.f64(*total_cost);
    breakdown.encode(w);
    w.f64(*lower_bound);
    w.u8(u8::from(*optimal));
}

fn decode_plan(r: &mut Reader<'_>, nodes: usize) -> Decoded<Plan> {
    let shipments = (0..r.len()?)
        .map(|_| Shipment::decode(r, nodes))
        .collect::<Decoded<_>>()?;
    let total_cost = r.f64()?;
    let breakdown = CostBreakdown::decode(r)?;
    let lower_bound = r.f64()?;
    Ok(Plan {
        shipments,
        total_cost,
        breakdown,
        optimal: r.u8()? != 0,
        lower_bound,
    })
}
