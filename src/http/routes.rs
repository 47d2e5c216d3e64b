//! The route table: every HTTP route, declared once, as the gRPC method it calls. The method
//! decides its scope (the gRPC scope table), its request and answer messages (the
//! descriptors) and the adapter that serves it: a route calls the gRPC service adapter in
//! process, so both edges convert, check and answer through the same code and the same
//! `App` method. The OpenAPI document is written from this table too.
//!
//! Paths follow the resource style of `google.api.http`: `{name}` binds the request field
//! of that name (or the repeated field of its plural), `:verb` after a resource names a
//! custom method, and every other field comes from the JSON body (POST, PUT) or from the
//! query string (GET). A new RPC is one more row.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::Method;
use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Status};

use super::json;
use crate::auth::Identity;
use crate::grpc::pb;
use crate::grpc::pb::admin_server::Admin;
use crate::grpc::pb::availability_server::Availability;
use crate::grpc::pb::promising_server::Promising;
use crate::grpc::pb::reservations_server::Reservations;
use crate::grpc::pb::routing_server::Routing;
use crate::grpc::pb::supply_server::Supply;
use crate::grpc::{
    AdminService, AvailabilityService, Handlers, PromisingService, ReservationService,
    RoutingService, SupplyService,
};

/// What a route hands its adapter: the parsed request, the call's headers as gRPC metadata,
/// its admitted caller (`None` only for methods that need none) and the answer's type.
pub struct Input {
    pub message: DynamicMessage,
    pub metadata: MetadataMap,
    pub identity: Option<Identity>,
    pub method: MethodDescriptor,
}

/// The answer as canonical JSON, or the status it failed with.
pub type Answer = Pin<Box<dyn Future<Output = Result<Vec<u8>, Status>> + Send>>;

/// Calls one unary gRPC adapter method.
pub type Call = Arc<dyn Fn(Handlers, Input) -> Answer + Send + Sync>;

/// One message of a server stream: its resume token and the message as canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub token: String,
    pub json: Vec<u8>,
}

/// A server stream's messages, then (as an `Err`) why it ended, if the service ended it.
pub type Events = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

/// The opened stream, or the status it was refused with before it started.
pub type Opened = Pin<Box<dyn Future<Output = Result<Events, Status>> + Send>>;

/// Opens one server-streaming gRPC adapter method.
pub type Open = Arc<dyn Fn(Handlers, Input) -> Opened + Send + Sync>;

/// How a route serves its method: one answer, or a stream of events (server-sent events).
#[derive(Clone)]
pub enum Serve {
    Unary(Call),
    Events(Open),
}

/// One route.
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    /// The path template, e.g. `/v1/reservations/{reservation_id}:commit`.
    pub path: &'static str,
    /// The gRPC method it calls (`/promised.v1.Service/Method`).
    pub rpc: &'static str,
    /// The OpenAPI operation id, unique across the table.
    pub operation: &'static str,
    /// Deliveries are webhook batches: signed when the source has a secret, and idempotent
    /// by their `Idempotency-Key`.
    pub webhook: bool,
    pub serve: Serve,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.path, self.rpc)
    }
}

fn route(
    method: Method,
    path: &'static str,
    rpc: &'static str,
    op: &'static str,
    serve: Serve,
) -> Route {
    Route {
        method,
        path,
        rpc,
        operation: op,
        webhook: false,
        serve,
    }
}

/// Every route of the API.
pub fn table() -> Vec<Route> {
    let mut routes = [
        availability(),
        supply(),
        reservations(),
        orders(),
        network(),
        operations(),
    ]
    .concat();
    for route in &mut routes {
        route.webhook = route.rpc == "/promised.v1.Supply/ApplyBatch";
    }
    routes
}

