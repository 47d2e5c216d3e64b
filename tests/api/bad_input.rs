//! A table of bad input across every RPC: each case gets its precise code (and the field it
//! names, where one applies), or for a feed update its rejection reason, and no case changes
//! what a client can see.

use promised::grpc::pb;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::availability::explain_request;
use crate::helpers::*;
use crate::reservations::{line, reserve_request};

/// Stands for "the next sequence of WMS-EAST" in a feed case.
const NEXT_SEQ: u64 = 100;

/// One request to one RPC.
enum Call {
    Nodes(Vec<pb::Node>),
    Groups(Vec<pb::NodeGroup>),
    Sources(Vec<pb::Source>),
    Levels(Vec<pb::ServiceLevel>),
    Safety(Vec<pb::SafetyStockEntry>),
    Batch(pb::SupplyBatch),
    Availability(pb::AvailabilityRequest),
    Explain(pb::ExplainRequest),
    Reserve(pb::ReserveRequest),
    Update(pb::ReserveRequest),
    Extend(pb::ExtendRequest),
    Release(pb::ReleaseRequest),
    Get(pb::GetReservationRequest),
    Commit(pb::CommitRequest),
    Promise(pb::PromiseRequest),
    Route(pb::RouteRequest),
    Wave(pb::RouteOrdersRequest),
}

/// How a case spoils a valid message.
type Spoil<T> = Box<dyn Fn(&mut T)>;

/// What a case must get back.
enum Expect {
    /// This code, naming this field in its `BadRequest` details when one is given.
    Refused(Code, Option<String>),
    /// An acknowledged batch whose only update is rejected for this reason.
    Rejected(pb::RejectReason),
}

struct Case {
    name: String,
    call: Call,
    expect: Expect,
}

fn refused(name: impl Into<String>, call: Call, code: Code, field: Option<&str>) -> Case {
    Case {
        name: name.into(),
        call,
        expect: Expect::Refused(code, field.map(str::to_owned)),
    }
}

fn bad(name: impl Into<String>, call: Call, field: &str) -> Case {
    refused(name, call, Code::InvalidArgument, Some(field))
}

/// Ids no id field takes: empty, surrounding white space, control characters, too long.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("leading space", " X".into()),
        ("trailing space", "X ".into()),
        ("only white space", "   ".into()),
        ("NUL", "A\0B".into()),
        ("tab", "A\tB".into()),
        ("newline", "A\nB".into()),
        ("200 bytes", "X".repeat(200)),
    ]
}

fn numbers_out_of_range() -> Vec<(&'static str, f64)> {
    vec![
        ("NaN", f64::NAN),
        ("infinite", f64::INFINITY),
        ("minus infinite", f64::NEG_INFINITY),
        ("negative", -1.0),
        ("huge", 1e308),
    ]
}

fn new_node() -> pb::Node {
    node("DC-NEW", pb::NodeKind::Dc, "America/Denver", &["WEST"])
}

fn level() -> pb::ServiceLevel {
    ground(0.01)
}

fn cart(sku: &str, quantity: i64) -> Vec<pb::PromiseLine> {
    vec![pb::PromiseLine {
        sku: sku.into(),
        quantity,
    }]
}

fn destination(lat: f64, lon: f64) -> Option<pb::Destination> {
    Some(pb::Destination {
        lat,
        lon,
        ..Default::default()
    })
}

fn promise(lines: Vec<pb::PromiseLine>) -> pb::PromiseRequest {
    pb::PromiseRequest {
        lines,
        destination: destination(40.7, -74.0),
        ..Default::default()
    }
}

