//! Logs and, when an OTLP endpoint is configured, traces.
//!
//! Logs go to stderr through the log filter. Traces are off by default: without an endpoint
//! no exporter runs, no layer watches the spans of [`TARGET`] (DEBUG spans, which the log
//! filter leaves off unless asked, so their call sites are disabled and cost one cached
//! check), and an edge reads no trace header. With one, those spans (a call, the
//! application's write, the journal commit) are exported over OTLP/gRPC in batches, and an
//! edge makes its call span a child of the caller's span with [`extract`] (gRPC in
//! `grpc::trace_context`; any HTTP edge the same way, over its request's headers).

use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider;
use opentelemetry::Context;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tonic::codegen::http::{HeaderMap, Uri};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// The target of every exported span; only spans of this target are exported.
pub const TARGET: &str = "promised::trace";
/// The service name the exported spans carry.
const SERVICE_NAME: &str = "promised";

/// What must be flushed before the process exits.
#[must_use = "spans still queued are lost unless it is shut down"]
pub struct Telemetry {
    /// `None` when traces are off.
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: logs through `log_filter` (an `EnvFilter` directive,
/// `info` when it does not parse), and traces to `otlp_endpoint` when given. Needs a Tokio
/// runtime, which carries the exporter's connection.
pub fn init(log_filter: &str, otlp_endpoint: Option<&Uri>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = otlp_endpoint.map(tracer_provider).transpose()?;
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(Targets::new().with_target(TARGET, Level::DEBUG))
    });
    tracing_subscriber::registry()
        .with(fmt::layer().with_filter(filter))
        .with(traces)
        .try_init()?;
    Ok(Telemetry { provider })
}

/// Batches spans on the SDK's own thread and sends them over OTLP/gRPC.
fn tracer_provider(endpoint: &Uri) -> anyhow::Result<SdkTracerProvider> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_string())
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(SERVICE_NAME)
                .build(),
        )
        .build())
}

impl Telemetry {
    /// Exports the spans still queued, waiting at most `grace`; a collector that does not
    /// answer in time costs those spans, never the shutdown.
    pub async fn shutdown(self, grace: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK blocks while it flushes; the runtime's other threads carry the connection.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(grace)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "spans not exported at shutdown");
        }
    }
}

/// The caller's span context, from the W3C `traceparent` (and `tracestate`) headers of a
/// request on any edge (gRPC metadata are HTTP/2 headers); an empty context when they are
/// absent or malformed, which makes the call a root.
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Request headers, read by the propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;
    use tonic::codegen::http::HeaderValue;

    use super::*;

    #[test]
    fn the_callers_span_comes_from_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let context = extract(&headers);
        let span = context.span();
        let caller = span.span_context();
        assert!(caller.is_remote());
        assert_eq!(
            caller.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(caller.span_id().to_string(), "b7ad6b7169203331");
    }

    #[test]
    fn without_a_usable_traceparent_a_call_is_a_root() {
        let mut headers = HeaderMap::new();
        assert!(!extract(&headers).span().span_context().is_valid());
        headers.insert("traceparent", HeaderValue::from_static("00-zz-yy-01"));
        assert!(!extract(&headers).span().span_context().is_valid());
    }
}
