//! Promises and routes stop at their deadline, part way through their work, and change
//! nothing.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, UnixMillis};
use crate::deadline::Deadline;
use crate::delivery::Destination;
use crate::domain::ServiceLevel;
use crate::engine::Engine;
use crate::error::Error;
use crate::promise::PromiseRequest;
use crate::reservation::Hold;
use crate::route::RouteRequest;
use crate::test_support::{placed_engine, stock};

/// A clock that moves one millisecond each time it is read: time passes only as the work
/// checks it.
#[derive(Debug, Default)]
struct Ticking {
    reads: AtomicI64,
}

impl Clock for Ticking {
    fn now_ms(&self) -> UnixMillis {
        self.reads.fetch_add(1, Ordering::SeqCst) + 1
    }
}

const NODES: usize = 16;
const KM_PER_DEGREE: f64 = 111.2;
const LINES: usize = 100;

/// Sixteen DCs a degree of latitude apart, GROUND taking a day longer to each, and `LINES` SKUs
/// each stocked at three nodes, so that no node ships more than a few lines, the search over
/// which nodes ship has a great many branches, and no two packages ship the whole cart.
fn scattered_engine() -> Engine {
    let (engine, ids) = placed_engine(NODES, |n, node| node.lat = n as f64);
    let ground = ServiceLevel {
        name: "GROUND".into(),
        transit: (0..NODES)
            .map(|n| ((n as f64 + 0.5) * KM_PER_DEGREE, n as u32 + 1))
            .collect(),
        calendar: Default::default(),
        base_cost: 5.0,
        cost_per_km: 0.01,
        rate_card: None,
    };
    let _ = engine.upsert_service_levels(vec![ground]).expect("levels");
    for line in 0..LINES {
        // Three different nodes per line, scattered: a line's nodes share few other lines.
        let first = line * 7 % NODES;
        let at: Vec<(&str, i64)> = [first, first + 1 + line % 5, first + 7 + line % 3]
            .into_iter()
            .map(|n| (ids[n % NODES].as_str(), 5))
            .collect();
        stock(&engine, line as u64 + 1, &sku(line), &at);
    }
    engine
}

fn sku(line: usize) -> String {
    format!("SKU-{line}")
}

fn destination() -> Destination {
    Destination {
        coordinates: Some((0.0, 0.0)),
        ..Destination::default()
    }
}

fn order() -> RouteRequest {
    RouteRequest {
        order_id: "O-1".into(),
        lines: (0..LINES).map(|line| (sku(line), 1)).collect(),
        destination: destination(),
        service_level: "GROUND".into(),
        alternatives: 5,
        // As many search nodes as it takes: only the deadline stops it.
        search_budget: u64::MAX,
        ..RouteRequest::default()
    }
}

/// What a caller can see of the stock: every line's network availability today.
fn stock_seen(engine: &Engine) -> Vec<i64> {
    let query = crate::query::AvailabilityQuery {
        skus: (0..LINES).map(sku).collect(),
        ..Default::default()
    };
    let answer = engine.availability(&query).expect("availability");
    answer.items.iter().map(|item| item.network_atp).collect()
}

#[test]
fn a_route_stops_part_way_through_its_search_when_the_deadline_passes() {
    let engine = scattered_engine();
    let clock = Ticking::default();
    let deadline = Deadline::after(&clock, Duration::from_millis(5));
    let routed = engine.route(&order(), &deadline);
    assert_eq!(routed.err(), Some(Error::DeadlineExceeded));
    // One read to set the deadline, then one per `CHECK_EVERY` units of work: the fifth check
    // found it passed.
    assert_eq!(clock.reads.load(Ordering::SeqCst), 6);
}

/// A plan held as `id` for a minute.
fn hold(id: &str) -> Hold {
    Hold {
        reservation_id: id.into(),
        ttl_secs: 60,
        owner: String::new(),
    }
}

#[test]
fn a_route_to_reserve_past_its_deadline_holds_nothing() {
    let engine = scattered_engine();
    let before = stock_seen(&engine);
    let clock = Ticking::default();
    let deadline = Deadline::after(&clock, Duration::from_millis(3));
    let routed = engine.route_and_reserve(&order(), &hold("hold-1"), &deadline);
    assert_eq!(routed.err(), Some(Error::DeadlineExceeded));
    assert!(matches!(
        engine.get_reservation("hold-1"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(stock_seen(&engine), before);
}

#[test]
fn a_promise_stops_part_way_through_its_plans_when_the_deadline_passes() {
    let engine = scattered_engine();
    let request = PromiseRequest {
        lines: (0..LINES).map(|line| (sku(line), 1)).collect(),
        destination: destination(),
        allow_split: true,
        max_packages: 2,
        ..PromiseRequest::default()
    };
    let never = Deadline::never();
    let answer = engine.promise(&request, &never).expect("valid").result;
    assert_eq!(answer.options[0].delivery_date, None, "two packages cannot");
    // Trying two packages by each of the sixteen delivery days is more work than two checks.
    let clock = Ticking::default();
    let deadline = Deadline::after(&clock, Duration::from_millis(2));
    let promised = engine.promise(&request, &deadline);
    assert_eq!(promised.err(), Some(Error::DeadlineExceeded));
    assert_eq!(clock.reads.load(Ordering::SeqCst), 3, "the second check");
}

#[test]
fn a_promise_to_reserve_whose_deadline_passed_while_planning_holds_nothing() {
    let engine = scattered_engine();
    let before = stock_seen(&engine);
    let request = PromiseRequest {
        lines: vec![(sku(0), 1), (sku(1), 1)],
        destination: destination(),
        service_levels: vec!["GROUND".into()],
        allow_split: true,
        reserve: Some(hold("cart-1")),
        ..PromiseRequest::default()
    };
    // Too little work to reach a check: only the one before the hold reads the clock.
    let clock = Ticking::default();
    let deadline = Deadline::after(&clock, Duration::from_millis(1));
    let promised = engine.promise(&request, &deadline);
    assert_eq!(promised.err(), Some(Error::DeadlineExceeded));
    assert!(matches!(
        engine.get_reservation("cart-1"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(stock_seen(&engine), before);
    assert_eq!(
        clock.reads.load(Ordering::SeqCst),
        2,
        "the check before the hold"
    );
}
