//! The events-out file (`--events-out FILE`, TOML): which sinks the service sends events to.
//!
//! ```toml
//! source = "/promised/eu-1"        # CloudEvents source; default /promised/<redis prefix>
//!
//! [[webhook]]
//! name = "oms"                     # names the sink's cursor, dead letters and metrics
//! url = "http://oms.internal:8080/events"
//! secret_file = "/run/secrets/oms" # signs each delivery (or `secret = "..."`)
//! orders = true                    # reservation lifecycle events
//! availability = true              # position changes ...
//! skus = ["SKU-1"]                 # ... of these SKUs (empty: all)
//! nodes = ["DC-EAST"]              # ... at these nodes (empty: all)
//! mode = "structured"              # or "binary" (the default)
//! timeout_ms = 10000
//! retry = { initial_ms = 1000, max_delay_ms = 600000, max_attempts = 60, max_age_secs = 86400 }
//!
//! [[nats]]
//! name = "bus"
//! url = "nats://127.0.0.1:4222"
//! subject_prefix = "promised"      # <prefix>.availability.<sku>, <prefix>.orders.<reservation>
//! stream = "PROMISED"              # created for <prefix>.> if missing (optional)
//! orders = true
//! availability = true
//!
//! [[kafka]]                          # needs a build with the `kafka` feature
//! name = "stream"
//! brokers = "kafka-1:9092,kafka-2:9092"
//! topic = "promised.events"          # created by the operator; key = SKU (or subject)
//! mode = "structured"                # or "binary" (ce_* headers)
//! availability = true
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::Deserialize;

use super::cloudevents::Mode;
use super::retry::Retry;
use crate::config::broker_list;
use crate::watch::WatchFilter;

/// The longest sink name, SKU or node id list of a sink's filter.
const MAX_FILTER: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    source: Option<String>,
    #[serde(default)]
    webhook: Vec<Entry>,
    #[serde(default)]
    nats: Vec<Entry>,
    #[serde(default)]
    kafka: Vec<Entry>,
}

/// One sink as written: the fields every sink has, then those of its kind (a field of the
/// other kind is refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    // Webhooks and NATS.
    url: Option<String>,
    #[serde(default)]
    orders: bool,
    #[serde(default)]
    availability: bool,
    #[serde(default)]
    skus: Vec<String>,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    retry: RetryEntry,
    // Webhooks.
    secret: Option<String>,
    secret_file: Option<String>,
    timeout_ms: Option<u64>,
    // NATS.
    subject_prefix: Option<String>,
    stream: Option<String>,
    // Kafka.
    brokers: Option<String>,
    topic: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryEntry {
    initial_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    max_attempts: Option<u32>,
    max_age_secs: Option<u64>,
}

/// Every sink, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sinks {
    /// The CloudEvents `source` of every event; `None` takes `/promised/<redis prefix>`.
    pub source: Option<String>,
    pub webhooks: Vec<WebhookSink>,
    pub nats: Vec<NatsSink>,
    pub kafka: Vec<KafkaSink>,
}

/// What one sink is shown and how it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub name: String,
    /// Position changes it is shown, if any.
    pub availability: Option<WatchFilter>,
    pub orders: bool,
    pub mode: Mode,
    pub retry: Retry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSink {
    pub feed: Feed,
    pub url: String,
    /// Signs every delivery when set.
    pub secret: Option<Vec<u8>>,
    /// One attempt's longest wait for the receiver's answer.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSink {
    pub feed: Feed,
    pub url: String,
    pub subject_prefix: String,
    pub stream: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSink {
    pub feed: Feed,
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    pub topic: String,
}

impl Sinks {
    /// Every sink's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let webhooks = self.webhooks.iter().map(|s| s.feed.name.as_str());
        let nats = self.nats.iter().map(|s| s.feed.name.as_str());
        webhooks
            .chain(nats)
            .chain(self.kafka.iter().map(|s| s.feed.name.as_str()))
    }

    /// Refuses Kafka sinks in a build without the `kafka` feature, which could not send.
    pub fn check_supported(&self) -> anyhow::Result<()> {
        if !cfg!(feature = "kafka") && !self.kafka.is_empty() {
            return Err(anyhow!(
                "the file has [[kafka]] sinks, but this build has no Kafka support \
                 (build with `--features kafka`)"
            ));
        }
        Ok(())
    }
}

/// Reads the events-out file; secret files are read relative to its directory.
pub fn read(path: &Path) -> anyhow::Result<Sinks> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the events-out file {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .and_then(|sinks| sinks.check_supported().map(|()| sinks))
        .with_context(|| format!("in the events-out file {}", path.display()))
}

