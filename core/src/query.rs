//! Availability queries: time-phased ATP per node, group and network totals, and the earliest
//! date a quantity is available. One shard read lock per SKU; nothing is written.

use std::ops::Range;
use std::sync::Arc;

use crate::domain::{echo, Day, Qty};
use crate::engine::Engine;
use crate::error::{Error, FieldViolation, Result};
use crate::index::{Pool, PoolHold, Position, SkuPositions};
use crate::network::{Network, NodeIdx};
use crate::view::{AtpView, Figures};

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

/// Every position's ATP step function, (day, ATP from that day on), in one buffer: the i-th
/// position's steps are `steps[spans[i]]`, none where its node is excluded. Built once per SKU,
/// for the nodes' earliest days and for the totals', with no allocation per position.
struct Profiles {
    steps: Vec<(Day, Qty)>,
    spans: Vec<(NodeIdx, Range<usize>)>,
}

impl Profiles {
    fn of(view: &AtpView<'_, '_>, positions: &[Position]) -> Self {
        // A position has a step on its node's day and at most one on each event's day.
        let most = positions
            .iter()
            .map(|p| 1 + p.receipts().len() + p.demand().len())
            .sum();
        let mut steps = Vec::with_capacity(most);
        let spans = positions
            .iter()
            .map(|p| {
                let start = steps.len();
                view.push_profile(p, &mut steps);
                (p.node(), start..steps.len())
            })
            .collect();
        Self { steps, spans }
    }

    /// The i-th position's steps.
    fn of_position(&self, i: usize) -> &[(Day, Qty)] {
        &self.steps[self.spans[i].1.clone()]
    }

    /// Each position's node and steps.
    fn iter(&self) -> impl Iterator<Item = (NodeIdx, &[(Day, Qty)])> {
        self.spans
            .iter()
            .map(|(node, span)| (*node, &self.steps[span.clone()]))
    }
}

