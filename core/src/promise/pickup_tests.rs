//! Store pickup: ready times against opening hours, cutoffs, pick times and DST changes, and
//! which stock a pickup is promised from.

use std::sync::Arc;

use chrono::TimeZone;
use chrono_tz::America::New_York;
use chrono_tz::Tz;
use proptest::prelude::*;

use super::{local_time, ready_at, PickupAt, PickupRequest, PromiseRequest};
use crate::clock::{ManualClock, UnixMillis};
use crate::deadline::Deadline;
use crate::delivery::Destination;
use crate::domain::{Day, Node, NodeKind, Pickup, Qty, ServiceLevel};
use crate::engine::{Engine, EngineConfig};
use crate::error::Error;
use crate::reservation::{Hold, Scope};
use crate::test_support::{node, stock, wms};

/// Local `h:m` on day `d` of `month` 2026 in `zone`, as an instant.
fn at(zone: Tz, month: u32, d: u32, h: u32, m: u32) -> UnixMillis {
    zone.with_ymd_and_hms(2026, month, d, h, m, 0)
        .earliest()
        .expect("a local time")
        .timestamp_millis()
}

/// New York, March 2026: the 2nd is a Monday, the 8th the Sunday DST starts.
fn ny(d: u32, h: u32, m: u32) -> UnixMillis {
    at(New_York, 3, d, h, m)
}

fn day(text: &str) -> Day {
    Day::parse(text).expect("a date")
}

/// Open 10:00-20:00 Monday to Saturday and 12:00-17:00 on Sunday, an hour's pick, cutoff 18:00.
fn pickup() -> Pickup {
    let mut hours = [Some((600, 1200)); 7];
    hours[6] = Some((720, 1020));
    Pickup {
        hours,
        pick_minutes: 60,
        cutoff_minutes: Some(18 * 60),
        transfers: Vec::new(),
    }
}

fn store(id: &str, pickup: Pickup) -> Node {
    Node {
        kind: NodeKind::Store,
        time_zone: New_York,
        pickup: Some(pickup),
        ..node(id)
    }
}

#[test]
fn a_cart_at_the_store_is_ready_a_pick_time_after_it_is_taken_within_hours() {
    let (store, hours) = (store("S", pickup()), pickup());
    let ready = |goods: &str, now_ms| ready_at(&store, &hours, day(goods), now_ms);
    assert_eq!(ready("2026-03-02", ny(2, 12, 0)), Some(ny(2, 13, 0)), "now");
    assert_eq!(
        ready("2026-03-02", ny(2, 8, 0)),
        Some(ny(2, 11, 0)),
        "at opening"
    );
    assert_eq!(
        ready("2026-03-02", ny(2, 17, 59)),
        Some(ny(2, 18, 59)),
        "before cutoff"
    );
    assert_eq!(
        ready("2026-03-02", ny(2, 18, 0)),
        Some(ny(3, 11, 0)),
        "at the cutoff"
    );
    assert_eq!(
        ready("2026-03-04", ny(2, 12, 0)),
        Some(ny(4, 11, 0)),
        "goods on Wednesday"
    );
    assert_eq!(
        ready("2026-03-07", ny(7, 18, 30)),
        Some(ny(8, 13, 0)),
        "Sunday's hours"
    );
    let mut closed = store.clone();
    closed.fulfilment.calendar.holidays = vec![day("2026-03-03")];
    let on_holiday = ready_at(&closed, &hours, day("2026-03-02"), ny(2, 18, 0));
    assert_eq!(
        on_holiday,
        Some(ny(4, 11, 0)),
        "the node's holiday closes pickup"
    );

    let open_late = Pickup {
        cutoff_minutes: None,
        ..pickup()
    };
    let late = |now_ms| ready_at(&store, &open_late, day("2026-03-02"), now_ms);
    assert_eq!(late(ny(2, 19, 0)), Some(ny(2, 20, 0)), "ready at closing");
    assert_eq!(
        late(ny(2, 19, 1)),
        Some(ny(3, 11, 0)),
        "not ready by closing"
    );
    let none = Pickup {
        hours: [None; 7],
        ..pickup()
    };
    assert_eq!(
        ready_at(&store, &none, day("2026-03-02"), ny(2, 12, 0)),
        None
    );
}

