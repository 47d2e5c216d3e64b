//! The HTTP/JSON edge: every unary RPC on its own listener (`--http-addr`) as a resource-style
//! route ([`routes`]), bodies in the canonical proto3 JSON mapping ([`json`]), refusals as
//! `google.rpc.Status` JSON ([`error`]), supply batches as signed, idempotent webhook
//! deliveries ([`webhook`]), supply CSV files uploaded and imported as they stream in
//! ([`upload`]), and the OpenAPI document of it all at `/openapi.json`
//! ([`openapi`]). A route admits its caller for the gRPC method it ends in and calls that
//! method's adapter, so both edges share scopes, conversions and `App` methods.
//!
//! Streaming: the watches (`Availability/WatchAvailability`, `Reservations/WatchOrders`) are
//! GET routes answered with server-sent events ([`sse`]), resumed by `Last-Event-ID`. A
//! feed's bidirectional `Supply/StreamUpdates` has no route: over HTTP a feed posts each
//! batch as a webhook delivery instead, which is what integration platforms send.

mod call;
mod error;
pub mod json;
pub mod openapi;
pub mod routes;
pub mod sse;
mod upload;
pub mod webhook;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodFilter, MethodRouter};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected;
use tonic::Code;
use tower::{Layer, ServiceExt};

use crate::connections::{Admitted, RefusalsLayer};
use crate::grpc::{Authentication, Handlers, RequestIdLayer};
pub use webhook::{sign, Webhooks};

/// What every HTTP call shares.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The gRPC adapters' shared state: routes call the adapters.
    pub handlers: Handlers,
    /// The same admission as the gRPC edge's.
    pub authentication: Arc<Authentication>,
    /// Places for calls in flight, shared with the gRPC edge: one more is refused.
    pub in_flight: Arc<Semaphore>,
    /// Largest body read; a larger one is 413 before it is read.
    pub max_body_bytes: usize,
    pub webhooks: Arc<Webhooks>,
}

/// The router of every route, `/openapi.json`, and JSON 404 and 405 answers.
pub fn router(edge: Edge) -> Router {
    let mut paths: Vec<(String, Vec<routes::Route>)> = Vec::new();
    for route in routes::table() {
        let path = routes::axum_path(route.path);
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push(route),
            None => paths.push((path, vec![route])),
        }
    }
    let document = Arc::new(openapi::document(&routes::table()).to_string());
    let mut router = Router::new().route(
        "/openapi.json",
        get(move || async move { json_response(document.as_bytes().to_vec()) }),
    );
    for (path, routes) in paths {
        router = router.route(&path, methods(&edge, routes));
    }
    let uploads = edge.clone();
    router = router.route(
        upload::PATH,
        post(move |source, request| upload::handle(uploads, source, request)),
    );
    router
        .fallback(|| async {
            error::refusal(StatusCode::NOT_FOUND, Code::NotFound, "no such route")
        })
        .method_not_allowed_fallback(|| async {
            error::refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unimplemented,
                "the route does not take this method",
            )
        })
        .layer(RequestIdLayer)
}

/// One axum path's methods, each serving its routes (several when they differ by verb).
fn methods(edge: &Edge, routes: Vec<routes::Route>) -> MethodRouter {
    let mut by_method: Vec<(axum::http::Method, Vec<routes::Route>)> = Vec::new();
    for route in routes {
        match by_method.iter_mut().find(|(m, _)| *m == route.method) {
            Some((_, routes)) => routes.push(route),
            None => by_method.push((route.method.clone(), vec![route])),
        }
    }
    let mut router = MethodRouter::new();
    for (method, routes) in by_method {
        let Ok(filter) = MethodFilter::try_from(method) else {
            continue;
        };
        let (edge, routes) = (edge.clone(), Arc::new(routes));
        router = router.on(filter, move |request: Request| async move {
            call::handle(&edge, &routes, request).await
        });
    }
    router
}

fn json_response(body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    let json = HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}

/// Serves HTTP/1.1 on every admitted connection until `stop`, then lets each finish the
/// call it is in and closes it. A connection's peer (address, client certificate) rides in
/// every request's extensions, for authentication; a call refused for resources (413, 429)
/// is charged to the connection's allowance.
pub async fn serve(
    connections: impl Stream<Item = std::io::Result<Admitted>>,
    router: Router,
    stop: CancellationToken,
) {
    tokio::pin!(connections);
    let open = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            admitted = connections.next() => match admitted {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::warn!(%error, "HTTP listener accept failed");
                    continue;
                }
                None => break,
            },
        };
        open.spawn(connection(stream, router.clone(), stop.clone()));
    }
    open.close();
    open.wait().await;
}

async fn connection(stream: Admitted, router: Router, stop: CancellationToken) {
    let peer = stream.connect_info();
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(peer.clone());
        RefusalsLayer
            .layer(router.clone())
            .oneshot(request.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Headers must arrive within the timer's default (30 s): a slow sender holds no place.
    builder.timer(TokioTimer::new());
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = stop.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