fn route(lines: Vec<pb::PromiseLine>) -> pb::RouteRequest {
    pb::RouteRequest {
        order_id: "ORDER-9".into(),
        lines,
        destination: destination(40.7, -74.0),
        service_level: "GROUND".into(),
        ..Default::default()
    }
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn id_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (what, id) in bad_ids() {
        let mut node = new_node();
        node.id = id.clone();
        cases.push(bad(
            format!("node id {what}"),
            Call::Nodes(vec![node]),
            "nodes[0].id",
        ));
        let group = pb::NodeGroup {
            id: id.clone(),
            description: String::new(),
        };
        cases.push(bad(
            format!("group id {what}"),
            Call::Groups(vec![group]),
            "groups[0].id",
        ));
        let source = source(&id, pb::SourceKind::Wms, &[], &[pb::SupplyType::OnHand], 0);
        cases.push(bad(
            format!("source id {what}"),
            Call::Sources(vec![source]),
            "sources[0].id",
        ));
        let mut named = level();
        named.name = id.clone();
        let field = "service_levels[0].name";
        cases.push(bad(
            format!("level name {what}"),
            Call::Levels(vec![named]),
            field,
        ));
        let request = reserve_request(&id, vec![line("SKU-1", "DC-EAST", 1)]);
        cases.push(bad(
            format!("reservation id {what}"),
            Call::Reserve(request),
            "reservation_id",
        ));
        let request = reserve_request("cart", vec![line(&id, "DC-EAST", 1)]);
        cases.push(bad(
            format!("reserved sku {what}"),
            Call::Reserve(request),
            "lines[0].sku",
        ));
        let commit = pb::CommitRequest {
            reservation_id: "held".into(),
            order_id: id.clone(),
        };
        cases.push(bad(
            format!("order id {what}"),
            Call::Commit(commit),
            "order_id",
        ));
        let promised = promise(cart(&id, 1));
        cases.push(bad(
            format!("promised sku {what}"),
            Call::Promise(promised),
            "lines[0].sku",
        ));
        let routed = route(cart(&id, 1));
        cases.push(bad(
            format!("routed sku {what}"),
            Call::Route(routed),
            "lines[0].sku",
        ));
        let reason = match what {
            "empty" => pb::RejectReason::MissingSku,
            "200 bytes" => pb::RejectReason::OversizedField,
            _ => pb::RejectReason::InvalidId,
        };
        let update = set_on_hand(&id, "DC-EAST", 1, START_MS);
        cases.push(Case {
            name: format!("fed sku {what}"),
            call: Call::Batch(batch("WMS-EAST", NEXT_SEQ, vec![update])),
            expect: Expect::Rejected(reason),
        });
    }
    cases
}

