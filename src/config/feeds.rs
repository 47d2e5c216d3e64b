//! The broker feeds file (`--feeds`, TOML): each source's feed is a NATS or a Kafka one.
//! For NATS: where the servers are (`nats_url`) and, per source (`[[feed]]`), the JetStream
//! stream and subject its batches arrive on, the durable pull consumer that reads them, and
//! the subject its dead letters go to. For Kafka: the bootstrap brokers (`kafka_brokers`)
//! and, per source (`[[kafka_feed]]`), its one-partition topic, the consumer group that
//! reports its progress, and the topic its dead letters go to.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, Context};
use async_nats::ServerAddr;
use serde::Deserialize;

/// Messages a consumer asks for at a time, when the file does not say.
const DEFAULT_FETCH_MESSAGES: usize = 64;
/// Most messages a consumer may ask for at a time: each waits in memory until it is applied.
const MAX_FETCH_MESSAGES: usize = 10_000;
/// How long a consumer waits before reading again after a transient failure, by default.
const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
/// How often a Kafka feed commits its group's offset, by default.
const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1_000;
/// The longest commit interval the Kafka client takes.
const MAX_COMMIT_INTERVAL_MS: u64 = 86_400_000;

/// Every broker feed of the service, and the servers they are read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsConfig {
    /// NATS server URLs, comma-separated (`nats://a:4222,nats://b:4222`): the client
    /// reconnects to any of them. Needed when there are NATS feeds.
    pub nats_url: Option<String>,
    /// One entry per source read from NATS (`[[feed]]` tables).
    #[serde(rename = "feed", default)]
    pub feeds: Vec<FeedConfig>,
    /// Kafka bootstrap brokers, comma-separated `host:port`s. Needed when there are Kafka
    /// feeds.
    pub kafka_brokers: Option<String>,
    /// One entry per source read from Kafka (`[[kafka_feed]]` tables).
    #[serde(rename = "kafka_feed", default)]
    pub kafka_feeds: Vec<KafkaFeedConfig>,
}

/// One source's feed from a JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// The source every message's batch must name; a batch naming another is dead-lettered.
    pub source: String,
    /// The JetStream stream holding the messages (created by the operator).
    pub stream: String,
    /// The subject (a filter within the stream) the source's messages are published on.
    pub subject: String,
    /// The durable pull consumer's name, which the service creates and owns.
    pub durable: String,
    /// Where a message that can never apply is published, with the reason in its headers;
    /// a stream must capture it, or the message is retried rather than lost.
    pub dead_letter_subject: String,
    /// Messages asked for at a time.
    #[serde(default = "default_fetch_messages")]
    pub fetch_messages: usize,
    /// Wait after a transient failure (the durable store down) before the message is read
    /// again.
    #[serde(default = "default_retry_delay_ms")]
    pub retry_delay_ms: u64,
}

/// One source's feed from a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFeedConfig {
    /// The source every message's batch must name; a batch naming another is dead-lettered.
    pub source: String,
    /// The topic holding the messages (created by the operator with one partition: a
    /// source's batches are ordered).
    pub topic: String,
    /// The consumer group the feed commits its progress to, for the operator's lag tools
    /// only: the feed reads from the position journaled with the batches.
    pub group: String,
    /// Where a message that can never apply is produced, with the reason in its headers.
    pub dead_letter_topic: String,
    /// Wait after a transient failure (the durable store down) before the message is
    /// applied again.
    #[serde(default = "default_retry_delay_ms")]
    pub retry_delay_ms: u64,
    /// How often the group's committed offset catches up with the messages handled.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
}

fn default_commit_interval_ms() -> u64 {
    DEFAULT_COMMIT_INTERVAL_MS
}

fn default_fetch_messages() -> usize {
    DEFAULT_FETCH_MESSAGES
}

fn default_retry_delay_ms() -> u64 {
    DEFAULT_RETRY_DELAY_MS
}

