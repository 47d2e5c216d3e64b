//! The outbound event edge: sinks (webhooks, NATS JetStream, Kafka topics with the `kafka`
//! feature) that are sent the journal's
//! changes as CloudEvents, at least once, in journal order.
//!
//! Each sink follows the journal through [`App::watch_changes`] from its durable cursor (the
//! last journal entry whose every event it delivered, kept in Redis by [`checkpoint`]), sends
//! one event at a time (the next only after the last was delivered or given up on),
//! retries a failed one with backoff ([`retry`]) and, once it has exhausted its retries,
//! keeps it as a dead letter for admins (`Admin/ListDeadLetters`) and goes on. After a
//! restart it resumes from its cursor, so an event may be sent again, with the same id:
//! receivers dedupe by it. A new sink's cursor is the journal's end at its first start.
//!
//! [`checkpoint`]: crate::checkpoint

pub mod cloudevents;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod nats;
pub mod retry;
pub mod settings;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::checkpoint::outbox::DeadLetter;
use crate::checkpoint::tail::{Ended, EntryId};
use crate::checkpoint::Store;
use crate::metrics::SinkMetrics;
use cloudevents::CloudEvent;
use settings::{Feed, Sinks};

/// Events a sink's follower may hold while the sink is busy; past it the follower ends and
/// the sink resumes from its cursor, re-reading the journal.
const BUFFER: usize = 1_024;

/// The wait before a sink that could not follow the journal (Redis away) tries again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Where one sink sends an event.
pub trait Sink: Send + 'static {
    /// Sends one event; an error is why this attempt failed (it will be retried).
    fn send(&mut self, event: &CloudEvent) -> impl Future<Output = Result<(), String>> + Send;
}

/// Gives each new sink its cursor, at the journal's end: called before the service takes
/// changes, so a new sink is sent every change from its first start on.
pub async fn open_cursors(sinks: &Sinks, store: &Store) -> anyhow::Result<()> {
    for name in sinks.names() {
        store.open_sink_cursor(name).await?;
    }
    Ok(())
}

/// Starts every sink of `sinks` on `tasks`, until `stop`.
pub fn start(
    sinks: Sinks,
    app: &App,
    store: &Arc<Store>,
    default_source: &str,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    let source = sinks.source.unwrap_or_else(|| default_source.to_owned());
    for sink in sinks.webhooks {
        let outlet = Outlet::new(sink.feed.clone(), app, store, &source);
        tasks.spawn(outlet.run(webhook::Webhook::new(sink), stop.clone()));
    }
    for sink in sinks.nats {
        let outlet = Outlet::new(sink.feed.clone(), app, store, &source);
        tasks.spawn(outlet.run(nats::Nats::new(sink), stop.clone()));
    }
    #[cfg(feature = "kafka")]
    for sink in sinks.kafka {
        let outlet = Outlet::new(sink.feed.clone(), app, store, &source);
        tasks.spawn(outlet.run(kafka::Kafka::new(sink), stop.clone()));
    }
}

/// What ended one pass of a sink over the journal.
enum Pause {
    /// Shutdown.
    Stopped,
    /// The follower ended or the journal could not be read: resume from the cursor.
    Resume(anyhow::Error),
}

/// One sink's delivery loop, around whatever sends its events.
struct Outlet {
    feed: Feed,
    app: App,
    store: Arc<Store>,
    source: String,
    metrics: SinkMetrics,
}

impl Outlet {
    fn new(feed: Feed, app: &App, store: &Arc<Store>, source: &str) -> Self {
        Self {
            metrics: SinkMetrics::new(&feed.name),
            feed,
            app: app.clone(),
            store: store.clone(),
            source: source.to_owned(),
        }
    }