/// The availability routes: reads, explanations and the change stream.
fn availability() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::POST,
            "/v1/availability:query",
            "/promised.v1.Availability/GetAvailability",
            "queryAvailability",
            unary(|h, r| async move { AvailabilityService(h).get_availability(r).await }),
        ),
        route(
            M::GET,
            "/v1/skus/{sku}/availability",
            "/promised.v1.Availability/GetAvailability",
            "getSkuAvailability",
            unary(|h, r| async move { AvailabilityService(h).get_availability(r).await }),
        ),
        route(
            M::GET,
            "/v1/availability:watch",
            "/promised.v1.Availability/WatchAvailability",
            "watchAvailability",
            events(
                |h, r| async move { AvailabilityService(h).watch_availability(r).await },
                |change: &pb::AvailabilityChange| change.token.clone(),
            ),
        ),
        route(
            M::POST,
            "/v1/availability:explain",
            "/promised.v1.Availability/Explain",
            "explainAvailability",
            unary(|h, r| async move { AvailabilityService(h).explain(r).await }),
        ),
    ]
}

/// The supply routes: batches, full syncs and their rejections.
fn supply() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::POST,
            "/v1/sources/{source_id}/batches",
            "/promised.v1.Supply/ApplyBatch",
            "applyBatch",
            unary(|h, r| async move { SupplyService(h).apply_batch(r).await }),
        ),
        route(
            M::POST,
            "/v1/sources/{source_id}/syncs",
            "/promised.v1.Supply/BeginSync",
            "beginSync",
            unary(|h, r| async move { SupplyService(h).begin_sync(r).await }),
        ),
        route(
            M::POST,
            "/v1/sources/{source_id}/syncs/{sync_id}:part",
            "/promised.v1.Supply/SyncPart",
            "syncPart",
            unary(|h, r| async move { SupplyService(h).sync_part(r).await }),
        ),
        route(
            M::POST,
            "/v1/sources/{source_id}/syncs/{sync_id}:commit",
            "/promised.v1.Supply/CommitSync",
            "commitSync",
            unary(|h, r| async move { SupplyService(h).commit_sync(r).await }),
        ),
        route(
            M::GET,
            "/v1/rejections",
            "/promised.v1.Supply/ListRejections",
            "listRejections",
            unary(|h, r| async move { SupplyService(h).list_rejections(r).await }),
        ),
    ]
}

/// The reservation routes: holds, their lifecycle and the order stream.
fn reservations() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::POST,
            "/v1/reservations",
            "/promised.v1.Reservations/Reserve",
            "reserve",
            unary(|h, r| async move { ReservationService(h).reserve(r).await }),
        ),
        route(
            M::GET,
            "/v1/reservations:watch",
            "/promised.v1.Reservations/WatchOrders",
            "watchOrders",
            events(
                |h, r| async move { ReservationService(h).watch_orders(r).await },
                |change: &pb::OrderChange| change.token.clone(),
            ),
        ),
        route(
            M::GET,
            "/v1/reservations/{reservation_id}",
            "/promised.v1.Reservations/Get",
            "getReservation",
            unary(|h, r| async move { ReservationService(h).get(r).await }),
        ),
        route(
            M::PUT,
            "/v1/reservations/{reservation_id}",
            "/promised.v1.Reservations/Update",
            "updateReservation",
            unary(|h, r| async move { ReservationService(h).update(r).await }),
        ),
        route(
            M::POST,
            "/v1/reservations/{reservation_id}:extend",
            "/promised.v1.Reservations/Extend",
            "extendReservation",
            unary(|h, r| async move { ReservationService(h).extend(r).await }),
        ),
        route(
            M::POST,
            "/v1/reservations/{reservation_id}:release",
            "/promised.v1.Reservations/Release",
            "releaseReservation",
            unary(|h, r| async move { ReservationService(h).release(r).await }),
        ),
        route(
            M::POST,
            "/v1/reservations/{reservation_id}:commit",
            "/promised.v1.Reservations/Commit",
            "commitReservation",
            unary(|h, r| async move { ReservationService(h).commit(r).await }),
        ),
    ]
}

/// The promising and routing routes.
fn orders() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::POST,
            "/v1/promises",
            "/promised.v1.Promising/PromiseOrder",
            "promiseOrder",
            unary(|h, r| async move { PromisingService(h).promise_order(r).await }),
        ),
        route(
            M::POST,
            "/v1/routes",
            "/promised.v1.Routing/RouteOrder",
            "routeOrder",
            unary(|h, r| async move { RoutingService(h).route_order(r).await }),
        ),
        route(
            M::POST,
            "/v1/routes:batch",
            "/promised.v1.Routing/RouteOrders",
            "routeOrders",
            unary(|h, r| async move { RoutingService(h).route_orders(r).await }),
        ),
    ]
}