fn node_cases() -> Vec<Case> {
    let spoiled: Vec<(&str, &str, Spoil<pb::Node>)> = vec![
        ("lat 91", "nodes[0].lat", Box::new(|n| n.lat = 91.0)),
        ("lat NaN", "nodes[0].lat", Box::new(|n| n.lat = f64::NAN)),
        ("lon -181", "nodes[0].lon", Box::new(|n| n.lon = -181.0)),
        (
            "lon infinite",
            "nodes[0].lon",
            Box::new(|n| n.lon = f64::INFINITY),
        ),
        (
            "negative safety stock",
            "nodes[0].safety_stock",
            Box::new(|n| n.safety_stock = -1),
        ),
        (
            "country USA",
            "nodes[0].country",
            Box::new(|n| n.country = "USA".into()),
        ),
        (
            "country us",
            "nodes[0].country",
            Box::new(|n| n.country = "us".into()),
        ),
        (
            "country U1",
            "nodes[0].country",
            Box::new(|n| n.country = "U1".into()),
        ),
        (
            "61 processing days",
            "nodes[0].processing_days",
            Box::new(|n| n.processing_days = 61),
        ),
        (
            "4e9 processing days",
            "nodes[0].processing_days",
            Box::new(|n| n.processing_days = 4_000_000_000),
        ),
        ("no kind", "nodes[0].kind", Box::new(|n| n.kind = 0)),
        (
            "unknown zone",
            "nodes[0].time_zone",
            Box::new(|n| n.time_zone = "Mars/Olympus".into()),
        ),
        (
            "unknown group",
            "nodes[0].group_ids[0]",
            Box::new(|n| n.group_ids = vec!["NOPE".into()]),
        ),
        (
            "bad cutoff",
            "nodes[0].cutoff",
            Box::new(|n| n.cutoff = "25:00".into()),
        ),
        (
            "bad open day",
            "nodes[0].open_days",
            Box::new(|n| n.open_days = vec!["FUNDAY".into()]),
        ),
        (
            "bad holiday",
            "nodes[0].holidays[0]",
            Box::new(|n| n.holidays = vec!["2026-13-01".into()]),
        ),
    ];
    let mut cases: Vec<Case> = spoiled
        .into_iter()
        .map(|(what, field, spoil)| {
            let mut node = new_node();
            spoil(&mut node);
            bad(format!("node {what}"), Call::Nodes(vec![node]), field)
        })
        .collect();
    cases.push(bad(
        "node id twice",
        Call::Nodes(vec![new_node(), new_node()]),
        "nodes[1].id",
    ));
    let group = || pb::NodeGroup {
        id: "NEW".into(),
        description: String::new(),
    };
    cases.push(bad(
        "group id twice",
        Call::Groups(vec![group(), group()]),
        "groups[1].id",
    ));
    let wms = || {
        source(
            "NEW",
            pb::SourceKind::Wms,
            &[],
            &[pb::SupplyType::OnHand],
            0,
        )
    };
    cases.push(bad(
        "source id twice",
        Call::Sources(vec![wms(), wms()]),
        "sources[1].id",
    ));
    let unknown = source(
        "NEW",
        pb::SourceKind::Wms,
        &["NOPE"],
        &[pb::SupplyType::OnHand],
        0,
    );
    let field = "sources[0].owned_node_ids[0]";
    cases.push(bad(
        "source of an unknown node",
        Call::Sources(vec![unknown]),
        field,
    ));
    let nothing = source("NEW", pb::SourceKind::Wms, &[], &[], 0);
    let field = "sources[0].owned_supply_types";
    cases.push(bad(
        "source owning nothing",
        Call::Sources(vec![nothing]),
        field,
    ));
    cases.push(bad(
        "level name twice",
        Call::Levels(vec![level(), level()]),
        "service_levels[1].name",
    ));
    cases
}

fn level_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (what, value) in numbers_out_of_range() {
        let mut spoiled = level();
        spoiled.base_cost = value;
        let field = "service_levels[0].base_cost";
        cases.push(bad(
            format!("base cost {what}"),
            Call::Levels(vec![spoiled]),
            field,
        ));
        let mut spoiled = level();
        spoiled.cost_per_km = value;
        let field = "service_levels[0].cost_per_km";
        cases.push(bad(
            format!("cost per km {what}"),
            Call::Levels(vec![spoiled]),
            field,
        ));
        if value != 1e308 {
            let mut spoiled = level();
            spoiled.transit = vec![band(value, 2)];
            let field = "service_levels[0].transit[0].max_km";
            cases.push(bad(
                format!("band distance {what}"),
                Call::Levels(vec![spoiled]),
                field,
            ));
        }
    }
    for days in [61, 4_000_000_000] {
        let mut spoiled = level();
        spoiled.transit = vec![band(5_000.0, days)];
        let field = "service_levels[0].transit[0].days";
        cases.push(bad(
            format!("{days} transit days"),
            Call::Levels(vec![spoiled]),
            field,
        ));
    }
    let mut descending = level();
    descending.transit = vec![band(500.0, 1), band(100.0, 2)];
    let field = "service_levels[0].transit";
    cases.push(bad(
        "bands out of order",
        Call::Levels(vec![descending]),
        field,
    ));
    let mut no_bands = level();
    no_bands.transit.clear();
    cases.push(bad(
        "no bands",
        Call::Levels(vec![no_bands]),
        "service_levels[0].transit",
    ));
    cases
}