/// A validated query, resolved against one network version at one instant.
struct Scope<'a, 'i> {
    view: AtpView<'a, 'i>,
    nodes: Asked,
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
            nodes: if query.totals_only {
                Asked::Named(Vec::new())
            } else {
                nodes
            },
            groups,
            quantity: query.quantity,
        })
    }

    fn item(&self, sku: &str, entry: Option<&SkuPositions>) -> ItemAvailability {
        let positions = entry.map_or(&[][..], SkuPositions::positions);
        let pools = entry.map_or(&[][..], SkuPositions::pools);
        let profiles = self.quantity.map(|_| Profiles::of(&self.view, positions));
        let earliest_at =
            |i: usize| first_reaching(profiles.as_ref()?.of_position(i), self.quantity?);
        let worked = self.work_out(positions, profiles.as_ref(), earliest_at);
        let total = |pool: Pool| {
            self.view
                .pool_atp(positions, pools, |i| worked.atp(i), pool)
        };
        // The totals' earliest days share one buffer of step changes.
        let mut changes = Vec::with_capacity(profiles.as_ref().map_or(0, |p| p.steps.len()));
        let mut earliest =
            |pool: Pool| self.pool_earliest(profiles.as_ref(), pools, pool, &mut changes);
        let groups = self
            .groups
            .iter()
            .map(|&(group_id, group)| GroupAvailability {
                group_id: group_id.to_owned(),
                atp: total(Pool::Group(group)),
                earliest: earliest(Pool::Group(group)),
            })
            .collect();
        let (network_atp, network_earliest) = (total(Pool::Network), earliest(Pool::Network));
        ItemAvailability {
            sku: sku.to_owned(),
            nodes: self.nodes_of(positions, worked, earliest_at),
            network_atp,
            network_earliest,
            groups,
        }
    }

    /// Each position's figures, worked out once for its node's answer and for the totals:
    /// when every node is asked, as the answer itself.
    fn work_out(
        &self,
        positions: &[Position],
        profiles: Option<&Profiles>,
        earliest_at: impl Fn(usize) -> Option<Day>,
    ) -> Worked {
        let figures = positions.iter().enumerate().map(|(i, p)| {
            self.view
                .figures(p, profiles.map(|steps| steps.of_position(i)))
        });
        match self.nodes {
            Asked::Every(_) => Worked::Answers(
                positions
                    .iter()
                    .zip(figures)
                    .enumerate()
                    .map(|(i, (p, f))| self.position_availability(p, f, earliest_at(i)))
                    .collect(),
            ),
            Asked::Named(_) => Worked::Figures(figures.collect()),
        }
    }

    /// The asked nodes' availability, given the SKU's positions, what was worked out for them
    /// and their earliest days. When every node is asked and each has a position, those are
    /// the answers. Otherwise, since positions are in node order, a node asked after every
    /// node before it is found by walking on from the last one found; only a node asked out
    /// of order is searched for.
    fn nodes_of(
        &self,
        positions: &[Position],
        worked: Worked,
        earliest_at: impl Fn(usize) -> Option<Day>,
    ) -> Vec<NodeAvailability> {
        let worked = match worked {
            Worked::Answers(answers) if self.nodes.len() == answers.len() => return answers,
            worked => worked,
        };
        let answer_at = |i: usize| match &worked {
            Worked::Answers(answers) => answers[i],
            Worked::Figures(figures) => {
                self.position_availability(&positions[i], figures[i], earliest_at(i))
            }
        };
        // The positions before `next` are of nodes up to the highest asked so far.
        let mut next = 0;
        let mut highest: Option<NodeIdx> = None;
        self.nodes
            .iter()
            .map(|node| {
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
                at.map_or_else(|| self.absent(node), answer_at)
            })
            .collect()
    }

    /// First day the pool's members have the queried quantity on top of the pool's own holds;
    /// `None` when no quantity was asked or it is never reached. `changes` is scratch space.
    fn pool_earliest(
        &self,
        profiles: Option<&Profiles>,
        pools: &[PoolHold],
        pool: Pool,
        changes: &mut Vec<(Day, Qty)>,
    ) -> Option<Day> {
        let (profiles, quantity) = (profiles?, self.quantity?);
        let held: Qty = pools
            .iter()
            .filter(|h| h.pool == pool)
            .map(|h| h.quantity)
            .sum();
        let members = profiles
            .iter()
            .filter(|(node, _)| self.view.in_pool(pool, *node))
            .map(|(_, steps)| steps);
        let start = step_changes(members, changes);
        first_day_reaching(start, changes, quantity + held)
    }

    /// A position's answer for its node, given its figures and earliest day.
    fn position_availability(
        &self,
        position: &Position,
        figures: Figures,
        earliest: Option<Day>,
    ) -> NodeAvailability {
        let node = position.node();
        let totals = position.totals();
        NodeAvailability {
            node,
            atp: figures.atp,
            on_hand: totals.on_hand,
            reserved: totals.reserved,
            allocated: totals.allocated,
            safety_stock: figures.safety_stock,
            inbound: totals.inbound,
            earliest,
            degraded: self.view.is_degraded(node),
        }
    }

    /// The answer for a node without a position of the SKU.
    fn absent(&self, node: NodeIdx) -> NodeAvailability {
        let base = self.view.base_safety(node, None);
        NodeAvailability {
            node,
            atp: 0,
            on_hand: 0,
            reserved: 0,
            allocated: 0,
            safety_stock: self.view.safety(node, None).unwrap_or(base),
            inbound: 0,
            earliest: None,
            degraded: self.view.is_degraded(node),
        }
    }
}

/// Turns the members' step functions into the first of their days, the ATP they add up to
/// until their first rise (each answers its first step's ATP before its first day) and, in
/// `changes`, the day and size of each rise.
fn step_changes<'s>(
    members: impl Iterator<Item = &'s [(Day, Qty)]>,
    changes: &mut Vec<(Day, Qty)>,
) -> (Option<Day>, Qty) {
    changes.clear();
    let (mut first, mut from) = (None::<Day>, 0);
    for steps in members {
        let Some(&(day, atp)) = steps.first() else {
            continue;
        };
        first = Some(first.map_or(day, |first| first.min(day)));
        from += atp;
        let rises = steps.windows(2).map(|w| (w[1].0, w[1].1 - w[0].1));
        changes.extend(rises.filter(|&(_, rise)| rise > 0));
    }
    (first, from)
}

