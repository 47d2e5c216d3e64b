//! A synthetic day of orders routed two ways over the same stock: by the optimiser, and by the
//! common rule "nearest node with stock for the whole order, else fewest packages, nearest
//! first". Both hold their plans as they go, so later orders see the stock earlier ones took.
//! Reports total shipping cost and packages of each, and a wave routed together against the
//! same orders routed one at a time.
//!
//! With `--rate-cards` the day is priced as carriers price it: GROUND by zone and billable
//! weight (see [`rate_card`]), every SKU with a weight and dimensions, every node with a
//! handling cost and a daily capacity that binds, and scarce stock. Both ways are priced by
//! the same card; the optimiser's orders are committed as they are routed, so they count
//! against their nodes' capacity, and the rule skips nodes whose day it has filled.
//!
//! `cargo bench --bench routing_day` (or `-- --orders 500` for a shorter day, and
//! `-- --rate-cards` for the priced day).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::collections::HashMap;

use promised::cost::{self, Parcel};
use promised::deadline::Deadline;
use promised::delivery::Destination;
use promised::domain::{distance_km, NodeKind, Qty};
use promised::engine::Engine;
use promised::query::AvailabilityQuery;
use promised::rate_card::{ItemAttributes, Rate, RateCard};
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

/// How the day is set up.
#[derive(Clone, Copy)]
struct Day {
    /// Rate cards, item weights, handling costs, binding capacities and scarce stock.
    priced: bool,
}

