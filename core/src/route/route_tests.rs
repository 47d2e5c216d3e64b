//! Routing through the engine against an independent brute force, over random small
//! networks and orders: the plan and its runners-up are the cheapest plans that need every
//! node they ship from, with lines split across nodes when the order allows it; every node of
//! the network is in a plan or explained; shipments add up to their plan. Half the cases price
//! by a rate card, each package by the billable weight it carries.

use proptest::prelude::*;

use crate::deadline::Deadline;
use crate::delivery::Destination;
use crate::domain::{distance_km, Qty, ServiceLevel};
use crate::engine::Engine;
use crate::rate_card::{ItemAttributes, Rate, RateCard};
use crate::route::{Constraints, Plan, RouteRequest, Routing, Weights};
use crate::test_support::{placed_engine, stock};

const SKUS: [&str; 3] = ["X", "Y", "Z"];

/// A random network: per node its priority, per SKU per node its stock.
#[derive(Debug, Clone)]
struct Case {
    priorities: Vec<i32>,
    stock: Vec<Vec<Qty>>,
    lines: Vec<(usize, Qty)>,
    split_lines: bool,
    max_packages: u32,
    alternatives: usize,
    /// Per SKU its weight, where the level prices by [`card`]; `None` is the flat level.
    weights: Option<[f64; 3]>,
}

fn case() -> impl Strategy<Value = Case> {
    (1..6usize).prop_flat_map(|nodes| {
        (
            prop::collection::vec(0..3i32, nodes),
            prop::collection::vec(prop::collection::vec(0..7 as Qty, nodes), SKUS.len()),
            prop::collection::vec((0..SKUS.len(), 1..7 as Qty), 1..4),
            any::<bool>(),
            0..4u32,
            0..5usize,
            prop::option::of(prop::array::uniform3(0.2..3.0f64)),
        )
            .prop_map(
                |(priorities, stock, lines, split_lines, max_packages, alternatives, weights)| {
                    Case {
                        priorities,
                        stock,
                        lines,
                        split_lines,
                        max_packages,
                        alternatives,
                        weights,
                    }
                },
            )
    })
}

/// Node `Nn` at latitude `n / 2`, the destination at (0, 0).
fn stocked(case: &Case) -> Engine {
    let (engine, ids) = placed_engine(case.priorities.len(), |n, node| {
        (node.lat, node.priority) = (n as f64 * 0.5, case.priorities[n]);
    });
    let ground = ServiceLevel {
        name: "GROUND".into(),
        transit: vec![(f64::MAX, 2)],
        calendar: Default::default(),
        base_cost: 5.0,
        cost_per_km: 0.01,
        rate_card: case.weights.map(|_| card()),
    };
    let _ = engine.upsert_service_levels(vec![ground]).expect("levels");
    if let Some(weights) = case.weights {
        let items = SKUS.iter().zip(weights).map(|(sku, weight_kg)| {
            let item = ItemAttributes {
                weight_kg,
                ..ItemAttributes::default()
            };
            ((*sku).to_owned(), item)
        });
        let mut items: Vec<_> = items.collect();
        // Z is bulky: 2 kg of dimensional weight per unit.
        items[2].1 = ItemAttributes {
            length_cm: 20.0,
            width_cm: 20.0,
            height_cm: 25.0,
            ..items[2].1
        };
        let _ = engine.upsert_items(items).expect("items");
    }
    for (s, per_node) in case.stock.iter().enumerate() {
        let at: Vec<(&str, Qty)> = (0..ids.len())
            .filter(|&n| per_node[n] > 0)
            .map(|n| (ids[n].as_str(), per_node[n]))
            .collect();
        if !at.is_empty() {
            stock(&engine, s as u64 + 1, SKUS[s], &at);
        }
    }
    engine
}

/// Zones by distance (1 to 120 km, 2 to 300 km, 3 beyond); per zone three weight rows up to
/// 20 kg, the heavier dearer by zone; N1 pays 0.5 to handle a package.
fn card() -> RateCard {
    let rows = (1..=3).flat_map(|zone| {
        let z = f64::from(zone);
        [
            (0.0, 2.0, 3.0 + z),
            (2.0, 6.0, 5.0 + 2.0 * z),
            (6.0, 20.0, 8.0 + 3.0 * z),
        ]
        .map(|(from_kg, to_kg, price)| Rate {
            zone,
            from_kg,
            to_kg,
            price,
        })
    });
    RateCard {
        zone_bands: vec![(120.0, 1), (300.0, 2), (20_000.0, 3)],
        dim_divisor: 5_000.0,
        rates: rows.collect(),
        transit: vec![(1, 1), (2, 2), (3, 2)],
        handling: vec![("N1".into(), 0.5)],
        ..RateCard::default()
    }
}

