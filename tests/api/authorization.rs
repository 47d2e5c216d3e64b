//! Authorisation over TLS: every RPC against every scope and every kind of bad credential,
//! feeds bound to their source, reservations to their owner. A refusal has its exact code and
//! changes nothing. The audit trail names the credential that made each change.

use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use promised::grpc::pb::supply_client::SupplyClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::durability::durable;
use crate::helpers::{batch, fingerprint, ground, node, set_on_hand, source, TestApp, START_MS};
use crate::redis::RedisServer;
use crate::security::{token_channel, with_token, Security, TokenIssuer, AUDIENCE, LEEWAY_SECS};

/// Every RPC of `promised.v1`, with the scope this test expects it to need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    UpsertNodes,
    UpsertGroups,
    UpsertSources,
    UpsertServiceLevels,
    UpsertPostalCodes,
    UpsertMappings,
    UpsertItems,
    SetSafetyStock,
    GetStats,
    CheckInvariants,
    ListAudit,
    GetPositionHistory,
    ListDeadLetters,
    DeleteDeadLetters,
    GetAvailability,
    Explain,
    WatchAvailability,
    PromiseOrder,
    /// `PromiseOrder` holding its plan.
    PromiseAndReserve,
    Reserve,
    Update,
    Extend,
    Get,
    Commit,
    Release,
    WatchOrders,
    RouteOrder,
    /// `RouteOrder` holding its plan.
    RouteAndReserve,
    RouteOrders,
    /// `RouteOrders` holding its orders' plans.
    WaveAndReserve,
    StreamUpdates,
    ApplyBatch,
    ListRejections,
    BeginSync,
    SyncPart,
    CommitSync,
}

/// In an order in which each call succeeds when allowed (the reservation calls follow one
/// reservation from its retry to its release).
const RPCS: [Rpc; 36] = [
    Rpc::UpsertNodes,
    Rpc::UpsertGroups,
    Rpc::UpsertSources,
    Rpc::UpsertServiceLevels,
    Rpc::UpsertPostalCodes,
    Rpc::UpsertMappings,
    Rpc::UpsertItems,
    Rpc::SetSafetyStock,
    Rpc::GetStats,
    Rpc::CheckInvariants,
    Rpc::ListAudit,
    Rpc::GetPositionHistory,
    Rpc::ListDeadLetters,
    Rpc::DeleteDeadLetters,
    Rpc::GetAvailability,
    Rpc::Explain,
    Rpc::WatchAvailability,
    Rpc::PromiseOrder,
    Rpc::PromiseAndReserve,
    Rpc::Reserve,
    Rpc::Update,
    Rpc::Extend,
    Rpc::Get,
    Rpc::Commit,
    Rpc::Release,
    Rpc::WatchOrders,
    Rpc::RouteOrder,
    Rpc::RouteAndReserve,
    Rpc::RouteOrders,
    Rpc::WaveAndReserve,
    Rpc::StreamUpdates,
    Rpc::ApplyBatch,
    Rpc::ListRejections,
    Rpc::BeginSync,
    Rpc::SyncPart,
    Rpc::CommitSync,
];

/// Every scope a credential can hold (the feed scope for the source the calls feed).
const SCOPES: [&str; 8] = [
    "availability:read",
    "promise",
    "reserve",
    "route",
    "supply:write:WMS-EAST",
    "admin:network",
    "admin:repair",
    "insights:read",
];

impl Rpc {
    /// The scopes a call needs, all of them: a promise or route that holds its plan needs
    /// `reserve` besides its own.
    fn scopes(self) -> &'static [&'static str] {
        use Rpc::*;
        match self {
            UpsertNodes | UpsertGroups | UpsertSources | UpsertServiceLevels
            | UpsertPostalCodes | UpsertMappings | UpsertItems | SetSafetyStock => {
                &["admin:network"]
            }
            GetStats | ListAudit | GetPositionHistory | Explain | ListRejections | WatchOrders => {
                &["insights:read"]
            }
            CheckInvariants | ListDeadLetters | DeleteDeadLetters => &["admin:repair"],
            GetAvailability | WatchAvailability => &["availability:read"],
            PromiseOrder => &["promise"],
            PromiseAndReserve => &["promise", "reserve"],
            Reserve | Update | Extend | Get | Commit | Release => &["reserve"],
            RouteOrder | RouteOrders => &["route"],
            RouteAndReserve | WaveAndReserve => &["route", "reserve"],
            StreamUpdates | ApplyBatch | BeginSync | SyncPart | CommitSync => {
                &["supply:write:WMS-EAST"]
            }
        }
    }
}