#[test]
fn ready_times_across_the_dst_changes_take_the_real_pick_time() {
    let sunday_only = |open, close, pick_minutes| {
        let mut hours = [None; 7];
        hours[6] = Some((open, close));
        Pickup {
            hours,
            pick_minutes,
            cutoff_minutes: None,
            transfers: Vec::new(),
        }
    };
    let store = store("S", pickup());
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT. Opening at 01:00 EST (06:00 UTC) and picking
    // for two hours is 08:00 UTC, 04:00 EDT; opening in the skipped hour opens at its end.
    let spring = ready_at(
        &store,
        &sunday_only(60, 360, 120),
        day("2026-03-08"),
        ny(7, 12, 0),
    );
    assert_eq!(spring, Some(ny(8, 1, 0) + 2 * 3_600_000));
    assert_eq!(spring, Some(ny(8, 4, 0)));
    let in_gap = ready_at(
        &store,
        &sunday_only(150, 300, 30),
        day("2026-03-08"),
        ny(7, 12, 0),
    );
    assert_eq!(in_gap, Some(ny(8, 3, 30)));
    assert_eq!(local_time(&store, ny(8, 3, 30)), "2026-03-08 03:30 EDT");
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST. A repeated 01:30 opens at the first one.
    let fall = ready_at(
        &store,
        &sunday_only(90, 300, 30),
        day("2026-11-01"),
        at(New_York, 10, 31, 12, 0),
    );
    let first_half_past_one = at(New_York, 11, 1, 1, 30);
    assert_eq!(fall, Some(first_half_past_one + 30 * 60_000));
    assert_eq!(
        local_time(&store, first_half_past_one + 30 * 60_000),
        "2026-11-01 01:00 EST"
    );
}

proptest! {
    /// Whatever the hours, cutoff, pick time and instant: a ready time is a pick time after
    /// both the order and the opening of an open day, no later than its closing, never before
    /// the goods are there, and never today once past today's cutoff.
    #[test]
    fn a_ready_time_respects_hours_cutoff_and_pick_time(
        now_ms in 1_767_225_600_000i64..1_798_761_600_000,
        goods_after in 0i32..5,
        spans in prop::collection::vec(prop::option::of((0u16..1380, 1u16..600)), 7),
        pick_minutes in 0u32..300,
        cutoff in prop::option::of(0u16..1440),
        zone in prop::sample::select(vec![New_York, chrono_tz::Australia::Lord_Howe, chrono_tz::UTC]),
    ) {
        let mut hours = [None; 7];
        for (slot, span) in hours.iter_mut().zip(&spans) {
            *slot = span.map(|(open, length)| (open, (open + length).min(1439)));
            *slot = slot.filter(|(open, close)| open < close);
        }
        let pickup = Pickup { hours, pick_minutes, cutoff_minutes: cutoff, transfers: Vec::new() };
        let node = Node { time_zone: zone, ..store("S", pickup.clone()) };
        let today = Day::in_zone(zone, now_ms);
        let goods = today.plus(goods_after);
        if let Some(ready) = ready_at(&node, &pickup, goods, now_ms) {
            let pick_ms = i64::from(pick_minutes) * 60_000;
            let taken = ready - pick_ms;
            let d = Day::in_zone(zone, taken);
            prop_assert!(taken >= now_ms);
            prop_assert!(d >= goods);
            let weekday = chrono::Datelike::weekday(&d.to_date().expect("a date")).num_days_from_monday();
            let (open, close) = hours[weekday as usize].expect("an open weekday");
            let local = |minutes: u16| super::pickup::local_instant(zone, d, minutes).expect("an instant");
            prop_assert!(taken >= local(open), "taken before opening");
            prop_assert!(ready <= local(close), "ready after closing");
            let minutes_now = crate::delivery::local_now(&node, now_ms).1;
            if cutoff.is_some_and(|c| minutes_now >= c) {
                prop_assert!(d > today, "today after the cutoff");
            }
        }
    }
}