fn order_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for weight in ["package_penalty", "priority", "capacity"] {
        for (what, value) in numbers_out_of_range() {
            let mut request = route(cart("SKU-1", 1));
            let mut weights = pb::ObjectiveWeights::default();
            match weight {
                "package_penalty" => weights.package_penalty = Some(value),
                "priority" => weights.priority = Some(value),
                _ => weights.capacity = Some(value),
            }
            request.weights = Some(weights);
            let field = format!("weights.{weight}");
            cases.push(bad(
                format!("{weight} {what}"),
                Call::Route(request),
                &field,
            ));
        }
    }
    for (what, lat, lon, field) in [
        ("lat 91", 91.0, 0.0, "destination.lat"),
        ("lat NaN", f64::NAN, 0.0, "destination.lat"),
        ("lon 181", 40.0, 181.0, "destination.lon"),
        ("lon NaN", 40.0, f64::NAN, "destination.lon"),
    ] {
        let mut request = promise(cart("SKU-1", 1));
        request.destination = destination(lat, lon);
        cases.push(bad(
            format!("promise to {what}"),
            Call::Promise(request),
            field,
        ));
        let mut request = route(cart("SKU-1", 1));
        request.destination = destination(lat, lon);
        cases.push(bad(format!("route to {what}"), Call::Route(request), field));
    }
    for (what, seconds) in [
        ("year 9999", 253_402_214_400),
        ("year 1900", -2_208_988_800),
    ] {
        let mut request = promise(cart("SKU-1", 1));
        request.now = at(seconds);
        cases.push(bad(
            format!("promise as of {what}"),
            Call::Promise(request),
            "now",
        ));
        let mut request = route(cart("SKU-1", 1));
        request.now = at(seconds);
        cases.push(bad(
            format!("route as of {what}"),
            Call::Route(request),
            "now",
        ));
    }
    let many: Vec<pb::PromiseLine> = (0..1_001)
        .map(|i| pb::PromiseLine {
            sku: format!("SKU-{i}"),
            quantity: 1,
        })
        .collect();
    cases.push(bad(
        "promise of 1,001 lines",
        Call::Promise(promise(many.clone())),
        "lines",
    ));
    cases.push(bad(
        "route of 1,001 lines",
        Call::Route(route(many)),
        "lines",
    ));
    for quantity in [0, -1] {
        let name = format!("promise of {quantity}");
        cases.push(bad(
            name,
            Call::Promise(promise(cart("SKU-1", quantity))),
            "lines[0].quantity",
        ));
        let name = format!("route of {quantity}");
        cases.push(bad(
            name,
            Call::Route(route(cart("SKU-1", quantity))),
            "lines[0].quantity",
        ));
        let request = reserve_request("cart", vec![line("SKU-1", "DC-EAST", quantity)]);
        let name = format!("reservation of {quantity}");
        cases.push(bad(name, Call::Reserve(request), "lines[0].quantity"));
    }
    cases.push(bad(
        "empty promise",
        Call::Promise(promise(Vec::new())),
        "lines",
    ));
    cases.push(bad("empty route", Call::Route(route(Vec::new())), "lines"));
    let mut unknown_level = route(cart("SKU-1", 1));
    unknown_level.service_level = "TELEPORT".into();
    cases.push(bad(
        "route by an unknown level",
        Call::Route(unknown_level),
        "service_level",
    ));
    let mut reserve_without_id = route(cart("SKU-1", 1));
    reserve_without_id.reserve = true;
    cases.push(bad(
        "route reserve without id",
        Call::Route(reserve_without_id),
        "reservation_id",
    ));
    let mut wave_reserve = route(cart("SKU-1", 1));
    wave_reserve.reserve = true;
    wave_reserve.reservation_id = "wave".into();
    let wave = pb::RouteOrdersRequest {
        orders: vec![wave_reserve.clone(), wave_reserve],
    };
    cases.push(bad(
        "a wave holding two orders under one id",
        Call::Wave(wave),
        "orders[1].reservation_id",
    ));
    let mut promise_unknown_code = promise(cart("SKU-1", 1));
    promise_unknown_code.destination = Some(pb::Destination {
        postal_code: "X".repeat(100_000),
        ..Default::default()
    });
    let field = "destination.postal_code";
    cases.push(bad(
        "promise to an unknown 100 kB postal code",
        Call::Promise(promise_unknown_code),
        field,
    ));
    cases
}

