//! Supply feeds from brokers, an edge like gRPC and HTTP: per configured source, one consumer
//! whose messages each carry one supply batch ([`message`]), each applied through
//! [`App::apply_broker_batch`] with the message's broker position. NATS JetStream feeds are
//! [`nats`]'s; Kafka-protocol feeds, with the `kafka` feature, are `kafka`'s.
//!
//! Exactly once across crashes, for either broker: the message's position (a stream
//! sequence, or a Kafka offset + 1) is journaled with the batch's effects (and kept in
//! snapshots) as the source's broker position, and a message is acknowledged to the broker
//! only once its batch is durable. Whenever a consumer starts (at start-up, after a broker or
//! store failure) it reads, in order, from the first message after that position, so a
//! message applied before a crash but never acknowledged is answered as a duplicate, not
//! applied twice, and none is skipped.
//!
//! A poison message (one that can never apply) is published to the feed's dead-letter
//! subject or topic with the reason in its headers and then acknowledged, so it never blocks
//! the feed. A transient refusal (the durable store down) is not poison: the message is read
//! again after the feed's retry delay.

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod message;
pub mod nats;

use anyhow::anyhow;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, Caller};
use crate::auth::Identity;
use crate::config::FeedsConfig;
use crate::error::Error;
use crate::metrics::FeedMetrics;
use message::Poison;

/// Reads every feed of `config`, NATS and Kafka, until `stop`.
pub async fn run(app: App, config: FeedsConfig, max_message_bytes: usize, stop: CancellationToken) {
    let feeds = TaskTracker::new();
    #[cfg(feature = "kafka")]
    if !config.kafka_feeds.is_empty() {
        let kafka = kafka::run(app.clone(), config.clone(), max_message_bytes, stop.clone());
        feeds.spawn(kafka);
    }
    if !config.feeds.is_empty() {
        feeds.spawn(nats::run(app, config, max_message_bytes, stop));
    }
    feeds.close();
    feeds.wait().await;
}

/// What every broker's feed of one source shares: the service its batches go to, the
/// audit trail's actor, its metrics, and how a message's batch applies or why it does not.
pub struct Intake {
    app: App,
    source: String,
    /// The audit trail's actor for the feed's changes (`system:feed:<source>`).
    identity: Identity,
    pub metrics: FeedMetrics,
    /// A larger payload is dead-lettered unread.
    max_message_bytes: usize,
}

/// How a message ended when it was not applied.
pub enum Unapplied {
    /// Never to apply: dead-letter it.
    Poison(Poison, String),
    /// Not now: read it again later.
    Retry(String),
}

impl Intake {
    pub fn new(app: App, source: &str, max_message_bytes: usize) -> Self {
        Self {
            identity: Identity::system(&format!("feed:{source}")),
            metrics: FeedMetrics::new(source),
            source: source.to_owned(),
            app,
            max_message_bytes,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The source's recorded broker position: the last message position applied.
    pub fn position(&self) -> anyhow::Result<u64> {
        let source = &self.source;
        self.app
            .engine()
            .broker_seq(source)
            .ok_or_else(|| anyhow!("source {source:?} is not in the network"))
    }

    /// Applies the batch of the message at broker position `position` (its `payload`, and
    /// the value of its content-type header), counting it; whether it was a duplicate.
    /// `request_id` names the message in the audit trail.
    pub async fn apply(
        &self,
        content_type: Option<&str>,
        payload: &[u8],
        position: u64,
        request_id: String,
    ) -> Result<bool, Unapplied> {
        let batch = message::decode(content_type, payload, self.max_message_bytes)
            .map_err(|(poison, detail)| Unapplied::Poison(poison, detail))?;
        if batch.source_id != self.source {
            let detail = format!(
                "the batch is of source {:?}; this feed is {:?}'s",
                batch.source_id, self.source
            );
            return Err(Unapplied::Poison(Poison::WrongSource, detail));
        }
        let caller = Caller::new(self.identity.clone(), request_id);
        match self.app.apply_broker_batch(&caller, &batch, position).await {
            Ok(outcome) => {
                self.metrics.applied(outcome.duplicate);
                Ok(outcome.duplicate)
            }
            Err(error) if is_transient(&error) => {
                self.metrics.retried();
                Err(Unapplied::Retry(error.to_string()))
            }
            Err(error) => Err(Unapplied::Poison(Poison::Invalid, error.to_string())),
        }
    }

    /// Counts and logs a message its broker has stored as a dead letter.
    pub fn dead_lettered(&self, position: u64, poison: Poison, detail: &str) {
        self.metrics.dead_lettered(poison.as_str());
        tracing::debug!(
            source = %self.source,
            position,
            reason = poison.as_str(),
            detail,
            "dead-lettered"
        );
    }
}

/// Logs why a feed paused and waits out its retry delay: whether the feed should read again
/// (false once `stop` came first).
pub async fn paused(
    stop: &CancellationToken,
    source: &str,
    failed: &anyhow::Error,
    retry: std::time::Duration,
) -> bool {
    tracing::warn!(
        source,
        error = format!("{failed:#}"),
        "broker feed paused; it resumes after its recorded position"
    );
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(retry) => true,
    }
}

/// Whether a refusal may pass if the message is read again later: the store down or busy,
/// the source not configured yet, or the feed not in a state to take it now. Anything else
/// refuses the batch itself.
fn is_transient(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable(_)
            | Error::ResourceExhausted(_)
            | Error::DeadlineExceeded
            | Error::FailedPrecondition(_)
            | Error::NotFound(_)
    )
}
