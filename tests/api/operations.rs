//! Health, reflection, metrics and shutdown: what operators and tools see.

use promised::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_serving_for_every_service() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in [
        "",
        "promised.v1.Admin",
        "promised.v1.Supply",
        "promised.v1.Availability",
    ] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let status = health
            .check(request)
            .await
            .expect("health")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_api() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "promised.v1.Admin",
        "promised.v1.Supply",
        "promised.v1.Availability",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
}

/// grpcurl before 1.9 and many deployed tools only speak the v1alpha protocol.
#[tokio::test]
async fn reflection_answers_the_v1alpha_protocol_too() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let app = spawn_app().await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "promised.v1.Supply".into(),
        )),
    };
    let reply = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection is served")
        .into_inner()
        .message()
        .await
        .expect("reply")
        .expect("one reply");
    let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

pub async fn scrape(app: &TestApp) -> String {
    scrape_at(app.metrics_addr).await
}

/// The metrics text served at `addr`.
pub async fn scrape_at(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    response
}

#[tokio::test]
async fn metrics_endpoint_exports_latency_ingest_and_freshness() {
    let mut app = spawn_app().await;
    app.apply(
        "WMS-EAST",
        1,
        vec![
            set_on_hand("SKU-1", "DC-EAST", 1, START_MS),
            set_on_hand("SKU-1", "NOWHERE", 1, START_MS),
        ],
    )
    .await;
    app.item("SKU-1").await;
    promised::server::observe_once(&app.engine);
    let body = scrape(&app).await;
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for expected in [
        "promised_rpc_duration_seconds_bucket{method=\"GetAvailability\"",
        "promised_ingest_updates_total{outcome=\"applied\"}",
        "promised_ingest_updates_total{outcome=\"rejected\",reason=\"unknown_node\"}",
        "promised_ingest_apply_lag_seconds",
        "promised_source_age_seconds{source=\"WMS-EAST\"}",
        "promised_positions",
        "promised_durability_enabled",
        "promised_process_resident_memory_bytes",
    ] {
        assert!(body.contains(expected), "{expected} missing from\n{body}");
    }
    assert!(!body.contains("SKU-1"), "no SKU ids as labels");
}

#[tokio::test]
async fn shutdown_ends_open_feed_streams_and_completes() {
    let app = spawn_app().await;
    let (batches, outbound) = mpsc::channel::<pb::SupplyBatch>(1);
    let mut supply = app.supply.clone();
    let mut acks = supply
        .stream_updates(ReceiverStream::new(outbound))
        .await
        .expect("stream opens")
        .into_inner();
    batches
        .send(batch("WMS-EAST", 0, vec![]))
        .await
        .expect("heartbeat");
    acks.message().await.expect("ack").expect("open");
    tokio::time::timeout(std::time::Duration::from_secs(10), app.shutdown())
        .await
        .expect("shutdown completes within the grace period");
    let ended = acks.message().await;
    assert!(
        matches!(&ended, Err(status) if status.code() == Code::Unavailable)
            || matches!(ended, Ok(None)),
        "{ended:?}"
    );
}
