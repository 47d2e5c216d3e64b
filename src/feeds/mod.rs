//! Supply feeds from NATS JetStream, an edge like gRPC and HTTP: per configured source, a
//! durable pull consumer whose messages each carry one supply batch ([`message`]), each
//! applied through [`App::apply_broker_batch`] with the message's stream sequence.
//!
//! Exactly once across crashes: the stream sequence is journaled with the batch's effects
//! (and kept in snapshots) as the source's broker position, and a message is acknowledged to
//! NATS only once its batch is durable. Whenever a consumer starts (at start-up, after a
//! broker or store failure) it is made again to deliver, in order, from the first message
//! after that position, so a message applied before a crash but never acknowledged is
//! answered as a duplicate, not applied twice, and none is skipped. Within a read, a message
//! applies only if no delivery before it was lost ([`Deliveries`]), so the position never
//! passes a message that was not applied.
//!
//! A poison message (one that can never apply) is published to the feed's dead-letter subject
//! with the reason in its headers and then acknowledged, so it never blocks the feed. A
//! transient refusal (the durable store down) is not poison: the message is left
//! unacknowledged and read again after the feed's retry delay.

pub mod message;

use std::convert::Infallible;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Context};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, Caller};
use crate::auth::Identity;
use crate::config::{FeedConfig, FeedsConfig};
use crate::error::Error;
use crate::metrics::FeedMetrics;
use message::{DeadLetter, Poison};

/// How often the server says an idle pull is alive; two missed end the read, which starts
/// again from the recorded position (a cluster member lost, a connection cut).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one pull request waits for messages before another is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long a delivered message may go unacknowledged before the server offers it again. A
/// consumer is made again after every failure, so this only bounds a stuck delivery.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Connects to NATS (reconnecting whenever the connection drops) and reads every feed of
/// `config` until `stop`.
pub async fn run(app: App, config: FeedsConfig, max_message_bytes: usize, stop: CancellationToken) {
    let connected = async {
        let servers = config.servers()?;
        let options = async_nats::ConnectOptions::new().retry_on_initial_connect();
        anyhow::Ok(options.connect(servers).await?)
    };
    let client = tokio::select! {
        () = stop.cancelled() => return,
        client = connected => client,
    };
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            let error = format!("{error:#}");
            tracing::error!(url = %config.nats_url, error, "cannot connect to NATS: no broker feed is read");
            return;
        }
    };
    let jetstream = jetstream::new(client);
    let feeds = TaskTracker::new();
    for feed in config.feeds {
        tracing::info!(
            source = %feed.source,
            stream = %feed.stream,
            subject = %feed.subject,
            "reading a broker feed"
        );
        let feed = Feed::new(app.clone(), jetstream.clone(), feed, max_message_bytes);
        feeds.spawn(feed.run(stop.clone()));
    }
    feeds.close();
    feeds.wait().await;
}

/// One source's feed: its consumer, and the service its batches go to.
pub struct Feed {
    app: App,
    jetstream: Context,
    config: FeedConfig,
    /// The audit trail's actor for the feed's changes (`system:feed:<source>`).
    identity: Identity,
    metrics: FeedMetrics,
    /// A larger payload is dead-lettered unread.
    max_message_bytes: usize,
}

/// How a message ended when it was not applied.
enum Unapplied {
    /// Never to apply: dead-letter it.
    Poison(Poison, String),
    /// Not now: read it again later.
    Retry(String),
}

impl Feed {
    pub fn new(app: App, jetstream: Context, config: FeedConfig, max_message_bytes: usize) -> Self {
        Self {
            identity: Identity::system(&format!("feed:{}", config.source)),
            metrics: FeedMetrics::new(&config.source),
            app,
            jetstream,
            config,
            max_message_bytes,
        }
    }

    /// Reads until `stop`. A failure of the broker or of the store pauses the feed for its
    /// retry delay; it then reads again from the recorded position.
    pub async fn run(self, stop: CancellationToken) {
        let retry = Duration::from_millis(self.config.retry_delay_ms);
        loop {
            let Err(failed) = tokio::select! {
                () = stop.cancelled() => return,
                read = self.consume() => read,
            };
            tracing::warn!(
                source = %self.config.source,
                error = format!("{failed:#}"),
                "broker feed paused; it resumes after its recorded position"
            );
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// Makes the consumer and handles its messages in order, until one cannot be handled now.
    async fn consume(&self) -> anyhow::Result<Infallible> {
        let consumer = self.consumer().await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.config.fetch_messages)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .context("pulling messages")?;
        let mut deliveries = Deliveries::default();
        while let Some(message) = messages.next().await {
            let message = message.context("reading a message")?;
            deliveries.check(&message)?;
            self.handle(message).await?;
        }
        Err(anyhow!("the consumer's messages ended"))
    }

    /// The durable consumer, made afresh to deliver from the first message not yet handled:
    /// after the recorded position, and after any it acknowledged without applying (dead
    /// letters). Kept as it was, it would offer a message a lost process held only once its
    /// ack wait passed, behind later ones: out of order.
    async fn consumer(&self) -> anyhow::Result<PullConsumer> {
        let FeedConfig {
            source,
            stream,
            durable,
            ..
        } = &self.config;
        let position = self
            .app
            .engine()
            .broker_seq(source)
            .ok_or_else(|| anyhow!("source {source:?} is not in the network"))?;
        let stream = self
            .jetstream
            .get_stream(stream)
            .await
            .with_context(|| format!("stream {stream:?}"))?;
        let acked = match stream.consumer_info(durable).await {
            Ok(info) => {
                stream.delete_consumer(durable).await?;
                info.ack_floor.stream_sequence
            }
            Err(error) if error.kind() == ConsumerInfoErrorKind::NotFound => 0,
            Err(error) => return Err(error).context("consumer info"),
        };
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: self.config.subject.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: position.max(acked) + 1,
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            ..pull::Config::default()
        };
        Ok(stream.create_consumer(config).await?)
    }