impl FeedsConfig {
    /// Reads and checks the feeds file at `path`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the feeds file {}", path.display()))?;
        Self::parse(&text)
            .and_then(|config| config.check_supported().map(|()| config))
            .with_context(|| format!("feeds file {}", path.display()))
    }

    /// Parses and checks a feeds file's text: every field named, at least one feed, the
    /// servers of each broker that has feeds, each source, durable consumer and group once,
    /// no feed dead-lettering onto what it reads.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: FeedsConfig = toml::from_str(text)?;
        if config.feeds.is_empty() && config.kafka_feeds.is_empty() {
            return Err(anyhow!(
                "no feed: add [[feed]] (NATS) or [[kafka_feed]] tables"
            ));
        }
        if !config.feeds.is_empty() {
            config.nats_servers()?;
        }
        if !config.kafka_feeds.is_empty() {
            config.kafka_brokers()?;
        }
        let mut sources = HashSet::new();
        let mut durables = HashSet::new();
        for (i, feed) in config.feeds.iter().enumerate() {
            feed.check()
                .with_context(|| format!("feed[{i}] ({:?})", feed.source))?;
            if !sources.insert(&feed.source) {
                return Err(anyhow!("source {:?} has two feeds", feed.source));
            }
            if !durables.insert((&feed.stream, &feed.durable)) {
                return Err(anyhow!(
                    "durable consumer {:?} is named twice",
                    feed.durable
                ));
            }
        }
        let mut groups = HashSet::new();
        for (i, feed) in config.kafka_feeds.iter().enumerate() {
            feed.check()
                .with_context(|| format!("kafka_feed[{i}] ({:?})", feed.source))?;
            if !sources.insert(&feed.source) {
                return Err(anyhow!("source {:?} has two feeds", feed.source));
            }
            if !groups.insert(&feed.group) {
                return Err(anyhow!("consumer group {:?} is named twice", feed.group));
            }
        }
        Ok(config)
    }

    /// Refuses Kafka feeds in a build without the `kafka` feature, which could not read them.
    pub fn check_supported(&self) -> anyhow::Result<()> {
        if !cfg!(feature = "kafka") && !self.kafka_feeds.is_empty() {
            return Err(anyhow!(
                "the file has [[kafka_feed]]s, but this build has no Kafka support \
                 (build with `--features kafka`)"
            ));
        }
        Ok(())
    }

    /// The servers of [`FeedsConfig::nats_url`], one per comma-separated URL.
    pub fn nats_servers(&self) -> anyhow::Result<Vec<ServerAddr>> {
        let urls = self
            .nats_url
            .as_deref()
            .ok_or_else(|| anyhow!("nats_url is missing: the [[feed]]s are read from NATS"))?;
        urls.split(',')
            .map(|url| {
                url.trim()
                    .parse()
                    .map_err(|e| anyhow!("nats_url {url:?}: {e}"))
            })
            .collect()
    }

    /// [`FeedsConfig::kafka_brokers`] as the client takes them (`host:port,host:port`).
    pub fn kafka_brokers(&self) -> anyhow::Result<String> {
        let list = self.kafka_brokers.as_deref().ok_or_else(|| {
            anyhow!("kafka_brokers is missing: the [[kafka_feed]]s are read from Kafka")
        })?;
        broker_list(list).map_err(|why| anyhow!("kafka_brokers {list:?}: {why}"))
    }
}

/// A comma-separated list of `host:port` Kafka brokers, trimmed; why it is not one.
pub fn broker_list(list: &str) -> Result<String, String> {
    let brokers: Vec<&str> = list.split(',').map(str::trim).collect();
    for broker in &brokers {
        let port = broker
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
            return Err(format!("{broker:?} is not host:port"));
        }
    }
    Ok(brokers.join(","))
}

impl FeedConfig {
    fn check(&self) -> anyhow::Result<()> {
        let named = [
            ("source", &self.source),
            ("stream", &self.stream),
            ("subject", &self.subject),
            ("durable", &self.durable),
            ("dead_letter_subject", &self.dead_letter_subject),
        ];
        if let Some((field, _)) = named.iter().find(|(_, value)| value.trim().is_empty()) {
            return Err(anyhow!("{field} is empty"));
        }
        if self.dead_letter_subject == self.subject {
            return Err(anyhow!(
                "dead_letter_subject is the feed's own subject: dead letters would be read again"
            ));
        }
        if !(1..=MAX_FETCH_MESSAGES).contains(&self.fetch_messages) {
            return Err(anyhow!(
                "fetch_messages must be from 1 to {MAX_FETCH_MESSAGES}"
            ));
        }
        Ok(())
    }
}

