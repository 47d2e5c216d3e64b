//! Events out: the service sends the journal's changes as CloudEvents to a webhook receiver
//! written here (a loopback HTTP/1.1 server that fails on demand) and to a real NATS
//! JetStream server. Deliveries are signed, retried with the same event id, kept in order,
//! given up on into dead letters that admins list and delete, and resumed from each sink's
//! durable cursor after a restart or a kill -9, with no event lost.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::supply_client::SupplyClient;
use promised::http::sign;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::binary::Binary;
use crate::durability::durable;
use crate::helpers::*;
use crate::nats::NatsServer;
use crate::redis::RedisServer;
use crate::reservations::{line, reserve_request};

const SECRET: &str = "hook-s3cret";

/// One request the receiver took, and what it answered.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Vec<u8>,
    accepted: bool,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn data(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The supply batch's sequence that made the change, for a feed change.
    fn seq(&self) -> u64 {
        let seq = &self.data()["cause"]["seq"];
        seq.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }
}

/// A webhook receiver on loopback that records every request and fails on demand.
#[derive(Default)]
struct Receiver {
    deliveries: Mutex<Vec<Delivery>>,
    /// Requests still to be failed, one by one...
    fail_next: AtomicU32,
    /// ...or every request while set.
    down: AtomicBool,
    changed: Notify,
}

impl Receiver {
    async fn start() -> (Arc<Self>, SocketAddr) {
        let receiver = Arc::new(Self::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let receiver = serving.clone();
                let service = service_fn(move |request| receiver.clone().take(request));
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        (receiver, addr)
    }

    async fn take(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes().to_vec());
        let failing = self.down.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        self.deliveries.lock().unwrap().push(Delivery {
            headers: parts.headers,
            body: body.unwrap_or_default(),
            accepted: !failing,
        });
        self.changed.notify_waiters();
        let status = if failing {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        };
        let mut answer = Response::new(Full::new(Bytes::new()));
        *answer.status_mut() = status;
        Ok(answer)
    }

    fn all(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Delivery> {
        self.all().into_iter().filter(|d| d.accepted).collect()
    }

    /// Waits (20 s at most) until `done` holds of the requests so far.
    async fn until(&self, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                let all = self.all();
                if done(&all) {
                    return all;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("the receiver got only {:#?}", self.all()))
    }
}

/// An events-out file for one test, removed when dropped.
pub struct EventsOut(PathBuf);

impl EventsOut {
    pub fn write(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "promised-test-events-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the events-out file");
        Self(path)
    }

    pub fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for EventsOut {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A webhook sink `oms` of SKU-1's availability and every order event.
fn webhook(addr: SocketAddr, mode: &str, max_attempts: u32) -> String {
    format!(
        "[[webhook]]\nname = \"oms\"\nurl = \"http://{addr}/events\"\nsecret = \"{SECRET}\"\n\
         orders = true\navailability = true\nskus = [\"SKU-1\"]\nmode = \"{mode}\"\n\
         retry = {{ initial_ms = 5, max_delay_ms = 20, max_attempts = {max_attempts} }}\n"
    )
}

fn with_sinks(redis: &RedisServer, prefix: &str, file: &EventsOut) -> ServeArgs {
    ServeArgs {
        events_out: Some(file.path()),
        ..durable(redis, prefix)
    }
}

/// The signature a receiver computes: HMAC-SHA256 of `<timestamp>.<body>`.
fn signature_verifies(delivery: &Delivery) -> bool {
    let mut signed = format!("{}.", delivery.header("x-promised-timestamp")).into_bytes();
    signed.extend_from_slice(&delivery.body);
    sign(SECRET.as_bytes(), &signed) == delivery.header("x-promised-signature")
}

#[tokio::test]
async fn webhook_deliveries_are_signed_cloudevents_retried_in_order_with_one_id() {
    let redis = RedisServer::start();
    let (receiver, addr) = Receiver::start().await;
    let file = EventsOut::write("signed", &webhook(addr, "binary", 10));
    let mut app = spawn_app_with(with_sinks(&redis, "hooks", &file)).await;
    // The first event fails twice before it is taken: the next waits for it.
    receiver.fail_next.store(2, Ordering::SeqCst);
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-2", "DC-EAST", 5)])
        .await;
    let mut reservations = ReservationsClient::new(app.channel.clone());
    let cart = reserve_request("cart", vec![line("SKU-1", "DC-EAST", 2)]);
    reservations.reserve(cart).await.expect("held");

    let all = receiver
        .until(|all| all.iter().filter(|d| d.accepted).count() >= 3)
        .await;
    let first_id = all[0].header("ce-id").to_owned();
    assert!(!all[0].accepted && !all[1].accepted && all[2].accepted);
    assert!(
        all[..3].iter().all(|d| d.header("ce-id") == first_id),
        "a retry carries the same event id"
    );
    let accepted = receiver.accepted();
    let kinds: Vec<(&str, &str)> = accepted
        .iter()
        .map(|d| (d.header("ce-type"), d.header("ce-subject")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("promised.availability.changed", "SKU-1"),
            ("promised.availability.changed", "SKU-1"),
            ("promised.reservation.held", "cart"),
        ],
        "in journal order; SKU-2 is not this sink's"
    );
    let feed = &accepted[0];
    assert_eq!(feed.seq(), 1);
    assert!(feed.header("ce-id").ends_with(":position:SKU-1@DC-EAST"));
    assert_eq!(feed.header("ce-specversion"), "1.0");
    assert_eq!(feed.header("ce-source"), "/promised/hooks");
    assert_eq!(feed.header("ce-time"), "2026-03-02T15:00:00.000Z");
    assert_eq!(feed.header("content-type"), "application/json");
    assert_eq!(feed.header("idempotency-key"), feed.header("ce-id"));
    assert_eq!(feed.data()["positions"][0]["onHand"], "10");
    let held = &accepted[2];
    assert_eq!(
        held.data()["events"][0]["reservation"]["reservationId"],
        "cart"
    );
    assert_eq!(held.data()["events"][0]["eventId"], held.header("ce-id"));
    assert!(
        all.iter().all(signature_verifies),
        "every delivery is signed"
    );
    let mut tampered = held.clone();
    tampered.body.push(b' ');
    assert!(!signature_verifies(&tampered));
    app.shutdown().await;
}

#[tokio::test]
async fn structured_mode_sends_the_whole_event_as_one_json_body() {
    let redis = RedisServer::start();
    let (receiver, addr) = Receiver::start().await;
    let file = EventsOut::write("structured", &webhook(addr, "structured", 10));
    let mut app = spawn_app_with(with_sinks(&redis, "structured", &file)).await;
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 4, START_MS)],
    )
    .await;
    let all = receiver.until(|all| !all.is_empty()).await;
    let event = all[0].data();
    assert_eq!(
        all[0].header("content-type"),
        "application/cloudevents+json"
    );
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "promised.availability.changed");
    assert_eq!(event["subject"], "SKU-1");
    assert_eq!(event["datacontenttype"], "application/json");
    assert_eq!(event["data"]["positions"][0]["onHand"], "4");
    assert!(signature_verifies(&all[0]));
    app.shutdown().await;
}

