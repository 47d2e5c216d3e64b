//! Kafka-protocol feeds (the `kafka` feature): per source, a consumer of the source's topic,
//! which must have one partition (a source's batches are ordered; a topic with more is
//! refused and its feed not read). A message's broker position is its offset + 1.
//!
//! The consumer is assigned the partition at the recorded position (the journaled one, or a
//! later one this process handled: a dead letter), never at the group's committed offset:
//! that is advisory, stored once the message's batch is durable or its dead letter
//! delivered and committed every `commit_interval_ms`, for the operator's lag tools. A
//! transient refusal (the durable store down) applies the same message again after the
//! feed's retry delay, so nothing after it is handled first; a broker failure makes the
//! consumer again at the recorded position.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::{DeadLetter, Poison, CONTENT_TYPE};
use super::{Intake, Unapplied};
use crate::app::App;
use crate::config::{FeedsConfig, KafkaFeedConfig};
use crate::publish::kafka::producer;

/// Dead letters' headers, besides [`DeadLetter::headers`]: where the message was read.
pub const TOPIC_HEADER: &str = "Promised-Topic";
pub const OFFSET_HEADER: &str = "Promised-Offset";

/// The longest wait for the topic's metadata or a dead letter's delivery.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// A source's topic has this one partition.
const PARTITION: i32 = 0;
/// How often the partition's high watermark is asked for, for the lag metric.
const WATERMARK_INTERVAL: Duration = Duration::from_secs(1);

/// Reads every Kafka feed of `config` until `stop`.
pub async fn run(app: App, config: FeedsConfig, max_message_bytes: usize, stop: CancellationToken) {
    let brokers = match config.kafka_brokers() {
        Ok(brokers) => brokers,
        Err(error) => {
            // The file was checked when read, so this is not reached.
            tracing::error!(error = format!("{error:#}"), "no Kafka feed is read");
            return;
        }
    };
    let feeds = TaskTracker::new();
    for feed in config.kafka_feeds {
        tracing::info!(source = %feed.source, topic = %feed.topic, "reading a Kafka feed");
        let feed = Feed::new(app.clone(), &brokers, feed, max_message_bytes);
        feeds.spawn(feed.run(stop.clone()));
    }
    feeds.close();
    feeds.wait().await;
}

/// A topic that can never be read as a feed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// One source's feed: its topic, the producer of its dead letters, and the service its
/// batches go to.
pub struct Feed {
    intake: Intake,
    brokers: String,
    config: KafkaFeedConfig,
    /// The position after the last message this process handled (applied or
    /// dead-lettered): a dead letter is not the source's position, and is not sent twice.
    handled: u64,
    /// The partition's high watermark (the offset after its last message), as last asked,
    /// and when: the lag metric is reckoned from it.
    high: (u64, Option<Instant>),
}

impl Feed {
    pub fn new(app: App, brokers: &str, config: KafkaFeedConfig, max_message_bytes: usize) -> Self {
        Self {
            intake: Intake::new(app, &config.source, max_message_bytes),
            brokers: brokers.to_owned(),
            config,
            handled: 0,
            high: (0, None),
        }
    }

    /// Reads until `stop`, or until the topic is refused. A failure of the broker pauses the
    /// feed for its retry delay; it then reads again from the recorded position.
    pub async fn run(mut self, stop: CancellationToken) {
        let retry = Duration::from_millis(self.config.retry_delay_ms);
        loop {
            let Err(failed) = tokio::select! {
                () = stop.cancelled() => return,
                read = self.consume() => read,
            };
            if let Some(refused) = failed.downcast_ref::<Refused>() {
                tracing::error!(source = %self.config.source, error = %refused,
                    "the Kafka feed is not read");
                return;
            }
            if !super::paused(&stop, &self.config.source, &failed, retry).await {
                return;
            }
        }
    }

    /// Makes the consumer at the recorded position and handles its messages in order.
    async fn consume(&mut self) -> anyhow::Result<Infallible> {
        let consumer = Arc::new(self.consumer()?);
        self.check_topic(&consumer).await?;
        let dead_letters = producer(&self.brokers).context("a dead-letter producer")?;
        let start = self.intake.position()?.max(self.handled);
        let offset = match i64::try_from(start) {
            Ok(0) => Offset::Beginning,
            Ok(offset) => Offset::Offset(offset),
            Err(_) => return Err(anyhow!("position {start} is past any Kafka offset")),
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.config.topic, PARTITION, offset)?;
        consumer.assign(&assignment)?;
        loop {
            let message = consumer.recv().await.context("reading a message")?;
            self.handle(&consumer, &dead_letters, &message).await?;
        }
    }