/// The reservation the reservation calls act on, held by `checkout` before the matrix runs.
const CART: &str = "cart-1";

fn cart() -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation_id: CART.into(),
        lines: vec![pb::ReservationLine {
            sku: "SKU-1".into(),
            node_id: "DC-EAST".into(),
            quantity: 1,
            ..Default::default()
        }],
        ttl_seconds: 900,
    }
}

fn route_order() -> pb::RouteRequest {
    pb::RouteRequest {
        order_id: "order-r".into(),
        lines: vec![pb::PromiseLine {
            sku: "SKU-1".into(),
            quantity: 1,
        }],
        destination: Some(pb::Destination {
            lat: 40.75,
            lon: -73.99,
            ..Default::default()
        }),
        service_level: "GROUND".into(),
        ..Default::default()
    }
}

/// A feed batch of WMS-EAST that would change SKU-1 if it were applied.
fn feed_batch(source_id: &str, seq: u64) -> pb::SupplyBatch {
    batch(
        source_id,
        seq,
        vec![set_on_hand("SKU-1", "DC-EAST", 7, START_MS)],
    )
}

/// Calls `rpc` with a valid request as the holder of `token` (none: no credential); a feed
/// call sends `feed` (source and sequence). Answers the call's status.
async fn call(
    rpc: Rpc,
    channel: &Channel,
    token: Option<&str>,
    feed: (&str, u64),
) -> Result<(), Status> {
    let channel = channel.clone();
    // Each call takes its own message type.
    macro_rules! ask {
        ($message:expr) => {
            with_token($message, token)
        };
    }
    let mut admin = AdminClient::new(channel.clone());
    let mut reservations = ReservationsClient::new(channel.clone());
    let mut supply = SupplyClient::new(channel.clone());
    let mut routing = RoutingClient::new(channel.clone());
    let east = node(
        "DC-EAST",
        pb::NodeKind::Dc,
        "America/New_York",
        &["EAST", "ALL-DCS"],
    );
    match rpc {
        Rpc::UpsertNodes => drop(
            admin
                .upsert_nodes(ask!(pb::UpsertNodesRequest { nodes: vec![east] }))
                .await?,
        ),
        Rpc::UpsertGroups => {
            let group = pb::NodeGroup {
                id: "EAST".into(),
                description: String::new(),
            };
            drop(
                admin
                    .upsert_groups(ask!(pb::UpsertGroupsRequest {
                        groups: vec![group],
                    }))
                    .await?,
            )
        }
        Rpc::UpsertSources => {
            use pb::SupplyType::{InTransit, OnHand};
            let wms = source(
                "WMS-EAST",
                pb::SourceKind::Wms,
                &["DC-EAST"],
                &[OnHand, InTransit],
                300,
            );
            drop(
                admin
                    .upsert_sources(ask!(pb::UpsertSourcesRequest { sources: vec![wms] }))
                    .await?,
            )
        }
        Rpc::UpsertServiceLevels => {
            let levels = pb::UpsertServiceLevelsRequest {
                service_levels: vec![ground(0.01)],
            };
            drop(admin.upsert_service_levels(ask!(levels)).await?)
        }
        Rpc::UpsertPostalCodes => {
            let code = pb::PostalCode {
                postal_code: "10001".into(),
                country: "US".into(),
                lat: 40.75,
                lon: -73.99,
            };
            drop(
                admin
                    .upsert_postal_codes(ask!(pb::UpsertPostalCodesRequest {
                        postal_codes: vec![code],
                    }))
                    .await?,
            )
        }
        Rpc::UpsertMappings => {
            let mapping = pb::SourceMapping {
                source_id: "POS".into(),
                ..Default::default()
            };
            let request = pb::UpsertMappingsRequest {
                mappings: vec![mapping],
            };
            drop(admin.upsert_mappings(ask!(request)).await?)
        }
        Rpc::UpsertItems => {
            let item = pb::Item {
                sku: "SKU-1".into(),
                weight: 1.5,
                ..Default::default()
            };
            let request = pb::UpsertItemsRequest { items: vec![item] };
            drop(admin.upsert_items(ask!(request)).await?)
        }
        // A watch is answered once it is admitted; dropping the stream ends it.
        Rpc::WatchAvailability => {
            let request = pb::WatchAvailabilityRequest {
                skus: vec!["SKU-1".into()],
                ..Default::default()
            };
            let mut availability = AvailabilityClient::new(channel.clone());
            drop(availability.watch_availability(ask!(request)).await?)
        }
        Rpc::WatchOrders => drop(
            reservations
                .watch_orders(ask!(pb::WatchOrdersRequest::default()))
                .await?,
        ),
        Rpc::SetSafetyStock => {
            let entry = pb::SafetyStockEntry {
                sku: "SKU-1".into(),
                node_id: "DC-EAST".into(),
                quantity: 0,
            };
            drop(
                admin
                    .set_safety_stock(ask!(pb::SetSafetyStockRequest {
                        entries: vec![entry],
                    }))
                    .await?,
            )
        }
        Rpc::GetStats => drop(admin.get_stats(ask!(pb::GetStatsRequest {})).await?),
        Rpc::CheckInvariants => drop(
            admin
                .check_invariants(ask!(pb::CheckInvariantsRequest { repair: false }))
                .await?,
        ),
        Rpc::ListAudit => drop(
            admin
                .list_audit(ask!(pb::ListAuditRequest::default()))
                .await?,
        ),
        Rpc::ListDeadLetters => {
            let request = pb::ListDeadLettersRequest {
                sink: "oms".into(),
                ..Default::default()
            };
            drop(admin.list_dead_letters(ask!(request)).await?)
        }
        Rpc::DeleteDeadLetters => {
            let request = pb::DeleteDeadLettersRequest {
                sink: "oms".into(),
                ids: vec!["1-0".into()],
            };
            drop(admin.delete_dead_letters(ask!(request)).await?)
        }
        Rpc::GetPositionHistory => {
            let request = pb::GetPositionHistoryRequest {
                sku: "SKU-1".into(),
                node_id: "DC-EAST".into(),
                limit: 10,
            };
            drop(admin.get_position_history(ask!(request)).await?)
        }
        Rpc::Explain => {
            let request = pb::ExplainRequest {
                sku: "SKU-1".into(),
                node_id: "DC-EAST".into(),
                ..Default::default()
            };
            drop(
                AvailabilityClient::new(channel)
                    .explain(ask!(request))
                    .await?,
            )
        }
        Rpc::GetAvailability => {
            let request = pb::AvailabilityRequest {
                skus: vec!["SKU-1".into()],
                ..Default::default()
            };
            drop(
                AvailabilityClient::new(channel)
                    .get_availability(ask!(request))
                    .await?,
            )
        }
        Rpc::PromiseOrder | Rpc::PromiseAndReserve => {
            let order = route_order();
            let reserve = rpc == Rpc::PromiseAndReserve;
            let request = pb::PromiseRequest {
                lines: order.lines,
                destination: order.destination,
                service_levels: vec!["GROUND".into()],
                reserve,
                reservation_id: if reserve {
                    "promised-1".into()
                } else {
                    String::new()
                },
                ..Default::default()
            };
            drop(
                PromisingClient::new(channel)
                    .promise_order(ask!(request))
                    .await?,
            )
        }
        Rpc::Reserve => drop(reservations.reserve(ask!(cart())).await?),
        Rpc::Update => drop(reservations.update(ask!(cart())).await?),
        Rpc::Extend => {
            let extend = pb::ExtendRequest {
                reservation_id: CART.into(),
                ttl_seconds: 600,
            };
            drop(reservations.extend(ask!(extend)).await?)
        }
        Rpc::Get => drop(
            reservations
                .get(ask!(pb::GetReservationRequest {
                    reservation_id: CART.into(),
                }))
                .await?,
        ),
        Rpc::Commit => {
            let commit = pb::CommitRequest {
                reservation_id: CART.into(),
                order_id: "order-1".into(),
            };
            drop(reservations.commit(ask!(commit)).await?)
        }
        Rpc::Release => drop(
            reservations
                .release(ask!(pb::ReleaseRequest {
                    reservation_id: CART.into(),
                }))
                .await?,
        ),
        Rpc::RouteOrder => drop(routing.route_order(ask!(route_order())).await?),
        Rpc::RouteAndReserve => {
            let request = pb::RouteRequest {
                reserve: true,
                reservation_id: "routed-1".into(),
                ..route_order()
            };
            drop(routing.route_order(ask!(request)).await?)
        }
        Rpc::RouteOrders => {
            let wave = pb::RouteOrdersRequest {
                orders: vec![route_order()],
            };
            drop(routing.route_orders(ask!(wave)).await?)
        }
        Rpc::WaveAndReserve => {
            let order = pb::RouteRequest {
                reserve: true,
                reservation_id: "waved-1".into(),
                ..route_order()
            };
            let wave = pb::RouteOrdersRequest {
                orders: vec![order],
            };
            drop(routing.route_orders(ask!(wave)).await?)
        }
        Rpc::StreamUpdates => {
            let batches = tokio_stream::iter(vec![feed_batch(feed.0, feed.1)]);
            let mut acks = supply.stream_updates(ask!(batches)).await?.into_inner();
            acks.message()
                .await?
                .ok_or_else(|| Status::internal("no ack"))?;
        }
        Rpc::ApplyBatch => drop(supply.apply_batch(ask!(feed_batch(feed.0, feed.1))).await?),
        Rpc::ListRejections => drop(
            supply
                .list_rejections(ask!(pb::ListRejectionsRequest::default()))
                .await?,
        ),
        Rpc::BeginSync => {
            let begin = pb::BeginSyncRequest {
                source_id: feed.0.into(),
                sync_id: "authz".into(),
                supply_type: pb::SupplyType::OnHand.into(),
                node_ids: Vec::new(),
                as_of: crate::helpers::as_of(START_MS),
            };
            drop(supply.begin_sync(ask!(begin)).await?)
        }
        Rpc::SyncPart => {
            let part = pb::SyncPartRequest {
                source_id: feed.0.into(),
                sync_id: "authz".into(),
                positions: vec![pb::SyncPosition {
                    sku: "SKU-1".into(),
                    node_id: "DC-EAST".into(),
                    quantity: 10,
                    ..Default::default()
                }],
            };
            drop(supply.sync_part(ask!(part)).await?)
        }
        Rpc::CommitSync => {
            let commit = pb::CommitSyncRequest {
                source_id: feed.0.into(),
                sync_id: "authz".into(),
                force: false,
            };
            drop(supply.commit_sync(ask!(commit)).await?)
        }
    }
    Ok(())
}

