//! `promised.v1.Supply`: feed streams, single batches and the rejection log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::auth::check_feed;
use super::convert::{ack, opened, part_outcome, rejections, sync_ack};
use super::pb::{self, supply_server::Supply};
use super::status::status;
use super::{caller, Handlers};
use crate::app::Caller;
use crate::domain::SupplyBatch;
use crate::metrics::Rpc;
use crate::sync::{SyncBegin, SyncCommit, SyncPart};

/// Acks a stream may have in flight before the server stops reading the feed: the bound that
/// turns a slow ack reader into backpressure on the feed instead of memory growth.
const ACK_BUFFER: usize = 8;

/// Rejections listed when the request does not say how many.
const DEFAULT_REJECTION_LIMIT: usize = 100;

#[derive(Debug, Clone)]
pub struct SupplyService(pub Handlers);

impl SupplyService {
    /// Applies a batch and answers once it is durable.
    async fn apply(
        &self,
        caller: &Caller,
        batch: pb::SupplyBatch,
        rpc: Rpc,
    ) -> Result<pb::SupplyAck, Status> {
        let _timer = self.0.rpc.time(rpc);
        let batch = SupplyBatch::from(batch);
        let outcome = self
            .0
            .app
            .apply_batch(caller, &batch)
            .await
            .map_err(status)?;
        Ok(ack(outcome))
    }

    /// Reads batches one at a time, answering each before reading the next; ends at the first
    /// batch-level error (a batch of a source `caller` may not feed is one), when the feed
    /// closes, when it sends nothing (not even a heartbeat) for the idle limit, which frees its
    /// place for a live feed, when a newer stream of the same source takes over (a feed that
    /// reconnects must not be locked out by its own half-dead stream), or at shutdown.
    async fn pump(
        self,
        caller: Caller,
        mut batches: Streaming<pb::SupplyBatch>,
        acks: mpsc::Sender<Result<pb::SupplyAck, Status>>,
    ) {
        let stream = self.0.feed_owners.open(&self.0.shutdown);
        loop {
            let next = self.next_batch(&mut batches, &stream).await;
            let next = next.and_then(|batch| {
                batch
                    .map(|batch| check_feed(&caller, &batch.source_id).map(|()| batch))
                    .transpose()
            });
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(status) => {
                    let _ = acks.send(Err(status)).await;
                    break;
                }
            };
            let source_id = batch.source_id.clone();
            let reply = self.apply(&caller, batch, Rpc::StreamUpdates).await;
            let failed = reply.is_err();
            if !failed {
                self.0.feed_owners.claim(&source_id, &stream);
            }
            if acks.send(reply).await.is_err() || failed {
                break;
            }
        }
        self.0.feed_owners.close(&stream);
    }

    /// The next batch, `None` when the feed closed, or the status that ends the stream.
    async fn next_batch(
        &self,
        batches: &mut Streaming<pb::SupplyBatch>,
        stream: &FeedStream,
    ) -> Result<Option<pb::SupplyBatch>, Status> {
        let idle = self.0.feed_idle;
        tokio::select! {
            _ = stream.ended.cancelled() => Err(if self.0.shutdown.is_cancelled() {
                Status::unavailable("server is shutting down")
            } else {
                Status::aborted("a newer stream of this source took over")
            }),
            next = tokio::time::timeout(idle, batches.message()) => match next {
                Ok(Ok(batch)) => Ok(batch),
                // A frame that does not decode ends the stream with the reason, not OK.
                Ok(Err(status)) => {
                    tracing::debug!(%status, "feed stream ended with an error");
                    let unreadable = format!("unreadable batch: {}", status.message());
                    Err(Status::invalid_argument(unreadable))
                }
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no batch for {idle:?}; send heartbeats or reopen"
                ))),
            },
        }
    }
}

/// One open feed stream: ended when a newer stream of a source it feeds takes over, or at
/// shutdown.
#[derive(Debug)]
pub struct FeedStream {
    id: u64,
    ended: CancellationToken,
}

