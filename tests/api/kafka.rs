//! The Kafka edge (the `kafka` feature) against a real Kafka-protocol broker (tansu,
//! tests/api/tansu.rs) and a real Redis: sinks deliver every event, in order per key, as
//! CloudEvents in both content modes across a kill; a feed applies each message exactly once
//! across kills of the service, dead-letters poison messages and goes on, and waits out a
//! store outage without skipping a message.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use promised::grpc::pb::supply_client::SupplyClient;
use promised::publish::kafka::producer;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::Value;

use crate::binary::Binary;
use crate::feeds::{
    all_applied, applied_through, binary, binary_args, durable_seq, json_batch, metric, on_hand,
    poison_dead_lettered, service, unit_batch, until, FeedsFile,
};
use crate::helpers::{adjust_on_hand, batch, wms_for};
use crate::operations::{scrape, scrape_at};
use crate::publish::EventsOut;
use crate::redis::RedisServer;
use crate::tansu::Tansu;

/// A feeds file of `source`'s Kafka feed: topic `supply.<source>`, dead letters to
/// `dead.<source>`, both made here with one partition.
async fn kafka_feed(tansu: &Tansu, source: &str, commit_interval_ms: u64) -> FeedsFile {
    let lower = source.to_lowercase();
    let (topic, dead) = (format!("supply.{lower}"), format!("dead.{lower}"));
    tansu.create_topic(&topic, 1).await;
    tansu.create_topic(&dead, 1).await;
    let text = format!(
        "kafka_brokers = \"{}\"\n\n[[kafka_feed]]\nsource = \"{source}\"\ntopic = \"{topic}\"\n\
         group = \"promised-{lower}\"\ndead_letter_topic = \"{dead}\"\nretry_delay_ms = 100\n\
         commit_interval_ms = {commit_interval_ms}\n",
        tansu.brokers()
    );
    FeedsFile::write(&text, topic, dead)
}

/// Produces `payload` with `headers` to `topic`; its offset.
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    headers: OwnedHeaders,
    payload: &[u8],
) -> i64 {
    let record = FutureRecord::<(), [u8]>::to(topic)
        .payload(payload)
        .headers(headers);
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .expect("delivered");
    delivery.offset
}

async fn produce_batch(producer: &FutureProducer, topic: &str, batch: &[u8]) -> i64 {
    produce(producer, topic, OwnedHeaders::new(), batch).await
}

/// The messages of `topic` (of `partitions`) from the first until `enough` holds of them:
/// each partition's in offset order.
async fn read_topic(
    tansu: &Tansu,
    topic: &str,
    partitions: i32,
    enough: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = tansu
        .client()
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reader");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&assignment).expect("assigned");
    let mut messages = Vec::new();
    while !enough(&messages) {
        let next = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await;
        let message = next
            .unwrap_or_else(|_| panic!("{topic}: only {} messages", messages.len()))
            .expect("a message");
        messages.push(message.detach());
    }
    messages
}

fn header(message: &OwnedMessage, name: &str) -> String {
    let headers = message.headers();
    let found = headers.and_then(|headers| headers.iter().find(|h| h.key == name));
    let value = found.and_then(|header| header.value).unwrap_or_default();
    String::from_utf8_lossy(value).into_owned()
}

fn key(message: &OwnedMessage) -> String {
    String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned()
}

/// An event's id, its subject and the feed batch that made it, as its mode carries them.
fn event(message: &OwnedMessage, structured: bool) -> (String, String, u64) {
    let body: Value = serde_json::from_slice(message.payload().expect("a value")).expect("JSON");
    let (id, subject, data) = if structured {
        assert_eq!(
            header(message, "content-type"),
            "application/cloudevents+json"
        );
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "promised.availability.changed");
        let text = |name: &str| body[name].as_str().expect("an attribute").to_owned();
        (text("id"), text("subject"), body["data"].clone())
    } else {
        assert_eq!(header(message, "content-type"), "application/json");
        assert_eq!(header(message, "ce_specversion"), "1.0");
        assert_eq!(header(message, "ce_type"), "promised.availability.changed");
        assert_eq!(header(message, "ce_source"), "/promised/kafka");
        let ids = (header(message, "ce_id"), header(message, "ce_subject"));
        (ids.0, ids.1, body)
    };
    let seq = data["cause"]["seq"].as_str().expect("seq");
    (id, subject, seq.parse().expect("a number"))
}