/// The service over TLS, journaling to `redis` (the audit trail lives in the journal), with
/// GROUND, SKU-1 on hand at DC-EAST, and `checkout`'s hold `CART`.
async fn secure_app(security: &Security, redis: &RedisServer, prefix: &str) -> TestApp {
    let journaled = durable(redis, prefix);
    let mut app = security
        .spawn_with(ServeArgs {
            redis_url: journaled.redis_url,
            redis_prefix: journaled.redis_prefix,
            redis_timeout_ms: journaled.redis_timeout_ms,
            snapshot_interval_secs: journaled.snapshot_interval_secs,
            ..security.args()
        })
        .await;
    let levels = pb::UpsertServiceLevelsRequest {
        service_levels: vec![ground(0.01)],
    };
    app.admin
        .upsert_service_levels(levels)
        .await
        .expect("levels");
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let channel = token_channel(&app, security).await;
    let checkout = security.issuer.token("checkout", &["reserve"]);
    ReservationsClient::new(channel)
        .reserve(with_token(cart(), Some(&checkout)))
        .await
        .expect("checkout holds the cart");
    app
}

fn assert_code(result: Result<(), Status>, code: Code, what: &str) {
    match result {
        Err(status) if status.code() == code => {}
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn every_rpc_refuses_every_bad_credential_and_every_other_scope_and_changes_nothing() {
    let security = Security::new();
    let redis = RedisServer::start();
    let mut app = secure_app(&security, &redis, "authz-refused").await;
    let channel = token_channel(&app, &security).await;
    let before = fingerprint(&mut app, &[CART], |_| {}).await;
    let issuer = &security.issuer;
    let expired_ms = START_MS - (LEEWAY_SECS + 1) * 1000;
    let forger = TokenIssuer::new();
    let bad: [(&str, Option<String>); 5] = [
        ("no credential", None),
        (
            "expired JWT",
            Some(issuer.token_for("checkout", &SCOPES, expired_ms, AUDIENCE)),
        ),
        ("forged signature", Some(forger.token("checkout", &SCOPES))),
        (
            "wrong audience",
            Some(issuer.token_for("checkout", &SCOPES, START_MS + 60_000, "someone-else")),
        ),
        ("unknown API key", Some("not-a-key".into())),
    ];
    for rpc in RPCS {
        for (what, token) in &bad {
            let result = call(rpc, &channel, token.as_deref(), ("WMS-EAST", 500)).await;
            assert_code(
                result,
                Code::Unauthenticated,
                &format!("{rpc:?} with {what}"),
            );
        }
        // One scope short of what the call needs, or none of it.
        for scope in SCOPES.iter().filter(|s| rpc.scopes() != [**s]) {
            let token = issuer.token("checkout", &[scope]);
            let result = call(rpc, &channel, Some(&token), ("WMS-EAST", 500)).await;
            assert_code(
                result,
                Code::PermissionDenied,
                &format!("{rpc:?} with only {scope}"),
            );
        }
    }
    // A feed credential of another source.
    let west = issuer.token("wms-west", &["supply:write:WMS-WEST"]);
    let feeds = [
        Rpc::StreamUpdates,
        Rpc::ApplyBatch,
        Rpc::BeginSync,
        Rpc::SyncPart,
        Rpc::CommitSync,
    ];
    for rpc in feeds {
        let result = call(rpc, &channel, Some(&west), ("WMS-EAST", 500)).await;
        assert_code(
            result,
            Code::PermissionDenied,
            &format!("{rpc:?} as WMS-EAST with WMS-WEST's scope"),
        );
    }
    let after = fingerprint(&mut app, &[CART], |_| {}).await;
    assert_eq!(before, after, "a refused call changed state");
}

#[tokio::test]
async fn every_rpc_answers_a_valid_token_holding_its_scope() {
    let security = Security::new();
    let redis = RedisServer::start();
    let app = secure_app(&security, &redis, "authz-allowed").await;
    let channel = token_channel(&app, &security).await;
    for (rpc, seq) in RPCS.into_iter().zip(100..) {
        let token = security.issuer.token("checkout", rpc.scopes());
        let result = call(rpc, &channel, Some(&token), ("WMS-EAST", seq)).await;
        assert!(
            result.is_ok(),
            "{rpc:?} with {:?}: {result:?}",
            rpc.scopes()
        );
    }
}

#[tokio::test]
async fn health_and_reflection_stay_open_without_a_credential() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let security = Security::new();
    let app = security.spawn().await;
    let channel = token_channel(&app, &security).await;
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no credential");
    assert_eq!(health.into_inner().status, 1, "SERVING");
}

#[tokio::test]
async fn only_a_reservations_owner_or_an_operator_may_act_on_it() {
    let security = Security::new();
    let redis = RedisServer::start();
    let mut app = secure_app(&security, &redis, "authz-owner").await;
    let held = app.engine.get_reservation(CART).expect("held");
    assert_eq!(
        held.reservation.owner, "checkout",
        "the reservation records its creator"
    );
    let channel = token_channel(&app, &security).await;
    let before = fingerprint(&mut app, &[CART], |_| {}).await;
    let oms = security.issuer.token("oms", &["reserve"]);
    for rpc in [
        Rpc::Reserve,
        Rpc::Update,
        Rpc::Extend,
        Rpc::Get,
        Rpc::Commit,
        Rpc::Release,
    ] {
        let result = call(rpc, &channel, Some(&oms), ("WMS-EAST", 0)).await;
        assert_code(
            result,
            Code::PermissionDenied,
            &format!("{rpc:?} by another caller"),
        );
    }
    assert_eq!(
        before,
        fingerprint(&mut app, &[CART], |_| {}).await,
        "nothing changed"
    );
    let checkout = security.issuer.token("checkout", &["reserve"]);
    call(Rpc::Extend, &channel, Some(&checkout), ("WMS-EAST", 0))
        .await
        .expect("the owner extends");
    let operator = security.issuer.token("ops", &["reserve", "admin:repair"]);
    call(Rpc::Release, &channel, Some(&operator), ("WMS-EAST", 0))
        .await
        .expect("an operator releases");
}

#[tokio::test]
async fn a_token_is_refused_once_the_server_clock_passes_its_expiry_and_leeway() {
    let security = Security::new();
    let app = security.spawn().await;
    let channel = token_channel(&app, &security).await;
    let exp_ms = START_MS + 60_000;
    let token = security
        .issuer
        .token_for("reader", &["availability:read"], exp_ms, AUDIENCE);
    call(Rpc::GetAvailability, &channel, Some(&token), ("", 0))
        .await
        .expect("valid now");
    app.clock.set_ms(exp_ms + LEEWAY_SECS * 1000);
    call(Rpc::GetAvailability, &channel, Some(&token), ("", 0))
        .await
        .expect("within the leeway");
    app.clock.set_ms(exp_ms + LEEWAY_SECS * 1000 + 1_000);
    let result = call(Rpc::GetAvailability, &channel, Some(&token), ("", 0)).await;
    assert_code(
        result,
        Code::Unauthenticated,
        "a cached token past its expiry",
    );
}

/// `message` as the holder of `token`, under request id `id`.
fn as_request<T>(message: T, token: &str, id: &'static str) -> tonic::Request<T> {
    let mut request = with_token(message, Some(token));
    request
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static(id));
    request
}