/// Which open stream feeds each source, so that a source's newest stream ends its older one.
/// Holds at most one entry per known source: a stream claims a source only once a batch of
/// it was applied.
#[derive(Debug, Default)]
pub struct FeedOwners {
    next_id: AtomicU64,
    owners: Mutex<HashMap<String, (u64, CancellationToken)>>,
}

impl FeedOwners {
    fn open(&self, shutdown: &CancellationToken) -> FeedStream {
        FeedStream {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ended: shutdown.child_token(),
        }
    }

    /// Makes `stream` the one feeding `source_id`, ending the stream that fed it before.
    fn claim(&self, source_id: &str, stream: &FeedStream) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if owners
            .get(source_id)
            .is_some_and(|(id, _)| *id == stream.id)
        {
            return;
        }
        let mine = (stream.id, stream.ended.clone());
        if let Some((_, older)) = owners.insert(source_id.to_owned(), mine) {
            older.cancel();
        }
    }

    /// Forgets a stream that ended.
    fn close(&self, stream: &FeedStream) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, (id, _)| *id != stream.id);
    }
}

#[tonic::async_trait]
impl Supply for SupplyService {
    type StreamUpdatesStream = ReceiverStream<Result<pb::SupplyAck, Status>>;

    async fn stream_updates(
        &self,
        request: Request<Streaming<pb::SupplyBatch>>,
    ) -> Result<Response<Self::StreamUpdatesStream>, Status> {
        let caller = caller(&request)?;
        let permit = self
            .0
            .feed_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("too many concurrent feed streams"))?;
        let (acks, replies) = mpsc::channel(ACK_BUFFER);
        let service = self.clone();
        let batches = request.into_inner();
        tokio::spawn(async move {
            service.pump(caller, batches, acks).await;
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(replies)))
    }

    #[tracing::instrument(skip_all)]
    async fn apply_batch(
        &self,
        request: Request<pb::SupplyBatch>,
    ) -> Result<Response<pb::SupplyAck>, Status> {
        let caller = caller(&request)?;
        let batch = request.into_inner();
        check_feed(&caller, &batch.source_id)?;
        self.apply(&caller, batch, Rpc::ApplyBatch)
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn list_rejections(
        &self,
        request: Request<pb::ListRejectionsRequest>,
    ) -> Result<Response<pb::ListRejectionsResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::ListRejections);
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_REJECTION_LIMIT,
            n => n as usize,
        };
        let source = Some(request.source_id.as_str()).filter(|id| !id.is_empty());
        let (logged, total) = self.0.app.rejections(source, limit);
        Ok(Response::new(rejections(logged, total)))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_sync(
        &self,
        request: Request<pb::BeginSyncRequest>,
    ) -> Result<Response<pb::BeginSyncResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::BeginSync);
        let caller = caller(&request)?;
        let begin = SyncBegin::from(request.into_inner());
        check_feed(&caller, &begin.source_id)?;
        let opened_sync = self.0.app.begin_sync(&begin).map_err(status)?;
        Ok(Response::new(opened(opened_sync)))
    }

    #[tracing::instrument(skip_all)]
    async fn sync_part(
        &self,
        request: Request<pb::SyncPartRequest>,
    ) -> Result<Response<pb::SyncPartResponse>, Status> {
        let _timer = self.0.rpc.time(Rpc::SyncPart);
        let caller = caller(&request)?;
        let part = SyncPart::from(request.into_inner());
        check_feed(&caller, &part.source_id)?;
        let outcome = self.0.app.sync_part(&part).map_err(status)?;
        Ok(Response::new(part_outcome(outcome)))
    }

    #[tracing::instrument(skip_all)]
    async fn commit_sync(
        &self,
        request: Request<pb::CommitSyncRequest>,
    ) -> Result<Response<pb::SyncAck>, Status> {
        let _timer = self.0.rpc.time(Rpc::CommitSync);
        let caller = caller(&request)?;
        let commit = SyncCommit::from(request.into_inner());
        check_feed(&caller, &commit.source_id)?;
        let outcome = self.0.app.commit_sync(&caller, &commit).await;
        Ok(Response::new(sync_ack(outcome.map_err(status)?)))
    }
}
