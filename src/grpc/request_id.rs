//! Request ids: every call carries `x-request-id`, the caller's own when it sent a usable one,
//! otherwise one generated here; handlers record it with the changes the call makes, and the
//! answer returns it, so a caller can find its calls in the audit trail. Each call runs in
//! its span ([`trace_context`]), which carries the id.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rand::RngCore;
use tonic::codegen::http::{self, HeaderValue};
use tower::{Layer, Service};
use tracing::Instrument;

use super::trace_context;

/// The header (and gRPC metadata key) of the request id.
pub const HEADER: &str = "x-request-id";
/// Longest request id kept as sent; a longer or unprintable one is replaced.
const MAX_LEN: usize = 128;

/// Adds [`RequestIds`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds(inner)
    }
}

/// Gives every request an id and puts it on the response; runs it in its span.
#[derive(Debug, Clone)]
pub struct RequestIds<S>(S);

impl<S, B, R> Service<http::Request<B>> for RequestIds<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(HEADER)
            .filter(|id| usable(id))
            .cloned()
            .unwrap_or_else(generated);
        request.headers_mut().insert(HEADER, id.clone());
        let span = trace_context::call_span(&request, &id);
        let answered = span
            .in_scope(|| self.0.call(request))
            .instrument(span.clone());
        Box::pin(async move {
            let mut response = answered.await?;
            trace_context::record_status(&span, response.headers());
            response.headers_mut().insert(HEADER, id);
            Ok(response)
        })
    }
}

fn usable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(u8::is_ascii_graphic)
}

/// 128 random bits in hex.
fn generated() -> HeaderValue {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The request id of a call that went through [`RequestIdLayer`].
pub fn of<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(HEADER)
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