/// The first day on which the members' step functions, as [`step_changes`] gave them, add up
/// to `quantity`: their first day if they do from the start, else the day of a rise.
fn first_day_reaching(
    (first, from): (Option<Day>, Qty),
    changes: &mut [(Day, Qty)],
    quantity: Qty,
) -> Option<Day> {
    if from >= quantity {
        return first;
    }
    first_reaching_total(changes, from, quantity)
}

/// The first of the `changes`' days on which `from` plus every change due by then reaches
/// `quantity`. Selected as quickselect finds a rank, without sorting: each round splits the
/// days around one of them and keeps only the side the answer is on, so the work is linear in
/// the changes on average. The order of `changes` is lost.
fn first_reaching_total(changes: &mut [(Day, Qty)], mut from: Qty, quantity: Qty) -> Option<Day> {
    let mut found = None;
    let mut rest = changes;
    while let Some(&(pivot, _)) = rest.get(rest.len() / 2) {
        // [before | on the pivot's day | after], by swapping in place.
        let (mut before, mut after, mut at) = (0, rest.len(), 0);
        while at < after {
            match rest[at].0.cmp(&pivot) {
                std::cmp::Ordering::Less => {
                    rest.swap(at, before);
                    before += 1;
                    at += 1;
                }
                std::cmp::Ordering::Equal => at += 1,
                std::cmp::Ordering::Greater => {
                    after -= 1;
                    rest.swap(at, after);
                }
            }
        }
        let by_pivot: Qty = rest[..after].iter().map(|c| c.1).sum();
        if from + by_pivot >= quantity {
            // Reached by the pivot's day: it is the answer unless an earlier day is.
            found = Some(pivot);
            rest = &mut rest[..before];
        } else {
            from += by_pivot;
            rest = &mut rest[after..];
        }
    }
    found
}