fn reservation_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let both = pb::ReservationLine {
        sku: "SKU-1".into(),
        node_id: "DC-EAST".into(),
        group_id: "EAST".into(),
        quantity: 1,
        ..Default::default()
    };
    cases.push(bad(
        "line at a node and a group",
        Call::Reserve(reserve_request("cart", vec![both])),
        "lines[0].node_id",
    ));
    let unknown = reserve_request("cart", vec![line("SKU-1", "DC-NOPE", 1)]);
    cases.push(bad(
        "line at an unknown node",
        Call::Reserve(unknown),
        "lines[0].node_id",
    ));
    cases.push(bad(
        "reservation without lines",
        Call::Reserve(reserve_request("cart", Vec::new())),
        "lines",
    ));
    let mut too_long = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 1)]);
    too_long.ttl_seconds = 10_000_000;
    cases.push(bad(
        "TTL beyond the limit",
        Call::Reserve(too_long),
        "ttl_seconds",
    ));
    let taken = reserve_request("held", vec![line("SKU-1", "DC-EAST", 2)]);
    cases.push(refused(
        "a used id with another request",
        Call::Reserve(taken),
        Code::AlreadyExists,
        None,
    ));
    let short = reserve_request("greedy", vec![line("SKU-1", "DC-EAST", 1_000)]);
    cases.push(refused(
        "more than is there",
        Call::Reserve(short),
        Code::FailedPrecondition,
        None,
    ));
    let gone = "X".repeat(1_000_000);
    let missing = |id: &str| pb::GetReservationRequest {
        reservation_id: id.into(),
    };
    cases.push(refused(
        "get of an unknown id",
        Call::Get(missing("nope")),
        Code::NotFound,
        None,
    ));
    cases.push(refused(
        "get of an unknown 1 MB id",
        Call::Get(missing(&gone)),
        Code::NotFound,
        None,
    ));
    let extend = pb::ExtendRequest {
        reservation_id: "nope".into(),
        ttl_seconds: 60,
    };
    cases.push(refused(
        "extend of an unknown id",
        Call::Extend(extend),
        Code::NotFound,
        None,
    ));
    let release = pb::ReleaseRequest {
        reservation_id: "nope".into(),
    };
    cases.push(refused(
        "release of an unknown id",
        Call::Release(release),
        Code::NotFound,
        None,
    ));
    let commit = pb::CommitRequest {
        reservation_id: "nope".into(),
        order_id: "ORDER-9".into(),
    };
    cases.push(refused(
        "commit of an unknown id",
        Call::Commit(commit),
        Code::NotFound,
        None,
    ));
    let update = reserve_request("nope", vec![line("SKU-1", "DC-EAST", 1)]);
    cases.push(refused(
        "update of an unknown id",
        Call::Update(update),
        Code::NotFound,
        None,
    ));
    let entry = |sku: &str, node: &str, quantity| pb::SafetyStockEntry {
        sku: sku.into(),
        node_id: node.into(),
        quantity,
    };
    let field = "entries[0].quantity";
    cases.push(bad(
        "negative safety stock",
        Call::Safety(vec![entry("SKU-1", "DC-EAST", -1)]),
        field,
    ));
    let field = "entries[0].node_id";
    cases.push(bad(
        "safety stock at an unknown node",
        Call::Safety(vec![entry("SKU-1", "DC-NOPE", 1)]),
        field,
    ));
    cases
}

