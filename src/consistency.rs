//! Read your writes, by journal position. Every answer carries `x-consistency-token`: for a
//! call that changed something, the journal entry id of its newest record; for any other, the
//! journal's durable position when it answered. A call that sends `x-min-consistency-token`
//! is served only once this service's journal has reached that position, waiting at most the
//! configured time, and is refused with FAILED_PRECONDITION otherwise (a token from another
//! journal, or, once there are replicas, one that has not caught up). Tokens are the same
//! positions watches resume from. Both edges use it: the gRPC one as a layer
//! (`grpc::ConsistencyLayer`), the HTTP one in its call.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use crate::checkpoint::tail::EntryId;
use crate::checkpoint::Durability;
use crate::error::{Error, FieldViolation, Result};

/// The header (and gRPC metadata key) of the position an answer reflects.
pub const TOKEN_HEADER: &str = "x-consistency-token";
/// The header (and gRPC metadata key) of the position a call must not be served before.
pub const MIN_TOKEN_HEADER: &str = "x-min-consistency-token";

tokio::task_local! {
    /// The newest journal position the current call's writes reached.
    static WRITTEN: Cell<Option<EntryId>>;
}

/// Notes that the current call's change is durable at `position`, for its answer's token.
/// Outside a call (the service's own loops) there is no answer to carry it.
pub(crate) fn wrote(position: Option<EntryId>) {
    let _ = WRITTEN.try_with(|written| written.set(written.get().max(position)));
}

/// What both edges need to give and honour tokens.
#[derive(Debug, Clone)]
pub struct Consistency {
    durability: Durability,
    max_wait: Duration,
}

impl Consistency {
    pub fn new(durability: Durability, max_wait: Duration) -> Self {
        Self {
            durability,
            max_wait,
        }
    }

    /// Waits until the journal has reached the call's minimum token, if it sent one; refuses
    /// the call when the token is malformed or not reached in time.
    pub async fn admit(&self, min: Option<&[u8]>) -> Result<()> {
        let Some(min) = min else {
            return Ok(());
        };
        let token = std::str::from_utf8(min)
            .ok()
            .and_then(|text| text.parse::<EntryId>().ok())
            .ok_or_else(|| {
                Error::InvalidArgument(vec![FieldViolation::new(
                    MIN_TOKEN_HEADER,
                    "must be a consistency token this service gave (`<ms>-<seq>`)",
                )])
            })?;
        let at = self.durability.reach(token, self.max_wait).await?;
        if at < token {
            return Err(Error::FailedPrecondition(format!(
                "the journal here is at {at}, before the consistency token {token}, after \
                 waiting {} ms; the token is from another journal, or this service has not \
                 caught up",
                self.max_wait.as_millis()
            )));
        }
        Ok(())
    }

    /// Runs a call, and gives the token its answer carries: where its own writes are in the
    /// journal, or where the journal was when it answered.
    pub async fn answer<F: Future>(&self, call: F) -> (F::Output, Option<EntryId>) {
        let (output, written) = WRITTEN
            .scope(Cell::new(None), async {
                let output = call.await;
                (output, WRITTEN.with(Cell::get))
            })
            .await;
        (output, written.or_else(|| self.durability.position()))
    }
}