impl KafkaFeedConfig {
    fn check(&self) -> anyhow::Result<()> {
        let named = [
            ("source", &self.source),
            ("topic", &self.topic),
            ("group", &self.group),
            ("dead_letter_topic", &self.dead_letter_topic),
        ];
        if let Some((field, _)) = named.iter().find(|(_, value)| value.trim().is_empty()) {
            return Err(anyhow!("{field} is empty"));
        }
        if self.dead_letter_topic == self.topic {
            return Err(anyhow!(
                "dead_letter_topic is the feed's own topic: dead letters would be read again"
            ));
        }
        if !(1..=MAX_COMMIT_INTERVAL_MS).contains(&self.commit_interval_ms) {
            return Err(anyhow!(
                "commit_interval_ms must be from 1 to {MAX_COMMIT_INTERVAL_MS} (a day)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
nats_url = "nats://127.0.0.1:4222"

[[feed]]
source = "WMS"
stream = "SUPPLY"
subject = "supply.wms"
durable = "promised-wms"
dead_letter_subject = "supply.dead.wms"
"#;

    #[test]
    fn a_feed_takes_its_defaults_and_every_server_of_the_list() {
        let config = FeedsConfig::parse(FILE).expect("parses");
        assert_eq!(config.nats_servers().expect("one server").len(), 1);
        let cluster = FILE.replace(":4222\"", ":4222, nats://127.0.0.1:4223\"");
        let config = FeedsConfig::parse(&cluster).expect("parses");
        assert_eq!(config.nats_servers().expect("two servers").len(), 2);
        let broken = FILE.replace(":4222\"", ":4222,nats://:x\"");
        assert!(
            FeedsConfig::parse(&broken).is_err(),
            "a server that is no URL"
        );
        let feed = &config.feeds[0];
        assert_eq!(feed.source, "WMS");
        assert_eq!(feed.fetch_messages, DEFAULT_FETCH_MESSAGES);
        assert_eq!(feed.retry_delay_ms, DEFAULT_RETRY_DELAY_MS);
    }

    #[test]
    fn a_feed_file_that_would_misroute_messages_is_refused() {
        let twice = format!("{FILE}{}", &FILE[FILE.find("[[feed]]").expect("a feed")..]);
        let error = FeedsConfig::parse(&twice).expect_err("two feeds of one source");
        assert!(format!("{error:#}").contains("two feeds"), "{error:#}");
        let looping = FILE.replace("supply.dead.wms", "supply.wms");
        let error = FeedsConfig::parse(&looping).expect_err("dead letters read again");
        assert!(format!("{error:#}").contains("own subject"), "{error:#}");
        let unknown = FILE.replace("durable =", "durible =");
        assert!(FeedsConfig::parse(&unknown).is_err(), "a misspelt field");
        let greedy = format!("{FILE}fetch_messages = 0\n");
        assert!(
            FeedsConfig::parse(&greedy).is_err(),
            "no messages asked for"
        );
    }

    const BROKERS: &str = "kafka_brokers = \"127.0.0.1:9092, kafka-2:9092\"\n";
    const KAFKA_FEED: &str = r#"
[[kafka_feed]]
source = "ERP"
topic = "supply.erp"
group = "promised-erp"
dead_letter_topic = "dead.erp"
"#;

    fn kafka() -> String {
        format!("{BROKERS}{KAFKA_FEED}")
    }

    #[test]
    fn a_file_may_read_kafka_feeds_beside_nats_ones() {
        let config = FeedsConfig::parse(&kafka()).expect("Kafka alone");
        assert_eq!(
            config.kafka_brokers().expect("brokers"),
            "127.0.0.1:9092,kafka-2:9092"
        );
        let feed = &config.kafka_feeds[0];
        assert_eq!(
            (feed.source.as_str(), feed.topic.as_str()),
            ("ERP", "supply.erp")
        );
        assert_eq!(feed.retry_delay_ms, DEFAULT_RETRY_DELAY_MS);
        assert_eq!(feed.commit_interval_ms, DEFAULT_COMMIT_INTERVAL_MS);
        let both = format!("{BROKERS}{FILE}{KAFKA_FEED}");
        let config = FeedsConfig::parse(&both).expect("both brokers");
        assert_eq!((config.feeds.len(), config.kafka_feeds.len()), (1, 1));
    }

    #[test]
    fn a_kafka_feed_that_cannot_be_read_or_would_misroute_is_refused() {
        let refused = |text: &str, why: &str| {
            let error = FeedsConfig::parse(text).expect_err(why);
            let error = format!("{error:#}");
            assert!(error.contains(why), "{why}: {error}");
        };
        refused(KAFKA_FEED, "kafka_brokers is missing");
        refused(
            &kafka().replace("kafka-2:9092", "kafka-2"),
            "is not host:port",
        );
        refused(&kafka().replace("2:9092", "2:x"), "is not host:port");
        refused(&kafka().replace("dead.erp", "supply.erp"), "own topic");
        refused(
            &kafka().replace("\"promised-erp\"", "\" \""),
            "group is empty",
        );
        let other_source = KAFKA_FEED.replace("\"ERP\"", "\"POS\"");
        refused(&format!("{}{other_source}", kafka()), "named twice");
        let same_source = FILE.replace("\"WMS\"", "\"ERP\"");
        refused(&format!("{BROKERS}{same_source}{KAFKA_FEED}"), "two feeds");
        refused(
            &FILE.replace("nats_url", "# nats_url"),
            "nats_url is missing",
        );
        refused(BROKERS, "no feed");
        refused(&kafka().replace("group =", "groop ="), "groop");
        refused(
            &format!("{}commit_interval_ms = 0\n", kafka()),
            "commit_interval_ms",
        );
    }
}
