//! A synthetic day of orders routed two ways over the same stock: by the optimiser, and by the
//! common rule "nearest node with stock for the whole order, else fewest packages, nearest
//! first". Both hold their plans as they go, so later orders see the stock earlier ones took.
//! Reports total shipping cost and packages of each, and a wave routed together against the
//! same orders routed one at a time.
//!
//! `cargo bench --bench routing_day` (or `-- --orders 500` for a shorter day).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::collections::HashMap;

use promised::deadline::Deadline;
use promised::delivery::Destination;
use promised::domain::{distance_km, Qty};
use promised::engine::Engine;
use promised::query::AvailabilityQuery;
use promised::reservation::{Hold, LineRequest, ReserveRequest};
use promised::route::{RouteRequest, Weights};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use common::{demo_engine, on_hand_owner, on_hand_set, sku, Feed, NOW_MS};

const SKUS: usize = 300;

/// (sku, quantity) lines.
type Lines = Vec<(String, Qty)>;
/// A plan as (node id, its lines).
type Shipments = Vec<(String, Lines)>;
const LEVEL: &str = "GROUND";

/// Every engine of the comparison gets the same stock: each SKU at 6 to 20 random nodes.
fn stocked(seed: u64) -> Engine {
    let engine = demo_engine();
    let mut rng = SmallRng::seed_from_u64(seed);
    let nodes: Vec<String> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let mut feeds: HashMap<&str, (Feed, Vec<_>)> = HashMap::new();
    for i in 0..SKUS {
        for _ in 0..rng.random_range(6..20) {
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            let owner = on_hand_owner(&engine, &node);
            let entry = feeds
                .entry(owner)
                .or_insert_with(|| (Feed::resume(&engine, owner), Vec::new()));
            entry
                .1
                .push(on_hand_set(sku(i), node, rng.random_range(5..40), NOW_MS));
        }
    }
    for (feed, updates) in feeds.values_mut() {
        for chunk in updates.chunks(common::BATCH) {
            engine
                .apply_batch(&feed.batch(chunk.to_vec()))
                .expect("valid batch")
                .into_result();
        }
    }
    engine
}

/// Orders with Zipf-like SKU popularity to the network's own postal codes.
fn orders(count: usize, engine: &Engine) -> Vec<RouteRequest> {
    let mut rng = SmallRng::seed_from_u64(99);
    let network = engine.network();
    let places: Vec<(f64, f64)> = network
        .nodes()
        .iter()
        .map(|n| (n.lat + 0.05, n.lon - 0.05))
        .collect();
    let weights: Vec<f64> = (1..=SKUS).map(|rank| 1.0 / rank as f64).collect();
    let total: f64 = weights.iter().sum();
    let pick = move |rng: &mut SmallRng| {
        let mut target = rng.random_range(0.0..total);
        weights.iter().position(|w| {
            target -= w;
            target <= 0.0
        })
    };
    (0..count)
        .map(|o| {
            let mut lines: Vec<(String, Qty)> = Vec::new();
            for _ in 0..rng.random_range(1..5) {
                let item = sku(pick(&mut rng).unwrap_or(0));
                if !lines.iter().any(|(s, _)| *s == item) {
                    lines.push((item, rng.random_range(1..3)));
                }
            }
            RouteRequest {
                order_id: format!("ORDER-{o}"),
                lines,
                destination: Destination {
                    coordinates: Some(places[rng.random_range(0..places.len())]),
                    ..Destination::default()
                },
                service_level: LEVEL.into(),
                ..RouteRequest::default()
            }
        })
        .collect()
}

/// Shipping cost, the whole objective without capacity pressure (shipping, extra packages,
/// node priority, at the default weights), and packages of a plan given as (node, lines).
fn cost_of(engine: &Engine, order: &RouteRequest, plan: &[(String, Lines)]) -> (f64, f64, usize) {
    let network = engine.network();
    let level = network
        .service_levels()
        .iter()
        .find(|l| l.name == LEVEL)
        .expect("level");
    let to = order.destination.coordinates.expect("coordinates");
    let weights = Weights::default();
    let (mut shipping, mut priority) = (0.0, 0.0);
    for (node, _) in plan {
        let at = network.node(network.node_idx(node).expect("node"));
        shipping += level.cost(distance_km((at.lat, at.lon), to));
        priority += weights.priority * f64::from(at.priority);
    }
    let packages = weights.package_penalty * plan.len().saturating_sub(1) as f64;
    (shipping, shipping + packages + priority, plan.len())
}

/// Running totals of one way of routing.
#[derive(Default)]
struct Totals {
    served: usize,
    shipping: f64,
    objective: f64,
    packages: usize,
}

impl Totals {
    fn add(&mut self, (shipping, objective, packages): (f64, f64, usize)) {
        self.served += 1;
        self.shipping += shipping;
        self.objective += objective;
        self.packages += packages;
    }
}