/// Parses the file's text; secret files are read relative to `dir`.
pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Sinks> {
    let file: File = toml::from_str(text)?;
    let mut names = HashSet::new();
    let mut webhooks = Vec::new();
    for mut entry in file.webhook {
        let feed = feed(&mut entry, &mut names)?;
        if entry.subject_prefix.is_some() || entry.stream.is_some() {
            return Err(anyhow!(
                "webhook {}: subject_prefix and stream are NATS settings",
                feed.name
            ));
        }
        refuse_kafka_settings(&entry, "webhook", &feed.name)?;
        let url = entry
            .url
            .ok_or_else(|| anyhow!("webhook {}: url is missing", feed.name))?;
        if !url.starts_with("http://") {
            return Err(anyhow!(
                "webhook {}: the url must be http:// (put TLS in front of the receiver)",
                feed.name
            ));
        }
        let secret = match (entry.secret, entry.secret_file) {
            (Some(_), Some(_)) => {
                return Err(anyhow!(
                    "webhook {}: secret and secret_file exclude each other",
                    feed.name
                ))
            }
            (Some(secret), None) => Some(secret.into_bytes()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(dir.join(&file))
                    .with_context(|| format!("webhook {}: cannot read {file}", feed.name))?;
                Some(text.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
            }
            (None, None) => None,
        };
        webhooks.push(WebhookSink {
            url,
            secret,
            timeout: Duration::from_millis(entry.timeout_ms.unwrap_or(10_000)),
            feed,
        });
    }
    let mut nats = Vec::new();
    for mut entry in file.nats {
        let feed = feed(&mut entry, &mut names)?;
        refuse_webhook_settings(&entry, "nats", &feed.name)?;
        refuse_kafka_settings(&entry, "nats", &feed.name)?;
        let url = entry
            .url
            .ok_or_else(|| anyhow!("nats {}: url is missing", feed.name))?;
        let subject_prefix = entry.subject_prefix.unwrap_or_else(|| "promised".into());
        if subject_prefix.is_empty() || subject_prefix.contains([' ', '*', '>']) {
            return Err(anyhow!(
                "nats {}: subject_prefix must be subject tokens without wildcards",
                feed.name
            ));
        }
        nats.push(NatsSink {
            url,
            subject_prefix,
            stream: entry.stream,
            feed,
        });
    }
    let mut kafka = Vec::new();
    for mut entry in file.kafka {
        let feed = feed(&mut entry, &mut names)?;
        kafka.push(kafka_sink(entry, feed)?);
    }
    Ok(Sinks {
        source: file.source,
        webhooks,
        nats,
        kafka,
    })
}

/// A `[[kafka]]` entry: brokers and a topic, none of the other kinds' settings.
fn kafka_sink(entry: Entry, feed: Feed) -> anyhow::Result<KafkaSink> {
    let name = &feed.name;
    refuse_webhook_settings(&entry, "kafka", name)?;
    if entry.url.is_some() || entry.subject_prefix.is_some() || entry.stream.is_some() {
        return Err(anyhow!(
            "kafka {name}: url, subject_prefix and stream are not Kafka settings (brokers, topic)"
        ));
    }
    let brokers = entry
        .brokers
        .ok_or_else(|| anyhow!("kafka {name}: brokers is missing"))?;
    let brokers = broker_list(&brokers).map_err(|why| anyhow!("kafka {name}: brokers: {why}"))?;
    let topic = entry
        .topic
        .filter(|topic| !topic.trim().is_empty())
        .ok_or_else(|| anyhow!("kafka {name}: topic is missing"))?;
    Ok(KafkaSink {
        feed,
        brokers,
        topic,
    })
}

fn refuse_webhook_settings(entry: &Entry, kind: &str, name: &str) -> anyhow::Result<()> {
    if entry.secret.is_some() || entry.secret_file.is_some() || entry.timeout_ms.is_some() {
        return Err(anyhow!(
            "{kind} {name}: secret, secret_file and timeout_ms are webhook settings"
        ));
    }
    Ok(())
}

fn refuse_kafka_settings(entry: &Entry, kind: &str, name: &str) -> anyhow::Result<()> {
    if entry.brokers.is_some() || entry.topic.is_some() {
        return Err(anyhow!(
            "{kind} {name}: brokers and topic are Kafka settings"
        ));
    }
    Ok(())
}

fn feed(entry: &mut Entry, names: &mut HashSet<String>) -> anyhow::Result<Feed> {
    let name = std::mem::take(&mut entry.name);
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(anyhow!(
            "sink name {name:?}: 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    if !names.insert(name.clone()) {
        return Err(anyhow!("two sinks are named {name:?}"));
    }
    if !entry.orders && !entry.availability {
        return Err(anyhow!(
            "sink {name}: shows nothing (set orders = true, availability = true, or both)"
        ));
    }
    if entry.skus.len() + entry.nodes.len() > MAX_FILTER {
        return Err(anyhow!("sink {name}: at most {MAX_FILTER} SKUs and nodes"));
    }
    let availability = entry.availability.then(|| WatchFilter {
        skus: entry.skus.drain(..).collect(),
        nodes: entry.nodes.drain(..).collect(),
    });
    let defaults = Retry::default();
    let r = &entry.retry;
    let retry = Retry {
        initial: r.initial_ms.map_or(defaults.initial, Duration::from_millis),
        max_delay: r
            .max_delay_ms
            .map_or(defaults.max_delay, Duration::from_millis),
        max_attempts: r.max_attempts.unwrap_or(defaults.max_attempts).max(1),
        max_age: r.max_age_secs.map_or(defaults.max_age, Duration::from_secs),
    };
    Ok(Feed {
        name,
        availability,
        orders: entry.orders,
        mode: entry.mode,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_its_sinks_filters_and_retries() {
        let text = r#"
            source = "/promised/eu-1"
            [[webhook]]
            name = "oms"
            url = "http://127.0.0.1:9/events"
            secret = "s3cret"
            orders = true
            availability = true
            skus = ["SKU-1"]
            mode = "structured"
            retry = { initial_ms = 5, max_attempts = 3 }
            [[nats]]
            name = "bus"
            url = "nats://127.0.0.1:4222"
            orders = true
            [[kafka]]
            name = "log"
            brokers = "127.0.0.1:9092"
            topic = "promised.events"
            availability = true
            mode = "structured"
        "#;
        let sinks = parse(text, Path::new(".")).expect("parses");
        assert_eq!(sinks.source.as_deref(), Some("/promised/eu-1"));
        let oms = &sinks.webhooks[0];
        assert_eq!(oms.secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(oms.feed.mode, Mode::Structured);
        assert_eq!(oms.feed.retry.initial, Duration::from_millis(5));
        assert_eq!(oms.feed.retry.max_attempts, 3);
        let filter = oms.feed.availability.as_ref().expect("availability");
        assert!(filter.skus.contains("SKU-1") && filter.nodes.is_empty());
        let bus = &sinks.nats[0];
        assert_eq!(
            (bus.subject_prefix.as_str(), bus.feed.mode),
            ("promised", Mode::Binary)
        );
        assert!(bus.feed.availability.is_none() && bus.feed.orders);
        let log = &sinks.kafka[0];
        assert_eq!(
            (log.brokers.as_str(), log.topic.as_str(), log.feed.mode),
            ("127.0.0.1:9092", "promised.events", Mode::Structured)
        );
        let names: Vec<&str> = sinks.names().collect();
        assert_eq!(names, ["oms", "bus", "log"]);
    }

    #[test]
    fn bad_sinks_are_refused_with_why() {
        let hook = |extra: &str| format!("[[webhook]]\nurl = \"http://h/\"\n{extra}");
        let kafka =
            |extra: &str| format!("[[kafka]]\nname = \"k\"\norders = true\ntopic = \"t\"\n{extra}");
        for (text, why) in [
            (hook("name = \"a b\"\norders = true"), "sink name"),
            (hook("name = \"a\""), "shows nothing"),
            (
                hook("name = \"a\"\norders = true\n[[webhook]]\nname = \"a\"\nurl = \"http://h/\"\norders = true"),
                "two sinks",
            ),
            (
                "[[webhook]]\nname = \"a\"\nurl = \"https://h/\"\norders = true".to_owned(),
                "http://",
            ),
            (hook("name = \"a\"\norders = true\nstream = \"S\""), "NATS settings"),
            (hook("name = \"a\"\norders = true\ncolour = 1"), "colour"),
            (hook("name = \"a\"\norders = true\ntopic = \"t\""), "Kafka settings"),
            (kafka("url = \"nats://h\""), "not Kafka settings"),
            (kafka("timeout_ms = 5"), "webhook settings"),
            (kafka("brokers = \"k\""), "not host:port"),
            ("[[kafka]]\nname = \"k\"\norders = true\ntopic = \"t\"".to_owned(), "brokers is missing"),
            ("[[kafka]]\nname = \"k\"\norders = true\nbrokers = \"k:1\"".to_owned(), "topic is missing"),
            ("[[nats]]\nname = \"n\"\norders = true".to_owned(), "url is missing"),
        ] {
            let error = format!("{:#}", parse(&text, Path::new(".")).expect_err(why));
            assert!(error.contains(why), "{why}: {error}");
        }
    }
}
