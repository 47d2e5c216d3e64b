//! Traces: the real binary exports its spans over OTLP to a receiver in the test, and a call's
//! spans hang under the caller's span.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};

use crate::binary::Binary;
use crate::redis::RedisServer;

/// The caller's trace and span, as its `traceparent` names them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// An OTLP trace collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves OTLP/gRPC on a free loopback port; answers its URL.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .add_service(TraceServiceServer::new(self.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        format!("http://{addr}")
    }

    /// The first span received named `name` in the caller's trace.
    async fn span(&self, name: &str) -> Span {
        self.wait_for(name, |span| {
            span.name == name && hex(&span.trace_id) == TRACE_ID
        })
        .await
    }

    /// The journal commit span that links to the span `span_id`.
    async fn commit_of(&self, span_id: &[u8]) -> Span {
        self.wait_for("journal.commit linked to the write", |span| {
            span.name == "journal.commit" && span.links.iter().any(|link| link.span_id == span_id)
        })
        .await
    }

    /// The first span received that `matches`, polled for up to a deadline.
    async fn wait_for(&self, what: &str, matches: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.0.lock().unwrap().iter().find(|s| matches(s)).cloned();
            if let Some(span) = found {
                return span;
            }
            assert!(Instant::now() < deadline, "no span {what} received");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the span's attribute `key`.
fn attribute(span: &Span, key: &str) -> Value {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
        .unwrap_or_else(|| panic!("span {} has no attribute {key}", span.name))
}

/// `message` with the caller's `traceparent` and the request id `request_id`.
fn traced<T>(message: T, request_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    let metadata = request.metadata_mut();
    metadata.insert("traceparent", traceparent.parse().unwrap());
    metadata.insert("x-request-id", request_id.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_spans_hang_under_the_callers_span() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let redis = RedisServer::start();
    let service = Binary::start(&["--redis-url", &redis.url(), "--otlp-endpoint", &endpoint]).await;
    let groups = pb::UpsertGroupsRequest {
        groups: vec![pb::NodeGroup {
            id: "EAST".into(),
            description: String::new(),
        }],
    };
    AdminClient::new(service.channel.clone())
        .upsert_groups(traced(groups, "traced-call"))
        .await
        .expect("groups");
    let missing = pb::GetReservationRequest {
        reservation_id: "missing".into(),
    };
    let refused = ReservationsClient::new(service.channel.clone())
        .get(traced(missing, "refused-call"))
        .await
        .expect_err("no such reservation");
    assert_eq!(refused.code(), Code::NotFound);
    // A graceful stop exports the spans still batched.
    let status = service.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_call_tree(&receiver).await;
}

/// The traced calls' spans: the call under the caller's span with its request id and code,
/// the write under the call, the journal commit linked to the write.
async fn assert_call_tree(receiver: &Receiver) {
    let rpc = receiver.span("promised.v1.Admin/UpsertGroups").await;
    assert_eq!(
        hex(&rpc.parent_span_id),
        CALLER_SPAN_ID,
        "the caller's child"
    );
    let request_id = attribute(&rpc, "request_id");
    assert_eq!(request_id, Value::StringValue("traced-call".into()));
    assert_eq!(attribute(&rpc, "rpc.grpc.status_code"), Value::IntValue(0));

    let write = receiver.span("upsert_groups").await;
    assert_eq!(write.parent_span_id, rpc.span_id, "the call's child");
    let action = attribute(&write, "action");
    assert_eq!(action, Value::StringValue("upsert_groups".into()));
    let caller = attribute(&write, "caller");
    assert_eq!(caller, Value::StringValue("anonymous".into()));
    assert_commit(&receiver.commit_of(&write.span_id).await);

    let get = receiver.span("promised.v1.Reservations/Get").await;
    let code = attribute(&get, "rpc.grpc.status_code");
    assert_eq!(code, Value::IntValue(Code::NotFound as i64));
}

/// A journal commit that Redis took, with its group's records and bytes.
fn assert_commit(commit: &Span) {
    let Value::IntValue(records) = attribute(commit, "records") else {
        panic!("records is a count");
    };
    let Value::IntValue(bytes) = attribute(commit, "bytes") else {
        panic!("bytes is a count");
    };
    assert!(
        records >= 1 && bytes > 0,
        "{records} records, {bytes} bytes"
    );
    assert_eq!(attribute(commit, "ok"), Value::BoolValue(true));
}