    /// Delivers until `stop`, resuming from the cursor whenever a pass ends.
    async fn run(self, mut sink: impl Sink, stop: CancellationToken) {
        loop {
            match self.pass(&mut sink, &stop).await {
                Pause::Stopped => return,
                Pause::Resume(error) => {
                    tracing::warn!(sink = %self.feed.name, error = format!("{error:#}"),
                        "sink resumes from its cursor");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RESTART_DELAY) => {}
                    }
                }
            }
        }
    }

    /// Follows the journal from the cursor and delivers each change's events, saving the
    /// cursor after each change.
    async fn pass(&self, sink: &mut impl Sink, stop: &CancellationToken) -> Pause {
        let resume = |error: anyhow::Error| Pause::Resume(error);
        let cursor = match self.store.sink_cursor(&self.feed.name).await {
            Ok(cursor) => cursor,
            Err(error) => return resume(error),
        };
        let following = self
            .app
            .watch_changes(
                self.feed.availability.clone(),
                self.feed.orders,
                cursor,
                BUFFER,
            )
            .await;
        let mut following = match following {
            Ok(following) => following,
            Err(error) => return resume(error.into()),
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return Pause::Stopped,
                next = following.events.recv() => next,
            };
            let (token, changes) = match next {
                Some((token, Ok(changes))) => (token, changes),
                Some((_, Err(error))) => return resume(error.into()),
                None => {
                    return resume(match (&mut following.ended).await {
                        Ok(Ended::Behind { last }) => anyhow!("the sink fell behind after {last}"),
                        Ok(Ended::Failed(error)) => error.into(),
                        Err(_) => anyhow!("the journal's follower stopped"),
                    })
                }
            };
            let network = self.app.engine().network();
            let events = match cloudevents::events(&self.source, token, changes, &network) {
                Ok(events) => events,
                Err(error) => return resume(error),
            };
            for event in &events {
                if self.deliver(sink, event, stop).await.is_err() {
                    return Pause::Stopped;
                }
            }
            if let Err(error) = self.advance(token, &events).await {
                return resume(error);
            }
        }
    }

    /// Records that every event of the change at `token` was delivered (or given up on).
    async fn advance(&self, token: EntryId, events: &[CloudEvent]) -> anyhow::Result<()> {
        self.store.save_sink_cursor(&self.feed.name, token).await?;
        if let Some(last) = events.last() {
            self.metrics.lag(self.app.engine().now_ms() - last.time_ms);
        }
        Ok(())
    }

    /// Sends `event` until it is delivered or its retries are exhausted (then it is a dead
    /// letter); `Err` only at shutdown.
    async fn deliver(
        &self,
        sink: &mut impl Sink,
        event: &CloudEvent,
        stop: &CancellationToken,
    ) -> Result<(), ()> {
        let first = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = tokio::select! {
                () = stop.cancelled() => return Err(()),
                sent = sink.send(event) => match sent {
                    Ok(()) => {
                        self.metrics.delivered();
                        return Ok(());
                    }
                    Err(error) => error,
                },
            };
            let Some(wait) = self.feed.retry.after(attempt, first.elapsed()) else {
                return self.dead_letter(event, attempt, error, stop).await;
            };
            self.metrics.retried();
            tokio::select! {
                () = stop.cancelled() => return Err(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Keeps an event given up on; if Redis cannot take it now, keeps trying (the cursor
    /// does not pass an event that is neither delivered nor kept); `Err` only at shutdown.
    async fn dead_letter(
        &self,
        event: &CloudEvent,
        attempts: u32,
        error: String,
        stop: &CancellationToken,
    ) -> Result<(), ()> {
        tracing::warn!(sink = %self.feed.name, event = %event.id, attempts, error = %error,
            "event given up on: kept as a dead letter");
        let letter = DeadLetter {
            id: String::new(),
            event_id: event.id.clone(),
            kind: event.kind.clone(),
            subject: event.subject.clone(),
            attempts,
            error,
            dead_at_ms: self.app.engine().now_ms(),
            cloud_event: String::from_utf8_lossy(&event.structured()).into_owned(),
        };
        self.metrics.dead_lettered();
        while let Err(error) = self.store.add_dead_letter(&self.feed.name, &letter).await {
            tracing::warn!(sink = %self.feed.name, error = format!("{error:#}"),
                "a dead letter could not be kept; retrying");
            tokio::select! {
                () = stop.cancelled() => return Err(()),
                () = tokio::time::sleep(RESTART_DELAY) => {}
            }
        }
        Ok(())
    }
}