/// What the card of [`card`] charges node `n` for `kg` of billable weight; `None` over 20 kg.
fn card_price(n: usize, kg: f64) -> Option<f64> {
    let km = distance_km((n as f64 * 0.5, 0.0), (0.0, 0.0));
    let z = [120.0, 300.0].iter().filter(|&&limit| km > limit).count() as f64 + 1.0;
    let price = match kg {
        kg if kg <= 2.0 => 3.0 + z,
        kg if kg <= 6.0 => 5.0 + 2.0 * z,
        kg if kg <= 20.0 => 8.0 + 3.0 * z,
        _ => return None,
    };
    Some(price + if n == 1 { 0.5 } else { 0.0 })
}

/// The carrier's price of the packages of `set`: flat by distance, or under the card by
/// what each holds, each line from the first node of the set that has any of it left.
fn carrier_prices(case: &Case, set: &[usize]) -> Option<Vec<f64>> {
    let Some(weights) = case.weights else {
        let flat = |&n: &usize| 5.0 + 0.01 * distance_km((n as f64 * 0.5, 0.0), (0.0, 0.0));
        return Some(set.iter().map(flat).collect());
    };
    let mut left = needs(case);
    set.iter()
        .map(|&n| {
            let (mut kg, mut cm3) = (0.0, 0.0);
            for (s, left) in left.iter_mut() {
                let stock = case.stock[*s][n];
                let offered = match case.split_lines {
                    true => stock.min(*left),
                    false if stock >= *left => *left,
                    false => 0,
                };
                kg += weights[*s] * offered as f64;
                if *s == 2 {
                    cm3 += 10_000.0 * offered as f64;
                }
                *left -= offered;
            }
            card_price(n, f64::max(kg, cm3 / 5_000.0))
        })
        .collect()
}

/// The order's lines by SKU index, merged.
fn needs(case: &Case) -> Vec<(usize, Qty)> {
    let mut needs: Vec<(usize, Qty)> = Vec::new();
    for &(s, q) in &case.lines {
        match needs.iter_mut().find(|(sku, _)| *sku == s) {
            Some(line) => line.1 += q,
            None => needs.push((s, q)),
        }
    }
    needs
}

/// Every plan by brute force: each set of nodes within the package limit that covers every
/// line (whole from one node, or summed when lines split) and needs each of its nodes, with
/// its cost worked out here; cheapest first.
fn brute_force(case: &Case) -> Vec<f64> {
    let nodes = case.priorities.len();
    let needs = needs(case);
    let limit = if case.max_packages == 0 {
        usize::MAX
    } else {
        case.max_packages as usize
    };
    let covers = |set: &[usize]| {
        needs.iter().all(|&(s, need)| {
            let stock = set.iter().map(|&n| case.stock[s][n]);
            if case.split_lines {
                stock.sum::<Qty>() >= need
            } else {
                stock.max().unwrap_or(0) >= need
            }
        })
    };
    let weights = Weights::default();
    let mut costs = Vec::new();
    for mask in 1u32..(1 << nodes) {
        let set: Vec<usize> = (0..nodes).filter(|n| mask & (1 << n) != 0).collect();
        let needed = set.iter().all(|&drop| {
            let rest: Vec<usize> = set.iter().copied().filter(|&n| n != drop).collect();
            !covers(&rest)
        });
        if set.len() <= limit && covers(&set) && needed {
            let Some(prices) = carrier_prices(case, &set) else {
                continue;
            };
            let priorities = set.iter().map(|&n| f64::from(case.priorities[n]));
            let packages: f64 =
                prices.iter().sum::<f64>() + weights.priority * priorities.sum::<f64>();
            costs.push(packages + weights.package_penalty * (set.len() - 1) as f64);
        }
    }
    costs.sort_by(f64::total_cmp);
    costs
}

fn request(case: &Case) -> RouteRequest {
    RouteRequest {
        order_id: "O".into(),
        lines: case
            .lines
            .iter()
            .map(|&(s, q)| (SKUS[s].to_owned(), q))
            .collect(),
        destination: Destination {
            coordinates: Some((0.0, 0.0)),
            ..Destination::default()
        },
        service_level: "GROUND".into(),
        constraints: Constraints {
            split_lines: case.split_lines,
            max_packages: case.max_packages,
            ..Constraints::default()
        },
        alternatives: case.alternatives,
        ..RouteRequest::default()
    }
}

