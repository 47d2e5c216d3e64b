//! The broker feeds file (`--feeds`, TOML): where the NATS servers are and, per source, the
//! JetStream stream and subject its batches arrive on, the durable pull consumer that reads
//! them, and the subject its dead letters go to.

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

/// Every broker feed of the service, and the servers they are read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsConfig {
    /// NATS server URLs, comma-separated (`nats://a:4222,nats://b:4222`): the client
    /// reconnects to any of them.
    pub nats_url: String,
    /// One entry per source (`[[feed]]` tables).
    #[serde(rename = "feed")]
    pub feeds: Vec<FeedConfig>,
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
        Self::parse(&text).with_context(|| format!("feeds file {}", path.display()))
    }

    /// Parses and checks a feeds file's text: every field named, each source and durable
    /// consumer once, no feed dead-lettering onto its own subject.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: FeedsConfig = toml::from_str(text)?;
        config.servers()?;
        let (mut sources, mut durables) = (HashSet::new(), HashSet::new());
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
        Ok(config)
    }
}

impl FeedsConfig {
    /// The servers of [`FeedsConfig::nats_url`], one per comma-separated URL.
    pub fn servers(&self) -> anyhow::Result<Vec<ServerAddr>> {
        self.nats_url
            .split(',')
            .map(|url| {
                url.trim()
                    .parse()
                    .map_err(|e| anyhow!("nats_url {url:?}: {e}"))
            })
            .collect()
    }
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
        assert_eq!(config.servers().expect("one server").len(), 1);
        let cluster = FILE.replace(":4222\"", ":4222, nats://127.0.0.1:4223\"");
        let config = FeedsConfig::parse(&cluster).expect("parses");
        assert_eq!(config.servers().expect("two servers").len(), 2);
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
}
