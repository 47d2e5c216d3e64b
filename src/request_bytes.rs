//! Request bytes in flight, bounded over all connections, so that a flood of large requests
//! cannot take the server's memory. Each call's body is watched as it arrives: at a gRPC
//! message's 5-byte prefix (compression flag, big-endian length) the message's length is
//! taken from one shared budget, before any of the message is read or buffered, and a message
//! that would take the total over the limit ends its call with RESOURCE_EXHAUSTED.
//!
//! A call holds the share of the message it is receiving until it has been answered and its
//! body is gone; a stream gives each message's share back when the next message begins.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::http::Request;
use tonic::codegen::{Bytes, Service};
use tonic::Status;
use tower::Layer;

/// Bytes of gRPC's length prefix: a compression flag and a big-endian `u32` length.
const PREFIX: usize = 5;

/// Bounds the request bytes in flight of every call below it to `max_bytes` in all.
#[derive(Debug, Clone)]
pub struct RequestBytesLayer {
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

impl RequestBytesLayer {
    pub fn new(max_bytes: usize) -> Self {
        let max_bytes = max_bytes.min(Semaphore::MAX_PERMITS);
        Self {
            budget: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        }
    }
}

impl<S> Layer<S> for RequestBytesLayer {
    type Service = RequestBytes<S>;

    fn layer(&self, inner: S) -> RequestBytes<S> {
        RequestBytes {
            inner,
            limit: self.clone(),
        }
    }
}

/// The service below, its calls' bodies metered.
#[derive(Debug, Clone)]
pub struct RequestBytes<S> {
    inner: S,
    limit: RequestBytesLayer,
}

/// A call's share of the budget: the message it is receiving, if any.
type Share = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

impl<S> Service<Request<Body>> for RequestBytes<S>
where
    S: Service<Request<Body>>,
    S::Future: Send + 'static,
    S::Response: Send,
    S::Error: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let share = Share::default();
        let request = request.map(|inner| {
            Body::new(Metered {
                inner,
                limit: self.limit.clone(),
                share: share.clone(),
                framing: Framing::default(),
            })
        });
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            // The body may live on (a stream); the share goes back when both are done.
            drop(share);
            answer
        })
    }
}

/// A call's body, taking each message's length from the budget as its prefix arrives.
struct Metered {
    inner: Body,
    limit: RequestBytesLayer,
    share: Share,
    framing: Framing,
}

impl Metered {
    /// Follows the framing through `data`, taking a share for each message that begins in it.
    fn meter(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if let Some(length) = self.framing.advance(&mut data) {
                self.take(length)?;
            }
        }
        Ok(())
    }

    fn take(&self, length: u32) -> Result<(), Status> {
        let mut share = self.share.lock().unwrap_or_else(PoisonError::into_inner);
        // The message before this one has been read whole: its share goes back first.
        *share = None;
        let permit = self.limit.budget.clone().try_acquire_many_owned(length);
        *share = Some(permit.map_err(|_| {
            Status::resource_exhausted(format!(
                "request messages in flight would exceed {} bytes; retry later",
                self.limit.max_bytes
            ))
        })?);
        Ok(())
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            if let Err(refused) = self.meter(data) {
                return Poll::Ready(Some(Err(refused)));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a body is in gRPC's framing: in a length prefix, or in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `read` bytes of a prefix have arrived.
    Prefix { bytes: [u8; PREFIX], read: usize },
    /// `left` bytes of a message are still to come.
    Message { left: usize },
}

impl Default for Framing {
    fn default() -> Self {
        Framing::Prefix {
            bytes: [0; PREFIX],
            read: 0,
        }
    }
}

impl Framing {
    /// Consumes the front of `data` up to the end of the current prefix or message; returns
    /// the length of a message whose prefix this completes.
    fn advance(&mut self, data: &mut &[u8]) -> Option<u32> {
        match self {
            Framing::Message { left } => {
                let taken = (*left).min(data.len());
                *data = &data[taken..];
                *left -= taken;
                if *left == 0 {
                    *self = Framing::default();
                }
                None
            }
            Framing::Prefix { bytes, read } => {
                let taken = (PREFIX - *read).min(data.len());
                bytes[*read..*read + taken].copy_from_slice(&data[..taken]);
                *data = &data[taken..];
                *read += taken;
                if *read < PREFIX {
                    return None;
                }
                let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                *self = match length {
                    0 => Framing::default(),
                    n => Framing::Message { left: n as usize },
                };
                Some(length)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as gRPC frames it.
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The message lengths `framing` finds in `data` delivered in chunks of `chunk` bytes.
    fn lengths(data: &[u8], chunk: usize) -> (Vec<u32>, Framing) {
        let mut framing = Framing::default();
        let mut found = Vec::new();
        for mut piece in data.chunks(chunk) {
            while !piece.is_empty() {
                found.extend(framing.advance(&mut piece));
            }
        }
        (found, framing)
    }

    #[test]
    fn every_message_length_is_found_however_the_frames_split_it() {
        let data = [framed(b"hello"), framed(b""), framed(&[7; 300])].concat();
        for chunk in [1, 2, 4, 5, 6, 7, 64, data.len()] {
            let (found, end) = lengths(&data, chunk);
            assert_eq!(found, [5, 0, 300], "chunks of {chunk}");
            assert_eq!(end, Framing::default(), "ends between messages");
        }
    }

    #[test]
    fn a_length_is_known_from_its_prefix_before_the_message_arrives() {
        let data = framed(&[1; 1_000]);
        let (found, framing) = lengths(&data[..PREFIX], 3);
        assert_eq!(found, [1_000]);
        assert_eq!(framing, Framing::Message { left: 1_000 });
    }
}
