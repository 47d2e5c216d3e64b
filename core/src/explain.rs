//! Explanations: how the ATP of one SKU at a node, in a group or in the whole network on a date
//! is made, part by part. They are built from the functions the availability query answers
//! with ([`AtpView::atp_on`], [`AtpView::lowest_on`], [`AtpView::pool_atp`]), so the parts add
//! up to the figure `GetAvailability` answers for the same SKU, scope and date:
//!
//! - a node's ATP is `max(0, lowest net)`, and the lowest net is `on_hand - safety_stock -
//!   stale buffer + counted receipts - counted demand`, counting what is due by the first day
//!   from the node's day on at which the net position is lowest (the look-ahead minimum);
//!   a node the stale-feed policy excludes has none;
//! - a pool's ATP is its nodes' ATP less what the pooled holds (group and network
//!   reservations not bound to a node) must take from them.
//!
//! Holds and allocations are listed by reservation from the book, which is read after the
//! position, one book shard at a time: a reservation changed in between may be missing from,
//! or extra to, the day totals it would make up. Nothing is written.

use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::domain::{Day, Qty, SupplyType};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::index::{Pool, PoolHold, Position, SkuPositions};
use crate::network::{Network, NodeIdx, SourceEntry};
use crate::query::{known_group, known_node, pairs_problem, sku_problem};
use crate::reservation::{Book, Scope};
use crate::view::{AtpView, StaleShare};

/// What `Explain` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExplainQuery {
    pub sku: String,
    /// The node to explain; with `group_id` empty too, the whole network.
    pub node_id: String,
    /// The group to explain.
    pub group_id: String,
    /// The day to explain; `None` is today at each node, and earlier days answer as today.
    pub date: Option<Day>,
}

/// How a scope's ATP is made, with the network version that names its nodes and groups.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub network: Arc<Network>,
    pub sku: String,
    pub scope: Scope,
    /// The scope's ATP, as the availability query answers it.
    pub atp: Qty,
    /// The node asked for; for a pool, its nodes that hold the SKU, ascending.
    pub nodes: Vec<NodeExplanation>,
    /// For a pool, every pooled hold of the SKU by pool and day (pools compete for the nodes
    /// they share); empty for a node, whose ATP they do not lower.
    pub pooled: Vec<PoolHold>,
    /// The pooled holds' reservation lines.
    pub pooled_commitments: Vec<Commitment>,
    /// What the pooled holds take from the nodes: their ATP summed, less `atp`.
    pub pooled_reduction: Qty,
    /// More holds and allocations exist than the limit lets one explanation list.
    pub truncated: bool,
}

/// How one node's ATP is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeExplanation {
    pub node: NodeIdx,
    /// The day explained: the date asked, or the node's today if later; in a pool too, since
    /// a pool counts its nodes on that day (a pooled hold due later needs them no later).
    pub day: Day,
    pub atp: Qty,
    /// The lowest net position from `day` on and the first day it is reached; `None` when
    /// the stale-feed policy excludes the node.
    pub lowest: Option<(Day, Qty)>,
    pub on_hand: Qty,
    /// Source time of the last on-hand SET; `None` if on-hand was only ever adjusted.
    pub on_hand_as_of_ms: Option<UnixMillis>,
    /// The sources owning on-hand at the node.
    pub on_hand_sources: Vec<FeedFreshness>,
    /// Safety stock before any stale-feed buffer.
    pub safety_stock: Qty,
    /// Whether `safety_stock` is the position's own rather than the node's default.
    pub safety_override: bool,
    /// The sources owning any supply at the node whose feed is stale, which degrade it.
    pub stale_sources: Vec<String>,
    pub stale: StaleShare,
    /// Dated receipts, ascending by ETA.
    pub receipts: Vec<ReceiptPart>,
    /// Demand by need day, ascending.
    pub demand: Vec<DemandPart>,
    /// The holds and allocations making up `demand`, by need day and reservation.
    pub commitments: Vec<Commitment>,
}

