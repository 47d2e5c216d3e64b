//! Read your writes: consistency tokens over gRPC and HTTP, with a real Redis journal; across
//! a restart; refused precisely when malformed, not reached, or without a journal.

use std::time::{Duration, Instant};

use promised::checkpoint::Durability;
use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use crate::durability::{durable, recover};
use crate::helpers::*;
use crate::http_client::Http;
use crate::redis::RedisServer;
use crate::reservations::{line, reserve_request};

const TOKEN: &str = "x-consistency-token";
const MIN_TOKEN: &str = "x-min-consistency-token";

/// A token as `(ms, seq)`, so tokens compare as journal positions do.
fn position(token: &str) -> (u64, u64) {
    let (ms, seq) = token.split_once('-').expect("<ms>-<seq>");
    (ms.parse().expect("ms"), seq.parse().expect("seq"))
}

fn token_of<T>(response: &tonic::Response<T>) -> String {
    response
        .metadata()
        .get(TOKEN)
        .expect("the answer carries a consistency token")
        .to_str()
        .expect("ASCII")
        .to_owned()
}

fn with_min<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(MIN_TOKEN, MetadataValue::try_from(token).expect("ASCII"));
    request
}

fn sku_1() -> pb::AvailabilityRequest {
    pb::AvailabilityRequest {
        skus: vec!["SKU-1".into()],
        ..Default::default()
    }
}

/// The first batch of WMS-EAST: 30 of SKU-1 at DC-EAST.
async fn stock_sku_1(app: &mut TestApp) -> tonic::Response<pb::SupplyAck> {
    let first = batch(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 30, START_MS)],
    );
    app.supply.apply_batch(first).await.expect("applied")
}

fn with_wait(mut args: ServeArgs, ms: u64) -> ServeArgs {
    args.consistency_wait_ms = Some(ms.to_string());
    args
}

#[tokio::test]
async fn writes_answer_their_journal_position_and_reads_wait_for_a_token() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(with_wait(durable(&redis, "tokens"), 300)).await;

    let first = stock_sku_1(&mut app).await;
    let second = app
        .supply
        .apply_batch(batch(
            "WMS-EAST",
            2,
            vec![adjust_on_hand("SKU-1", "DC-EAST", -4)],
        ))
        .await
        .expect("applied");
    let (first, second) = (token_of(&first), token_of(&second));
    assert!(
        position(&second) > position(&first),
        "{second} follows {first}"
    );
    let newest = redis_newest_entry(&redis, "tokens");
    assert_eq!(second, newest, "the token is the write's own journal entry");

    // Holds that share a journal round trip still name their own entries.
    let mut holds = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut reservations = ReservationsClient::new(app.channel.clone());
        holds.spawn(async move {
            let request = reserve_request(&format!("r-{i}"), vec![line("SKU-1", "DC-EAST", 1)]);
            token_of(&reservations.reserve(request).await.expect("held"))
        });
    }
    let tokens: Vec<String> = holds.join_all().await;
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len(), "one entry each: {tokens:?}");

    // A read names a position at least as new as every write it could see.
    let read = app
        .availability
        .get_availability(with_min(sku_1(), &second))
        .await
        .expect("the journal is past the token: served at once");
    assert!(position(&token_of(&read)) >= position(&second));
    assert_eq!(node_atp(&read.into_inner().items[0], "DC-EAST"), 6);

    // A token this journal has not reached: refused once the wait is over, precisely.
    let ahead = format!("{}-0", position(&second).0 + 3_600_000);
    let started = Instant::now();
    let refused = app
        .availability
        .get_availability(with_min(sku_1(), &ahead))
        .await
        .expect_err("not reached");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&ahead), "{}", refused.message());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_secs(5),
        "waited {waited:?} for a 300 ms bound"
    );

    let malformed = app
        .availability
        .get_availability(with_min(sku_1(), "yesterday"))
        .await
        .expect_err("malformed");
    assert_bad_field(&malformed, MIN_TOKEN);
}

/// The newest entry id of the instance's journal, read from Redis itself.
fn redis_newest_entry(redis: &RedisServer, prefix: &str) -> String {
    let mut conn = redis.client().get_connection().expect("connects");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(format!("{{{prefix}}}:journal"))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut conn)
        .expect("XREVRANGE");
    reply.ids.first().expect("an entry").id.clone()
}

#[tokio::test]
async fn a_token_from_before_a_restart_is_reached_at_once_after_it() {
    let redis = RedisServer::start();
    let mut app = spawn_app_with(durable(&redis, "restart-tokens")).await;
    let written = stock_sku_1(&mut app).await;
    let token = token_of(&written);
    app.shutdown().await;

    // What a restart finds: the journal's position is where it ended, before anything new.
    let store = recover(&redis, "restart-tokens").await.expect("recovers");
    let reopened = Durability::Redis(store);
    assert_eq!(
        reopened.position().map(|p| p.to_string()),
        Some(token.clone())
    );
    drop(reopened);

    let mut app = spawn_app_with(with_wait(durable(&redis, "restart-tokens"), 2_000)).await;
    let started = Instant::now();
    let read = app
        .availability
        .get_availability(with_min(sku_1(), &token))
        .await
        .expect("the restarted journal starts where it ended");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served without waiting for a new write ({:?})",
        started.elapsed()
    );
    assert!(position(&token_of(&read)) >= position(&token));
}

#[tokio::test]
async fn http_answers_carry_tokens_and_honour_a_minimum() {
    let redis = RedisServer::start();
    let app = spawn_app_with(with_wait(durable(&redis, "http-tokens"), 200)).await;
    let http = Http::new(app.http_addr);
    let batch = json!({"seq": "1", "updates": [{"sku": "SKU-1", "nodeId": "DC-EAST",
        "supplyType": "SUPPLY_TYPE_ON_HAND", "op": "UPDATE_OP_ADJUST", "quantity": "12"}]});
    let written = http.post("/v1/sources/WMS-EAST/batches", &batch).await;
    assert_eq!(written.status, 200, "{:?}", written.body);
    let token = written.header(TOKEN).expect("a token").to_owned();
    assert_eq!(token, redis_newest_entry(&redis, "http-tokens"));

    let read = http
        .send(
            "GET",
            "/v1/skus/SKU-1/availability",
            &[(MIN_TOKEN, token.as_str())],
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert!(position(read.header(TOKEN).expect("a token")) >= position(&token));

    let ahead = format!("{}-0", position(&token).0 + 3_600_000);
    let refused = http
        .send(
            "GET",
            "/v1/skus/SKU-1/availability",
            &[(MIN_TOKEN, ahead.as_str())],
            None,
        )
        .await;
    assert_eq!(refused.status, 412, "{:?}", refused.body);
    let malformed = http
        .send(
            "GET",
            "/v1/skus/SKU-1/availability",
            &[(MIN_TOKEN, "soon")],
            None,
        )
        .await;
    assert_eq!(malformed.status, 400, "{:?}", malformed.body);
    assert_eq!(
        malformed.detail("BadRequest")["fieldViolations"][0]["field"],
        MIN_TOKEN
    );
}

#[tokio::test]
async fn without_a_journal_there_are_no_tokens_to_give_or_reach() {
    let mut app = spawn_app().await;
    let written = stock_sku_1(&mut app).await;
    assert!(written.metadata().get(TOKEN).is_none());
    let refused = app
        .availability
        .get_availability(with_min(sku_1(), "1-0"))
        .await
        .expect_err("nothing to reach");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
}
