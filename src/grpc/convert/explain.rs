//! `Explain`: the request checked into an [`ExplainQuery`], the explanation back out.

use super::{as_of_date, day_text, supply_type_pb, timestamp};
use crate::error::{Error, Result};
use crate::explain::{Commitment, ExplainQuery, Explanation, NodeExplanation};
use crate::grpc::pb;
use crate::index::Pool;
use crate::network::Network;
use crate::reservation::Scope;
use crate::view::StaleShare;

impl TryFrom<pb::ExplainRequest> for ExplainQuery {
    type Error = Error;

    fn try_from(request: pb::ExplainRequest) -> Result<Self> {
        Ok(ExplainQuery {
            date: as_of_date(&request.as_of_date)?,
            sku: request.sku,
            node_id: request.node_id,
            group_id: request.group_id,
        })
    }
}

pub fn explain_response(explanation: Explanation) -> pb::ExplainResponse {
    let network = &explanation.network;
    pb::ExplainResponse {
        atp: explanation.atp,
        nodes: explanation
            .nodes
            .iter()
            .map(|node| node_explanation(network, node))
            .collect(),
        pooled_holds: explanation
            .pooled
            .iter()
            .map(|hold| pb::PooledHold {
                group_id: pool_group(network, hold.pool),
                need_date: hold.day.to_string(),
                quantity: hold.quantity,
            })
            .collect(),
        pooled_reduction: explanation.pooled_reduction,
        pooled_commitments: commitments(network, &explanation.pooled_commitments),
        truncated: explanation.truncated,
        sku: explanation.sku,
    }
}

fn node_explanation(network: &Network, node: &NodeExplanation) -> pb::NodeExplanation {
    let stale_buffer_percent = match node.stale {
        StaleShare::Buffer { percent, .. } => percent,
        StaleShare::Fresh | StaleShare::Excluded => 0,
    };
    pb::NodeExplanation {
        node_id: network.node(node.node).id.clone(),
        date: node.day.to_string(),
        atp: node.atp,
        lowest_net: node.lowest.map_or(0, |(_, net)| net),
        lowest_net_date: day_text(node.lowest.map(|(day, _)| day)),
        on_hand: node.on_hand,
        on_hand_as_of: node.on_hand_as_of_ms.map(timestamp),
        on_hand_sources: node
            .on_hand_sources
            .iter()
            .map(|feed| pb::FeedFreshness {
                source_id: feed.source_id.clone(),
                last_heard: Some(timestamp(feed.last_heard_ms)),
                stale: feed.stale,
            })
            .collect(),
        safety_stock: node.safety_stock,
        safety_stock_override: node.safety_override,
        stale_source_ids: node.stale_sources.clone(),
        excluded: node.stale == StaleShare::Excluded,
        stale_buffer_percent,
        stale_buffer: node.stale_buffer(),
        receipts: node
            .receipts
            .iter()
            .map(|r| pb::ReceiptPart {
                supply_type: supply_type_pb(r.supply_type).into(),
                reference: r.reference.clone(),
                eta: r.eta.to_string(),
                quantity: r.quantity,
                promisable: r.promisable,
                counted: r.counted,
            })
            .collect(),
        counted_receipts: node.counted_receipts(),
        demand: node
            .demand
            .iter()
            .map(|d| pb::DemandDay {
                need_date: d.day.to_string(),
                reserved: d.reserved,
                allocated: d.allocated,
                counted: d.counted,
            })
            .collect(),
        counted_demand: node.counted_demand(),
        commitments: commitments(network, &node.commitments),
    }
}

fn commitments(network: &Network, commitments: &[Commitment]) -> Vec<pb::Commitment> {
    let commitment = |c: &Commitment| pb::Commitment {
        reservation_id: c.reservation_id.clone(),
        order_id: c.order_id.clone(),
        need_date: c.need.to_string(),
        quantity: c.quantity,
        group_id: match c.scope {
            Scope::Pool(pool) => pool_group(network, pool),
            Scope::Node(_) => String::new(),
        },
    };
    commitments.iter().map(commitment).collect()
}

/// A pool's group id; empty for the network.
fn pool_group(network: &Network, pool: Pool) -> String {
    match pool {
        Pool::Group(group) => network
            .group(group)
            .map_or_else(String::new, |g| g.id.clone()),
        Pool::Network => String::new(),
    }
}