/// The first day of a step function (ascending by day and by ATP) with at least `quantity`.
fn first_reaching(steps: &[(Day, Qty)], quantity: Qty) -> Option<Day> {
    steps
        .iter()
        .find(|&&(_, atp)| atp >= quantity)
        .map(|&(day, _)| day)
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

/// The node `id` names, or a violation of the field `field` names (made only then).
pub(crate) fn known_node(
    network: &Network,
    field: impl FnOnce() -> String,
    id: &str,
) -> Result<NodeIdx, FieldViolation> {
    network
        .node_idx(id)
        .ok_or_else(|| FieldViolation::new(field(), format!("unknown node {}", echo(id))))
}

/// The group `id` names, or a violation of the field `field` names (made only then).
pub(crate) fn known_group(
    network: &Network,
    field: impl FnOnce() -> String,
    id: &str,
) -> Result<u32, FieldViolation> {
    network
        .group_idx(id)
        .ok_or_else(|| FieldViolation::new(field(), format!("unknown group {}", echo(id))))
}

/// What was worked out for each position of a SKU.
enum Worked {
    /// Its node's answer (every node was asked).
    Answers(Vec<NodeAvailability>),
    /// Its ATP and safety stock (some nodes were named, or none for totals only).
    Figures(Vec<Figures>),
}

impl Worked {
    fn atp(&self, i: usize) -> Qty {
        match self {
            Self::Answers(answers) => answers[i].atp,
            Self::Figures(figures) => figures[i].atp,
        }
    }
}

/// The nodes a query answers for.
enum Asked {
    /// Every node of the network, of which there are this many: none was named.
    Every(NodeIdx),
    /// The nodes named, in the order asked (none for totals only).
    Named(Vec<NodeIdx>),
}

impl Asked {
    fn len(&self) -> usize {
        match self {
            Self::Every(count) => *count as usize,
            Self::Named(nodes) => nodes.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        let (every, named) = match self {
            Self::Every(count) => (0..*count, &[][..]),
            Self::Named(nodes) => (0..0, nodes.as_slice()),
        };
        every.chain(named.iter().copied())
    }
}

/// The nodes asked for, or every node when none is named; unknown ids become violations.
fn resolve_nodes(
    network: &Network,
    node_ids: &[String],
    violations: &mut Vec<FieldViolation>,
) -> Asked {
    if node_ids.is_empty() {
        return Asked::Every(network.nodes().len() as NodeIdx);
    }
    let lookup = |(i, id): (usize, &String)| known_node(network, || format!("node_ids[{i}]"), id);
    Asked::Named(collect_valid(
        node_ids.iter().enumerate().map(lookup),
        violations,
    ))
}

/// The groups asked for, with their ids; unknown ids become violations.
fn resolve_groups<'a>(
    network: &Network,
    group_ids: &'a [String],
    violations: &mut Vec<FieldViolation>,
) -> Vec<(&'a str, u32)> {
    let lookup = |(i, id): (usize, &'a String)| {
        known_group(network, || format!("group_ids[{i}]"), id).map(|group| (id.as_str(), group))
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
    use proptest::prelude::*;

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
    fn asking_every_node_answers_as_naming_them_all() {
        let nodes = ["A", "B", "C", "D"];
        let engine = engine(&nodes);
        stock(
            &engine,
            1,
            "DENSE",
            &[("A", 1), ("B", 2), ("C", 3), ("D", 4)],
        );
        stock(&engine, 2, "SPARSE", &[("B", 6), ("D", 1)]);
        reserve(
            &engine,
            &hold("R", &[("DENSE", "C", 2), ("SPARSE", "B", 1)]),
        );
        for quantity in [None, Some(3)] {
            let every = engine
                .availability(&ask(&["DENSE", "SPARSE"], quantity))
                .expect("answers");
            let named = AvailabilityQuery {
                node_ids: nodes.iter().map(|n| (*n).to_owned()).collect(),
                ..ask(&["DENSE", "SPARSE"], quantity)
            };
            let named = engine.availability(&named).expect("answers");
            assert_eq!(every.items, named.items, "quantity {quantity:?}");
            let atp: Vec<Qty> = every.items[0].nodes.iter().map(|n| n.atp).collect();
            assert_eq!(atp, [1, 2, 1, 4]);
            let atp: Vec<Qty> = every.items[1].nodes.iter().map(|n| n.atp).collect();
            assert_eq!(atp, [0, 5, 0, 1]);
            assert_eq!(every.items[1].network_atp, 6);
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

    /// A step function as positions have them: ascending by day and by ATP.
    fn steps() -> impl Strategy<Value = Vec<(Day, Qty)>> {
        proptest::collection::vec((1..20i32, 0..40i64), 0..6).prop_map(|rises| {
            let (mut day, mut atp) = (0, 0);
            rises
                .into_iter()
                .map(|(gap, rise)| {
                    day += gap;
                    atp += rise;
                    (Day(day), atp)
                })
                .collect()
        })
    }

    proptest! {
        /// The selection finds the day a day-by-day sum finds: the first of the members'
        /// days on which their ATP (each its first step's before its first day) adds up.
        #[test]
        fn the_totals_earliest_day_is_the_first_day_the_members_add_up(
            members in proptest::collection::vec(steps(), 0..8),
            quantity in 1..200i64,
        ) {
            let atp_on = |steps: &[(Day, Qty)], day: Day| {
                match steps.partition_point(|&(d, _)| d <= day) {
                    0 => steps.first().map_or(0, |s| s.1),
                    n => steps[n - 1].1,
                }
            };
            let mut days: Vec<Day> = members.iter().flatten().map(|s| s.0).collect();
            days.sort_unstable();
            let expected = days.into_iter().find(|&day| {
                members.iter().map(|m| atp_on(m, day)).sum::<Qty>() >= quantity
            });
            let mut changes = Vec::new();
            let start = step_changes(members.iter().map(Vec::as_slice), &mut changes);
            prop_assert_eq!(first_day_reaching(start, &mut changes, quantity), expected);
        }
    }
}