#[tokio::test]
async fn an_event_out_of_retries_is_a_dead_letter_admins_list_and_delete() {
    let redis = RedisServer::start();
    let (receiver, addr) = Receiver::start().await;
    let file = EventsOut::write("dead", &webhook(addr, "binary", 3));
    let mut app = spawn_app_with(with_sinks(&redis, "dead", &file)).await;
    receiver.down.store(true, Ordering::SeqCst);
    app.apply(
        "WMS-EAST",
        1,
        vec![set_on_hand("SKU-1", "DC-EAST", 10, START_MS)],
    )
    .await;
    let all = receiver.until(|all| all.len() >= 3).await;
    let dead_id = all[0].header("ce-id").to_owned();
    // The sink went on to the next event once the first was given up.
    receiver.down.store(false, Ordering::SeqCst);
    app.apply("WMS-EAST", 2, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)])
        .await;
    let all = receiver.until(|all| all.iter().any(|d| d.accepted)).await;
    assert_eq!(all.len(), 4, "three attempts, then the next event");
    assert_eq!(all[3].seq(), 2);

    let list = pb::ListDeadLettersRequest {
        sink: "oms".into(),
        ..Default::default()
    };
    let letters = app
        .admin
        .list_dead_letters(list.clone())
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(letters.total, 1);
    let letter = &letters.letters[0];
    assert_eq!(letter.event_id, dead_id);
    assert_eq!(
        (letter.r#type.as_str(), letter.subject.as_str()),
        ("promised.availability.changed", "SKU-1")
    );
    assert_eq!(letter.attempts, 3);
    assert!(letter.error.contains("503"), "{}", letter.error);
    let kept: Value = serde_json::from_str(&letter.cloud_event).expect("a structured event");
    assert_eq!(kept["id"], dead_id.as_str());
    let bad = pb::ListDeadLettersRequest {
        sink: "no such/sink".into(),
        ..Default::default()
    };
    let refused = app.admin.list_dead_letters(bad).await.expect_err("refused");
    assert_bad_field(&refused, "sink");

    let delete = pb::DeleteDeadLettersRequest {
        sink: "oms".into(),
        ids: vec![letter.id.clone()],
    };
    let deleted = app
        .admin
        .delete_dead_letters(delete)
        .await
        .expect("deleted");
    assert_eq!(deleted.into_inner().deleted, 1);
    let letters = app.admin.list_dead_letters(list).await.expect("listed");
    assert_eq!(letters.into_inner().total, 0);
    let metrics = crate::operations::scrape(&app).await;
    for series in [
        r#"promised_sink_deliveries_total{sink="oms",outcome="dead_letter"}"#,
        r#"promised_sink_deliveries_total{sink="oms",outcome="delivered"}"#,
        r#"promised_sink_retries_total{sink="oms"}"#,
        r#"promised_sink_dead_letters_total{sink="oms"}"#,
        r#"promised_sink_lag_seconds{sink="oms"}"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_restarted_service_resumes_its_webhook_from_the_cursor_without_loss() {
    let redis = RedisServer::start();
    let (receiver, addr) = Receiver::start().await;
    let file = EventsOut::write("restart", &webhook(addr, "binary", 1_000));
    let mut app = spawn_app_with(with_sinks(&redis, "restart", &file)).await;
    app.apply("WMS-EAST", 1, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)])
        .await;
    receiver.until(|all| all.iter().any(|d| d.accepted)).await;
    // The endpoint goes down; two more changes are acknowledged but not delivered.
    receiver.down.store(true, Ordering::SeqCst);
    for seq in 2..=3 {
        app.apply("WMS-EAST", seq, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)])
            .await;
    }
    receiver.until(|all| all.iter().any(|d| !d.accepted)).await;
    app.shutdown().await;
    receiver.down.store(false, Ordering::SeqCst);

    let mut app = spawn_app_with(with_sinks(&redis, "restart", &file)).await;
    app.apply("WMS-EAST", 4, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)])
        .await;
    let accepted = |all: &[Delivery]| {
        all.iter()
            .filter(|d| d.accepted)
            .map(Delivery::seq)
            .collect::<Vec<_>>()
    };
    let all = receiver.until(|all| accepted(all).len() >= 4).await;
    assert_eq!(
        accepted(&all),
        [1, 2, 3, 4],
        "no gap, no duplicate, in order"
    );
    app.shutdown().await;
}