/// A source and its freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFreshness {
    pub source_id: String,
    pub last_heard_ms: UnixMillis,
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPart {
    pub supply_type: SupplyType,
    pub reference: String,
    pub eta: Day,
    pub quantity: Qty,
    /// What counts towards ATP under the promisable share of its supply type.
    pub promisable: Qty,
    /// Due by the lowest net's day, so counted in it.
    pub counted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandPart {
    pub day: Day,
    pub reserved: Qty,
    pub allocated: Qty,
    /// Due by the lowest net's day, so counted in it.
    pub counted: bool,
}

/// One reservation line's hold, or its allocation at one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    pub reservation_id: String,
    /// The order an allocation is for; empty for a hold.
    pub order_id: String,
    pub need: Day,
    pub quantity: Qty,
    /// Where it takes stock: a node, or for a pooled hold its group or the network.
    pub scope: Scope,
}

impl NodeExplanation {
    /// The stale-feed buffer held back on top of the safety stock.
    pub fn stale_buffer(&self) -> Qty {
        match self.stale {
            StaleShare::Buffer { quantity, .. } => quantity,
            StaleShare::Fresh | StaleShare::Excluded => 0,
        }
    }

    /// The promisable quantity of the receipts counted in the lowest net.
    pub fn counted_receipts(&self) -> Qty {
        let counted = self.receipts.iter().filter(|r| r.counted);
        counted.map(|r| r.promisable).sum()
    }

    /// The demand counted in the lowest net.
    pub fn counted_demand(&self) -> Qty {
        let counted = self.demand.iter().filter(|d| d.counted);
        counted.map(|d| d.reserved + d.allocated).sum()
    }
}

impl Engine {
    /// Explains the ATP of one SKU at a node, in a group or in the network. Needs the
    /// caller's `insights:read` scope at the edge.
    pub fn explain(&self, query: &ExplainQuery) -> Result<Explanation> {
        let network = self.network();
        let scope = resolve(self, &network, query)?;
        let view = AtpView::new(self, &network, query.date);
        let (atp, nodes, pooled) = view.read(&query.sku, |entry| {
            explain_positions(&view, scope, entry.unwrap_or(&SkuPositions::default()))
        });
        let members: Qty = nodes.iter().map(|n| n.atp).sum();
        let mut explanation = Explanation {
            network: network.clone(),
            sku: query.sku.clone(),
            scope,
            atp,
            nodes,
            pooled,
            pooled_commitments: Vec::new(),
            pooled_reduction: members - atp,
            truncated: false,
        };
        let limit = self.config().limits.max_explained_commitments;
        explanation.truncated = attribute(&self.shared.book, &query.sku, limit, &mut explanation);
        Ok(explanation)
    }
}

/// The scope a valid query names, or every violation of it.
fn resolve(engine: &Engine, network: &Network, query: &ExplainQuery) -> Result<Scope> {
    let limits = &engine.config().limits;
    let mut violations = Vec::new();
    if let Some(problem) = sku_problem(&query.sku, limits.max_field_len) {
        violations.push(FieldViolation::new("sku", problem));
    }
    let (node_id, group_id) = (query.node_id.as_str(), query.group_id.as_str());
    let scope = match (node_id, group_id) {
        ("", "") => Ok(Scope::Pool(Pool::Network)),
        (node, "") => known_node(network, || "node_id".into(), node).map(Scope::Node),
        ("", group) => {
            known_group(network, || "group_id".into(), group).map(|g| Scope::Pool(Pool::Group(g)))
        }
        _ => Err(FieldViolation::new(
            "group_id",
            "name a node or a group (or neither, for the network), not both",
        )),
    };
    let scope = scope.map_err(|v| violations.push(v)).ok();
    let nodes = match scope {
        Some(Scope::Node(_)) | None => 1,
        Some(Scope::Pool(Pool::Network)) => network.nodes().len(),
        Some(Scope::Pool(Pool::Group(_))) => network.group_members(group_id).map_or(0, <[_]>::len),
    };
    if let Some(problem) = pairs_problem(nodes, limits.max_pairs) {
        violations.push(FieldViolation::new("group_id", problem));
    }
    match scope {
        Some(scope) if violations.is_empty() => Ok(scope),
        _ => Err(Error::InvalidArgument(violations)),
    }
}

