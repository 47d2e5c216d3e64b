//! Availability queries: time-phased ATP per node, group and network totals, and the earliest
//! date a quantity is available. One shard read lock per SKU; nothing is written.

use std::sync::Arc;

use crate::domain::{echo, Day, Qty};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::index::{Pool, PoolHold, Position, SkuPositions};
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
    /// Answer the network and group totals only, no node (not together with `node_ids`).
    pub totals_only: bool,
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
            .map(|sku| scope.view.read(sku, |positions| scope.item(sku, positions)))
            .collect();
        Ok(Availability { network, items })
    }
}

/// A position's node and its ATP step function, (day, ATP from that day on); `None` where the
/// node is excluded.
type Profile = (NodeIdx, Option<Vec<(Day, Qty)>>);

/// A validated query, resolved against one network version at one instant.
struct Scope<'a, 'i> {
    view: AtpView<'a, 'i>,
    nodes: Vec<NodeIdx>,
    groups: Vec<(&'a str, u32)>,
    quantity: Option<Qty>,
}

impl<'a, 'i> Scope<'a, 'i> {
    fn new(engine: &'i Engine, network: &'a Network, query: &'a AvailabilityQuery) -> Result<Self> {
        let config = engine.config();
        let mut violations = check_skus(&query.skus, config.limits.max_field_len);
        let nodes = resolve_nodes(network, &query.node_ids, &mut violations);
        let groups = resolve_groups(network, &query.group_ids, &mut violations);
        if query.quantity.is_some_and(|q| q <= 0) {
            violations.push(FieldViolation::new(
                "quantity",
                "must be positive when given",
            ));
        }
        // Totals still cost a pair per SKU and node, so the limit counts them alike.
        let pairs = query.skus.len().saturating_mul(nodes.len());
        if let Some(problem) = pairs_problem(pairs, config.limits.max_pairs) {
            violations.push(FieldViolation::new("skus", problem));
        }
        if query.totals_only && !query.node_ids.is_empty() {
            violations.push(FieldViolation::new(
                "totals_only",
                "answers no node, so not together with node_ids",
            ));
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        Ok(Self {
            view: AtpView::new(engine, network, query.date),
            nodes: if query.totals_only { Vec::new() } else { nodes },
            groups,
            quantity: query.quantity,
        })
    }

    fn item(&self, sku: &str, entry: Option<&SkuPositions>) -> ItemAvailability {
        let positions = entry.map_or(&[][..], SkuPositions::positions);
        let pools = entry.map_or(&[][..], SkuPositions::pools);
        let atp: Vec<Qty> = positions.iter().map(|p| self.view.atp(p)).collect();
        // Built once, for the nodes' earliest days and for the totals'.
        let profiles = self.quantity.map(|_| self.profiles(positions));
        let nodes = self.nodes_of(positions, &atp, profiles.as_deref());
        let total = |pool: Pool| self.view.pool_atp(positions, pools, &atp, pool);
        let earliest = |pool: Pool| self.pool_earliest(profiles.as_deref(), pools, pool);
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

    /// The asked nodes' availability, given the SKU's positions, their ATP and, with a
    /// quantity asked, their step functions (a node's earliest day is its first step with
    /// enough). Positions are in node order, so a node asked after every node before it (all
    /// of them, when every node is asked, the usual question) is found by walking on from the
    /// last one found; only a node asked out of order is searched for.
    fn nodes_of(
        &self,
        positions: &[Position],
        atp: &[Qty],
        profiles: Option<&[Profile]>,
    ) -> Vec<NodeAvailability> {
        let earliest = |i: usize| {
            let (steps, quantity) = (profiles?[i].1.as_deref()?, self.quantity?);
            first_reaching(steps, quantity)
        };
        // The positions before `next` are of nodes up to the highest asked so far.
        let mut next = 0;
        let mut highest: Option<NodeIdx> = None;
        self.nodes
            .iter()
            .map(|&node| {
                let at = if highest.is_none_or(|highest| node > highest) {
                    highest = Some(node);
                    while positions.get(next).is_some_and(|p| p.node() < node) {
                        next += 1;
                    }
                    let found = positions.get(next).is_some_and(|p| p.node() == node);
                    next += usize::from(found);
                    found.then(|| next - 1)
                } else {
                    positions.binary_search_by_key(&node, Position::node).ok()
                };
                let found = at.map(|i| (&positions[i], atp[i]));
                self.node_availability(node, found, at.and_then(earliest))
            })
            .collect()
    }

    /// First day the pool's members have the queried quantity on top of the pool's own holds;
    /// `None` when no quantity was asked or it is never reached.
    fn pool_earliest(
        &self,
        profiles: Option<&[Profile]>,
        pools: &[PoolHold],
        pool: Pool,
    ) -> Option<Day> {
        let (profiles, quantity) = (profiles?, self.quantity?);
        let held: Qty = pools
            .iter()
            .filter(|h| h.pool == pool)
            .map(|h| h.quantity)
            .sum();
        let member = |node: NodeIdx| self.view.in_pool(pool, node);
        earliest_total(profiles, &member, quantity + held)
    }

    /// A node's answer, from its position and ATP (if it has one) and its earliest day.
    fn node_availability(
        &self,
        node: NodeIdx,
        found: Option<(&Position, Qty)>,
        earliest: Option<Day>,
    ) -> NodeAvailability {
        let position = found.map(|(p, _)| p);
        let safety = self.view.safety(node, position);
        let totals = position.map(Position::totals).unwrap_or_default();
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

    /// Every position's ATP step function.
    fn profiles(&self, positions: &[Position]) -> Vec<Profile> {
        positions
            .iter()
            .map(|p| (p.node(), self.view.profile(p)))
            .collect()
    }
}

/// First day on which the ATP of the member nodes adds up to `quantity`.
fn earliest_total(
    profiles: &[Profile],
    member: &dyn Fn(NodeIdx) -> bool,
    quantity: Qty,
) -> Option<Day> {
    let members: Vec<&[(Day, Qty)]> = profiles
        .iter()
        .filter(|(node, _)| member(*node))
        .filter_map(|(_, profile)| profile.as_deref())
        .collect();
    let mut days: Vec<Day> = members.iter().flat_map(|p| p.iter().map(|s| s.0)).collect();
    days.sort_unstable();
    days.dedup();
    days.into_iter().find(|&day| {
        let total: Qty = members.iter().map(|profile| atp_on(profile, day)).sum();
        total >= quantity
    })
}

/// The first day of a step function (ascending by day and by ATP) with at least `quantity`.
fn first_reaching(steps: &[(Day, Qty)], quantity: Qty) -> Option<Day> {
    steps
        .iter()
        .find(|&&(_, atp)| atp >= quantity)
        .map(|&(day, _)| day)
}

/// ATP of a step function on `day`; before its first step a node answers its current ATP.
fn atp_on(profile: &[(Day, Qty)], day: Day) -> Qty {
    match profile.partition_point(|&(d, _)| d <= day) {
        0 => profile.first().map_or(0, |s| s.1),
        n => profile[n - 1].1,
    }
}

/// Violations of the SKU list: it must be non-empty and each SKU 1 to `max_len` bytes.
fn check_skus(skus: &[String], max_len: usize) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if skus.is_empty() {
        violations.push(FieldViolation::new("skus", "ask for at least one SKU"));
    }
    for (i, sku) in skus.iter().enumerate() {
        if let Some(problem) = sku_problem(sku, max_len) {
            violations.push(FieldViolation::new(format!("skus[{i}]"), problem));
        }
    }
    violations
}

/// What is wrong with a SKU asked about, if anything: it must be 1 to `max_len` bytes. Any
/// other SKU is answered, with nothing available if the index does not know it.
pub(crate) fn sku_problem(sku: &str, max_len: usize) -> Option<String> {
    (sku.is_empty() || sku.len() > max_len).then(|| format!("must be 1 to {max_len} bytes"))
}

/// Why `pairs` item-node pairs are too many for one call, if they are.
pub(crate) fn pairs_problem(pairs: usize, max_pairs: usize) -> Option<String> {
    (pairs > max_pairs)
        .then(|| format!("{pairs} item-node pairs exceed the limit of {max_pairs} per call"))
}

/// The node `id` names, or a violation of `field`.
pub(crate) fn known_node(
    network: &Network,
    field: String,
    id: &str,
) -> Result<NodeIdx, FieldViolation> {
    network
        .node_idx(id)
        .ok_or_else(|| FieldViolation::new(field, format!("unknown node {}", echo(id))))
}

/// The group `id` names, or a violation of `field`.
pub(crate) fn known_group(
    network: &Network,
    field: String,
    id: &str,
) -> Result<u32, FieldViolation> {
    network
        .group_idx(id)
        .ok_or_else(|| FieldViolation::new(field, format!("unknown group {}", echo(id))))
}

/// The nodes asked for, or every node when none is named; unknown ids become violations.
fn resolve_nodes(
    network: &Network,
    node_ids: &[String],
    violations: &mut Vec<FieldViolation>,
) -> Vec<NodeIdx> {
    if node_ids.is_empty() {
        return (0..network.nodes().len() as NodeIdx).collect();
    }
    let lookup = |(i, id): (usize, &String)| known_node(network, format!("node_ids[{i}]"), id);
    collect_valid(node_ids.iter().enumerate().map(lookup), violations)
}

/// The groups asked for, with their ids; unknown ids become violations.
fn resolve_groups<'a>(
    network: &Network,
    group_ids: &'a [String],
    violations: &mut Vec<FieldViolation>,
) -> Vec<(&'a str, u32)> {
    let lookup = |(i, id): (usize, &'a String)| {
        known_group(network, format!("group_ids[{i}]"), id).map(|group| (id.as_str(), group))
    };
    collect_valid(group_ids.iter().enumerate().map(lookup), violations)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{engine, hold, reserve, stock};

    fn ask(skus: &[&str], quantity: Option<Qty>) -> AvailabilityQuery {
        AvailabilityQuery {
            skus: skus.iter().map(|s| (*s).to_owned()).collect(),
            quantity,
            ..AvailabilityQuery::default()
        }
    }

    #[test]
    fn network_atp_subtracts_pooled_holds_but_node_atp_does_not() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        reserve(&engine, &hold("R", &[("SKU", "", 4)]));
        let answer = engine.availability(&ask(&["SKU"], None)).expect("answers");
        let item = &answer.items[0];
        let atp: Vec<Qty> = item.nodes.iter().map(|n| n.atp).collect();
        assert_eq!(atp, [10, 5]);
        assert_eq!(item.network_atp, 11);
    }