/// The rule most order management systems ship with.
fn nearest_rule(engine: &Engine, order: &RouteRequest) -> Option<Shipments> {
    let network = engine.network();
    let to = order.destination.coordinates.expect("coordinates");
    let query = AvailabilityQuery {
        skus: order.lines.iter().map(|(s, _)| s.clone()).collect(),
        ..AvailabilityQuery::default()
    };
    let answer = engine.availability(&query).expect("query");
    let mut nodes: Vec<usize> = (0..network.nodes().len()).collect();
    let km = |n: usize| distance_km((network.nodes()[n].lat, network.nodes()[n].lon), to);
    nodes.sort_by(|&a, &b| km(a).total_cmp(&km(b)));
    let can = |n: usize, line: usize| answer.items[line].nodes[n].atp >= order.lines[line].1;
    let mut open: Vec<usize> = (0..order.lines.len()).collect();
    let mut plan = Vec::new();
    while !open.is_empty() {
        let best = nodes
            .iter()
            .map(|&n| (n, open.iter().filter(|&&l| can(n, l)).count()))
            .max_by_key(|&(n, covered)| {
                (
                    covered,
                    std::cmp::Reverse(nodes.iter().position(|&m| m == n)),
                )
            })?;
        if best.1 == 0 {
            return None;
        }
        let lines: Vec<(String, Qty)> = open
            .iter()
            .filter(|&&l| can(best.0, l))
            .map(|&l| order.lines[l].clone())
            .collect();
        open.retain(|&l| !can(best.0, l));
        plan.push((network.nodes()[best.0].id.clone(), lines));
    }
    Some(plan)
}

fn hold(engine: &Engine, id: &str, plan: &[(String, Lines)]) -> bool {
    let lines = plan
        .iter()
        .flat_map(|(node, lines)| {
            lines.iter().map(move |(sku, quantity)| LineRequest {
                sku: sku.clone(),
                node_id: node.clone(),
                group_id: String::new(),
                quantity: *quantity,
                need_date: None,
            })
        })
        .collect();
    engine
        .reserve(&ReserveRequest {
            reservation_id: id.into(),
            lines,
            ttl_secs: 3_600,
            owner: String::new(),
        })
        .is_ok()
}

fn main() {
    let count = std::env::args()
        .skip_while(|a| a != "--orders")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    if !common::benchmarking() {
        return;
    }
    let (optimised, rule) = (stocked(5), stocked(5));
    let day = orders(count, &optimised);
    let (mut ours, mut theirs) = (Totals::default(), Totals::default());
    let started = std::time::Instant::now();
    for order in &day {
        let as_order = Hold {
            reservation_id: order.order_id.clone(),
            ttl_secs: 3_600,
            owner: String::new(),
        };
        if let Ok(routed) = optimised.route_and_reserve(order, &as_order, &Deadline::never()) {
            // In memory: nothing to make durable.
            let routed = routed.into_result();
            let plan = routed.routing.plan.expect("a held plan");
            let shipments: Shipments = plan
                .shipments
                .iter()
                .map(|s| {
                    (
                        routed.routing.network.node(s.node).id.clone(),
                        s.lines.clone(),
                    )
                })
                .collect();
            ours.add(cost_of(&optimised, order, &shipments));
        }
        if let Some(plan) = nearest_rule(&rule, order) {
            if hold(&rule, &order.order_id, &plan) {
                theirs.add(cost_of(&rule, order, &plan));
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "synthetic day: {count} orders, {SKUS} SKUs, 50 nodes, {LEVEL} (ran in {elapsed:.2?})"
    );
    println!("| routing | orders served | shipping cost | packages | objective (shipping + extra packages + priority) |");
    println!("|---|---|---|---|---|");
    for (name, t) in [
        ("optimiser", &ours),
        ("nearest with stock, fewest splits", &theirs),
    ] {
        println!(
            "| {name} | {} | {:.2} | {} | {:.2} |",
            t.served, t.shipping, t.packages, t.objective
        );
    }
    let saved = |ours: f64, theirs: f64| 100.0 * (1.0 - ours / theirs);
    let per = |total: f64, t: &Totals| total / t.served.max(1) as f64;
    println!(
        "per order served: shipping {:.1}% lower, objective {:.1}% lower",
        saved(per(ours.shipping, &ours), per(theirs.shipping, &theirs)),
        saved(per(ours.objective, &ours), per(theirs.objective, &theirs)),
    );

    let wave_engine = stocked(5);
    let wave: Vec<RouteRequest> = day.iter().take(200).cloned().collect();
    let batch = wave_engine
        .route_batch(&wave, &Deadline::never())
        .expect("valid wave");
    println!(
        "wave of {} orders: routed together {:.2}, one at a time in arrival order {:.2} ({:.1}% lower)",
        wave.len(),
        batch.total_cost,
        batch.one_by_one_cost,
        100.0 * (1.0 - batch.total_cost / batch.one_by_one_cost)
    );
}