    fn consumer(&self) -> anyhow::Result<StreamConsumer> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.config.group)
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                self.config.commit_interval_ms.to_string(),
            )
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .context("making a consumer")?;
        Ok(consumer)
    }

    /// Refuses a topic of more than one partition; a topic not there (yet) is a failure.
    async fn check_topic(&self, consumer: &Arc<StreamConsumer>) -> anyhow::Result<()> {
        let (consumer, topic) = (consumer.clone(), self.config.topic.clone());
        let partitions = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let metadata = consumer.fetch_metadata(Some(&topic), BROKER_TIMEOUT)?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(topic) if topic.error().is_none() => Ok(topic.partitions().len()),
                _ => Err(anyhow!("topic {topic:?} is not on the brokers")),
            }
        })
        .await??;
        if partitions != 1 {
            return Err(Refused(format!(
                "topic {:?} has {partitions} partitions: a source's batches are ordered, so its \
                 topic must have one",
                self.config.topic
            ))
            .into());
        }
        Ok(())
    }

    /// Applies or dead-letters one message, then stores its offset for the next commit;
    /// while the service refuses for now, applies it again after the retry delay.
    async fn handle(
        &mut self,
        consumer: &Arc<StreamConsumer>,
        dead_letters: &FutureProducer,
        message: &BorrowedMessage<'_>,
    ) -> anyhow::Result<()> {
        let position = u64::try_from(message.offset() + 1)?;
        let payload = message.payload().unwrap_or_default();
        let content_type = content_type(message);
        let request_id = format!("{}:{}", self.config.topic, message.offset());
        let retry = Duration::from_millis(self.config.retry_delay_ms);
        loop {
            let applied = self
                .intake
                .apply(content_type, payload, position, request_id.clone())
                .await;
            match applied {
                Ok(_) => break,
                Err(Unapplied::Poison(poison, detail)) => {
                    self.dead_letter(dead_letters, message, poison, &detail)
                        .await?;
                    break;
                }
                Err(Unapplied::Retry(why)) => {
                    tracing::warn!(source = %self.config.source, position, why,
                        "message not applied now; applying it again after the retry delay");
                    tokio::time::sleep(retry).await;
                }
            }
        }
        self.handled = position;
        // Stores the offset + 1, the next to read, for the next commit.
        consumer.store_offset_from_message(message)?;
        let high = self.high_watermark(consumer).await;
        self.intake
            .metrics
            .handled(position, high.saturating_sub(position));
        Ok(())
    }

    /// The partition's high watermark, asked of the broker at most every
    /// [`WATERMARK_INTERVAL`] (a round trip of its own); 0 until it answers.
    async fn high_watermark(&mut self, consumer: &Arc<StreamConsumer>) -> u64 {
        let (high, asked) = self.high;
        if asked.is_some_and(|at| at.elapsed() < WATERMARK_INTERVAL) {
            return high;
        }
        let (consumer, topic) = (consumer.clone(), self.config.topic.clone());
        let fetched = tokio::task::spawn_blocking(move || {
            consumer.fetch_watermarks(&topic, PARTITION, WATERMARK_INTERVAL)
        })
        .await;
        let high = match fetched {
            Ok(Ok((_, high))) => u64::try_from(high).unwrap_or(0),
            _ => high,
        };
        self.high = (high, Some(Instant::now()));
        high
    }

    /// Produces the message, with why, to the dead-letter topic and waits for its delivery
    /// report: a dead letter that is not delivered fails the read, so the message is read
    /// again rather than lost.
    async fn dead_letter(
        &self,
        producer: &FutureProducer,
        message: &BorrowedMessage<'_>,
        poison: Poison,
        detail: &str,
    ) -> anyhow::Result<()> {
        let letter = DeadLetter {
            poison,
            detail,
            source: &self.config.source,
            content_type: content_type(message),
        };
        let offset = message.offset().to_string();
        let origin = [
            (TOPIC_HEADER, self.config.topic.clone()),
            (OFFSET_HEADER, offset),
        ];
        let headers = letter.headers().into_iter().chain(origin).fold(
            OwnedHeaders::new(),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_str()),
                })
            },
        );
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.config.dead_letter_topic)
                .payload(message.payload().unwrap_or_default())
                .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        producer
            .send(record, BROKER_TIMEOUT)
            .await
            .map_err(|(error, _)| anyhow!("producing a dead letter: {error}"))?;
        let position = u64::try_from(message.offset() + 1)?;
        self.intake.dead_lettered(position, poison, detail);
        Ok(())
    }
}

/// The message's content type, if a header names one (without regard to case) in UTF-8.
fn content_type<'a>(message: &'a BorrowedMessage<'_>) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|header| header.key.eq_ignore_ascii_case(CONTENT_TYPE))
        .and_then(|header| std::str::from_utf8(header.value?).ok())
}
