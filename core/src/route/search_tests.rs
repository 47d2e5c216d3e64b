//! The search against brute force: over random small orders and networks, with lines whose
//! quantity may come from several nodes, its plans are exactly the cheapest plans in which
//! every node is needed, distinct and in cost order.

use super::*;
use crate::cost::CostBreakdown;
use crate::domain::Day;
use crate::network::NodeIdx;
use crate::route::{Offer, DEFAULT_SEARCH_BUDGET};
use proptest::prelude::*;

/// Candidate `n` costs `costs[n]` and offers `offers[i][n]` of line `i`.
fn candidates(costs: &[f64], offers: &[Vec<Qty>]) -> Vec<Candidate> {
    costs
        .iter()
        .enumerate()
        .map(|(n, &cost)| Candidate {
            node: n as NodeIdx,
            cost,
            breakdown: CostBreakdown::default(),
            km: 0.0,
            offers: offers
                .iter()
                .map(|line| {
                    (line[n] > 0).then_some(Offer {
                        quantity: line[n],
                        ship: Day(0),
                        delivery: Day(1),
                    })
                })
                .collect(),
        })
        .collect()
}

/// Every set of nodes within `limit` that covers each line's need and needs each of its
/// nodes, cheapest first (ties by node indices, as the search orders them).
fn brute_force(
    costs: &[f64],
    offers: &[Vec<Qty>],
    needs: &[Qty],
    limit: usize,
) -> Vec<(f64, Vec<usize>)> {
    let nodes = costs.len();
    let covers = |chosen: &[usize]| {
        offers
            .iter()
            .zip(needs)
            .all(|(line, &need)| chosen.iter().map(|&n| line[n]).sum::<Qty>() >= need)
    };
    let mut plans = Vec::new();
    for mask in 1u32..(1 << nodes) {
        let chosen: Vec<usize> = (0..nodes).filter(|n| mask & (1 << n) != 0).collect();
        let needed = chosen.iter().all(|&drop| {
            let without: Vec<usize> = chosen.iter().copied().filter(|&n| n != drop).collect();
            !covers(&without)
        });
        if chosen.len() <= limit && covers(&chosen) && needed {
            plans.push((chosen.iter().map(|&n| costs[n]).sum::<f64>(), chosen));
        }
    }
    plans.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    plans
}

fn ordered<'a>(candidates: &'a [Candidate], needs: &'a [Qty], limit: usize) -> Ordered<'a> {
    Ordered {
        candidates,
        needs,
        limit,
        budget: DEFAULT_SEARCH_BUDGET,
        pricing: None,
    }
}

/// A small random network: per line, what each node offers (often nothing, often a part).
fn network() -> impl Strategy<Value = (Vec<f64>, Vec<Vec<Qty>>, Vec<Qty>)> {
    (1..8usize, 1..5usize).prop_flat_map(|(nodes, lines)| {
        (
            prop::collection::vec(1.0..50.0f64, nodes),
            prop::collection::vec(prop::collection::vec(0..7 as Qty, nodes), lines),
            prop::collection::vec(1..9 as Qty, lines),
        )
    })
}

proptest! {
    #[test]
    fn the_search_keeps_the_brute_force_cheapest_plans_in_order(
        (costs, offers, needs) in network(),
        limit in 1..5usize,
        keep in 1..6usize,
    ) {
        let candidates = candidates(&costs, &offers);
        let order = ordered(&candidates, &needs, limit);
        let never = Deadline::never();
        let search = Search::run(&order, keep, None, &never).expect("no deadline");
        prop_assert!(search.optimal);
        let expected = brute_force(&costs, &offers, &needs, limit);
        let found: Vec<f64> = search.solutions.iter().map(|s| s.0).collect();
        let best: Vec<f64> = expected.iter().take(keep).map(|s| s.0).collect();
        prop_assert_eq!(found.len(), best.len(), "{:?} vs {:?}", search.solutions, expected);
        for (f, e) in found.iter().zip(&best) {
            prop_assert!((f - e).abs() < 1e-9, "found {:?}, expected {:?}", found, best);
        }
        for (_, nodes) in &search.solutions {
            let needed_only = expected.iter().any(|(_, plan)| plan == nodes);
            prop_assert!(needed_only, "{nodes:?} has a node it does not need");
        }
        let mut distinct: Vec<&Vec<usize>> = search.solutions.iter().map(|s| &s.1).collect();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), search.solutions.len());
    }

    #[test]
    fn a_forced_node_gets_its_cheapest_plan(
        (costs, offers, needs) in network(),
        limit in 1..5usize,
        forced in 0..8usize,
    ) {
        let forced = forced % costs.len();
        let candidates = candidates(&costs, &offers);
        let order = ordered(&candidates, &needs, limit);
        let never = Deadline::never();
        let search = Search::run(&order, 1, Some(forced), &never).expect("no deadline");
        let expected = brute_force(&costs, &offers, &needs, limit)
            .into_iter()
            .find(|(_, plan)| plan.contains(&forced))
            .map(|s| s.0);
        let found = search.solutions.first().map(|s| s.0);
        prop_assert_eq!(found.is_some(), expected.is_some(), "{:?} vs {:?}", found, expected);
        if let (Some(f), Some(e)) = (found, expected) {
            prop_assert!((f - e).abs() < 1e-9, "found {f}, expected {e}");
        }
    }
}