fn feed_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let update = |u: pb::SupplyUpdate| Call::Batch(batch("WMS-EAST", NEXT_SEQ, vec![u]));
    let rejected = |name: &str, call, reason| Case {
        name: name.into(),
        call,
        expect: Expect::Rejected(reason),
    };
    let future = set_on_hand("SKU-1", "DC-EAST", 5, START_MS + 301_000);
    cases.push(rejected(
        "SET from 5 min ahead",
        update(future),
        pb::RejectReason::AsOfInFuture,
    ));
    let year_9999 = pb::SupplyUpdate {
        as_of: at(253_402_214_400),
        ..set_on_hand("SKU-1", "DC-EAST", 5, START_MS)
    };
    cases.push(rejected(
        "SET as of 9999",
        update(year_9999),
        pb::RejectReason::AsOfInFuture,
    ));
    let negative = set_on_hand("SKU-1", "DC-EAST", -5, START_MS);
    cases.push(rejected(
        "negative SET",
        update(negative),
        pb::RejectReason::NegativeQuantity,
    ));
    let below = adjust_on_hand("SKU-1", "DC-EAST", -1_000);
    cases.push(rejected(
        "ADJUST below zero",
        update(below),
        pb::RejectReason::NegativeResult,
    ));
    let elsewhere = set_on_hand("SKU-1", "DC-WEST", 5, START_MS);
    cases.push(rejected(
        "a node the feed does not own",
        update(elsewhere),
        pb::RejectReason::NotOwned,
    ));
    let nowhere = set_on_hand("SKU-1", "DC-NOPE", 5, START_MS);
    cases.push(rejected(
        "an unknown node",
        update(nowhere),
        pb::RejectReason::UnknownNode,
    ));
    let undated = pb::SupplyUpdate {
        as_of: None,
        ..set_on_hand("SKU-1", "DC-EAST", 5, START_MS)
    };
    cases.push(rejected(
        "SET without as_of",
        update(undated),
        pb::RejectReason::MissingAsOf,
    ));
    let no_type = pb::SupplyUpdate {
        supply_type: 0,
        ..set_on_hand("SKU-1", "DC-EAST", 5, START_MS)
    };
    cases.push(rejected(
        "no supply type",
        update(no_type),
        pb::RejectReason::InvalidSupplyType,
    ));
    let no_op = pb::SupplyUpdate {
        op: 0,
        ..set_on_hand("SKU-1", "DC-EAST", 5, START_MS)
    };
    cases.push(rejected(
        "no op",
        update(no_op),
        pb::RejectReason::InvalidOp,
    ));
    let no_reference = set_receipt(
        "SKU-1",
        "DC-EAST",
        pb::SupplyType::InTransit,
        "",
        "2026-03-09",
        5,
    );
    cases.push(rejected(
        "receipt without reference",
        update(no_reference),
        pb::RejectReason::MissingReference,
    ));
    let bad_eta = set_receipt(
        "SKU-1",
        "DC-EAST",
        pb::SupplyType::InTransit,
        "ASN-1",
        "soon",
        5,
    );
    cases.push(rejected(
        "receipt with a bad eta",
        update(bad_eta),
        pb::RejectReason::InvalidEta,
    ));
    let bad_reference = set_receipt(
        "SKU-1",
        "DC-EAST",
        pb::SupplyType::InTransit,
        "ASN\0",
        "2026-03-09",
        5,
    );
    cases.push(rejected(
        "reference with NUL",
        update(bad_reference),
        pb::RejectReason::InvalidId,
    ));
    let jump = batch(
        "WMS-EAST",
        2_000_000,
        vec![adjust_on_hand("SKU-1", "DC-EAST", 1)],
    );
    cases.push(refused(
        "sequence jump of 2 million",
        Call::Batch(jump),
        Code::FailedPrecondition,
        None,
    ));
    let top = batch(
        "WMS-EAST",
        u64::MAX - 1,
        vec![adjust_on_hand("SKU-1", "DC-EAST", 1)],
    );
    cases.push(refused(
        "sequence 2^64-2",
        Call::Batch(top),
        Code::FailedPrecondition,
        None,
    ));
    let zero = batch("WMS-EAST", 0, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)]);
    cases.push(bad("updates under sequence 0", Call::Batch(zero), "seq"));
    let stranger = batch("NOBODY", 1, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)]);
    cases.push(refused(
        "an unknown source",
        Call::Batch(stranger),
        Code::NotFound,
        None,
    ));
    let huge: Vec<pb::SupplyUpdate> = (0..10_001)
        .map(|_| adjust_on_hand("SKU-1", "DC-EAST", 0))
        .collect();
    cases.push(bad(
        "10,001 updates",
        Call::Batch(batch("WMS-EAST", NEXT_SEQ, huge)),
        "updates",
    ));
    let many_skus: Vec<String> = (0..10_001).map(|i| format!("SKU-{i}")).collect();
    let pairs = pb::AvailabilityRequest {
        skus: many_skus,
        node_ids: vec!["DC-EAST".into()],
        ..Default::default()
    };
    cases.push(bad(
        "10,001 item-node pairs",
        Call::Availability(pairs),
        "skus",
    ));
    let negative = pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        quantity: -1,
        ..Default::default()
    };
    cases.push(bad(
        "availability of -1",
        Call::Availability(negative),
        "quantity",
    ));
    let unknown = pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        node_ids: vec!["DC-NOPE".into()],
        ..Default::default()
    };
    cases.push(bad(
        "availability at an unknown node",
        Call::Availability(unknown),
        "node_ids[0]",
    ));
    let held_list_without_columns = pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        known_node_list: 7,
        ..Default::default()
    };
    cases.push(bad(
        "a known node list without columns",
        Call::Availability(held_list_without_columns),
        "known_node_list",
    ));
    let long = "X".repeat(200);
    for (name, request, field) in [
        (
            "explain of no sku",
            explain_request("", "DC-EAST", "", ""),
            "sku",
        ),
        (
            "explain of a 200-byte sku",
            explain_request(&long, "", "", ""),
            "sku",
        ),
        (
            "explain at an unknown node",
            explain_request("SKU-1", "DC-NOPE", "", ""),
            "node_id",
        ),
        (
            "explain at a 200-byte node",
            explain_request("SKU-1", &long, "", ""),
            "node_id",
        ),
        (
            "explain in an unknown group",
            explain_request("SKU-1", "", "NOPE", ""),
            "group_id",
        ),
        (
            "explain at a node and a group",
            explain_request("SKU-1", "DC-EAST", "EAST", ""),
            "group_id",
        ),
        (
            "explain on a bad date",
            explain_request("SKU-1", "", "", "2026-02-30"),
            "as_of_date",
        ),
    ] {
        cases.push(bad(name, Call::Explain(request), field));
    }
    cases
}

