//! Holds in waves: `RouteOrders` whose orders reserve hold each order's plan under its own id,
//! all or nothing per order, and the same wave sent again (also after a restart) answers each
//! held order's plan and reservation as kept.

use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::durability::durable;
use crate::helpers::*;
use crate::redis::RedisServer;
use crate::retries::{route_r1, three_cities};

/// `skus` (one each) for `order_id`, held under `reservation_id`.
fn holding(order_id: &str, skus: &[&str], reservation_id: &str) -> pb::RouteRequest {
    pb::RouteRequest {
        order_id: order_id.into(),
        reservation_id: reservation_id.into(),
        ..route_r1(skus)
    }
}

/// Over one X and one Y at each of two nodes: A takes an X and a Y, B the other X, and C
/// (X and Y again) finds no X left.
fn wave() -> pb::RouteOrdersRequest {
    pb::RouteOrdersRequest {
        orders: vec![
            holding("ORDER-A", &["X", "Y"], "wa"),
            holding("ORDER-B", &["X"], "wb"),
            holding("ORDER-C", &["Y", "X"], "wc"),
        ],
    }
}

async fn route_wave(channel: &Channel) -> pb::RouteOrdersResponse {
    RoutingClient::new(channel.clone())
        .route_orders(wave())
        .await
        .expect("routed and held")
        .into_inner()
}

fn reserved(item: &pb::ItemAvailability) -> [i64; 3] {
    ["NYC", "CHI", "DEN"].map(|node| node_view(item, node).reserved)
}

/// A and B held whole under their own ids; C, with no X left, holds nothing and its id stays
/// free.
async fn assert_held_per_order(app: &mut TestApp, answer: &pb::RouteOrdersResponse) {
    let [a, b, c] = &answer.orders[..] else {
        panic!("three orders: {answer:?}");
    };
    for (order, id) in [(a, "wa"), (b, "wb")] {
        let plan = order.plan.as_ref().expect("a plan");
        let held = order.reservation.as_ref().expect("held");
        assert_eq!(held.reservation_id, id);
        assert_eq!(held.state(), pb::ReservationState::Held);
        let planned: usize = plan.shipments.iter().map(|s| s.lines.len()).sum();
        assert_eq!(held.lines.len(), planned, "every line of the plan held");
    }
    assert_eq!((c.plan.as_ref(), c.reservation.as_ref()), (None, None));
    let costs: f64 = [a, b]
        .iter()
        .filter_map(|o| o.plan.as_ref())
        .map(|p| p.total_cost)
        .sum();
    assert_eq!((answer.total_cost, answer.orders_served), (costs, 2));
    assert_eq!(reserved(&app.item("X").await).iter().sum::<i64>(), 2);
    assert_eq!(reserved(&app.item("Y").await).iter().sum::<i64>(), 1);
    let free = ReservationsClient::new(app.channel.clone())
        .get(pb::GetReservationRequest {
            reservation_id: "wc".into(),
        })
        .await
        .expect_err("C holds nothing");
    assert_eq!(free.code(), Code::NotFound, "{free:?}");
}

#[tokio::test]
async fn a_wave_holds_each_order_whole_and_answers_the_same_when_sent_again_and_after_a_restart() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "waves")).await;
    three_cities(&app.channel).await;
    let first = route_wave(&app.channel).await;
    assert_held_per_order(&mut app, &first).await;

    let again = route_wave(&app.channel).await;
    assert_eq!(again.orders[..2], first.orders[..2], "A and B as kept");
    assert_held_per_order(&mut app, &again).await;
    app.shutdown().await;

    let mut app = spawn_app_with(durable(&redis, "waves")).await;
    let restarted = route_wave(&app.channel).await;
    assert_eq!(
        restarted.orders[..2],
        first.orders[..2],
        "kept through a restart"
    );
    assert_held_per_order(&mut app, &restarted).await;
}

#[tokio::test]
async fn a_wave_order_and_the_same_order_sent_alone_are_one_request() {
    let app = spawn_app().await;
    three_cities(&app.channel).await;
    let first = route_wave(&app.channel).await;
    let alone = RoutingClient::new(app.channel.clone())
        .route_order(holding("ORDER-A", &["X", "Y"], "wa"))
        .await
        .expect("a retry of A")
        .into_inner();
    assert_eq!(alone, first.orders[0]);
    let other = RoutingClient::new(app.channel.clone())
        .route_order(holding("ORDER-A", &["X"], "wb"))
        .await
        .expect_err("wb is B's");
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
}

#[tokio::test]
async fn a_wave_redis_does_not_take_holds_none_of_its_orders() {
    let mut redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "waves-refused")).await;
    three_cities(&app.channel).await;
    redis.kill();
    let refused = RoutingClient::new(app.channel.clone())
        .route_orders(wave())
        .await
        .expect_err("not durable");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(reserved(&app.item("X").await), [0, 0, 0]);
    assert_eq!(reserved(&app.item("Y").await), [0, 0, 0]);
}