/// The admin routes that change the network and its settings.
fn network() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::POST,
            "/v1/nodes:upsert",
            "/promised.v1.Admin/UpsertNodes",
            "upsertNodes",
            unary(|h, r| async move { AdminService(h).upsert_nodes(r).await }),
        ),
        route(
            M::POST,
            "/v1/groups:upsert",
            "/promised.v1.Admin/UpsertGroups",
            "upsertGroups",
            unary(|h, r| async move { AdminService(h).upsert_groups(r).await }),
        ),
        route(
            M::POST,
            "/v1/sources:upsert",
            "/promised.v1.Admin/UpsertSources",
            "upsertSources",
            unary(|h, r| async move { AdminService(h).upsert_sources(r).await }),
        ),
        route(
            M::POST,
            "/v1/service-levels:upsert",
            "/promised.v1.Admin/UpsertServiceLevels",
            "upsertServiceLevels",
            unary(|h, r| async move { AdminService(h).upsert_service_levels(r).await }),
        ),
        route(
            M::POST,
            "/v1/mappings:upsert",
            "/promised.v1.Admin/UpsertMappings",
            "upsertMappings",
            unary(|h, r| async move { AdminService(h).upsert_mappings(r).await }),
        ),
        route(
            M::POST,
            "/v1/items:upsert",
            "/promised.v1.Admin/UpsertItems",
            "upsertItems",
            unary(|h, r| async move { AdminService(h).upsert_items(r).await }),
        ),
        route(
            M::POST,
            "/v1/postal-codes:upsert",
            "/promised.v1.Admin/UpsertPostalCodes",
            "upsertPostalCodes",
            unary(|h, r| async move { AdminService(h).upsert_postal_codes(r).await }),
        ),
        route(
            M::POST,
            "/v1/safety-stock:set",
            "/promised.v1.Admin/SetSafetyStock",
            "setSafetyStock",
            unary(|h, r| async move { AdminService(h).set_safety_stock(r).await }),
        ),
    ]
}

/// The admin routes that report: stats, invariants, audit, history, dead letters.
fn operations() -> Vec<Route> {
    use Method as M;
    vec![
        route(
            M::GET,
            "/v1/stats",
            "/promised.v1.Admin/GetStats",
            "getStats",
            unary(|h, r| async move { AdminService(h).get_stats(r).await }),
        ),
        route(
            M::POST,
            "/v1/invariants:check",
            "/promised.v1.Admin/CheckInvariants",
            "checkInvariants",
            unary(|h, r| async move { AdminService(h).check_invariants(r).await }),
        ),
        route(
            M::POST,
            "/v1/audit:query",
            "/promised.v1.Admin/ListAudit",
            "listAudit",
            unary(|h, r| async move { AdminService(h).list_audit(r).await }),
        ),
        route(
            M::GET,
            "/v1/skus/{sku}/nodes/{node_id}/history",
            "/promised.v1.Admin/GetPositionHistory",
            "getPositionHistory",
            unary(|h, r| async move { AdminService(h).get_position_history(r).await }),
        ),
        route(
            M::GET,
            "/v1/sinks/{sink}/dead-letters",
            "/promised.v1.Admin/ListDeadLetters",
            "listDeadLetters",
            unary(|h, r| async move { AdminService(h).list_dead_letters(r).await }),
        ),
        route(
            M::POST,
            "/v1/sinks/{sink}/dead-letters:delete",
            "/promised.v1.Admin/DeleteDeadLetters",
            "deleteDeadLetters",
            unary(|h, r| async move { AdminService(h).delete_dead_letters(r).await }),
        ),
    ]
}

fn request<Req: Message + Default>(input: Input) -> Result<tonic::Request<Req>, Status> {
    let message = json::to_message::<Req>(&input.message)?;
    let mut extensions = Extensions::new();
    if let Some(identity) = input.identity {
        extensions.insert(identity);
    }
    Ok(tonic::Request::from_parts(
        input.metadata,
        extensions,
        message,
    ))
}

