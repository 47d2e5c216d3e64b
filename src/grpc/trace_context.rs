//! The span of each call, a child of the caller's span when its metadata carry a W3C
//! `traceparent`. The request id layer runs every call in it. A DEBUG span of the trace
//! target: without traces its call site is disabled, so a call reads no header for it and
//! pays one cached check.

use tonic::codegen::http::{self, HeaderValue};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry;

/// The call's span: named by its method, with its request id, its parent the caller's span.
pub(super) fn call_span<B>(request: &http::Request<B>, request_id: &HeaderValue) -> Span {
    let method = request.uri().path();
    let span = tracing::debug_span!(
        target: telemetry::TARGET,
        "rpc",
        otel.name = method.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method,
        request_id = Empty,
        rpc.grpc.status_code = Empty,
    );
    if !span.is_disabled() {
        // The request id layer keeps only printable ids.
        span.record("request_id", request_id.to_str().unwrap_or_default());
        // Fails only when the span is logged without the trace layer: no trace to join then.
        let _ = span.set_parent(telemetry::extract(request.headers()));
    }
    span
}

/// Records the call's gRPC status code: an answer that is only a status (every error)
/// carries it in its headers; any other carries it after its messages, and a unary one is
/// then OK.
pub(super) fn record_status(span: &Span, headers: &http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let code: i64 = headers
        .get("grpc-status")
        .and_then(|code| code.to_str().ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    span.record("rpc.grpc.status_code", code);
}
