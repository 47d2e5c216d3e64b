//! The gRPC router: every `promised.v1` service, health checking and reflection, with the
//! health statuses named from the generated services.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::pb::admin_server::AdminServer;
use super::pb::availability_server::AvailabilityServer;
use super::pb::promising_server::PromisingServer;
use super::pb::reservations_server::ReservationsServer;
use super::pb::routing_server::RoutingServer;
use super::pb::supply_server::SupplyServer;
use super::{
    pb, AdminService, AvailabilityService, Handlers, PromisingService, ReservationService,
    RoutingService, SupplyService,
};

/// Health names of the services that report NOT_SERVING while mutations are refused.
const MUTATING_SERVICES: [&str; 2] = [
    <SupplyServer<SupplyService> as NamedService>::NAME,
    <ReservationsServer<ReservationService> as NamedService>::NAME,
];

/// Health names of every service, and `""` for the server as a whole.
const SERVICE_NAMES: [&str; 7] = [
    "",
    <AdminServer<AdminService> as NamedService>::NAME,
    <AvailabilityServer<AvailabilityService> as NamedService>::NAME,
    <PromisingServer<PromisingService> as NamedService>::NAME,
    <RoutingServer<RoutingService> as NamedService>::NAME,
    MUTATING_SERVICES[0],
    MUTATING_SERVICES[1],
];

/// The routes of every service, and the health reporter, with every service SERVING. The
/// query services decode messages of at most `max_query_message_bytes`, the others (supply
/// batches, network changes, batches of routes) of at most `max_message_bytes`.
pub async fn routes(
    handlers: Handlers,
    max_message_bytes: usize,
    max_query_message_bytes: usize,
) -> anyhow::Result<(Routes, HealthReporter)> {
    let (health, health_service) = tonic_health::server::health_reporter();
    set_all(&health, ServingStatus::Serving).await;
    // Both reflection versions: many deployed tools (grpcurl before 1.9, older IDE plugins and
    // gateways) only speak v1alpha.
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (max, query) = (max_message_bytes, max_query_message_bytes);
    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AdminServer::new(AdminService(handlers.clone())).max_decoding_message_size(max),
        )
        .add_service(
            SupplyServer::new(SupplyService(handlers.clone())).max_decoding_message_size(max),
        )
        .add_service(
            AvailabilityServer::new(AvailabilityService(handlers.clone()))
                .max_decoding_message_size(query),
        )
        .add_service(
            ReservationsServer::new(ReservationService(handlers.clone()))
                .max_decoding_message_size(query),
        )
        .add_service(
            PromisingServer::new(PromisingService(handlers.clone()))
                .max_decoding_message_size(query),
        )
        .add_service(RoutingServer::new(RoutingService(handlers)).max_decoding_message_size(max));
    Ok((routes, health))
}

/// Reflection over the API and health checking.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// tonic answers a message that does not decode with INTERNAL, and one over the size limit
/// with OUT_OF_RANGE; to the caller both are its own bad input, so they go out as
/// INVALID_ARGUMENT and RESOURCE_EXHAUSTED. Handlers never answer INTERNAL themselves.
pub fn caller_statuses<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).replace("%20", " "))
        .unwrap_or_default();
    let code = match headers.get("grpc-status").map(|c| c.as_bytes()) {
        Some(b"13") if message.starts_with("failed to decode Protobuf message") => "3",
        Some(b"11") if message.starts_with("Error, decoded message length too large") => "8",
        _ => return response,
    };
    headers.insert("grpc-status", http::HeaderValue::from_static(code));
    response
}

/// Reports every service NOT_SERVING: the first step of a shutdown.
pub async fn stop_serving(health: &HealthReporter) {
    set_all(health, ServingStatus::NotServing).await;
}

async fn set_all(health: &HealthReporter, status: ServingStatus) {
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Mutating services report NOT_SERVING while the journal cannot reach Redis (mutations are
/// refused then); reads keep serving from memory.
pub async fn report_store_health(
    mut up: watch::Receiver<bool>,
    health: HealthReporter,
    stop: CancellationToken,
) {
    loop {
        let status = if *up.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in MUTATING_SERVICES {
            health.set_service_status(service, status).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = up.changed() => if changed.is_err() { return },
        }
    }
}
