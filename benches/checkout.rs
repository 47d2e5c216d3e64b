//! In-process latency of the checkout and OMS calls on the 50-node demo network: a product-page
//! promise (one SKU, all service levels), a 10-line cart promise (and with pickup at the three
//! nearest stores), routing orders of 1, 5, 10
//! and 20 lines, the 10-line order with lines allowed to split (as is, and with 1, 2 or all
//! 10 lines of quantities no single node has), a reserve + release pair, and a route that
//! holds its plan, first and retried.
//!
//! `cargo bench --bench checkout`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use promised::clock::MonotonicClock;
use promised::deadline::Deadline;
use promised::delivery::Destination;
use promised::domain::SupplyType;
use promised::engine::Engine;
use promised::promise::{PickupAt, PickupRequest, PromiseRequest};
use promised::reservation::{Hold, LineRequest, ReserveRequest};
use promised::route::RouteRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use common::{
    demo_engine, on_hand_owner, on_hand_set, owned_nodes, receipt, sku, today, Feed, NOW_MS,
};

/// Catalogue size: each SKU is stocked at 10 to 30 of the 50 nodes.
const SKUS: usize = 2_000;

/// The deadline of every call: far off, but checked as the server checks it.
const WORK_BUDGET: Duration = Duration::from_secs(3_600);

/// Manhattan, 10001.
const DESTINATION: (f64, f64) = (40.75, -73.99);

fn stocked_engine() -> Engine {
    let engine = demo_engine();
    let mut rng = SmallRng::seed_from_u64(11);
    let nodes: Vec<String> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let mut feeds = [Feed::resume(&engine, "WMS"), Feed::resume(&engine, "POS")];
    let mut pending: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    for i in 0..SKUS {
        for _ in 0..rng.random_range(10..30) {
            let node = nodes[rng.random_range(0..nodes.len())].clone();
            let at = usize::from(on_hand_owner(&engine, &node) == "POS");
            pending[at].push(on_hand_set(sku(i), node, rng.random_range(0..200), NOW_MS));
        }
    }
    for (feed, updates) in feeds.iter_mut().zip(pending) {
        for chunk in updates.chunks(common::BATCH) {
            engine
                .apply_batch(&feed.batch(chunk.to_vec()))
                .expect("valid batch")
                .into_result();
        }
    }
    let dcs = owned_nodes(&engine, "WMS", SupplyType::InTransit);
    let receipts = (0..SKUS / 4)
        .map(|i| {
            receipt(
                sku(i),
                dcs[i % dcs.len()].clone(),
                SupplyType::InTransit,
                format!("ASN-{i}"),
                today(&engine).plus(3),
                500,
                NOW_MS,
            )
        })
        .collect();
    feeds[0].apply_all(&engine, receipts);
    engine
}

fn promise(lines: usize) -> PromiseRequest {
    PromiseRequest {
        lines: (0..lines).map(|i| (sku(i * 7), 2)).collect(),
        destination: Destination {
            coordinates: Some(DESTINATION),
            ..Destination::default()
        },
        allow_split: lines > 1,
        ..PromiseRequest::default()
    }
}

fn route(lines: usize) -> RouteRequest {
    RouteRequest {
        order_id: "ORDER".into(),
        lines: (0..lines).map(|i| (sku(i * 13), 1)).collect(),
        destination: Destination {
            coordinates: Some(DESTINATION),
            ..Destination::default()
        },
        service_level: "GROUND".into(),
        alternatives: 2,
        ..RouteRequest::default()
    }
}

/// The 10-line order with `split_lines`, its first `large` lines of 250 units (more than
/// any node holds, so each takes two nodes or more), the others of 1.
fn split_route(large: usize) -> RouteRequest {
    let mut request = route(10);
    request.constraints.split_lines = true;
    for line in &mut request.lines[..large] {
        line.1 = 250;
    }
    request
}