    #[test]
    fn node_holds_lower_that_node_and_the_network_total() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        reserve(&engine, &hold("R", &[("SKU", "B", 2)]));
        let answer = engine.availability(&ask(&["SKU"], None)).expect("answers");
        let item = &answer.items[0];
        assert_eq!(item.nodes[1].atp, 3);
        assert_eq!(item.nodes[1].reserved, 2);
        assert_eq!(item.nodes[1].on_hand, 5);
        assert_eq!(item.network_atp, 13);
    }

    #[test]
    fn earliest_is_found_only_where_the_asked_quantity_fits() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        let without = engine.availability(&ask(&["SKU"], None)).expect("answers");
        assert_eq!(without.items[0].network_earliest, None);
        let answer = engine
            .availability(&ask(&["SKU"], Some(8)))
            .expect("answers");
        let item = &answer.items[0];
        assert!(item.nodes[0].earliest.is_some());
        assert_eq!(item.nodes[1].earliest, None, "B has only 5");
        assert_eq!(item.network_earliest, item.nodes[0].earliest);
        let too_much = engine
            .availability(&ask(&["SKU"], Some(16)))
            .expect("answers");
        assert_eq!(too_much.items[0].network_earliest, None);
    }

    #[test]
    fn a_node_reaches_a_quantity_it_holds_exactly() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 3)]);
        let exact = engine
            .availability(&ask(&["SKU"], Some(10)))
            .expect("answers");
        let item = &exact.items[0];
        assert!(item.nodes[0].earliest.is_some(), "A holds exactly 10");
        assert_eq!(item.nodes[0].earliest, item.network_earliest);
        assert_eq!(item.nodes[1].earliest, None, "B holds 3");
        let more = engine
            .availability(&ask(&["SKU"], Some(11)))
            .expect("answers");
        assert_eq!(more.items[0].nodes[0].earliest, None);
        assert!(
            more.items[0].network_earliest.is_some(),
            "A and B together hold 13"
        );
    }

    #[test]
    fn totals_only_answers_the_same_totals_without_nodes() {
        let engine = engine(&["A", "B"]);
        stock(&engine, 1, "SKU", &[("A", 10), ("B", 5)]);
        reserve(&engine, &hold("R", &[("SKU", "", 4)]));
        let full = engine
            .availability(&ask(&["SKU"], Some(8)))
            .expect("answers");
        let totals = AvailabilityQuery {
            totals_only: true,
            ..ask(&["SKU"], Some(8))
        };
        let answer = engine.availability(&totals).expect("answers");
        let (item, all) = (&answer.items[0], &full.items[0]);
        assert!(item.nodes.is_empty());
        assert_eq!(all.nodes.len(), 2);
        assert_eq!(
            (item.network_atp, item.network_earliest),
            (all.network_atp, all.network_earliest)
        );
        assert_eq!(item.network_atp, 11);
        let with_nodes = AvailabilityQuery {
            node_ids: vec!["A".into()],
            ..totals
        };
        let Err(Error::InvalidArgument(violations)) = engine.availability(&with_nodes) else {
            panic!("totals only with nodes named must be rejected");
        };
        assert_eq!(violations[0].field, "totals_only");
    }

    #[test]
    fn nodes_asked_in_any_order_answer_their_own_positions() {
        let engine = engine(&["A", "B", "C", "D", "E"]);
        stock(&engine, 1, "SKU", &[("B", 2), ("D", 4), ("E", 5)]);
        for order in [
            &["A", "B", "C", "D", "E"][..],
            &["E", "D", "C", "B", "A"],
            &["D", "B", "E", "A", "C"],
            &["C", "E", "B"],
            &["B", "B", "A", "D"],
        ] {
            let query = AvailabilityQuery {
                node_ids: order.iter().map(|n| (*n).to_owned()).collect(),
                ..ask(&["SKU"], None)
            };
            let answer = engine.availability(&query).expect("answers");
            let on_hand: Vec<Qty> = answer.items[0].nodes.iter().map(|n| n.on_hand).collect();
            let expected: Vec<Qty> = order
                .iter()
                .map(|n| match *n {
                    "B" => 2,
                    "D" => 4,
                    "E" => 5,
                    _ => 0,
                })
                .collect();
            assert_eq!(on_hand, expected, "asked in the order {order:?}");
        }
    }

    #[test]
    fn unknown_sku_answers_zero_at_every_node() {
        let engine = engine(&["A", "B"]);
        let answer = engine.availability(&ask(&["NONE"], None)).expect("answers");
        let item = &answer.items[0];
        assert_eq!(item.nodes.len(), 2);
        assert!(item.nodes.iter().all(|n| n.atp == 0 && n.on_hand == 0));
        assert_eq!(item.network_atp, 0);
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let engine = engine(&["A"]);
        let query = AvailabilityQuery {
            skus: vec![String::new()],
            node_ids: vec!["NOPE".into()],
            group_ids: vec!["G".into()],
            quantity: Some(0),
            ..AvailabilityQuery::default()
        };
        let Err(Error::InvalidArgument(violations)) = engine.availability(&query) else {
            panic!("an invalid query must be rejected");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["skus[0]", "node_ids[0]", "group_ids[0]", "quantity"]
        );
    }
}
