//! The span of each call, a child of the caller's span when its metadata carry a W3C
//! `traceparent`. Installed only when traces are exported, so without them a call pays
//! nothing for it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::request_id;
use crate::telemetry;

/// Adds [`TraceContexts`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContexts<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContexts(inner)
    }
}

/// Runs every call in its span.
#[derive(Debug, Clone)]
pub struct TraceContexts<S>(S);

impl<S, B, R> Service<http::Request<B>> for TraceContexts<S>
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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = call_span(&request);
        let answered = self.0.call(request).instrument(span.clone());
        Box::pin(async move {
            let response = answered.await?;
            span.record("rpc.grpc.status_code", status_code(response.headers()));
            Ok(response)
        })
    }
}

/// The call's span: named by its method, with its request id (set by the request id layer
/// outside this one), its parent the caller's span.
fn call_span<B>(request: &http::Request<B>) -> tracing::Span {
    let method = request.uri().path();
    let request_id = request
        .headers()
        .get(request_id::HEADER)
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default();
    let span = tracing::debug_span!(
        target: telemetry::TARGET,
        "rpc",
        otel.name = method.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method,
        request_id,
        rpc.grpc.status_code = Empty,
    );
    // Only fails without the trace layer, when there is no parent to keep either.
    let _ = span.set_parent(telemetry::extract(request.headers()));
    span
}

/// The call's gRPC status code: an answer that is only a status (every error) carries it in
/// its headers; any other carries it after its messages, and is answered OK when unary.
fn status_code(headers: &http::HeaderMap) -> i64 {
    headers
        .get("grpc-status")
        .and_then(|code| code.to_str().ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