/// Each event once (by id), checked to be the same on every copy; the events of one key
/// in the order they were read, which for one partition is its order.
fn dedupe(messages: &[OwnedMessage], structured: bool) -> HashMap<String, Vec<u64>> {
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
    for message in messages {
        let (id, subject, seq) = event(message, structured);
        assert_eq!(key(message), subject, "the key is the SKU");
        let payload = message.payload().unwrap_or_default().to_vec();
        if let Some(first) = seen.insert(id.clone(), payload.clone()) {
            assert_eq!(first, payload, "a resent event {id} is the same event");
            continue;
        }
        by_key.entry(subject).or_default().push(seq);
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sinks_get_every_event_in_order_per_sku_in_both_modes_across_a_kill() {
    let redis = RedisServer::start();
    let tansu = Tansu::start().await;
    let modes = ["binary", "structured"];
    let mut sinks = String::new();
    for mode in modes {
        tansu.create_topic(&format!("events.{mode}"), 3).await;
        sinks += &format!(
            "[[kafka]]\nname = \"{mode}\"\nbrokers = \"{}\"\ntopic = \"events.{mode}\"\n\
             mode = \"{mode}\"\navailability = true\n\
             retry = {{ initial_ms = 5, max_delay_ms = 50, max_attempts = 1000 }}\n",
            tansu.brokers()
        );
    }
    let file = EventsOut::write("kafka", &sinks);
    let network = concat!(env!("CARGO_MANIFEST_DIR"), "/src/demo_network.toml");
    let redis_url = redis.url();
    let path = file.path();
    let args = [
        "--redis-url",
        &redis_url,
        "--redis-prefix",
        "kafka",
        "--network",
        network,
        "--events-out",
        &path,
        "--log",
        "error",
    ];
    const BATCHES: u64 = 40;
    let sku = |seq: u64| format!("SKU-{}", seq % 4);
    let feed = |seq: u64| {
        batch(
            "WMS",
            seq,
            vec![adjust_on_hand(&sku(seq), "DC-EDISON-NJ", 1)],
        )
    };
    let service = Binary::start(&args).await;
    let mut supply = SupplyClient::new(service.channel.clone());
    for seq in 1..=BATCHES / 2 {
        supply.apply_batch(feed(seq)).await.expect("applied");
    }
    // Killed with events applied and maybe not yet produced, or produced and not recorded.
    service.kill();
    let service = Binary::start(&args).await;
    let mut supply = SupplyClient::new(service.channel.clone());
    for seq in BATCHES / 2 + 1..=BATCHES {
        supply.apply_batch(feed(seq)).await.expect("applied");
    }
    for mode in modes {
        let structured = mode == "structured";
        let every = |messages: &[OwnedMessage]| {
            let ids: HashSet<String> = messages.iter().map(|m| event(m, structured).0).collect();
            ids.len() as u64 == BATCHES
        };
        let messages = read_topic(&tansu, &format!("events.{mode}"), 3, every).await;
        let partitions: HashMap<String, HashSet<i32>> =
            messages.iter().fold(HashMap::new(), |mut by_key, m| {
                by_key.entry(key(m)).or_default().insert(m.partition());
                by_key
            });
        assert!(
            partitions.values().all(|p| p.len() == 1),
            "{mode}: one partition per SKU: {partitions:?}"
        );
        let by_key = dedupe(&messages, structured);
        for (key, seqs) in &by_key {
            let expected: Vec<u64> = (1..=BATCHES).filter(|seq| &sku(*seq) == key).collect();
            assert_eq!(
                seqs, &expected,
                "{mode}: {key}'s events, each once, in order"
            );
        }
        assert_eq!(by_key.len(), 4, "{mode}: every SKU");
    }
    service.kill();
}

/// The group's committed offset for the feed's topic, if it has one.
async fn committed(tansu: &Tansu, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = tansu
        .client()
        .set("group.id", group)
        .create()
        .expect("a consumer of the group");
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let offsets = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(partitions, Duration::from_secs(10))
    })
    .await
    .expect("asked")
    .expect("the group's offsets");
    let element = offsets.elements_for_topic(topic);
    match element.first().map(|e| e.offset()) {
        Some(Offset::Offset(offset)) => Some(offset),
        _ => None,
    }
}