#[tokio::test]
async fn the_audit_trail_names_the_credential_and_refusals_carry_their_request_id() {
    let security = Security::new();
    let redis = RedisServer::start();
    let app = secure_app(&security, &redis, "authz-audit").await;
    let channel = token_channel(&app, &security).await;
    let checkout = security.issuer.token("checkout", &["reserve"]);
    let mut reservations = ReservationsClient::new(channel.clone());
    let extend = pb::ExtendRequest {
        reservation_id: CART.into(),
        ttl_seconds: 600,
    };
    reservations
        .extend(as_request(extend, &checkout, "extend-1"))
        .await
        .expect("the owner extends");
    // Refused at the door (no scope) and by the owner check: neither reaches the journal,
    // both answer with the caller's request id.
    let reader = security.issuer.token("reader", &["availability:read"]);
    let refused = reservations
        .get(as_request(
            pb::GetReservationRequest {
                reservation_id: CART.into(),
            },
            &reader,
            "no-scope-1",
        ))
        .await
        .expect_err("no scope");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused
            .metadata()
            .get("x-request-id")
            .map(|v| v.to_str().ok()),
        Some(Some("no-scope-1")),
        "a refusal carries the request id"
    );
    let oms = security.issuer.token("oms", &["reserve"]);
    let release = pb::ReleaseRequest {
        reservation_id: CART.into(),
    };
    let refused = reservations
        .release(as_request(release, &oms, "not-yours-1"))
        .await
        .expect_err("another caller's reservation");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused
            .metadata()
            .get("x-request-id")
            .map(|v| v.to_str().ok()),
        Some(Some("not-yours-1"))
    );
    let unauthenticated = reservations
        .get(tonic::Request::new(pb::GetReservationRequest {
            reservation_id: CART.into(),
        }))
        .await
        .expect_err("no credential");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    assert!(
        unauthenticated.metadata().get("x-request-id").is_some(),
        "an id is generated for an unauthenticated call too"
    );

    let auditor = security.issuer.token("auditor", &["insights:read"]);
    let page = AdminClient::new(channel)
        .list_audit(with_token(pb::ListAuditRequest::default(), Some(&auditor)))
        .await
        .expect("the auditor reads the trail")
        .into_inner();
    // The setup (network, service levels, stock) came over the operator's client
    // certificate, the hold and its extension with checkout's token; nothing else is there.
    let by = |actor: &str| -> Vec<&str> {
        let entries = page.entries.iter().filter(|e| e.actor == actor);
        entries.map(|e| e.action.as_str()).collect()
    };
    let operator = by("operator");
    assert!(
        operator.contains(&"upsert_nodes") && operator.contains(&"apply_batch"),
        "{operator:?}"
    );
    assert_eq!(by("checkout"), ["reserve", "extend"]);
    assert_eq!(
        page.entries.len(),
        operator.len() + 2,
        "refused calls leave no trace: {:?}",
        page.entries
    );
    let extended = page.entries.last().expect("the extension");
    assert_eq!(
        (
            extended.request_id.as_str(),
            extended.reservation_ids.as_slice()
        ),
        ("extend-1", [CART.to_owned()].as_slice())
    );
}
