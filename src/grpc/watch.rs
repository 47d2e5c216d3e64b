//! The response stream of a watch: a follower's events, then why it stopped. The follower
//! never waits for the client; the stream holds the watcher's permit, so a watch counts
//! against `--max-watchers` until the client or the service ends it.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio_stream::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::status::status;
use super::Handlers;
use crate::checkpoint::tail::{Ended, EntryId, Following};
use crate::error::{Error, FieldViolation, Result};
use crate::watch::bands::BandToken;

/// A watch's messages of type `P`, made from its follower's events of type `E`.
pub struct Watch<E, P> {
    following: Following<Result<E>>,
    /// Set once the last message is given.
    done: bool,
    convert: Box<dyn Fn(EntryId, E) -> P + Send + Sync>,
    /// The resume token of a position (a band watch's names its anchor too).
    token: Box<dyn Fn(EntryId) -> String + Send + Sync>,
    /// Shutdown ends the watch, so that draining never waits for a watcher.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    _permit: OwnedSemaphorePermit,
}

impl Handlers {
    /// A permit for one more watch, or RESOURCE_EXHAUSTED.
    pub(super) fn watcher(&self) -> std::result::Result<OwnedSemaphorePermit, Status> {
        self.watchers.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} watches are open, the most this service keeps (--max-watchers)",
                self.max_watchers
            ))
        })
    }
}

/// A resume token: empty is `None` (from now).
pub fn resume_token(text: &str) -> Result<Option<EntryId>> {
    token(text, "MS-SEQ")
}

/// A band watch's resume token: empty is `None` (from now).
pub fn band_token(text: &str) -> Result<Option<BandToken>> {
    token(text, "LAST~ANCHOR, a band watch's token")
}

fn token<T: FromStr>(text: &str, form: &str) -> Result<Option<T>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        Error::InvalidArgument(vec![FieldViolation::new(
            "resume_token",
            format!("must be a token a watch gave ({form})"),
        )])
    })
}

/// The status of a watch that could not start: a resume token the journal no longer (or
/// never) reaches carries a PreconditionFailure telling the client to re-read a snapshot.
pub fn refused(error: Error, token: Option<EntryId>, durable: bool) -> Status {
    match (error, token) {
        (Error::FailedPrecondition(message), Some(token)) if durable => {
            let mut details = ErrorDetails::new();
            details.add_precondition_failure_violation(
                "RESUME_TOKEN_EXPIRED",
                format!("resume_token {token}"),
                "read a snapshot (GetAvailability, Reservations/Get), then watch from now",
            );
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        (error, _) => status(error),
    }
}

impl<E, P> Watch<E, P> {
    pub fn new(
        handlers: &Handlers,
        following: Following<Result<E>>,
        permit: OwnedSemaphorePermit,
        convert: impl Fn(EntryId, E) -> P + Send + Sync + 'static,
    ) -> Self {
        Self {
            following,
            done: false,
            convert: Box::new(convert),
            token: Box::new(|last| last.to_string()),
            shutdown: Box::pin(handlers.shutdown.clone().cancelled_owned()),
            _permit: permit,
        }
    }

    /// Names the tokens of its ends with `token` instead of the bare position.
    pub fn with_tokens(
        mut self,
        token: impl Fn(EntryId) -> String + Send + Sync + 'static,
    ) -> Self {
        self.token = Box::new(token);
        self
    }
}

fn end_status(ended: Ended, token: &dyn Fn(EntryId) -> String) -> Status {
    match ended {
        Ended::Behind { last } => {
            let last = token(last);
            let mut details = ErrorDetails::new();
            details.set_error_info(
                "WATCHER_BEHIND",
                "promised",
                [("last_token".to_owned(), last.clone())],
            );
            Status::with_error_details(
                Code::Aborted,
                format!(
                    "the watcher fell behind its buffer (--watch-buffer); everything up to \
                     token {last} was delivered: resume from it"
                ),
                details,
            )
        }
        Ended::Failed(error) => status(error),
    }
}

impl<E, P> Stream for Watch<E, P> {
    type Item = std::result::Result<P, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(Some(Err(Status::unavailable(
                "the service is shutting down; resume from the last token received",
            ))));
        }
        match this.following.events.poll_recv(cx) {
            Poll::Ready(Some((token, Ok(event)))) => {
                Poll::Ready(Some(Ok((this.convert)(token, event))))
            }
            Poll::Ready(Some((_, Err(error)))) => {
                this.done = true;
                Poll::Ready(Some(Err(status(error))))
            }
            Poll::Ready(None) => {
                let ended: &mut oneshot::Receiver<Ended> = &mut this.following.ended;
                match Pin::new(ended).poll(cx) {
                    Poll::Ready(told) => {
                        this.done = true;
                        let token = &this.token;
                        Poll::Ready(told.ok().map(|ended| Err(end_status(ended, token))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