fn main() {
    let engine = stocked_engine();
    let clock = MonotonicClock::new();
    let deadline = || Deadline::after(&clock, WORK_BUDGET);
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("promise");
    for lines in [1, 10] {
        let request = promise(lines);
        let answer = engine.promise(&request, &deadline()).expect("valid");
        let answer = answer.into_result();
        assert!(
            answer.options.iter().any(|o| o.delivery_date.is_some()),
            "{answer:?}"
        );
        group.bench_function(format!("{lines}_lines_all_levels"), |b| {
            b.iter(|| {
                let answer = engine.promise(black_box(&request), &deadline());
                black_box(answer.expect("valid"))
            })
        });
    }
    // The 10-line cart again, with pickup at the three stores nearest the destination.
    let request = PromiseRequest {
        pickup: Some(PickupRequest {
            at: PickupAt::Nearest(3),
            hold: false,
        }),
        ..promise(10)
    };
    let answer = engine.promise(&request, &deadline()).expect("valid");
    let answer = answer.into_result();
    assert_eq!(answer.pickup.len(), 3, "{answer:?}");
    group.bench_function("10_lines_all_levels_pickup_3_stores", |b| {
        b.iter(|| {
            let answer = engine.promise(black_box(&request), &deadline());
            black_box(answer.expect("valid"))
        })
    });
    group.finish();
    let mut group = c.benchmark_group("route");
    let mut orders: Vec<(String, RouteRequest)> = [1, 5, 10, 20]
        .map(|lines| (format!("{lines}_lines_50_nodes"), route(lines)))
        .into();
    for large in [0, 1, 2, 10] {
        let name = format!("10_lines_{large}_of_250_50_nodes_split_lines");
        orders.push((name, split_route(large)));
    }
    for (name, request) in orders {
        let routing = engine.route(&request, &deadline()).expect("valid");
        let plan = routing.plan.as_ref().expect("a plan");
        eprintln!(
            "route {name}: optimal {}, cost {:.2}, {} packages",
            plan.optimal,
            plan.total_cost,
            plan.shipments.len()
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let routing = engine.route(black_box(&request), &deadline());
                black_box(routing.expect("valid"))
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("reserve_release");
    for lines in [1, 5] {
        let request = ReserveRequest {
            reservation_id: format!("bench-{lines}"),
            lines: (0..lines)
                .map(|i| LineRequest {
                    sku: sku(1_000 + i),
                    node_id: String::new(),
                    group_id: String::new(),
                    quantity: 1,
                    need_date: None,
                })
                .collect(),
            ttl_secs: 600,
            owner: String::new(),
        };
        let mut n = 0u64;
        group.bench_function(format!("{lines}_lines_in_memory"), |b| {
            b.iter(|| {
                n += 1;
                let id = format!("bench-{lines}-{n}");
                let held = engine.reserve(&ReserveRequest {
                    reservation_id: id.clone(),
                    ..request.clone()
                });
                black_box(held.expect("stock").into_result());
                black_box(engine.release(&id).expect("held").into_result());
            })
        });
    }
    group.finish();
    holds(&mut c, &engine, deadline);
    c.final_summary();
}

/// A route that holds its plan (then released), and the same call again while it is held: a
/// retry, answered from the answer the hold kept.
fn holds<'c>(c: &mut Criterion, engine: &Engine, deadline: impl Fn() -> Deadline<'c>) {
    let mut group = c.benchmark_group("hold");
    for lines in [1, 10] {
        let request = route(lines);
        let hold = |id: String| Hold {
            reservation_id: id,
            ttl_secs: 600,
            owner: String::new(),
        };
        let mut n = 0u64;
        group.bench_function(format!("route_and_reserve_release_{lines}_lines"), |b| {
            b.iter(|| {
                n += 1;
                let id = format!("route-{lines}-{n}");
                let routed = engine.route_and_reserve(&request, &hold(id.clone()), &deadline());
                black_box(routed.expect("stock").into_result());
                black_box(engine.release(&id).expect("held").into_result());
            })
        });
        let held = hold(format!("retried-{lines}"));
        let first = engine.route_and_reserve(&request, &held, &deadline());
        let first = first.expect("stock").into_result();
        let kept = first
            .reservation
            .as_ref()
            .map_or(0, |h| h.reservation.answer.len());
        eprintln!("route and hold {lines} lines: the hold keeps a {kept}-byte answer");
        group.bench_function(format!("route_and_reserve_retry_{lines}_lines"), |b| {
            b.iter(|| {
                let again = engine.route_and_reserve(black_box(&request), &held, &deadline());
                black_box(again.expect("the same answer").into_result())
            })
        });
        let again = engine.route_and_reserve(&request, &held, &deadline());
        let again = again.expect("the same answer").into_result();
        assert_eq!(again.routing.plan, first.routing.plan);
        let _ = engine.release(&held.reservation_id).expect("held");
    }
    group.finish();
}
