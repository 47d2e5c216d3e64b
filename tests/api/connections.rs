//! What a client can hold open is bounded: connections, silent connections, idle feed streams,
//! calls and request bytes in flight.

use std::time::Duration;

use promised::config::ServeArgs;
use promised::grpc::pb;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::*;
use crate::http_client::{Http, KeptConnection};
use crate::raw::{framed, prefix, RawCall, RawConnection};

/// Whether the server closed `stream`: end of stream within `wait`, whatever it sent before.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Bytes of the server's first answer on a new connection (its HTTP/2 settings), or 0 when it
/// closes the connection without a word.
async fn first_answer(stream: &mut TcpStream) -> usize {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    read.expect("the server answers or closes").unwrap_or(0)
}

#[tokio::test]
async fn a_connection_beyond_the_limit_is_closed_at_once_and_the_others_serve() {
    let args = ServeArgs {
        max_connections: Some("2".into()),
        ..ServeArgs::default()
    };
    // The test's own channel is the first connection.
    let mut app = spawn_app_with(args).await;
    let addr = app.grpc_addr;
    let mut second = TcpStream::connect(addr).await.expect("connects");
    assert!(first_answer(&mut second).await > 0, "admitted");
    let mut third = TcpStream::connect(addr)
        .await
        .expect("accepted by the kernel");
    assert_eq!(first_answer(&mut third).await, 0, "closed without a word");
    assert_eq!(
        app.stats().await.nodes,
        3,
        "the first connection still serves"
    );
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_and_frees_its_place() {
    let args = ServeArgs {
        max_connections: Some("2".into()),
        handshake_timeout_ms: Some("200".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    let addr = app.grpc_addr;
    let mut silent = TcpStream::connect(addr).await.expect("connects");
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "closed"
    );
    let mut next = TcpStream::connect(addr).await.expect("connects");
    assert!(first_answer(&mut next).await > 0, "its place is free");
    assert_eq!(
        app.stats().await.nodes,
        3,
        "a connection that speaks is kept"
    );
}

#[tokio::test]
async fn a_connection_left_idle_is_closed_at_its_maximum_age() {
    let args = ServeArgs {
        max_connection_age_secs: Some("1".into()),
        ..ServeArgs::default()
    };
    let app = spawn_app_with(args).await;
    let mut idle = RawConnection::open(app.grpc_addr).await;
    let mut call = idle.call("/grpc.health.v1.Health/Check", &[]).await;
    call.send(framed(&HealthCheckRequest::default()), true);
    assert_eq!(call.code().await, Code::Ok, "it spoke");
    // Nothing more is sent: the server asks it to go at its age (GOAWAY) and closes it.
    assert!(
        idle.closed_within(Duration::from_secs(10)).await,
        "closed at its age"
    );
}

#[tokio::test]
async fn an_idle_feed_stream_is_ended_and_frees_its_place() {
    let args = ServeArgs {
        max_feed_streams: Some("1".into()),
        feed_idle_secs: Some("1".into()),
        ..ServeArgs::default()
    };
    let app = spawn_app_with(args).await;
    let (_quiet, outbound) = tokio::sync::mpsc::channel::<pb::SupplyBatch>(1);
    let mut supply = app.supply.clone();
    let mut acks = supply
        .stream_updates(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect("opens")
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(10), acks.message())
        .await
        .expect("ended within the idle limit")
        .expect_err("ended with a status");
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    let live = tokio_stream::iter(vec![batch(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 4, START_MS)],
    )]);
    let mut acks = supply
        .stream_updates(live)
        .await
        .expect("the place is free")
        .into_inner();
    let ack = acks.message().await.expect("acked").expect("an ack");
    assert_eq!(ack.applied, 1);
}

/// Opens a feed stream: where to send its batches, and its acks.
async fn open_feed(
    app: &TestApp,
) -> (
    tokio::sync::mpsc::Sender<pb::SupplyBatch>,
    tonic::Streaming<pb::SupplyAck>,
) {
    let (batches, outbound) = tokio::sync::mpsc::channel::<pb::SupplyBatch>(4);
    let stream = tokio_stream::wrappers::ReceiverStream::new(outbound);
    let mut supply = app.supply.clone();
    let acks = supply.stream_updates(stream).await.expect("opens");
    (batches, acks.into_inner())
}