/// The scope's ATP, its nodes' explanations and, for a pool, the SKU's pooled holds.
fn explain_positions(
    view: &AtpView<'_, '_>,
    scope: Scope,
    entry: &SkuPositions,
) -> (Qty, Vec<NodeExplanation>, Vec<PoolHold>) {
    let (positions, pools) = (entry.positions(), entry.pools());
    match scope {
        Scope::Node(node) => {
            let explained = explain_node(view, node, entry.get(node));
            (explained.atp, vec![explained], Vec::new())
        }
        Scope::Pool(pool) => {
            let total = view.pool_atp(positions, pools, |i| view.atp(&positions[i]), pool);
            // Each node on its own day, as the pool counts it (`AtpView::pool_atp`).
            let nodes = positions
                .iter()
                .filter(|p| view.in_pool(pool, p.node()))
                .map(|p| explain_node(view, p.node(), Some(p)))
                .collect();
            let mut pooled = pools.to_vec();
            pooled.sort_by_key(|h| (h.pool, h.day));
            (total, nodes, pooled)
        }
    }
}

/// How ATP of the position at `node` (absent: nothing there) is made on the node's day.
fn explain_node(
    view: &AtpView<'_, '_>,
    node: NodeIdx,
    position: Option<&Position>,
) -> NodeExplanation {
    let nothing = Position::new(node);
    let position = position.unwrap_or(&nothing);
    let day = view.day(node);
    let lowest = view.lowest_on(position, day);
    let counted = |due: Day| lowest.is_some_and(|(low, _)| due <= low);
    let policy = view.policy();
    let receipts = position.receipts().iter().map(|r| ReceiptPart {
        supply_type: r.supply_type,
        reference: r.reference.to_string(),
        eta: r.eta,
        quantity: r.quantity,
        promisable: policy.promisable(r.supply_type, r.quantity),
        counted: counted(r.eta),
    });
    let demand = position.demand().iter().map(|d| DemandPart {
        day: d.day,
        reserved: d.reserved,
        allocated: d.allocated,
        counted: counted(d.day),
    });
    let owners = || view.network.owners(node);
    let feed = |source: &SourceEntry| FeedFreshness {
        source_id: source.def.id.clone(),
        last_heard_ms: source.feed.last_heard_ms(),
        stale: source.is_stale(view.now_ms),
    };
    NodeExplanation {
        node,
        day,
        atp: view.atp_on(position, day),
        lowest,
        on_hand: position.totals().on_hand,
        on_hand_as_of_ms: position.on_hand_as_of_ms(),
        on_hand_sources: owners()
            .filter(|s| s.owns(node, SupplyType::OnHand))
            .map(feed)
            .collect(),
        safety_stock: view.base_safety(node, Some(position)),
        safety_override: position.safety_override().is_some(),
        stale_sources: owners()
            .filter(|s| s.is_stale(view.now_ms))
            .map(|s| s.def.id.clone())
            .collect(),
        stale: view.stale_share(node, Some(position)),
        receipts: receipts.collect(),
        demand: demand.collect(),
        commitments: Vec::new(),
    }
}

/// Lists the book's holds and allocations of `sku` on the explained nodes and, for a pool, its
/// pooled holds, at most `limit` of them; returns whether some were left out.
fn attribute(book: &Book, sku: &str, limit: usize, explanation: &mut Explanation) -> bool {
    let pooled = matches!(explanation.scope, Scope::Pool(_));
    let (nodes, pooled_commitments) = (&mut explanation.nodes, &mut explanation.pooled_commitments);
    let mut listed = 0;
    let mut truncated = false;
    book.visit_live(sku, |reservation| {
        for line in reservation.lines.iter().filter(|l| l.sku == sku) {
            for (scope, quantity) in line.demand(reservation.state) {
                let list = match scope {
                    Scope::Node(node) => nodes
                        .binary_search_by_key(&node, |n| n.node)
                        .ok()
                        .map(|at| &mut nodes[at].commitments),
                    Scope::Pool(_) => pooled.then_some(&mut *pooled_commitments),
                };
                let Some(list) = list else { continue };
                if listed == limit {
                    truncated = true;
                    return false;
                }
                listed += 1;
                list.push(Commitment {
                    reservation_id: reservation.id.clone(),
                    order_id: reservation.order_id.clone(),
                    need: line.need,
                    quantity,
                    scope,
                });
            }
        }
        true
    });
    let order = |c: &Commitment| (c.need, c.reservation_id.clone());
    for node in nodes.iter_mut() {
        node.commitments.sort_by_key(order);
    }
    let pool = |c: &Commitment| match c.scope {
        Scope::Pool(pool) => Some(pool),
        Scope::Node(_) => None,
    };
    pooled_commitments.sort_by_key(|c| (pool(c), order(c)));
    truncated
}