/// An answer with no rejected updates.
fn done<T>(_: T) -> Vec<pb::RejectReason> {
    Vec::new()
}

/// Sends `call`; a batch answers with the reasons of its rejected updates.
async fn send(app: &TestApp, call: Call) -> Result<Vec<pb::RejectReason>, Status> {
    let mut admin = app.admin.clone();
    let mut supply = app.supply.clone();
    let mut availability = app.availability.clone();
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let mut promising = PromisingClient::new(app.channel.clone());
    let mut routing = RoutingClient::new(app.channel.clone());
    match call {
        Call::Nodes(nodes) => admin
            .upsert_nodes(pb::UpsertNodesRequest { nodes })
            .await
            .map(done),
        Call::Groups(groups) => admin
            .upsert_groups(pb::UpsertGroupsRequest { groups })
            .await
            .map(done),
        Call::Sources(sources) => admin
            .upsert_sources(pb::UpsertSourcesRequest { sources })
            .await
            .map(done),
        Call::Levels(service_levels) => {
            let request = pb::UpsertServiceLevelsRequest { service_levels };
            admin.upsert_service_levels(request).await.map(done)
        }
        Call::Safety(entries) => admin
            .set_safety_stock(pb::SetSafetyStockRequest { entries })
            .await
            .map(done),
        Call::Batch(batch) => supply.apply_batch(batch).await.map(|ack| {
            ack.into_inner()
                .rejections
                .iter()
                .map(|r| r.reason())
                .collect()
        }),
        Call::Availability(request) => availability.get_availability(request).await.map(done),
        Call::Explain(request) => availability.explain(request).await.map(done),
        Call::Reserve(request) => reservations.reserve(request).await.map(done),
        Call::Update(request) => reservations.update(request).await.map(done),
        Call::Extend(request) => reservations.extend(request).await.map(done),
        Call::Release(request) => reservations.release(request).await.map(done),
        Call::Get(request) => reservations.get(request).await.map(done),
        Call::Commit(request) => reservations.commit(request).await.map(done),
        Call::Promise(request) => promising.promise_order(request).await.map(done),
        Call::Route(request) => routing.route_order(request).await.map(done),
        Call::Wave(request) => routing.route_orders(request).await.map(done),
    }
}

