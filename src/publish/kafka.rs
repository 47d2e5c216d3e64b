//! The Kafka topic sink (the `kafka` feature): each event is produced to the sink's topic
//! with the event's SKU as its key (its subject: the SKU of a position change, the
//! reservation id of a reservation event; the event id when it has none), so the default
//! partitioner (murmur2, as the Java client's) puts every event of a key on one partition, in
//! order. The envelope follows the CloudEvents Kafka protocol binding: in binary mode the
//! attributes are `ce_*` headers and `content-type` names the data's type; in structured
//! mode `content-type` is `application/cloudevents+json` and the value is the whole event.
//!
//! The producer is idempotent with `acks=all`: a retry inside the client never duplicates
//! or reorders on the partition. An event is delivered once its delivery report says the
//! partition's leader (and its in-sync replicas) stored it; a failed or timed-out report is
//! a failed attempt, retried by the sink's loop with a new producer. Consumers dedupe a
//! resend after a restart by `ce_id` (or the structured `id`).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::cloudevents::{CloudEvent, Mode, STRUCTURED_CONTENT_TYPE};
use super::settings::KafkaSink;
use super::Sink;

/// How long the client may keep trying to deliver one event before it reports a failure.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One topic and its producer, once made.
pub struct Kafka {
    sink: KafkaSink,
    producer: Option<FutureProducer>,
}

impl Kafka {
    pub fn new(sink: KafkaSink) -> Self {
        Self {
            sink,
            producer: None,
        }
    }

    /// The producer, made first if the last attempt failed or none was made yet.
    fn producer(&mut self) -> Result<&FutureProducer, String> {
        if let Some(producer) = self.producer.take() {
            return Ok(self.producer.insert(producer));
        }
        let producer = producer(&self.sink.brokers)
            .map_err(|e| format!("making a producer for {}: {e}", self.sink.brokers))?;
        Ok(self.producer.insert(producer))
    }
}

/// An idempotent producer waiting for every in-sync replica, partitioning as the Java
/// client does.
pub fn producer(brokers: &str) -> Result<FutureProducer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()
}

/// The event's message key: the SKU (or reservation) whose order it keeps.
fn key(event: &CloudEvent) -> &str {
    if event.subject.is_empty() {
        &event.id
    } else {
        &event.subject
    }
}

/// The binary-mode headers of `event` as the Kafka binding names them (`ce_id`, ...).
fn binary_headers(event: &CloudEvent) -> OwnedHeaders {
    event
        .binary_headers()
        .iter()
        .fold(OwnedHeaders::new(), |headers, &(name, value)| {
            let name = name
                .strip_prefix("ce-")
                .map_or_else(|| name.to_owned(), |attribute| format!("ce_{attribute}"));
            headers.insert(Header {
                key: &name,
                value: Some(value),
            })
        })
}

impl Sink for Kafka {
    async fn send(&mut self, event: &CloudEvent) -> Result<(), String> {
        let (payload, headers) = match self.sink.feed.mode {
            Mode::Binary => (event.data.clone(), binary_headers(event)),
            Mode::Structured => {
                let content_type = Header {
                    key: "content-type",
                    value: Some(STRUCTURED_CONTENT_TYPE),
                };
                (event.structured(), OwnedHeaders::new().insert(content_type))
            }
        };
        let topic = self.sink.topic.clone();
        let record = FutureRecord::to(&topic)
            .key(key(event))
            .payload(&payload)
            .headers(headers);
        let delivered = self.producer()?.send(record, DELIVERY_TIMEOUT).await;
        delivered.map(drop).map_err(|(error, _)| {
            self.producer = None;
            format!("producing to {topic}: {error}")
        })
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers as _;

    use super::*;

    fn event(subject: &str) -> CloudEvent {
        CloudEvent {
            id: "1-0:position:SKU-1@DC".into(),
            source: "/promised/test".into(),
            kind: "promised.availability.changed".into(),
            subject: subject.into(),
            time: "2026-03-02T15:00:00.123Z".into(),
            time_ms: 0,
            data: b"{}".to_vec(),
        }
    }

    #[test]
    fn the_key_is_the_subject_or_else_the_id() {
        assert_eq!(key(&event("SKU-1")), "SKU-1");
        assert_eq!(key(&event("")), "1-0:position:SKU-1@DC");
    }

    #[test]
    fn binary_headers_follow_the_kafka_binding() {
        let headers = binary_headers(&event("SKU-1"));
        let named: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
            .collect();
        assert!(named.contains(&("ce_id".into(), b"1-0:position:SKU-1@DC".to_vec())));
        assert!(named.contains(&("ce_specversion".into(), b"1.0".to_vec())));
        assert!(named.contains(&("content-type".into(), b"application/json".to_vec())));
        assert!(named.iter().all(|(name, _)| !name.starts_with("ce-")));
    }
}