/// An engine at `now_ms`: DC (New York, cutoff 15:00, Monday to Friday), store S fed by DC in
/// two days and holding back `safety` units, store FAR with no transfers; a GROUND level.
fn pickup_engine(now_ms: UnixMillis, safety: Qty) -> Engine {
    let engine = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(now_ms)));
    let mut dc = node("DC");
    dc.time_zone = New_York;
    dc.fulfilment.cutoff_minutes = Some(15 * 60);
    let fed = Pickup {
        transfers: vec![("DC".into(), 2)],
        ..pickup()
    };
    let s = Node {
        safety_stock: safety,
        ..store("S", fed)
    };
    let far = Node {
        lat: 10.0,
        ..store("FAR", pickup())
    };
    let _ = engine.upsert_nodes(vec![dc, s, far]).expect("nodes");
    let _ = engine.upsert_sources(vec![wms()]).expect("source");
    let ground = ServiceLevel {
        name: "GROUND".into(),
        transit: vec![(20_000.0, 3)],
        calendar: Default::default(),
        base_cost: 5.0,
        cost_per_km: 0.0,
        rate_card: None,
    };
    let _ = engine.upsert_service_levels(vec![ground]).expect("levels");
    engine
}

fn ask(lines: &[(&str, Qty)], at: PickupAt) -> PromiseRequest {
    PromiseRequest {
        lines: lines.iter().map(|&(s, q)| (s.into(), q)).collect(),
        destination: Destination {
            coordinates: Some((0.0, 0.0)),
            ..Destination::default()
        },
        pickup: Some(PickupRequest { at, hold: false }),
        ..PromiseRequest::default()
    }
}

fn chosen(id: &str) -> PickupAt {
    PickupAt::Store(id.into())
}

/// (from node id, ready instant) of each store asked about, or its reason.
fn answer(engine: &Engine, request: &PromiseRequest) -> Vec<Result<(String, UnixMillis), String>> {
    let promise = engine
        .promise(request, &Deadline::never())
        .expect("valid")
        .into_result();
    let network = &promise.network;
    promise
        .pickup
        .iter()
        .map(|o| match o.ready {
            Some(r) => Ok((network.node(r.from).id.clone(), r.at_ms)),
            None => Err(o.reason.clone()),
        })
        .collect()
}

#[test]
fn a_cart_partly_at_the_store_is_transferred_whole_or_not_picked_up() {
    let engine = pickup_engine(ny(2, 12, 0), 0);
    stock(&engine, 1, "A", &[("S", 5), ("DC", 10)]);
    stock(&engine, 2, "B", &[("DC", 3)]);
    let from_store = answer(&engine, &ask(&[("A", 2)], chosen("S")));
    assert_eq!(from_store, [Ok(("S".into(), ny(2, 13, 0)))]);
    // B is only at the DC: Monday's shipment before its cutoff arrives Wednesday.
    let transferred = answer(&engine, &ask(&[("A", 2), ("B", 1)], chosen("S")));
    assert_eq!(transferred, [Ok(("DC".into(), ny(4, 11, 0)))]);
    let short = answer(&engine, &ask(&[("A", 11)], chosen("S")));
    assert_eq!(
        short,
        [Err(
            "neither S nor a node transferring to it has the whole cart".into()
        )]
    );
    let far = answer(&engine, &ask(&[("A", 1)], chosen("FAR")));
    assert_eq!(far, [Err("the whole cart is not at FAR".into())]);
    let nearest = answer(&engine, &ask(&[("A", 1)], PickupAt::Nearest(2)));
    assert_eq!(nearest.len(), 2);
    assert!(
        nearest[0].is_ok(),
        "S, at the destination, first: {nearest:?}"
    );
}

#[test]
fn a_held_pickup_takes_the_store_stock_and_a_retry_answers_the_same() {
    let engine = pickup_engine(ny(2, 12, 0), 0);
    stock(&engine, 1, "A", &[("S", 5), ("DC", 10)]);
    let mut request = ask(&[("A", 5)], chosen("S"));
    request.pickup.as_mut().expect("pickup").hold = true;
    request.reserve = Some(Hold {
        reservation_id: "cart-1".into(),
        ttl_secs: 600,
        owner: String::new(),
    });
    let held = engine
        .promise(&request, &Deadline::never())
        .expect("held")
        .into_result();
    let line = &held.reservation.as_ref().expect("a hold").reservation.lines[0];
    let s = held.network.node_idx("S").expect("S");
    assert_eq!((line.scope, line.quantity), (Scope::Node(s), 5));
    let again = engine
        .promise(&request, &Deadline::never())
        .expect("retried")
        .into_result();
    assert_eq!(again.pickup, held.pickup, "a retry answers as before");
    // The store has nothing left to promise: the next cart is transferred.
    let next = answer(&engine, &ask(&[("A", 1)], chosen("S")));
    assert_eq!(next, [Ok(("DC".into(), ny(4, 11, 0)))]);
}