fn plans(routing: &Routing) -> Vec<&Plan> {
    routing.plan.iter().chain(&routing.alternatives).collect()
}

proptest! {
    #[test]
    fn routes_are_the_brute_force_cheapest_plans(case in case()) {
        let engine = stocked(&case);
        let routing = engine.route(&request(&case), &Deadline::never()).expect("routed");
        let expected = brute_force(&case);
        let found: Vec<f64> = plans(&routing).iter().map(|p| p.total_cost).collect();
        let best: Vec<f64> = expected.iter().copied().take(case.alternatives + 1).collect();
        prop_assert_eq!(found.len(), best.len(), "found {:?}, expected {:?}", found, expected);
        for (f, e) in found.iter().zip(&best) {
            prop_assert!((f - e).abs() < 1e-9, "found {:?}, expected {:?}", found, best);
        }
        let mut node_sets: Vec<Vec<u32>> = plans(&routing)
            .iter()
            .map(|p| {
                let mut nodes: Vec<u32> = p.shipments.iter().map(|s| s.node).collect();
                nodes.sort_unstable();
                nodes
            })
            .collect();
        node_sets.sort();
        node_sets.dedup();
        prop_assert_eq!(node_sets.len(), found.len(), "runners-up are distinct");
    }

    #[test]
    fn every_plan_ships_the_order_and_its_shipments_add_up(case in case()) {
        let engine = stocked(&case);
        let routing = engine.route(&request(&case), &Deadline::never()).expect("routed");
        for plan in plans(&routing) {
            let sum: f64 = plan.shipments.iter().map(|s| s.cost.total()).sum();
            prop_assert!((sum - plan.total_cost).abs() < 1e-9, "{plan:?}");
            for &(s, need) in &needs(&case) {
                let shipped: Qty = plan
                    .shipments
                    .iter()
                    .flat_map(|shipment| &shipment.lines)
                    .filter(|(sku, _)| sku == SKUS[s])
                    .map(|(_, q)| q)
                    .sum();
                prop_assert_eq!(shipped, need, "{:?}", plan);
            }
            for shipment in &plan.shipments {
                for (sku, q) in &shipment.lines {
                    let s = SKUS.iter().position(|k| k == sku).expect("an order SKU");
                    prop_assert!(*q <= case.stock[s][shipment.node as usize], "{plan:?}");
                }
            }
        }
    }

    #[test]
    fn every_node_is_in_a_plan_or_explained(case in case()) {
        let engine = stocked(&case);
        let routing = engine.route(&request(&case), &Deadline::never()).expect("routed");
        for n in 0..case.priorities.len() as u32 {
            let planned = plans(&routing).iter().any(|p| p.shipments.iter().any(|s| s.node == n));
            let reasons: Vec<&String> = routing
                .excluded
                .iter()
                .filter(|(node, _)| *node == n)
                .map(|(_, reason)| reason)
                .collect();
            match (planned, reasons.as_slice()) {
                (true, []) => {}
                (false, [reason]) => prop_assert!(!reason.is_empty()),
                _ => prop_assert!(false, "N{n} planned {planned}, reasons {reasons:?}"),
            }
        }
    }
}

#[test]
fn a_line_no_node_has_alone_ships_from_two() {
    let case = Case {
        priorities: vec![0, 0],
        stock: vec![vec![6, 6], vec![0, 0], vec![0, 0]],
        lines: vec![(0, 6), (0, 4)],
        split_lines: true,
        max_packages: 2,
        alternatives: 3,
        weights: None,
    };
    let engine = stocked(&case);
    let routing = engine
        .route(&request(&case), &Deadline::never())
        .expect("routed");
    let plan = routing.plan.as_ref().expect("10 of X from 6 + 6");
    let shipped: Vec<(u32, Qty)> = plan
        .shipments
        .iter()
        .map(|s| (s.node, s.lines[0].1))
        .collect();
    assert_eq!(
        shipped,
        [(0, 6), (1, 4)],
        "the nearer node ships all it has"
    );
    assert!(
        routing.alternatives.is_empty(),
        "{:?}",
        routing.alternatives
    );
    let whole = Case {
        split_lines: false,
        ..case
    };
    let routing = engine
        .route(&request(&whole), &Deadline::never())
        .expect("routed");
    assert!(routing.plan.is_none());
    let reasons: Vec<&str> = routing.excluded.iter().map(|(_, r)| r.as_str()).collect();
    let short = "has only 6 of the 10 of X, and lines do not split";
    assert_eq!(reasons, [short, short]);
}