/// Every engine of the comparison gets the same stock: each SKU at 6 to 20 random nodes with
/// 5 to 39 each, or in the priced day at 2 to 5 nodes with 1 to 7.
fn stocked(seed: u64, day: Day) -> Engine {
    let engine = demo_engine();
    if day.priced {
        price(&engine);
    }
    let (spread, depth) = if day.priced {
        (2..6, 1..8)
    } else {
        (6..20, 5..40)
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let nodes: Vec<String> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let mut feeds: HashMap<&str, (Feed, Vec<_>)> = HashMap::new();
    for i in 0..SKUS {
        for _ in 0..rng.random_range(spread.clone()) {
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            let owner = on_hand_owner(&engine, &node);
            let entry = feeds
                .entry(owner)
                .or_insert_with(|| (Feed::resume(&engine, owner), Vec::new()));
            entry.1.push(on_hand_set(
                sku(i),
                node,
                rng.random_range(depth.clone()),
                NOW_MS,
            ));
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

/// Daily capacity of every node in the priced day: the day's orders fill the busiest.
const CAPACITY: u32 = 8;

/// GROUND's card: zone 2 within 150 km up to zone 8 beyond 1,800 km; per zone, rows up to 1,
/// 2, 5, 10, 20 and 70 kg priced `7 + 0.8 z + (0.35 + 0.12 z) kg`; dimensional weight at 5,000
/// cm3 per kg; stores pay 2.0 to handle a package, DCs 0.75. Every SKU weighs 0.1 to 15 kg
/// (log-uniform) and measures 5 to 60 cm a side; every node ships at most [`CAPACITY`]
/// orders a day.
fn price(engine: &Engine) {
    let network = engine.network();
    let zones = [
        (150.0, 2),
        (600.0, 3),
        (1_000.0, 4),
        (1_400.0, 5),
        (1_800.0, 6),
        (6_000.0, 8),
    ];
    let mut rates = Vec::new();
    for &(_, zone) in &zones {
        let z = f64::from(zone);
        let mut from_kg = 0.0;
        for to_kg in [1.0, 2.0, 5.0, 10.0, 20.0, 70.0] {
            let price = 7.0 + 0.8 * z + (0.35 + 0.12 * z) * to_kg;
            rates.push(Rate {
                zone,
                from_kg,
                to_kg,
                price,
            });
            from_kg = to_kg;
        }
    }
    let handling = network.nodes().iter().map(|n| {
        let cost = if n.kind == NodeKind::Store { 2.0 } else { 0.75 };
        (n.id.clone(), cost)
    });
    let card = RateCard {
        zone_bands: zones.to_vec(),
        dim_divisor: 5_000.0,
        rates,
        transit: vec![(2, 1), (3, 2), (4, 2), (5, 3), (6, 4), (8, 5)],
        handling: handling.collect(),
        ..RateCard::default()
    };
    let mut ground = network.service_levels()[0].clone();
    assert_eq!(ground.name, LEVEL);
    ground.rate_card = Some(card);
    let _ = engine
        .upsert_service_levels(vec![ground])
        .expect("a whole card");
    let mut rng = SmallRng::seed_from_u64(7);
    let items = (0..SKUS).map(|i| {
        let mut side = || rng.random_range(5.0..60.0);
        let (length_cm, width_cm, height_cm) = (side(), side(), side());
        let weight_kg = (rng.random_range(0.1f64.ln()..15.0f64.ln())).exp();
        let item = ItemAttributes {
            weight_kg,
            length_cm,
            width_cm,
            height_cm,
        };
        (sku(i), item)
    });
    let _ = engine.upsert_items(items.collect()).expect("items");
    let nodes = network.nodes().iter().map(|n| {
        let mut node = n.clone();
        node.fulfilment.daily_capacity = CAPACITY;
        node
    });
    let _ = engine.upsert_nodes(nodes.collect()).expect("capacities");
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
/// node priority, at the default weights), and packages of a plan given as (node, lines),
/// each package priced by the level's card where it has one; `None` when the card carries
/// one of them not.
fn cost_of(
    engine: &Engine,
    order: &RouteRequest,
    plan: &[(String, Lines)],
) -> Option<(f64, f64, usize)> {
    let network = engine.network();
    let level = network
        .service_levels()
        .iter()
        .find(|l| l.name == LEVEL)
        .expect("level");
    let to = order.destination.coordinates.expect("coordinates");
    let weights = Weights::default();
    let (mut shipping, mut priority) = (0.0, 0.0);
    for (node, lines) in plan {
        let at = network.node(network.node_idx(node).expect("node"));
        let items = lines.iter().map(|(sku, q)| (network.item(sku), *q));
        let (kg, cm3) = cost::contents(items);
        let parcel = Parcel {
            node_id: &at.id,
            origin_postal: &at.postal_code,
            destination_postal: "",
            km: distance_km((at.lat, at.lon), to),
            kg,
            cm3,
        };
        shipping += cost::shipping(level, &parcel)?;
        priority += weights.priority * f64::from(at.priority);
    }
    let packages = weights.package_penalty * plan.len().saturating_sub(1) as f64;
    Some((shipping, shipping + packages + priority, plan.len()))
}

/// Running totals of one way of routing.
#[derive(Default)]
struct Totals {
    served: usize,
    shipping: f64,
    objective: f64,
    packages: usize,
    /// Orders served in more than one package.
    split: usize,
}

impl Totals {
    fn add(&mut self, (shipping, objective, packages): (f64, f64, usize)) {
        self.served += 1;
        self.shipping += shipping;
        self.objective += objective;
        self.packages += packages;
        self.split += usize::from(packages > 1);
    }
}

/// The rule most order management systems ship with, passing over nodes whose day is `full`.
fn nearest_rule(
    engine: &Engine,
    order: &RouteRequest,
    full: impl Fn(&str) -> bool,
) -> Option<Shipments> {
    let network = engine.network();
    let to = order.destination.coordinates.expect("coordinates");
    let query = AvailabilityQuery {
        skus: order.lines.iter().map(|(s, _)| s.clone()).collect(),
        ..AvailabilityQuery::default()
    };
    let answer = engine.availability(&query).expect("query");
    let mut nodes: Vec<usize> = (0..network.nodes().len())
        .filter(|&n| !full(&network.nodes()[n].id))
        .collect();
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
    let day = Day {
        priced: std::env::args().any(|a| a == "--rate-cards"),
    };
    if !common::benchmarking() {
        return;
    }
    let (optimised, rule) = (stocked(5, day), stocked(5, day));
    let orders_of_day = orders(count, &optimised);
    let (mut ours, mut theirs) = (Totals::default(), Totals::default());
    // The rule's packages per node, so that it too passes over nodes whose day is full.
    let mut shipped: HashMap<String, u32> = HashMap::new();
    let started = std::time::Instant::now();
    for order in &orders_of_day {
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
            ours.add(cost_of(&optimised, order, &shipments).expect("a carried plan"));
            // Committed, the order counts against its nodes' daily capacity.
            let id = &order.order_id;
            let _ = optimised.commit(id, id).expect("a held plan commits");
        }
        let full = |node: &str| day.priced && shipped.get(node).is_some_and(|&n| n >= CAPACITY);
        let Some(plan) = nearest_rule(&rule, order, full) else {
            continue;
        };
        // A package the card does not carry is an order the rule cannot serve.
        if let Some(cost) = cost_of(&rule, order, &plan) {
            if hold(&rule, &order.order_id, &plan) {
                theirs.add(cost);
                for (node, _) in &plan {
                    *shipped.entry(node.clone()).or_default() += 1;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let filled = shipped.values().filter(|&&n| n >= CAPACITY).count();
    let priced = if day.priced {
        format!("rate card, item weights, handling, capacity {CAPACITY} a day (the rule filled {filled} nodes), scarce stock")
    } else {
        "flat base plus per km".to_owned()
    };
    println!(
        "synthetic day: {count} orders, {SKUS} SKUs, 50 nodes, {LEVEL}, {priced} (ran in {elapsed:.2?})"
    );
    println!("| routing | orders served | shipping cost | packages | split orders | objective (shipping + extra packages + priority) |");
    println!("|---|---|---|---|---|---|");
    for (name, t) in [
        ("optimiser", &ours),
        ("nearest with stock, fewest splits", &theirs),
    ] {
        let split = 100.0 * t.split as f64 / t.served.max(1) as f64;
        println!(
            "| {name} | {} | {:.2} | {} | {} ({split:.1}%) | {:.2} |",
            t.served, t.shipping, t.packages, t.split, t.objective
        );
    }
    let saved = |ours: f64, theirs: f64| 100.0 * (1.0 - ours / theirs);
    let per = |total: f64, t: &Totals| total / t.served.max(1) as f64;
    println!(
        "per order served: shipping {:.1}% lower, objective {:.1}% lower",
        saved(per(ours.shipping, &ours), per(theirs.shipping, &theirs)),
        saved(per(ours.objective, &ours), per(theirs.objective, &theirs)),
    );

    let wave_engine = stocked(5, day);
    let wave: Vec<RouteRequest> = orders_of_day.iter().take(200).cloned().collect();
    let batch = wave_engine
        .route_batch(&wave, &Deadline::never())
        .expect("valid wave");
    println!(
        "wave of {} orders: routed together {:.2} serving {}, one at a time in arrival order {:.2} serving {} ({:.1}% lower)",
        wave.len(),
        batch.total_cost,
        batch.served,
        batch.one_by_one_cost,
        batch.one_by_one_served,
        100.0 * (1.0 - batch.total_cost / batch.one_by_one_cost)
    );
}