    /// Applies or dead-letters one message, then acknowledges it; a transient failure leaves
    /// it unacknowledged and ends this read, so nothing after it is handled first.
    async fn handle(&self, message: jetstream::Message) -> anyhow::Result<()> {
        let info = message.info().map_err(|e| anyhow!("message info: {e}"))?;
        let (stream_seq, pending) = (info.stream_sequence, info.pending);
        match self.apply(&message, stream_seq).await {
            Ok(duplicate) => self.metrics.applied(duplicate),
            Err(Unapplied::Poison(poison, detail)) => {
                self.dead_letter(&message, stream_seq, poison, &detail)
                    .await?;
            }
            Err(Unapplied::Retry(why)) => {
                self.metrics.retried();
                let delay = Duration::from_millis(self.config.retry_delay_ms);
                // Best effort: the consumer is made again before the next read anyway.
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                return Err(anyhow!("message {stream_seq} not applied: {why}"));
            }
        }
        message
            .ack()
            .await
            .map_err(|e| anyhow!("acknowledging message {stream_seq}: {e}"))?;
        self.metrics.handled(stream_seq, pending);
        Ok(())
    }

    /// Applies the message's batch; whether it was a duplicate.
    async fn apply(
        &self,
        message: &jetstream::Message,
        stream_seq: u64,
    ) -> Result<bool, Unapplied> {
        let (headers, payload) = (message.headers.as_ref(), &message.payload);
        let batch = message::decode(headers, payload, self.max_message_bytes)
            .map_err(|(poison, detail)| Unapplied::Poison(poison, detail))?;
        if batch.source_id != self.config.source {
            let detail = format!(
                "the batch is of source {:?}; this feed is {:?}'s",
                batch.source_id, self.config.source
            );
            return Err(Unapplied::Poison(Poison::WrongSource, detail));
        }
        let request_id = format!("{}:{stream_seq}", self.config.stream);
        let caller = Caller::new(self.identity.clone(), request_id);
        match self
            .app
            .apply_broker_batch(&caller, &batch, stream_seq)
            .await
        {
            Ok(outcome) => Ok(outcome.duplicate),
            Err(error) if is_transient(&error) => Err(Unapplied::Retry(error.to_string())),
            Err(error) => Err(Unapplied::Poison(Poison::Invalid, error.to_string())),
        }
    }

    /// Publishes the message, with why, to the dead-letter subject, and waits until a stream
    /// has stored it: a dead letter that cannot be stored fails the read, so the message is
    /// not acknowledged and lost.
    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        stream_seq: u64,
        poison: Poison,
        detail: &str,
    ) -> anyhow::Result<()> {
        let letter = DeadLetter {
            poison,
            detail,
            source: &self.config.source,
            stream: &self.config.stream,
            stream_seq,
        };
        let headers = letter.headers(message.headers.as_ref());
        let subject = self.config.dead_letter_subject.clone();
        self.jetstream
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
            .context("publishing a dead letter")?
            .await
            .context("storing a dead letter")?;
        self.metrics.dead_lettered(poison.as_str());
        tracing::debug!(
            source = %self.config.source,
            stream_seq,
            reason = poison.as_str(),
            detail,
            "dead-lettered"
        );
        Ok(())
    }
}

/// The consumer sequences of one read's deliveries. A consumer made afresh numbers what it
/// delivers 1, 2, 3, ...; a delivery whose number skips ahead follows deliveries this read
/// never received, lost with a connection to a cluster member that died while they were in
/// flight (the pull carries on over the next connection). Applied, it would move the
/// recorded position past the lost messages, and when the server offered them again, after
/// their ack wait, they would be answered as duplicates: never applied. So the read ends
/// there, unapplied, and the consumer is made again from the first message after the
/// position, the lost ones included.
#[derive(Default)]
struct Deliveries {
    /// The highest consumer sequence received; a redelivery may repeat an earlier one.
    last: u64,
}

impl Deliveries {
    fn check(&mut self, message: &jetstream::Message) -> anyhow::Result<()> {
        let info = message.info().map_err(|e| anyhow!("message info: {e}"))?;
        let delivered = info.consumer_sequence;
        if delivered > self.last + 1 {
            return Err(anyhow!(
                "message {} delivered as {delivered} after {}: deliveries between were lost",
                info.stream_sequence,
                self.last
            ));
        }
        self.last = self.last.max(delivered);
        Ok(())
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