/// Every message of the stream, in order.
async fn stream_messages(
    jetstream: &async_nats::jetstream::Context,
    count: usize,
) -> Vec<async_nats::jetstream::Message> {
    use async_nats::jetstream::consumer::pull;
    use tokio_stream::StreamExt;
    let stream = jetstream.get_stream("PROMISED").await.expect("the stream");
    let consumer = stream
        .create_consumer(pull::Config::default())
        .await
        .expect("a consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut taken = Vec::new();
    while taken.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("a message");
        taken.push(next);
    }
    taken
}

#[tokio::test]
async fn nats_gets_every_event_with_cloudevents_headers_across_a_kill() {
    let redis = RedisServer::start();
    let nats = NatsServer::start();
    let jetstream = nats.jetstream_ready().await;
    let file = EventsOut::write(
        "nats",
        &format!(
            "[[nats]]\nname = \"bus\"\nurl = \"{}\"\nstream = \"PROMISED\"\n\
             availability = true\norders = true\n\
             retry = {{ initial_ms = 5, max_delay_ms = 50, max_attempts = 1000 }}\n",
            nats.url()
        ),
    );
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    let redis_url = redis.url();
    let args = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        "nats",
        "--network",
        network,
        "--events-out",
        &file.path(),
        "--log",
        "error",
    ];
    const BATCHES: u64 = 40;
    let service = Binary::start(&args).await;
    let mut supply = SupplyClient::new(service.channel.clone());
    let sku = |seq: u64| format!("SKU-{}", seq % 3);
    let feed = |seq: u64| {
        batch(
            "WMS",
            seq,
            vec![adjust_on_hand(&sku(seq), "DC-EDISON-NJ", 1)],
        )
    };
    for seq in 1..=BATCHES / 2 {
        supply.apply_batch(feed(seq)).await.expect("applied");
    }
    // Killed with events acknowledged and maybe not yet published.
    service.kill();
    let service = Binary::start(&args).await;
    let mut supply = SupplyClient::new(service.channel.clone());
    for seq in BATCHES / 2 + 1..=BATCHES {
        supply.apply_batch(feed(seq)).await.expect("applied");
    }
    let messages = stream_messages(&jetstream, BATCHES as usize).await;
    let mut seqs = Vec::new();
    let mut ids = HashSet::new();
    for message in &messages {
        let headers = message.headers.as_ref().expect("headers");
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let id = header("ce-id").expect("ce-id");
        assert_eq!(header("Nats-Msg-Id").as_deref(), Some(id.as_str()));
        assert_eq!(
            header("ce-type").as_deref(),
            Some("promised.availability.changed")
        );
        assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
        let subject = header("ce-subject").expect("ce-subject");
        assert_eq!(
            message.subject.as_str(),
            format!("promised.availability.{subject}")
        );
        let data: Value = serde_json::from_slice(&message.payload).expect("JSON data");
        let seq: u64 = data["cause"]["seq"]
            .as_str()
            .expect("seq")
            .parse()
            .expect("u64");
        assert_eq!(subject, sku(seq));
        assert!(ids.insert(id), "JetStream kept one copy of each event id");
        seqs.push(seq);
    }
    assert_eq!(seqs, (1..=BATCHES).collect::<Vec<_>>(), "no gap, in order");
    let mut stream = jetstream.get_stream("PROMISED").await.expect("the stream");
    let held = stream.info().await.expect("stream info").state.messages;
    assert_eq!(held, BATCHES, "a redelivery was dropped as a duplicate");
    service.kill();
}