/// Wraps one unary adapter method: the parsed request becomes its generated message and the
/// answer is rendered as JSON.
fn unary<Req, Resp, F, Fut>(call: F) -> Serve
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: Fn(Handlers, tonic::Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
{
    Serve::Unary(Arc::new(move |handlers, input: Input| {
        let output = input.method.output();
        let request = match request::<Req>(input) {
            Ok(request) => request,
            Err(status) => return Box::pin(std::future::ready(Err(status))),
        };
        let answered = call(handlers, request);
        Box::pin(async move { json::render(output, &answered.await?.into_inner()) })
    }))
}

/// Wraps one server-streaming adapter method: each message becomes an event of its resume
/// token (`token` reads it) and its JSON.
fn events<Req, Resp, S, F, Fut>(call: F, token: fn(&Resp) -> String) -> Serve
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: Fn(Handlers, tonic::Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<S>, Status>> + Send + 'static,
{
    Serve::Events(Arc::new(move |handlers, input: Input| {
        let output = input.method.output();
        let request = match request::<Req>(input) {
            Ok(request) => request,
            Err(status) => return Box::pin(std::future::ready(Err(status))),
        };
        let opened = call(handlers, request);
        Box::pin(async move {
            let stream = opened.await?.into_inner().map(move |message| {
                let message = message?;
                let json = json::render(output.clone(), &message)?;
                Ok(Event {
                    token: token(&message),
                    json,
                })
            });
            Ok(Box::pin(stream) as Events)
        })
    }))
}

/// The values of a template's `{name}` segments in `path`, or `None` when it does not match.
pub fn matches(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    for pattern in template.split('/') {
        let segment = segments.next()?;
        let Some(param) = pattern.strip_prefix('{') else {
            if pattern != segment {
                return None;
            }
            continue;
        };
        let (name, verb) = param.split_once('}')?;
        let value = segment.strip_suffix(verb)?;
        if value.is_empty() {
            return None;
        }
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .ok()?;
        params.push((name.to_owned(), value.into_owned()));
    }
    segments.next().is_none().then_some(params)
}

/// The path axum routes a template by: a `{name}:verb` segment is `{name}` (axum matches
/// whole segments), the verb is told apart by [`matches`].
pub fn axum_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment.split_once('}') {
            Some((param, _verb)) if segment.starts_with('{') => format!("{param}}}"),
            _ => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_route_calls_a_method_of_the_api_with_a_scope() {
        let routes = table();
        let mut operations = HashSet::new();
        for route in &routes {
            let method = json::method(route.rpc).expect("the API has it");
            assert!(crate::grpc::need(route.rpc).is_some(), "{route:?}");
            assert!(operations.insert(route.operation), "{route:?}");
            for (name, _) in matches(route.path, route.path).unwrap_or_default() {
                let mut message = DynamicMessage::new(method.input());
                assert!(
                    json::bind(&mut message, &name, "x").is_ok(),
                    "{route:?}: {name}"
                );
            }
        }
        assert_eq!(routes.iter().filter(|r| r.webhook).count(), 1);
    }

    /// A new RPC is not done until it has its row: every unary and server-streaming method
    /// of the API is routed (a feed's bidirectional stream is a webhook over HTTP instead).
    #[test]
    fn every_unary_and_server_streaming_rpc_has_a_route() {
        let routed: HashSet<&str> = table().iter().map(|route| route.rpc).collect();
        for service in json::POOL.services() {
            for method in service.methods() {
                if method.is_client_streaming() {
                    continue;
                }
                let path = format!("/{}/{}", service.full_name(), method.name());
                assert!(routed.contains(path.as_str()), "{path} has no HTTP route");
            }
        }
    }

    #[test]
    fn a_verb_is_part_of_the_match() {
        let template = "/v1/reservations/{reservation_id}:commit";
        assert_eq!(
            matches(template, "/v1/reservations/r%201:commit"),
            Some(vec![("reservation_id".into(), "r 1".into())])
        );
        assert_eq!(matches(template, "/v1/reservations/r1:release"), None);
        assert_eq!(matches(template, "/v1/reservations/:commit"), None);
        assert_eq!(axum_path(template), "/v1/reservations/{reservation_id}");
        assert_eq!(axum_path("/v1/nodes:upsert"), "/v1/nodes:upsert");
    }
}
