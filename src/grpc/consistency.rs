//! The gRPC edge's side of read-your-writes ([`crate::consistency`]): a call waits for its
//! minimum token before it reaches its handler, and its answer's headers carry its token.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http::{self, HeaderValue};
use tower::{Layer, Service};

use super::status::status;
use super::Handlers;
use crate::checkpoint::tail::EntryId;
use crate::consistency::{Consistency, MIN_TOKEN_HEADER, TOKEN_HEADER};

impl Handlers {
    /// Holds a call (of either edge) until the journal reaches the minimum token it sent in
    /// `headers`, if any.
    pub async fn consistent(&self, headers: &http::HeaderMap) -> Result<(), tonic::Status> {
        let min = headers.get(MIN_TOKEN_HEADER).map(HeaderValue::as_bytes);
        self.consistency.admit(min).await.map_err(status)
    }
}

/// Puts an answer's consistency token in its headers.
pub fn token_header(headers: &mut http::HeaderMap, token: Option<EntryId>) {
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
        headers.insert(TOKEN_HEADER, value);
    }
}

/// Adds [`Consistent`] to the gRPC service.
#[derive(Debug, Clone)]
pub struct ConsistencyLayer(pub Consistency);

impl<S> Layer<S> for ConsistencyLayer {
    type Service = Consistent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Consistent {
            inner,
            consistency: self.0.clone(),
        }
    }
}

/// Holds each gRPC call until its minimum token is reached, and puts its answer's token in
/// the response headers.
#[derive(Debug, Clone)]
pub struct Consistent<S> {
    inner: S,
    consistency: Consistency,
}

impl<S, B, R> Service<http::Request<B>> for Consistent<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was made ready serves this call (tower's rule for moving a service
        // into a future).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let consistency = self.consistency.clone();
        Box::pin(async move {
            let min = request
                .headers()
                .get(MIN_TOKEN_HEADER)
                .map(HeaderValue::as_bytes);
            if let Err(error) = consistency.admit(min).await {
                return Ok(status(error).into_http());
            }
            let (answered, token) = consistency.answer(inner.call(request)).await;
            let mut response = answered?;
            token_header(response.headers_mut(), token);
            Ok(response)
        })
    }
}
