//! A hold whose journal record Redis has not confirmed yet: the same call sent again while the
//! first is in flight (what an OMS does after a timeout), a read of it and a change of it wait
//! for the journal to store or take back that record, and are never answered OK for a hold
//! that is then taken back. Redis is made to hang (SIGSTOP) so that the first call's round
//! trip stays open, then either refuses it by timing out or continues (SIGCONT) and takes it.

use std::future::Future;

use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use tonic::{Code, Status};

use crate::durability::{durable, until_healed};
use crate::helpers::*;
use crate::redis::RedisServer;
use crate::reservations::{line, reserve_request};
use crate::retries::{route_r1, three_cities};

/// Long enough for the checks made while the first call waits on the hung Redis.
fn hung_long(redis: &RedisServer, prefix: &str) -> ServeArgs {
    ServeArgs {
        redis_timeout_ms: Some("3000".into()),
        ..durable(redis, prefix)
    }
}

/// Reads `sku` until `node` shows `reserved`: the first call has applied its hold in memory.
async fn until_reserved(app: &mut TestApp, sku: &str, node: &str, reserved: i64) {
    while node_view(&app.item(sku).await, node).reserved != reserved {
        tokio::task::yield_now().await;
    }
}

/// The service over `redis` with 10 of SKU-1 at DC-EAST, and the hold of 3 of them as `cart`.
async fn with_stock(redis: &RedisServer, prefix: &str) -> (TestApp, pb::ReserveRequest) {
    let mut app = spawn_app_with(hung_long(redis, prefix)).await;
    let stock = set_on_hand("SKU-1", "DC-EAST", 10, START_MS);
    app.apply("WMS-EAST", 1, vec![stock]).await;
    let hold = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 3)]);
    (app, hold)
}

fn assert_unavailable<T: std::fmt::Debug>(answer: Result<T, Status>, what: &str) {
    let status = answer.expect_err(what);
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
}

/// Hangs Redis, runs `first` (a holding call) in the background until it has applied its hold
/// of `reserved` of `sku` at `node`, runs `meanwhile`, then lets Redis refuse the first call
/// and wake again.
async fn while_hold_is_in_flight<F, M>(
    redis: &RedisServer,
    app: &mut TestApp,
    first: F,
    (sku, node, reserved): (&str, &str, i64),
    meanwhile: M,
) where
    F: Future<Output = Result<(), Status>> + Send + 'static,
    M: Future<Output = ()>,
{
    redis.signal("STOP");
    let first = tokio::spawn(first);
    until_reserved(app, sku, node, reserved).await;
    meanwhile.await;
    assert_unavailable(first.await.expect("joined"), "the first call times out");
    redis.signal("CONT");
}

#[tokio::test]
async fn a_reserve_retried_before_its_first_call_is_durable_is_not_acknowledged() {
    let redis = RedisServer::start();
    let (mut app, hold) = with_stock(&redis, "unsettled-reserve").await;
    let reservations = ReservationsClient::new(app.channel.clone());
    let first = {
        let (mut client, hold) = (reservations.clone(), hold.clone());
        async move { client.reserve(hold).await.map(drop) }
    };
    let meanwhile = {
        let (mut client, hold) = (reservations.clone(), hold.clone());
        async move {
            assert_unavailable(client.reserve(hold).await, "the retry");
            let get = pb::GetReservationRequest {
                reservation_id: "cart".into(),
            };
            let missing = client.get(get).await.expect_err("taken back meanwhile");
            assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
            let commit = pb::CommitRequest {
                reservation_id: "cart".into(),
                order_id: "ORDER-1".into(),
            };
            assert_unavailable(client.commit(commit).await, "a commit of the hold");
        }
    };
    let in_flight = ("SKU-1", "DC-EAST", 3);
    while_hold_is_in_flight(&redis, &mut app, first, in_flight, meanwhile).await;

    let next = batch("WMS-EAST", 2, vec![adjust_on_hand("SKU-2", "DC-EAST", 1)]);
    until_healed(&mut app, next).await;
    let mut client = reservations;
    let get = pb::GetReservationRequest {
        reservation_id: "cart".into(),
    };
    let missing = client.get(get).await.expect_err("taken back");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").reserved, 0);
    let held = client.reserve(hold).await.expect("held once durable");
    assert_eq!(held.into_inner().state(), pb::ReservationState::Held);
    assert_eq!(node_view(&app.item("SKU-1").await, "DC-EAST").reserved, 3);
}

#[tokio::test]
async fn a_route_and_reserve_retried_before_its_first_call_is_durable_is_not_acknowledged() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(hung_long(&redis, "unsettled-route")).await;
    three_cities(&app.channel).await;
    let routing = RoutingClient::new(app.channel.clone());
    let first = {
        let mut client = routing.clone();
        async move { client.route_order(route_r1(&["X", "Y"])).await.map(drop) }
    };
    let meanwhile = {
        let mut client = routing.clone();
        async move {
            let retry = client.route_order(route_r1(&["X", "Y"])).await;
            assert_unavailable(retry, "the retry");
        }
    };
    while_hold_is_in_flight(&redis, &mut app, first, ("X", "NYC", 1), meanwhile).await;

    let stock = batch("WMS-R", 2, vec![adjust_on_hand("Z", "NYC", 1)]);
    until_healed(&mut app, stock).await;
    assert_eq!(node_view(&app.item("X").await, "NYC").reserved, 0);
    let mut client = routing;
    let routed = client
        .route_order(route_r1(&["X", "Y"]))
        .await
        .expect("held once durable")
        .into_inner();
    let again = client
        .route_order(route_r1(&["X", "Y"]))
        .await
        .expect("a retry of a durable hold")
        .into_inner();
    assert_eq!(routed, again);
    assert_eq!(node_view(&app.item("X").await, "NYC").reserved, 1);
}

#[tokio::test]
async fn a_retry_sent_while_the_first_call_is_in_flight_waits_and_answers_the_same_hold() {
    let redis = RedisServer::start();
    let (mut app, hold) = with_stock(&redis, "unsettled-wait").await;
    let client = ReservationsClient::new(app.channel.clone());
    let call = |hold: pb::ReserveRequest| {
        let mut client = client.clone();
        tokio::spawn(async move { client.reserve(hold).await.map(|r| r.into_inner()) })
    };
    redis.signal("STOP");
    let first = call(hold.clone());
    until_reserved(&mut app, "SKU-1", "DC-EAST", 3).await;
    let retry = call(hold);
    let get = {
        let mut client = client.clone();
        let get = pb::GetReservationRequest {
            reservation_id: "cart".into(),
        };
        tokio::spawn(async move { client.get(get).await.map(|r| r.into_inner()) })
    };
    // A read sent after them on the same connection: they have reached the service.
    app.item("SKU-1").await;
    redis.signal("CONT");
    let first = first.await.expect("joined").expect("durable");
    assert_eq!(retry.await.expect("joined").expect("the same hold"), first);
    assert_eq!(get.await.expect("joined").expect("durable now"), first);
    assert_eq!(
        node_view(&app.item("SKU-1").await, "DC-EAST").reserved,
        3,
        "held once"
    );
}