#[tokio::test]
async fn a_sources_new_stream_ends_its_old_one() {
    let args = ServeArgs {
        max_feed_streams: Some("2".into()),
        ..ServeArgs::default()
    };
    let app = spawn_app_with(args).await;
    let on_hand = |seq, quantity| {
        let update = set_on_hand("SKU-1", "DC-EAST", quantity, START_MS + seq as i64);
        batch("WMS-EAST", seq, vec![update])
    };
    let (old_batches, mut old_acks) = open_feed(&app).await;
    old_batches.send(on_hand(1, 4)).await.expect("sent");
    assert_eq!(
        old_acks
            .message()
            .await
            .expect("ack")
            .expect("an ack")
            .applied,
        1
    );
    // The feed reconnects: its new stream takes over, the old one is ended.
    let (new_batches, mut new_acks) = open_feed(&app).await;
    new_batches.send(on_hand(2, 6)).await.expect("sent");
    assert_eq!(
        new_acks
            .message()
            .await
            .expect("ack")
            .expect("an ack")
            .applied,
        1
    );
    let ended = old_acks.message().await.expect_err("the old stream ended");
    assert_eq!(ended.code(), Code::Aborted, "{ended:?}");
    // Its place is free: a third stream opens under the limit of two.
    let (third_batches, mut third_acks) = open_feed(&app).await;
    third_batches
        .send(batch("POS", 0, Vec::new()))
        .await
        .expect("sent");
    assert!(
        third_acks.message().await.expect("ack").is_some(),
        "a heartbeat is acked"
    );
}

#[tokio::test]
async fn a_call_over_the_in_flight_limit_is_shed_at_once() {
    use crate::redis::RedisServer;
    use crate::reservations::{line, reserve_request};
    use promised::grpc::pb::reservations_client::ReservationsClient;
    let redis = RedisServer::start();
    let args = ServeArgs {
        redis_url: Some(redis.url()),
        redis_prefix: Some("shed".into()),
        redis_timeout_ms: Some("3000".into()),
        max_in_flight: Some("1".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 5, START_MS)],
    )
    .await;
    // A hung Redis keeps a reservation waiting for its journal write: it holds the one place.
    redis.signal("STOP");
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let waiting = tokio::spawn(async move {
        let cart = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 1)]);
        reservations.reserve(cart).await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let shed = loop {
        let request = pb::AvailabilityRequest {
            skus: vec!["SKU-1".into()],
            ..Default::default()
        };
        match app.availability.get_availability(request).await {
            Err(status) => break status,
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "never shed"),
        }
    };
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    redis.signal("CONT");
    let _ = waiting.await.expect("the reservation call ends");
    // The place is free again: reads are served.
    app.item("SKU-1").await;
}

/// A feed batch of about `bytes` bytes: SETs of SKUs with long ids at DC-EAST.
fn large_batch(seq: u64, bytes: usize) -> pb::SupplyBatch {
    let updates = (0..bytes / 150)
        .map(|i| set_on_hand(&format!("SKU-{i:0>120}"), "DC-EAST", 1, START_MS))
        .collect();
    batch("WMS-EAST", seq, updates)
}

/// An availability request of about `bytes` bytes: SKUs with long ids at one node.
fn large_query(bytes: usize) -> pb::AvailabilityRequest {
    pb::AvailabilityRequest {
        skus: (0..bytes / 124).map(|i| format!("SKU-{i:0>120}")).collect(),
        node_ids: vec!["DC-EAST".into()],
        ..Default::default()
    }
}

/// A query service's valid requests are small: one longer than the query limit is refused at
/// its length prefix, before any of it is sent, while a supply batch of that length is read.
#[tokio::test]
async fn a_query_over_the_query_limit_is_refused_unread_and_a_batch_that_long_is_read() {
    const LENGTH: u32 = 3 << 20;
    let app = spawn_app().await;
    let connection = RawConnection::open(app.grpc_addr).await;
    for method in [
        "/promised.v1.Availability/GetAvailability",
        "/promised.v1.Promising/PromiseOrder",
        "/promised.v1.Reservations/Reserve",
    ] {
        let mut call = connection.call(method, &[]).await;
        call.send(prefix(LENGTH).to_vec(), false);
        let refused = tokio::time::timeout(Duration::from_secs(5), call.code()).await;
        assert_eq!(
            refused.expect("answered before the body"),
            Code::ResourceExhausted,
            "{method}"
        );
    }
    // Zeros do not decode, so the batch is read whole and refused for what it holds.
    let mut call = connection.call("/promised.v1.Supply/ApplyBatch", &[]).await;
    let mut message = prefix(LENGTH).to_vec();
    message.resize(message.len() + LENGTH as usize, 0);
    call.send(message, true);
    assert_eq!(call.code().await, Code::InvalidArgument);
}