/// What a client can see. The rejection log grows with every rejected update, and a batch
/// whose every update is rejected still takes its sequence number, by design.
async fn table_fingerprint(app: &mut TestApp) -> String {
    fingerprint(app, &["held"], |stats| {
        stats.rejections_logged = 0;
        for source in &mut stats.source_stats {
            (source.last_seq, source.durable_seq) = (0, 0);
        }
    })
    .await
}

/// Fields named in a status's `BadRequest` details.
fn bad_fields(status: &Status) -> Vec<String> {
    let details = status.get_error_details();
    let violations = details.bad_request().map(|b| b.field_violations.clone());
    violations
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// How `answer` differs from what the case expects, if it does.
fn mismatch(expect: &Expect, answer: Result<Vec<pb::RejectReason>, Status>) -> Option<String> {
    match (expect, answer) {
        (Expect::Refused(code, field), Err(status)) => {
            if status.code() != *code {
                return Some(format!("{status:?}, not {code:?}"));
            }
            if status.message().len() > 1_000 {
                return Some("the answer echoes too much".into());
            }
            let fields = bad_fields(&status);
            match field {
                Some(field) if !fields.contains(field) => {
                    Some(format!("{field} not among {fields:?}"))
                }
                _ => None,
            }
        }
        (Expect::Rejected(reason), Ok(reasons)) if reasons == [*reason] => None,
        (Expect::Rejected(reason), Ok(reasons)) => Some(format!("{reasons:?}, not {reason:?}")),
        (Expect::Refused(code, _), Ok(answer)) => {
            Some(format!("answered {answer:?}, not {code:?}"))
        }
        (Expect::Rejected(reason), Err(status)) => Some(format!("{status:?}, not {reason:?}")),
    }
}

/// Feed cases use the next sequence of WMS-EAST, except those about the sequence itself.
fn renumbered(call: Call, next_seq: &mut u64) -> Call {
    match call {
        Call::Batch(mut batch) if batch.seq == NEXT_SEQ => {
            *next_seq += 1;
            batch.seq = *next_seq;
            Call::Batch(batch)
        }
        call => call,
    }
}

#[tokio::test]
async fn bad_input_gets_its_precise_answer_and_changes_nothing() {
    let mut app = spawn_app().await;
    app.admin
        .upsert_service_levels(pb::UpsertServiceLevelsRequest {
            service_levels: vec![level()],
        })
        .await
        .expect("GROUND");
    let stock = vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)];
    app.apply("WMS-EAST", 1, stock).await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let held = reserve_request("held", vec![line("SKU-1", "DC-EAST", 3)]);
    reservations.reserve(held).await.expect("held");
    let tables = [
        id_cases(),
        node_cases(),
        level_cases(),
        order_cases(),
        reservation_cases(),
        feed_cases(),
    ];
    let cases: Vec<Case> = tables.into_iter().flatten().collect();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let before = table_fingerprint(&mut app).await;
    let mut next_seq = 1;
    let mut wrong = Vec::new();
    for Case { name, call, expect } in cases {
        let answer = send(&app, renumbered(call, &mut next_seq)).await;
        if let Some(problem) = mismatch(&expect, answer) {
            wrong.push(format!("{name}: {problem}"));
        }
        let after = table_fingerprint(&mut app).await;
        assert_eq!(after, before, "{name}: the state changed");
    }
    let report = wrong.join("\n");
    assert!(
        wrong.is_empty(),
        "{} cases answered wrongly:\n{report}",
        wrong.len()
    );
}
