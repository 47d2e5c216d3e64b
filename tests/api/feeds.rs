//! Supply feeds from NATS JetStream: real `nats-server`s (tests/api/nats.rs) and a real Redis;
//! batches published as messages, applied in order and exactly once through kills of the
//! service and of broker members, poison messages dead-lettered, store outages waited out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream, Context};
use async_nats::HeaderMap;
use promised::config::ServeArgs;
use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::availability_client::AvailabilityClient;
use prost::Message as _;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::binary::Binary;
use crate::durability::durable;
use crate::helpers::{adjust_on_hand, batch, node_view, spawn_app_with, wms_for, TestApp};
use crate::nats::{DeliveryCutter, NatsCluster, NatsServer};
use crate::operations::scrape;
use crate::redis::RedisServer;

const STREAM: &str = "SUPPLY";
const DEAD_STREAM: &str = "DEAD";

/// The feeds stream and the dead-letter stream, each with `replicas`.
async fn streams(context: &Context, replicas: usize) {
    for (name, subjects) in [(STREAM, "supply.>"), (DEAD_STREAM, "dead.>")] {
        context
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![subjects.into()],
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .expect("create stream");
    }
}

/// A feeds file naming one source's feed, removed when dropped.
pub struct FeedsFile {
    path: PathBuf,
    /// Where the feed's messages are published: a subject or a topic.
    pub subject: String,
    /// Where its dead letters go.
    pub dead_letters: String,
}

impl FeedsFile {
    fn new(nats_url: &str, source: &str) -> Self {
        let lower = source.to_lowercase();
        let (subject, dead_letters) = (format!("supply.{lower}"), format!("dead.{lower}"));
        let text = format!(
            "nats_url = \"{nats_url}\"\n\n[[feed]]\nsource = \"{source}\"\nstream = \"{STREAM}\"\n\
             subject = \"{subject}\"\ndurable = \"promised-{lower}\"\n\
             dead_letter_subject = \"{dead_letters}\"\nretry_delay_ms = 100\n"
        );
        Self::write(&text, subject, dead_letters)
    }

    /// A file of `text`, whose feed reads `subject` and dead-letters to `dead_letters`.
    pub fn write(text: &str, subject: String, dead_letters: String) -> Self {
        let path = std::env::temp_dir().join(format!(
            "promised-test-feeds-{}-{}.toml",
            std::process::id(),
            crate::redis::free_port()
        ));
        std::fs::write(&path, text).expect("write the feeds file");
        Self {
            path,
            subject,
            dead_letters,
        }
    }

    fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for FeedsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Publishes `payload` with `headers` until the stream stores it (a cluster may be electing
/// a leader); its stream sequence.
async fn publish(context: &Context, subject: &str, headers: HeaderMap, payload: Vec<u8>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = context
            .publish_with_headers(subject.to_owned(), headers.clone(), payload.clone().into())
            .await;
        if let Ok(pending) = sent {
            if let Ok(ack) = pending.await {
                return ack.sequence;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the stream never stored the message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `batch` as a producer would, under a message id of its source and sequence: a
/// publish sent again after a lost acknowledgement is stored once.
async fn publish_batch(context: &Context, subject: &str, batch: &pb::SupplyBatch) -> u64 {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{}:{}", batch.source_id, batch.seq));
    publish(context, subject, headers, batch.encode_to_vec()).await
}

/// Waits until `done` holds, polling; fails with `what` after `secs`.
pub async fn until<F: std::future::Future<Output = bool>>(
    secs: u64,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The in-process service, durable in `redis`, reading the feed of `feeds`.
pub async fn service(redis: &RedisServer, prefix: &str, feeds: &FeedsFile) -> TestApp {
    spawn_app_with(ServeArgs {
        feeds: Some(feeds.arg()),
        ..durable(redis, prefix)
    })
    .await
}

pub async fn on_hand(app: &mut TestApp, sku: &str, node: &str) -> i64 {
    node_view(&app.item(sku).await, node).on_hand
}

/// Waits until `source`'s feed has applied the message at stream sequence `at`.
pub async fn applied_through(app: &TestApp, source: &str, at: u64) {
    let what = format!("{source}'s messages applied through {at}");
    until(30, &what, || async {
        app.engine.broker_seq(source) == Some(at)
    })
    .await;
}

/// The value of the sample `series` (name and labels) in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn feed_messages_apply_in_order_and_their_positions_are_recorded() {
    let nats = NatsServer::start();
    let context = nats.jetstream_ready().await;
    streams(&context, 1).await;
    let redis = RedisServer::start();
    let feeds = FeedsFile::new(&nats.url(), "WMS-WEST");
    let mut app = service(&redis, "feed-order", &feeds).await;
    let mut last = 0;
    for seq in 1..=20 {
        let delta = adjust_on_hand("SKU-1", "DC-WEST", i64::try_from(seq).expect("small"));
        last = publish_batch(
            &context,
            &feeds.subject,
            &batch("WMS-WEST", seq, vec![delta]),
        )
        .await;
    }
    applied_through(&app, "WMS-WEST", last).await;
    // Applied comes just before durable: the last batch's journal round trip may be in flight.
    until(30, "every batch durable", || async {
        app.engine.durable_seq("WMS-WEST") == Some(20)
    })
    .await;
    assert_eq!(
        on_hand(&mut app, "SKU-1", "DC-WEST").await,
        (1..=20).sum::<i64>()
    );
    let stats = app.stats().await;
    let wms = stats
        .source_stats
        .iter()
        .find(|s| s.source_id == "WMS-WEST")
        .expect("stats of the source");
    assert_eq!(wms.durable_seq, 20, "every batch durable, in order");
    let metrics = scrape(&app).await;
    assert_eq!(
        metric(&metrics, "promised_feed_position{source=\"WMS-WEST\"}"),
        last as f64
    );
    let applied = "promised_feed_messages_total{source=\"WMS-WEST\",outcome=\"applied\"}";
    assert_eq!(metric(&metrics, applied), 20.0);
    app.shutdown().await;

    // Restarted on what Redis kept, the feed resumes after its position: nothing is applied
    // again, and the next message applies.
    let mut app = service(&redis, "feed-order", &feeds).await;
    assert_eq!(app.engine.broker_seq("WMS-WEST"), Some(last));
    let next = batch(
        "WMS-WEST",
        21,
        vec![adjust_on_hand("SKU-1", "DC-WEST", 100)],
    );
    let at = publish_batch(&context, &feeds.subject, &next).await;
    applied_through(&app, "WMS-WEST", at).await;
    assert_eq!(on_hand(&mut app, "SKU-1", "DC-WEST").await, 210 + 100);
    app.shutdown().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_their_reason_and_later_ones_apply() {
    let nats = NatsServer::start();
    let context = nats.jetstream_ready().await;
    streams(&context, 1).await;
    let redis = RedisServer::start();
    let feeds = FeedsFile::new(&nats.url(), "WMS-EAST");
    let mut app = service(&redis, "feed-poison", &feeds).await;
    let good = |seq: u64| batch("WMS-EAST", seq, vec![adjust_on_hand("SKU-1", "DC-EAST", 1)]);
    let subject = feeds.subject.as_str();
    publish_batch(&context, subject, &good(1)).await;
    let garbage = publish(&context, subject, HeaderMap::new(), vec![0xff, 0xff, 0xff]).await;
    let wrong = publish_batch(&context, subject, &batch("WMS-WEST", 1, vec![])).await;
    let no_seq = publish_batch(&context, subject, &good(0)).await;
    let mut json = HeaderMap::new();
    json.insert("Content-Type", "application/json");
    publish(&context, subject, json.clone(), json_batch("WMS-EAST")).await;
    let bad_json = publish(&context, subject, json, b"{\"sourceId\": 7}".to_vec()).await;
    let last = publish_batch(&context, subject, &good(3)).await;
    applied_through(&app, "WMS-EAST", last).await;
    assert_eq!(on_hand(&mut app, "SKU-1", "DC-EAST").await, 3);

    let letters = stored(&context, DEAD_STREAM, &feeds.dead_letters, 4).await;
    let reasons = letters.iter().map(|(headers, _)| {
        (
            header(headers, "Promised-Stream-Sequence"),
            header(headers, "Promised-Reason"),
        )
    });
    poison_dead_lettered(
        &app,
        "WMS-EAST",
        reasons,
        [garbage, wrong, no_seq, bad_json],
    )
    .await;
    assert_eq!(letters[0].1, vec![0xff, 0xff, 0xff], "the original payload");
    assert!(header(&letters[2].0, "Promised-Detail").contains("seq"));
    assert_eq!(header(&letters[3].0, "Content-Type"), "application/json");
    app.shutdown().await;
}

/// A supply batch for `source` in JSON: seq 2, one on-hand unit of SKU-1 at DC-EAST.
pub fn json_batch(source: &str) -> Vec<u8> {
    format!(
        r#"{{"sourceId": "{source}", "seq": "2", "updates": [{{"sku": "SKU-1", "nodeId": "DC-EAST",
        "supplyType": "SUPPLY_TYPE_ON_HAND", "op": "UPDATE_OP_ADJUST", "quantity": "1"}}]}}"#
    )
    .into_bytes()
}

/// Asserts that a poison test's dead letters, each as (broker position, reason) in order,
/// are its undecodable, wrong-source, seq-less and bad-JSON messages at `positions`, and
/// that the metrics count them per reason.
pub async fn poison_dead_lettered(
    app: &TestApp,
    source: &str,
    letters: impl Iterator<Item = (String, String)>,
    positions: [impl std::fmt::Display; 4],
) {
    let reasons = ["undecodable", "wrong_source", "invalid", "undecodable"];
    let expected: Vec<(String, String)> = positions
        .iter()
        .zip(reasons)
        .map(|(at, reason)| (at.to_string(), reason.to_owned()))
        .collect();
    assert_eq!(letters.collect::<Vec<_>>(), expected);
    let metrics = scrape(app).await;
    for (reason, count) in [("undecodable", 2), ("wrong_source", 1), ("invalid", 1)] {
        let line = format!(
            "promised_feed_dead_letters_total{{source=\"{source}\",reason=\"{reason}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default()
}

/// The first `count` messages `stream` stored on `subject`: headers and payload.
async fn stored(
    context: &Context,
    stream: &str,
    subject: &str,
    count: usize,
) -> Vec<(HeaderMap, Vec<u8>)> {
    let stream = context.get_stream(stream).await.expect("the stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .expect("reader");
    let mut messages = consumer.messages().await.expect("messages");
    let mut letters = Vec::new();
    while letters.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(20), messages.next()).await;
        let message = next.expect("a message").expect("open").expect("read");
        let headers = message.headers.clone().unwrap_or_default();
        letters.push((headers, message.payload.to_vec()));
    }
    letters
}

#[tokio::test]
async fn while_redis_is_down_messages_wait_and_apply_once_it_is_back() {
    let nats = NatsServer::start();
    let context = nats.jetstream_ready().await;
    streams(&context, 1).await;
    let mut redis = RedisServer::start();
    let feeds = FeedsFile::new(&nats.url(), "POS");
    let mut app = service(&redis, "feed-outage", &feeds).await;
    let subject = feeds.subject.as_str();
    let adjust = |seq: u64| batch("POS", seq, vec![adjust_on_hand("SKU-1", "STORE-CHI", 10)]);
    let first = publish_batch(&context, subject, &adjust(1)).await;
    applied_through(&app, "POS", first).await;
    // Applied is not yet durable: a kill now could take the first batch back too.
    until(30, "the first batch durable", || async {
        app.engine.durable_seq("POS") == Some(1)
    })
    .await;

    redis.kill();
    for seq in 2..=5 {
        publish_batch(&context, subject, &adjust(seq)).await;
    }
    // The feed keeps trying while the store is gone: nothing applies, nothing is dead.
    let retried = "promised_feed_messages_total{source=\"POS\",outcome=\"retried\"}";
    until(20, "the feed retried", || async {
        metric(&scrape(&app).await, retried) >= 2.0
    })
    .await;
    assert_eq!(app.engine.broker_seq("POS"), Some(first));

    redis.resume();
    applied_through(&app, "POS", first + 4).await;
    assert_eq!(
        on_hand(&mut app, "SKU-1", "STORE-CHI").await,
        50,
        "each once"
    );
    let mut dead = context.get_stream(DEAD_STREAM).await.expect("dead letters");
    assert_eq!(
        dead.info().await.expect("info").state.messages,
        0,
        "none dead"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_delivery_lost_with_its_connection_applies_before_the_next_message() {
    let nats = NatsServer::start();
    let context = nats.jetstream_ready().await;
    streams(&context, 1).await;
    let cutter = DeliveryCutter::start(nats.port).await;
    let redis = RedisServer::start();
    let feeds = FeedsFile::new(&cutter.url(), "WMS-CUT");
    let mut app = service(&redis, "feed-cut", &feeds).await;
    // A source of its own: feed metrics are the process's, shared by the tests running in it.
    wms_for(&mut app, "WMS-CUT", &["DC-WEST"]).await;
    let subject = feeds.subject.as_str();
    // Batch n adds 10^(n-1): the sum shows which applied.
    let adjust = |seq: u32| {
        batch(
            "WMS-CUT",
            seq.into(),
            vec![adjust_on_hand("SKU-1", "DC-WEST", 10_i64.pow(seq - 1))],
        )
    };
    let first = publish_batch(&context, subject, &adjust(1)).await;
    applied_through(&app, "WMS-CUT", first).await;

    // The second message's delivery is lost with the connection. The service reads again from
    // its position once connected again, so the second applies before the third, whether the
    // server sent the third over the lost connection too or over the new one.
    cutter.arm();
    publish_batch(&context, subject, &adjust(2)).await;
    cutter.cut().await;
    let last = publish_batch(&context, subject, &adjust(3)).await;
    applied_through(&app, "WMS-CUT", last).await;
    assert_eq!(
        on_hand(&mut app, "SKU-1", "DC-WEST").await,
        111,
        "the second batch applied, before the third"
    );
    app.shutdown().await;
}

/// The feed's batches in the killed-service tests: one unit onto one of `SKUS` each, so a
/// batch applied twice shows in the sums.
const SKUS: u64 = 12;

pub fn unit_batch(source: &str, seq: u64) -> pb::SupplyBatch {
    let sku = format!("SKU-{}", seq % SKUS);
    batch(source, seq, vec![adjust_on_hand(&sku, "DC-EDISON-NJ", 1)])
}

/// What `count` unit batches sum to per SKU.
fn expected_units(count: u64) -> Vec<i64> {
    (0..SKUS)
        .map(|sku| (1..=count).filter(|seq| seq % SKUS == sku).count() as i64)
        .collect()
}

async fn units(channel: Channel) -> Vec<i64> {
    let request = pb::AvailabilityRequest {
        skus: (0..SKUS).map(|i| format!("SKU-{i}")).collect(),
        node_ids: vec!["DC-EDISON-NJ".into()],
        ..Default::default()
    };
    let answer = AvailabilityClient::new(channel)
        .get_availability(request)
        .await
        .expect("availability")
        .into_inner();
    answer
        .items
        .iter()
        .map(|item| item.nodes.first().map_or(0, |n| n.on_hand))
        .collect()
}

/// The source's durable batch sequence, as the service reports it.
pub async fn durable_seq(channel: Channel, source: &str) -> u64 {
    let Ok(stats) = AdminClient::new(channel)
        .get_stats(pb::GetStatsRequest {})
        .await
    else {
        return 0;
    };
    stats
        .into_inner()
        .source_stats
        .into_iter()
        .find(|s| s.source_id == source)
        .map_or(0, |s| s.durable_seq)
}

/// The service binary with the demo network, durable in `redis`, reading `feeds`.
pub async fn binary(redis: &RedisServer, feeds: &FeedsFile) -> Binary {
    let mut args = binary_args(redis);
    args.extend(["--feeds".to_owned(), feeds.arg()]);
    Binary::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// The arguments of [`binary`] but its feeds.
pub fn binary_args(redis: &RedisServer) -> Vec<String> {
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    [
        "--redis-url",
        redis.url().as_str(),
        "--redis-prefix",
        "feed-crash",
        "--network",
        network,
        "--snapshot-after-effects",
        "100",
        "--snapshot-interval-secs",
        "1",
        "--log",
        "error",
    ]
    .map(String::from)
    .to_vec()
}

/// Pause between a producer's messages, so that kills land while the feed is busy rather
/// than after it has caught up.
const PRODUCER_PACE: Duration = Duration::from_millis(5);

/// Publishes `count` unit batches of WMS from a task of its own, as a producer would.
fn produce(context: Context, subject: String, count: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for seq in 1..=count {
            publish_batch(&context, &subject, &unit_batch("WMS", seq)).await;
            tokio::time::sleep(PRODUCER_PACE).await;
        }
    })
}

/// Kills the service with -9 each time it has made `step` more batches durable, starts it
/// again, and finally waits until all `count` are applied: each exactly once.
async fn feed_through_kills(redis: &RedisServer, feeds: &FeedsFile, count: u64, step: u64) {
    let mut service = binary(redis, feeds).await;
    let mut reached = 0;
    while reached + step < count {
        reached += step;
        let channel = &service.channel;
        until(60, "the feed progressed", || async {
            durable_seq(channel.clone(), "WMS").await >= reached
        })
        .await;
        service.kill();
        service = binary(redis, feeds).await;
    }
    all_applied(&service, count, 60).await;
}

/// Waits until the service has applied all `count` unit batches, and checks each applied once.
pub async fn all_applied(service: &Binary, count: u64, secs: u64) {
    let channel = &service.channel;
    until(secs, "every batch applied", || async {
        durable_seq(channel.clone(), "WMS").await == count
    })
    .await;
    assert_eq!(
        units(channel.clone()).await,
        expected_units(count),
        "each batch once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_applies_every_feed_message_exactly_once() {
    let nats = NatsServer::start();
    let context = nats.jetstream_ready().await;
    streams(&context, 1).await;
    let redis = RedisServer::start();
    let feeds = FeedsFile::new(&nats.url(), "WMS");
    let count = 600;
    let producer = produce(context.clone(), feeds.subject.clone(), count);
    feed_through_kills(&redis, &feeds, count, 150).await;
    producer.await.expect("every batch published");
}

/// The stream's leader killed twice mid-feed. It once lost one message in a few runs: a
/// delivery lost with the connection to the killed member, its successor applied first and
/// the lost one, redelivered, answered as a duplicate (the feed now ends the read at a gap in
/// the consumer sequence; `a_delivery_lost_with_its_connection_applies_before_the_next_message`
/// shows it without a cluster). Run on its own (`--ignored`) until it has passed 15 runs in
/// a row with the stream check that waits for the cluster to answer (see TESTING.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault campaign: run with --ignored"]
async fn a_killed_broker_member_leaves_every_feed_message_applied_exactly_once() {
    let mut cluster = NatsCluster::start();
    cluster.members[0].jetstream_ready().await;
    // A client of every member, which outlives any one of them.
    let client = async_nats::connect(&cluster.urls()[..])
        .await
        .expect("connect");
    let context = jetstream::new(client);
    streams(&context, 3).await;
    let redis = RedisServer::start();
    let feeds = FeedsFile::new(&cluster.urls().join(","), "WMS");
    let count = 600;
    let producer = produce(context.clone(), feeds.subject.clone(), count);
    let service = binary(&redis, &feeds).await;
    for _ in 0..2 {
        // The stream's leader, then whichever member leads after it.
        let leader = stream_leader(&context).await;
        let channel = &service.channel;
        let before = durable_seq(channel.clone(), "WMS").await;
        until(60, "the feed progressed", || async {
            durable_seq(channel.clone(), "WMS").await > before + 50
        })
        .await;
        let member = cluster
            .members
            .iter_mut()
            .find(|m| m.name() == leader)
            .expect("the leader is a member");
        member.kill();
        let after = durable_seq(channel.clone(), "WMS").await;
        until(60, "the feed went on without the member", || async {
            let now = durable_seq(channel.clone(), "WMS").await;
            now > after + 50 || now == count
        })
        .await;
        member.resume();
    }
    producer.await.expect("every batch published");
    stream_holds_every_batch(&context, &feeds.subject, count).await;
    all_applied(&service, count, 90).await;
}

/// Checks that the feeds stream kept every one of the `count` batches published on `subject`
/// (each was acknowledged as stored): so a batch the service did not apply was lost by the
/// feed, not by the broker.
async fn stream_holds_every_batch(context: &Context, subject: &str, count: u64) {
    let messages = settled_info(context).await.state.messages;
    let stored = stored(context, STREAM, subject, messages as usize).await;
    let mut seqs: Vec<u64> = stored
        .iter()
        .map(|(_, payload)| pb::SupplyBatch::decode(&payload[..]).expect("a batch").seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=count).collect::<Vec<_>>(),
        "the stream kept every batch"
    );
}

/// The name of the member leading the feeds stream.
async fn stream_leader(context: &Context) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = settled_info(context).await;
        if let Some(leader) = info.cluster.and_then(|c| c.leader) {
            return leader;
        }
        assert!(Instant::now() < deadline, "the stream has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The feeds stream's info, asked again while a cluster that lost or regained a member does
/// not answer.
async fn settled_info(context: &Context) -> stream::Info {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = context.get_stream(STREAM).await {
            if let Ok(info) = stream.info().await {
                return info.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the feeds stream does not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