#[tokio::test]
async fn a_message_over_the_in_flight_bytes_is_refused_at_its_length_and_bytes_come_back() {
    use prost::Message;
    const LIMIT: usize = 1 << 20;
    let args = ServeArgs {
        max_message_bytes: Some(LIMIT.to_string()),
        max_in_flight_bytes: Some(LIMIT.to_string()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    // A feed stream holds its last message's share until the next message begins.
    let (batches, mut acks) = open_feed(&app).await;
    let held = large_batch(1, 700_000);
    assert!(held.encoded_len() > 650_000, "{}", held.encoded_len());
    batches.send(held).await.expect("sent");
    let ack = acks.message().await.expect("ack").expect("an ack");
    assert!(ack.applied > 4_000, "{ack:?}");
    // 500 kB more would exceed the limit: refused on the length alone, no body sent.
    let connection = RawConnection::open(app.grpc_addr).await;
    let mut call = connection
        .call("/promised.v1.Availability/GetAvailability", &[])
        .await;
    call.send(prefix(500_000).to_vec(), false);
    let refused = tokio::time::timeout(Duration::from_secs(5), call.code()).await;
    assert_eq!(refused.expect("answered at once"), Code::ResourceExhausted);
    assert_eq!(
        app.item("SKU-1").await.sku,
        "SKU-1",
        "small calls still fit"
    );
    // The next batch begins: the first one's share comes back, and large calls fit again,
    // one after another (each gives its share back when answered).
    batches
        .send(batch("WMS-EAST", 1, Vec::new()))
        .await
        .expect("sent");
    acks.message().await.expect("ack").expect("a heartbeat ack");
    for _ in 0..2 {
        let query = large_query(600_000);
        let answer = app.availability.get_availability(query).await;
        assert!(answer.is_ok(), "{answer:?}");
    }
}

/// A connection that keeps being refused for resources is left unread once it has spent its
/// allowance, so its calls wait in its own socket; another connection is served meanwhile.
#[tokio::test]
async fn a_connection_refused_past_its_allowance_rests_while_others_are_served() {
    const OVER_THE_QUERY_LIMIT: u32 = 3 << 20;
    const AVAILABILITY: &str = "/promised.v1.Availability/GetAvailability";
    let args = ServeArgs {
        refusals_per_connection_per_sec: Some("2".into()),
        refusal_burst: Some("3".into()),
        ..ServeArgs::default()
    };
    let mut app = spawn_app_with(args).await;
    let flooder = RawConnection::open(app.grpc_addr).await;
    let refused = |call: RawCall| async move {
        let code = tokio::time::timeout(Duration::from_secs(10), call.code()).await;
        assert_eq!(code.expect("answered"), Code::ResourceExhausted);
    };
    // The burst and one more are answered at once; the last leaves half a second owed.
    for _ in 0..4 {
        let mut call = flooder.call(AVAILABILITY, &[]).await;
        call.send(prefix(OVER_THE_QUERY_LIMIT).to_vec(), false);
        let started = std::time::Instant::now();
        refused(call).await;
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "within the allowance"
        );
    }
    let started = std::time::Instant::now();
    let mut waiting = flooder.call(AVAILABILITY, &[]).await;
    waiting.send(prefix(OVER_THE_QUERY_LIMIT).to_vec(), false);
    let waiting = tokio::spawn(async move {
        refused(waiting).await;
        started.elapsed()
    });
    assert_eq!(app.item("SKU-1").await.sku, "SKU-1", "another connection");
    let served = started.elapsed();
    let rested = waiting.await.expect("the resting call");
    assert!(rested >= Duration::from_millis(350), "rested {rested:?}");
    assert!(
        served < rested,
        "served in {served:?}, while the flooder rested {rested:?}"
    );
}

/// The HTTP edge charges the same allowance: a kept connection whose bodies keep being too
/// large rests once it has spent it.
#[tokio::test]
async fn an_http_connection_refused_past_its_allowance_rests() {
    let args = ServeArgs {
        max_message_bytes: Some("4096".into()),
        refusals_per_connection_per_sec: Some("2".into()),
        refusal_burst: Some("3".into()),
        ..ServeArgs::default()
    };
    let app = spawn_app_with(args).await;
    let mut kept = KeptConnection::open(&Http::new(app.http_addr)).await;
    let big = format!("{{\"reservationId\": \"{}\"}}", "x".repeat(5000));
    for _ in 0..4 {
        let started = std::time::Instant::now();
        let reply = kept.post_text("/v1/reservations", &big).await;
        assert_eq!(reply.status, 413, "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "within the allowance"
        );
    }
    let started = std::time::Instant::now();
    let reply = kept.post_text("/v1/reservations", &big).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    let rested = started.elapsed();
    assert!(rested >= Duration::from_millis(350), "rested {rested:?}");
}
