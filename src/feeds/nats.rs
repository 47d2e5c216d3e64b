//! NATS JetStream feeds: per source, a durable pull consumer, made afresh whenever the feed
//! (re)starts to deliver from the first message after the recorded position (the message's
//! stream sequence), and acknowledged once the message's batch is durable or its dead letter
//! stored. A transient refusal leaves the message unacknowledged (nak'ed with the retry
//! delay), and the feed reads again from the recorded position after that delay. Within a read,
//! a message applies only if no delivery before it was lost ([`Deliveries`]), so the position
//! never passes a message that was not applied.

use std::convert::Infallible;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Context};
use async_nats::{Event, HeaderMap};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::{DeadLetter, Poison, CONTENT_TYPE};
use super::{Intake, Unapplied};
use crate::app::App;
use crate::config::{FeedConfig, FeedsConfig};

/// How often the server says an idle pull is alive; two missed end the read, which starts
/// again from the recorded position (a cluster member lost, a connection cut).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one pull request waits for messages before another is sent.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long a delivered message may go unacknowledged before the server offers it again. A
/// consumer is made again after every failure, so this only bounds a stuck delivery.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Dead letters' headers, besides [`DeadLetter::headers`]: where the message was read.
pub const STREAM_HEADER: &str = "Promised-Stream";
pub const STREAM_SEQ_HEADER: &str = "Promised-Stream-Sequence";
/// JetStream's de-duplication id: a message dead-lettered again (after a crash between the
/// dead letter and its ack) is stored once.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Connects to NATS (reconnecting whenever the connection drops) and reads every feed of
/// `config` until `stop`.
pub async fn run(app: App, config: FeedsConfig, max_message_bytes: usize, stop: CancellationToken) {
    let (dropped, drops) = watch::channel(0_u64);
    let connected = async {
        let servers = config.nats_servers()?;
        let options = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .event_callback(move |event| {
                if matches!(event, Event::Disconnected) {
                    dropped.send_modify(|drops| *drops += 1);
                }
                async {}
            });
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
            let url = config.nats_url.as_deref().unwrap_or_default();
            tracing::error!(url, error, "cannot connect to NATS: no NATS feed is read");
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
        let feed = Feed {
            intake: Intake::new(app.clone(), &feed.source, max_message_bytes),
            jetstream: jetstream.clone(),
            config: feed,
            drops: drops.clone(),
        };
        feeds.spawn(feed.run(stop.clone()));
    }
    feeds.close();
    feeds.wait().await;
}

/// One source's feed: its consumer, and the service its batches go to.
struct Feed {
    intake: Intake,
    jetstream: Context,
    config: FeedConfig,
    /// Counts the client's lost connections.
    drops: watch::Receiver<u64>,
}

impl Feed {
    /// Reads until `stop`. A failure of the broker or of the store pauses the feed for its
    /// retry delay; it then reads again from the recorded position.
    async fn run(self, stop: CancellationToken) {
        let retry = Duration::from_millis(self.config.retry_delay_ms);
        loop {
            let Err(failed) = tokio::select! {
                () = stop.cancelled() => return,
                read = self.consume() => read,
            };
            if !super::paused(&stop, &self.config.source, &failed, retry).await {
                return;
            }
        }
    }

    /// Makes the consumer and handles its messages in order, until one cannot be handled now
    /// or the connection drops: deliveries in flight are lost with it, and the server would
    /// offer them again only after their ack wait, so the read starts again from the position.
    async fn consume(&self) -> anyhow::Result<Infallible> {
        let mut drops = self.drops.clone();
        drops.mark_unchanged();
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
        loop {
            let message = tokio::select! {
                biased;
                _ = drops.changed() => {
                    return Err(anyhow!("the connection to NATS dropped with deliveries in flight"));
                }
                message = messages.next() => message,
            };
            let Some(message) = message else {
                return Err(anyhow!("the consumer's messages ended"));
            };
            let message = message.context("reading a message")?;
            deliveries.check(&message)?;
            self.handle(message).await?;
        }
    }

    /// The durable consumer, made afresh to deliver from the first message not yet handled:
    /// after the recorded position, and after any it acknowledged without applying (dead
    /// letters). Kept as it was, it would offer a message a lost process held only once its
    /// ack wait passed, behind later ones: out of order.
    async fn consumer(&self) -> anyhow::Result<PullConsumer> {
        let FeedConfig {
            stream, durable, ..
        } = &self.config;
        let position = self.intake.position()?;
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
        let content_type = content_type(&message);
        let request_id = format!("{}:{stream_seq}", self.config.stream);
        let applied = self
            .intake
            .apply(content_type, &message.payload, stream_seq, request_id)
            .await;
        match applied {
            Ok(_) => {}
            Err(Unapplied::Poison(poison, detail)) => {
                self.dead_letter(&message, stream_seq, poison, &detail)
                    .await?;
            }
            Err(Unapplied::Retry(why)) => {
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
        self.intake.metrics.handled(stream_seq, pending);
        Ok(())
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
            content_type: content_type(message),
        };
        let mut headers = HeaderMap::new();
        for (name, value) in letter.headers() {
            headers.insert(name, value);
        }
        let stream = &self.config.stream;
        headers.insert(STREAM_HEADER, stream.as_str());
        headers.insert(STREAM_SEQ_HEADER, stream_seq.to_string());
        headers.insert(MSG_ID_HEADER, format!("{stream}:{stream_seq}"));
        let subject = self.config.dead_letter_subject.clone();
        self.jetstream
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
            .context("publishing a dead letter")?
            .await
            .context("storing a dead letter")?;
        self.intake.dead_lettered(stream_seq, poison, detail);
        Ok(())
    }
}

/// The message's content type, if its headers name one.
fn content_type(message: &jetstream::Message) -> Option<&str> {
    let headers = message.headers.as_ref()?;
    headers.get(CONTENT_TYPE).map(|value| value.as_str())
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
