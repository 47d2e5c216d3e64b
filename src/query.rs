//! Availability queries: time-phased ATP per node, group and network totals, and the earliest
//! date a quantity is available. One shard read lock per SKU; nothing is written.

use std::sync::Arc;

use crate::domain::{Day, Qty};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::index::{Pool, Position, SkuPositions};
use crate::network::{Network, NodeIdx};
use crate::view::AtpView;

/// What `GetAvailability` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvailabilityQuery {
    pub skus: Vec<String>,
    /// Nodes to report; empty reports every node.
    pub node_ids: Vec<String>,
    pub group_ids: Vec<String>,
    /// The day to answer for; `None` is today at each node. Days before a node's today answer
    /// as today, since nothing can be promised in the past.
    pub date: Option<Day>,
    /// When set, also find the earliest day with at least this much available.
    pub quantity: Option<Qty>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAvailability {
    pub node: NodeIdx,
    pub atp: Qty,
    pub on_hand: Qty,
    pub reserved: Qty,
    pub allocated: Qty,
    /// Safety stock in force, including any stale-feed buffer.
    pub safety_stock: Qty,
    pub inbound: Qty,
    pub earliest: Option<Day>,
    pub degraded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAvailability {
    pub group_id: String,
    pub atp: Qty,
    pub earliest: Option<Day>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemAvailability {
    pub sku: String,
    pub nodes: Vec<NodeAvailability>,
    pub network_atp: Qty,
    pub network_earliest: Option<Day>,
    pub groups: Vec<GroupAvailability>,
}

/// The answer, with the network version it was computed against (to name the nodes).
#[derive(Debug, Clone)]
pub struct Availability {
    pub network: Arc<Network>,
    pub items: Vec<ItemAvailability>,
}

impl Engine {
    pub fn availability(&self, query: &AvailabilityQuery) -> Result<Availability> {
        let network = self.network();
        let scope = Scope::new(self, &network, query)?;
        let items = query
            .skus
            .iter()
            .map(|sku| {
                self.shared
                    .index
                    .read(sku, |positions| scope.item(sku, positions))
            })
            .collect();
        Ok(Availability { network, items })
    }
}

/// A validated query, resolved against one network version at one instant.
struct Scope<'a> {
    view: AtpView<'a>,
    nodes: Vec<NodeIdx>,
    groups: Vec<(&'a str, u32)>,
    quantity: Option<Qty>,
}

impl<'a> Scope<'a> {
    fn new(engine: &Engine, network: &'a Network, query: &'a AvailabilityQuery) -> Result<Self> {
        let config = engine.config();
        let mut violations = Vec::new();
        if query.skus.is_empty() {
            violations.push(FieldViolation::new("skus", "ask for at least one SKU"));
        }
        let max_len = config.limits.max_field_len;
        for (i, sku) in query.skus.iter().enumerate() {
            if sku.is_empty() || sku.len() > max_len {
                let problem = format!("must be 1 to {max_len} bytes");
                violations.push(FieldViolation::new(format!("skus[{i}]"), problem));
            }
        }
        let nodes: Vec<NodeIdx> = if query.node_ids.is_empty() {
            (0..network.nodes().len() as NodeIdx).collect()
        } else {
            let lookup = |(i, id): (usize, &String)| {
                network.node_idx(id).ok_or_else(|| {
                    FieldViolation::new(format!("node_ids[{i}]"), format!("unknown node {id:?}"))
                })
            };
            collect_valid(
                query.node_ids.iter().enumerate().map(lookup),
                &mut violations,
            )
        };
        let lookup = |(i, id): (usize, &'a String)| {
            network
                .group_idx(id)
                .map(|group| (id.as_str(), group))
                .ok_or_else(|| {
                    FieldViolation::new(format!("group_ids[{i}]"), format!("unknown group {id:?}"))
                })
        };
        let groups = collect_valid(
            query.group_ids.iter().enumerate().map(lookup),
            &mut violations,
        );
        if query.quantity.is_some_and(|q| q <= 0) {
            violations.push(FieldViolation::new(
                "quantity",
                "must be positive when given",
            ));
        }
        let pairs = query.skus.len().saturating_mul(nodes.len());
        if pairs > config.limits.max_pairs {
            let problem = format!(
                "{pairs} item-node pairs exceed the limit of {} per call",
                config.limits.max_pairs
            );
            violations.push(FieldViolation::new("skus", problem));
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(Self {
            view: AtpView::new(engine, network, query.date),
            nodes,
            groups,
            quantity: query.quantity,
        })
    }

    fn item(&self, sku: &str, entry: Option<&SkuPositions>) -> ItemAvailability {
        let positions = entry.map_or(&[][..], SkuPositions::positions);
        let pools = entry.map_or(&[][..], SkuPositions::pools);
        let atp: Vec<Qty> = positions.iter().map(|p| self.view.atp(p)).collect();
        let nodes = self
            .nodes
            .iter()
            .map(|&node| {
                let at = positions.binary_search_by_key(&node, Position::node).ok();
                self.node_availability(node, at.map(|i| (&positions[i], atp[i])))
            })
            .collect();
        // Pooled holds come off the totals they can be served from, jointly (see `AtpView`).
        let total = |pool: Pool| -> Qty {
            if pools.is_empty() {
                let members = positions.iter().zip(&atp);
                members
                    .filter(|(p, _)| self.view.in_pool(pool, p.node()))
                    .map(|(_, atp)| atp)
                    .sum()
            } else {
                self.view.pool_headroom(positions, pools, pool)
            }
        };
        let profiles = self.quantity.map(|_| self.profiles(positions));
        let earliest = |pool: Pool| {
            let (profiles, quantity) = (profiles.as_ref()?, self.quantity?);
            let held: Qty = pools
                .iter()
                .filter(|h| h.pool == pool)
                .map(|h| h.quantity)
                .sum();
            let member = |node: NodeIdx| self.view.in_pool(pool, node);
            earliest_total(profiles, &member, quantity + held)
        };
        let groups = self
            .groups
            .iter()
            .map(|&(group_id, group)| GroupAvailability {
                group_id: group_id.to_owned(),
                atp: total(Pool::Group(group)),
                earliest: earliest(Pool::Group(group)),
            })
            .collect();
        ItemAvailability {
            sku: sku.to_owned(),
            nodes,
            network_atp: total(Pool::Network),
            network_earliest: earliest(Pool::Network),
            groups,
        }
    }

    fn node_availability(
        &self,
        node: NodeIdx,
        found: Option<(&Position, Qty)>,
    ) -> NodeAvailability {
        let position = found.map(|(p, _)| p);
        let safety = self.view.safety(node, position);
        let totals = position.map(Position::totals).unwrap_or_default();
        let earliest = match (position, self.quantity) {
            (Some(p), Some(q)) => self.view.earliest(p, q),
            _ => None,
        };
        NodeAvailability {
            node,
            atp: found.map_or(0, |(_, atp)| atp),
            on_hand: totals.on_hand,
            reserved: totals.reserved,
            allocated: totals.allocated,
            safety_stock: safety.unwrap_or_else(|| self.view.base_safety(node, position)),
            inbound: totals.inbound,
            earliest,
            degraded: self.view.is_degraded(node),
        }
    }

    /// ATP step functions of every position that is not excluded.
    fn profiles(&self, positions: &[Position]) -> Vec<(NodeIdx, Vec<(Day, Qty)>)> {
        positions
            .iter()
            .filter_map(|p| Some((p.node(), self.view.profile(p)?)))
            .collect()
    }
}

/// First day on which the ATP of the member nodes adds up to `quantity`.
fn earliest_total(
    profiles: &[(NodeIdx, Vec<(Day, Qty)>)],
    member: &dyn Fn(NodeIdx) -> bool,
    quantity: Qty,
) -> Option<Day> {
    let members: Vec<&[(Day, Qty)]> = profiles
        .iter()
        .filter(|(node, _)| member(*node))
        .map(|(_, profile)| profile.as_slice())
        .collect();
    let mut days: Vec<Day> = members.iter().flat_map(|p| p.iter().map(|s| s.0)).collect();
    days.sort_unstable();
    days.dedup();
    days.into_iter().find(|&day| {
        let total: Qty = members.iter().map(|profile| atp_on(profile, day)).sum();
        total >= quantity
    })
}

/// ATP of a step function on `day`; before its first step a node answers its current ATP.
fn atp_on(profile: &[(Day, Qty)], day: Day) -> Qty {
    match profile.partition_point(|&(d, _)| d <= day) {
        0 => profile.first().map_or(0, |s| s.1),
        n => profile[n - 1].1,
    }
}

/// Collects the successes, moving failures into `violations`.
fn collect_valid<T>(
    results: impl Iterator<Item = std::result::Result<T, FieldViolation>>,
    violations: &mut Vec<FieldViolation>,
) -> Vec<T> {
    results
        .filter_map(|result| result.map_err(|v| violations.push(v)).ok())
        .collect()
}