fn feed_counter(metrics: &str, source: &str, outcome: &str) -> f64 {
    let series =
        format!("promised_feed_messages_total{{source=\"{source}\",outcome=\"{outcome}\"}}");
    metric(metrics, &series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_applies_every_kafka_message_exactly_once() {
    let tansu = Tansu::start().await;
    let redis = RedisServer::start();
    // Commits an hour apart: the group's offset stays behind every message applied, so only
    // the position journaled with the batches keeps them from being read again.
    let feeds = kafka_feed(&tansu, "WMS", 3_600_000).await;
    let count = 600;
    let producer = producer(&tansu.brokers()).expect("a producer");
    let topic = feeds.subject.clone();
    let producing = tokio::spawn(async move {
        for seq in 1..=count {
            let batch = unit_batch("WMS", seq).encode_to_vec();
            produce_batch(&producer, &topic, &batch).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut service = binary(&redis, &feeds).await;
    for reached in [150, 300] {
        let channel = &service.channel;
        until(60, "the feed progressed", || async {
            durable_seq(channel.clone(), "WMS").await >= reached
        })
        .await;
        let metrics = scrape_at(service.metrics_addr).await;
        assert_eq!(feed_counter(&metrics, "WMS", "duplicate"), 0.0, "{metrics}");
        service.kill();
        service = binary(&redis, &feeds).await;
    }
    until(60, "the feed progressed", || async {
        durable_seq(service.channel.clone(), "WMS").await >= 450
    })
    .await;
    service.kill();
    // The position the last run starts from, read by a run without the feed.
    let args = binary_args(&redis);
    let reader = Binary::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let start = durable_seq(reader.channel.clone(), "WMS").await;
    reader.kill();
    assert!((450..count).contains(&start), "{start}");
    let uncommitted = committed(&tansu, "promised-wms", &feeds.subject).await;
    assert!(
        uncommitted.is_none_or(|offset| offset < i64::try_from(start).expect("small")),
        "applied messages are uncommitted in Kafka: {uncommitted:?}"
    );

    let service = binary(&redis, &feeds).await;
    all_applied(&service, count, 60).await;
    let metrics = scrape_at(service.metrics_addr).await;
    let counted = |outcome| feed_counter(&metrics, "WMS", outcome);
    assert_eq!(counted("applied"), (count - start) as f64, "{metrics}");
    assert_eq!(counted("duplicate"), 0.0, "none read twice: {metrics}");
    assert_eq!(counted("retried"), 0.0);
    producing.await.expect("every batch produced");
}

#[tokio::test]
async fn poison_kafka_messages_are_dead_lettered_with_their_reason_and_later_ones_apply() {
    let tansu = Tansu::start().await;
    let redis = RedisServer::start();
    let feeds = kafka_feed(&tansu, "KAFKA-EAST", 100).await;
    let mut app = service(&redis, "kafka-poison", &feeds).await;
    wms_for(&mut app, "KAFKA-EAST", &["DC-EAST"]).await;
    let producer = producer(&tansu.brokers()).expect("a producer");
    let topic = feeds.subject.as_str();
    let good = |seq: u64| {
        let updates = vec![adjust_on_hand("SKU-1", "DC-EAST", 1)];
        batch("KAFKA-EAST", seq, updates).encode_to_vec()
    };
    let wrong = batch("WMS-WEST", 1, vec![]).encode_to_vec();
    produce_batch(&producer, topic, &good(1)).await;
    let garbage = produce_batch(&producer, topic, &[0xff, 0xff, 0xff]).await;
    let wrong = produce_batch(&producer, topic, &wrong).await;
    let no_seq = produce_batch(&producer, topic, &good(0)).await;
    let json = || {
        OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
    };
    produce(&producer, topic, json(), &json_batch("KAFKA-EAST")).await;
    let bad_json = produce(&producer, topic, json(), b"{\"sourceId\": 7}").await;
    let last = produce_batch(&producer, topic, &good(3)).await;
    let position = u64::try_from(last + 1).expect("an offset");
    applied_through(&app, "KAFKA-EAST", position).await;
    assert_eq!(on_hand(&mut app, "SKU-1", "DC-EAST").await, 3);

    let letters = read_topic(&tansu, &feeds.dead_letters, 1, |m| m.len() == 4).await;
    let reasons = letters
        .iter()
        .map(|m| (header(m, "Promised-Offset"), header(m, "Promised-Reason")));
    poison_dead_lettered(
        &app,
        "KAFKA-EAST",
        reasons,
        [garbage, wrong, no_seq, bad_json],
    )
    .await;
    assert_eq!(letters[0].payload(), Some(&[0xff, 0xff, 0xff][..]));
    assert!(header(&letters[2], "Promised-Detail").contains("seq"));
    assert_eq!(header(&letters[3], "Content-Type"), "application/json");
    assert_eq!(header(&letters[3], "Promised-Topic"), feeds.subject);
    assert_eq!(header(&letters[3], "Promised-Source"), "KAFKA-EAST");
    let metrics = scrape(&app).await;
    assert_eq!(feed_counter(&metrics, "KAFKA-EAST", "applied"), 3.0);
    let position_metric = "promised_feed_position{source=\"KAFKA-EAST\"}";
    assert_eq!(metric(&metrics, position_metric), position as f64);
    // The group's offset follows, once the batches are durable.
    until(20, "the group's offset committed", || async {
        committed(&tansu, "promised-kafka-east", topic).await == Some(last + 1)
    })
    .await;
    app.shutdown().await;
}

#[tokio::test]
async fn while_redis_is_down_kafka_messages_wait_and_apply_once_it_is_back() {
    let tansu = Tansu::start().await;
    let mut redis = RedisServer::start();
    let feeds = kafka_feed(&tansu, "KAFKA-POS", 100).await;
    let mut app = service(&redis, "kafka-outage", &feeds).await;
    wms_for(&mut app, "KAFKA-POS", &["STORE-CHI"]).await;
    let producer = producer(&tansu.brokers()).expect("a producer");
    let topic = feeds.subject.as_str();
    let adjust = |seq: u64| {
        let updates = vec![adjust_on_hand("SKU-1", "STORE-CHI", 10)];
        batch("KAFKA-POS", seq, updates).encode_to_vec()
    };
    produce_batch(&producer, topic, &adjust(1)).await;
    applied_through(&app, "KAFKA-POS", 1).await;
    until(30, "the first batch durable", || async {
        app.engine.durable_seq("KAFKA-POS") == Some(1)
    })
    .await;

    redis.kill();
    for seq in 2..=5 {
        produce_batch(&producer, topic, &adjust(seq)).await;
    }
    // The feed applies the same message again and again while the store is gone.
    until(20, "the feed retried", || async {
        feed_counter(&scrape(&app).await, "KAFKA-POS", "retried") >= 2.0
    })
    .await;
    assert_eq!(app.engine.broker_seq("KAFKA-POS"), Some(1));

    redis.resume();
    applied_through(&app, "KAFKA-POS", 5).await;
    assert_eq!(
        on_hand(&mut app, "SKU-1", "STORE-CHI").await,
        50,
        "each once"
    );
    let metrics = scrape(&app).await;
    assert_eq!(feed_counter(&metrics, "KAFKA-POS", "applied"), 5.0);
    assert_eq!(feed_counter(&metrics, "KAFKA-POS", "duplicate"), 0.0);
    assert!(
        !metrics.contains("promised_feed_dead_letters_total{source=\"KAFKA-POS\""),
        "none dead"
    );
    app.shutdown().await;
}