proptest! {
    /// A pickup from the store's own stock never takes more than its ATP (on hand less safety
    /// stock); beyond it the cart is transferred whole from the DC, or not picked up.
    #[test]
    fn a_pickup_never_promises_more_than_the_store_has(
        at_store in 0i64..8, at_dc in 0i64..8, safety in 0i64..3, quantity in 1i64..10,
    ) {
        let engine = pickup_engine(ny(2, 12, 0), safety);
        let stocked: Vec<(&str, Qty)> = [("S", at_store), ("DC", at_dc)]
            .into_iter()
            .filter(|(_, q)| *q > 0)
            .collect();
        if !stocked.is_empty() {
            stock(&engine, 1, "A", &stocked);
        }
        let got = answer(&engine, &ask(&[("A", quantity)], chosen("S")));
        let from = got[0].as_ref().ok().map(|(from, _)| from.as_str());
        let expected = if quantity <= at_store - safety {
            Some("S")
        } else if quantity <= at_dc {
            Some("DC")
        } else {
            None
        };
        prop_assert_eq!(from, expected);
    }
}

#[test]
fn bad_pickup_requests_name_the_field() {
    let engine = pickup_engine(ny(2, 12, 0), 0);
    let field = |request: &PromiseRequest| match engine.promise(request, &Deadline::never()) {
        Err(Error::InvalidArgument(v)) => v[0].field.clone(),
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(field(&ask(&[("A", 1)], chosen("NOPE"))), "pickup.store_id");
    assert_eq!(field(&ask(&[("A", 1)], chosen("DC"))), "pickup.store_id");
    assert_eq!(
        field(&ask(&[("A", 1)], PickupAt::Nearest(11))),
        "pickup.nearest"
    );
    let mut unheld = ask(&[("A", 1)], chosen("S"));
    unheld.pickup.as_mut().expect("pickup").hold = true;
    assert_eq!(field(&unheld), "pickup.hold");
}

#[test]
fn pickup_on_a_node_that_is_not_a_store_or_from_an_unknown_node_is_refused() {
    let engine = pickup_engine(ny(2, 12, 0), 0);
    let dc = Node {
        pickup: Some(pickup()),
        ..node("DC2")
    };
    let fields = |nodes: Vec<Node>| match engine.upsert_nodes(nodes) {
        Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect::<Vec<_>>(),
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(fields(vec![dc]), ["nodes[0].pickup"]);
    let from_nowhere = store(
        "S2",
        Pickup {
            transfers: vec![("NOPE".into(), 1), ("FAR".into(), 1)],
            ..pickup()
        },
    );
    assert_eq!(
        fields(vec![from_nowhere]),
        [
            "nodes[0].pickup.transfers[0].from_node_id",
            "nodes[0].pickup.transfers[1].from_node_id"
        ]
    );
}

#[test]
fn pickup_settings_read_back_and_older_encodings_have_none() {
    let engine = pickup_engine(ny(2, 12, 0), 0);
    let network = engine.network();
    let bytes = network.encode();
    let decoded = crate::network::Network::decode(&bytes, 0).expect("decodes");
    let s = decoded.node(decoded.node_idx("S").expect("S"));
    assert_eq!(s.pickup, network.node(1).pickup);
    assert_eq!(decoded.encode(), bytes);
    // Before pickup the encoding ended after the items: one "none" byte per node less.
    let without_pickup: Vec<Node> = network
        .nodes()
        .iter()
        .map(|n| Node {
            pickup: None,
            ..n.clone()
        })
        .collect();
    let flat = crate::network::Network::default()
        .with_nodes(without_pickup)
        .expect("valid")
        .encode();
    let older = &flat[..flat.len() - network.nodes().len()];
    let decoded = crate::network::Network::decode(older, 0).expect("an older encoding");
    assert!(decoded.nodes().iter().all(|n| n.pickup.is_none()));
}
