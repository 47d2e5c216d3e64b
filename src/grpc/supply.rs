//! `promised.v1.Supply`: feed streams, single batches and the rejection log.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{ack, rejections};
use super::pb::{self, supply_server::Supply};
use super::status::status;
use super::Handlers;
use crate::domain::SupplyBatch;
use crate::metrics::Rpc;

/// Acks a stream may have in flight before the server stops reading the feed: the bound that
/// turns a slow ack reader into backpressure on the feed instead of memory growth.
const ACK_BUFFER: usize = 8;

/// Rejections listed when the request does not say how many.
const DEFAULT_REJECTION_LIMIT: usize = 100;

#[derive(Debug, Clone)]
pub struct SupplyService(pub Handlers);

impl SupplyService {
    /// Applies a batch and answers once it is durable.
    async fn apply(&self, batch: pb::SupplyBatch, rpc: Rpc) -> Result<pb::SupplyAck, Status> {
        let _timer = self.0.rpc.time(rpc);
        let batch = SupplyBatch::from(batch);
        let outcome = self.0.app.apply_batch(&batch).await.map_err(status)?;
        Ok(ack(outcome))
    }

    /// Reads batches one at a time, answering each before reading the next; ends at the first
    /// batch-level error, when the feed closes, when it sends nothing (not even a heartbeat)
    /// for the idle limit, which frees its place for a live feed, or at shutdown.
    async fn pump(
        self,
        mut batches: Streaming<pb::SupplyBatch>,
        acks: mpsc::Sender<Result<pb::SupplyAck, Status>>,
    ) {
        loop {
            let next = tokio::select! {
                _ = self.0.shutdown.cancelled() => {
                    let _ = acks.send(Err(Status::unavailable("server is shutting down"))).await;
                    return;
                }
                next = tokio::time::timeout(self.0.feed_idle, batches.message()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        let idle = format!("no batch for {:?}; send heartbeats or reopen", self.0.feed_idle);
                        let _ = acks.send(Err(Status::deadline_exceeded(idle))).await;
                        return;
                    }
                },
            };
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err(status) => {
                    // A frame that does not decode ends the stream with the reason, not OK.
                    tracing::debug!(%status, "feed stream ended with an error");
                    let refused =
                        Status::invalid_argument(format!("unreadable batch: {}", status.message()));
                    let _ = acks.send(Err(refused)).await;
                    return;
                }
            };
            let reply = self.apply(batch, Rpc::StreamUpdates).await;
            let failed = reply.is_err();
            if acks.send(reply).await.is_err() || failed {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl Supply for SupplyService {
    type StreamUpdatesStream = ReceiverStream<Result<pb::SupplyAck, Status>>;

    async fn stream_updates(
        &self,
        request: Request<Streaming<pb::SupplyBatch>>,
    ) -> Result<Response<Self::StreamUpdatesStream>, Status> {
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
            service.pump(batches, acks).await;
            drop(permit);
        });
        Ok(Response::new(ReceiverStream::new(replies)))
    }

    #[tracing::instrument(skip_all)]
    async fn apply_batch(
        &self,
        request: Request<pb::SupplyBatch>,
    ) -> Result<Response<pb::SupplyAck>, Status> {
        self.apply(request.into_inner(), Rpc::ApplyBatch)
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
}
