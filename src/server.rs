//! Startup and shutdown: binds the listeners, builds the engine, serves gRPC (with health and
//! reflection), HTTP/JSON and Prometheus metrics, and drains on a shutdown signal under a
//! deadline.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::util::MapResponseLayer;

use crate::app::App;
use crate::auth::Authenticator;
use crate::checkpoint::{Durability, Store};
use crate::clock::{Clock, MonotonicClock};
use crate::config::{AuthConfig, Config, ConnectionLimits};
use crate::connections::{self, Admission, Admitted, RefusalsLayer};
use crate::consistency::Consistency;
use crate::engine::Engine;
use crate::feeds;
use crate::grpc::{self, AuthLayer, Authentication, ConsistencyLayer, Handlers};
use crate::http::{self, Edge, Webhooks};
use crate::metrics::{self, RpcMetrics};
use crate::network_file;
use crate::publish::{self, settings, settings::Sinks};
use crate::request_bytes::RequestBytesLayer;
use crate::tls::{Tls, ALPN_GRPC, ALPN_HTTP1};

/// How often an idle connection is pinged, and how long its answer may take: a peer that
/// has gone away is noticed and its connection closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request bytes a call may have in flight before the server has read them: what a call
/// refused at its first bytes may still push at the server (who reads and drops it). Small
/// next to the connection's window, so one large upload does not hold the others up.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// How often expired holds are swept; holds end at most this long after their deadline.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(250);

/// How often the reservation invariants are checked. An audit holds every reservation book
/// shard while it reads the index, so reservations wait for it: not too often.
const AUDIT_INTERVAL: Duration = Duration::from_secs(300);

/// How often the state gauges (counts, freshness, memory) are refreshed.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// A built, bound, not yet running service.
pub struct Application {
    config: Config,
    app: App,
    grpc: TcpListener,
    http: TcpListener,
    metrics: TcpListener,
    prometheus: PrometheusHandle,
    /// TLS of each listener (`None`: plaintext); each reloads its files when they change.
    grpc_tls: Option<Arc<Tls>>,
    http_tls: Option<Arc<Tls>>,
    metrics_tls: Option<Arc<Tls>>,
    authentication: Authentication,
    /// The network file's webhook secrets, by source.
    webhook_secrets: HashMap<String, Vec<u8>>,
    /// The sinks of the events-out file.
    sinks: Option<Sinks>,
}

impl Application {
    /// Recovers state from Redis when configured (in memory otherwise), loads the network
    /// file if any, and binds the listeners (port 0 picks a free port).
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let prometheus = metrics::install()?;
        let authentication = authentication(&config, clock.clone())?;
        let tls = |alpn: &[&[u8]]| {
            config
                .tls
                .clone()
                .map(|files| Tls::load(files, alpn).map(Arc::new))
                .transpose()
        };
        let (grpc_tls, metrics_tls) = (tls(&[ALPN_GRPC])?, tls(&[ALPN_HTTP1])?);
        let http_tls = tls(&[ALPN_HTTP1])?;
        if grpc_tls.is_none() && matches!(authentication, Authentication::Verify(_)) {
            tracing::warn!("no --tls-cert: credentials cross the network in plaintext");
        }
        let (engine, durability) = start_engine(&config, clock).await?;
        let app = App::new(engine, durability);
        let mut webhook_secrets = HashMap::new();
        if let Some(path) = &config.network_file {
            let file = network_file::read(path)?;
            webhook_secrets = network_file::webhook_secrets(path, &file)?;
            network_file::apply(file, &app).await?;
        }
        let sinks = config
            .events_out
            .as_deref()
            .map(settings::read)
            .transpose()?;
        if let (Some(sinks), Durability::Redis(store)) = (&sinks, app.durability()) {
            publish::open_cursors(sinks, store).await?;
        }
        let grpc = listen(config.grpc_addr, "gRPC").await?;
        let http = listen(config.http_addr, "HTTP").await?;
        let metrics = listen(config.metrics_addr, "metrics").await?;
        Ok(Self {
            config,
            app,
            grpc,
            http,
            metrics,
            prometheus,
            grpc_tls,
            http_tls,
            metrics_tls,
            authentication,
            webhook_secrets,
            sinks,
        })
    }

    #[allow(clippy::expect_used, reason = "a bound listener has an address")]
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    #[allow(clippy::expect_used, reason = "a bound listener has an address")]
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    #[allow(clippy::expect_used, reason = "a bound listener has an address")]
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The application service every edge calls.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The core handle, for tests and benches that look beneath the edges.
    pub fn engine(&self) -> &Engine {
        self.app.engine()
    }

    pub fn durability(&self) -> &Durability {
        self.app.durability()
    }

    /// Serves until `shutdown` resolves, then: health NOT_SERVING, stop accepting, end feed
    /// streams, drain in-flight calls, all within the configured grace period.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let handlers = self.handlers(&stop);
        let (routes, health) = grpc::routes(
            handlers.clone(),
            self.config.max_message_bytes,
            self.config.max_query_message_bytes,
        )
        .await?;
        let limits = &self.config.connections;
        let admission = Admission {
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            refusals: limits.refusals,
        };
        let incoming = connections::admit(self.grpc, admission, self.grpc_tls);
        let authentication = Arc::new(self.authentication);
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
        let edge = Edge {
            handlers,
            authentication: authentication.clone(),
            in_flight: in_flight.clone(),
            max_body_bytes: self.config.max_message_bytes,
            webhooks: Arc::new(Webhooks::new(self.webhook_secrets)),
        };
        let auth = AuthLayer::new(authentication);
        let consistency = ConsistencyLayer(edge.handlers.consistency.clone());
        let serving = spawn_grpc(
            routes,
            incoming,
            auth,
            consistency,
            in_flight,
            limits,
            &stop,
        );
        let calls = connections::admit(self.http, admission, self.http_tls);
        let http = http::serve(calls, http::router(edge), stop.clone());
        let scrapes = connections::admit(self.metrics, admission, self.metrics_tls);
        let tasks = spawn_background(&self.app, http, scrapes, self.prometheus, &health, &stop);
        if let Some(config) = self.config.feeds.clone() {
            let max_bytes = self.config.max_message_bytes;
            tasks.spawn(feeds::run(
                self.app.clone(),
                config,
                max_bytes,
                stop.clone(),
            ));
        }
        if let (Some(sinks), Durability::Redis(store)) = (self.sinks, self.app.durability()) {
            let source = format!("/promised/{}", store.prefix());
            publish::start(sinks, &self.app, store, &source, &tasks, &stop);
        }

        shutdown.await;
        tracing::info!("shutting down");
        grpc::stop_serving(&health).await;
        stop.cancel();
        drain(serving, tasks, self.config.shutdown_grace).await?;
        if let Durability::Redis(store) = self.app.durability() {
            final_snapshot(store, self.config.shutdown_grace).await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// What every gRPC service shares; `stop` also ends the feed streams at shutdown.
    fn handlers(&self, stop: &CancellationToken) -> Handlers {
        Handlers {
            app: self.app.clone(),
            rpc: Arc::new(RpcMetrics::default()),
            feed_streams: Arc::new(Semaphore::new(self.config.max_feed_streams)),
            shutdown: stop.clone(),
            feed_idle: self.config.connections.feed_idle,
            feed_owners: Arc::default(),
            max_work: self.config.max_work,
            work_clock: MonotonicClock::new(),
            watchers: Arc::new(Semaphore::new(self.config.max_watchers)),
            max_watchers: self.config.max_watchers,
            watch_buffer: self.config.watch_buffer,
            consistency: Consistency::new(
                self.app.durability().clone(),
                self.config.consistency_wait,
            ),
        }
    }
}

/// Reads the credentials file, or says loudly that there is none.
fn authentication(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Authentication> {
    Ok(match &config.auth {
        AuthConfig::Credentials(path) => {
            Authentication::Verify(Arc::new(Authenticator::load(path, clock)?))
        }
        AuthConfig::Insecure => {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can connect may read and change everything"
            );
            Authentication::Insecure
        }
    })
}

/// The engine, recovered from Redis and journaled when configured, else in memory only.
async fn start_engine(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Engine, Durability)> {
    Ok(match &config.redis {
        Some(redis) => {
            let store = Store::open(redis.clone(), &config.engine, clock).await?;
            (store.engine().clone(), Durability::Redis(store))
        }
        None => {
            tracing::warn!("no --redis-url: state is in memory only and is lost on restart");
            (
                Engine::new(config.engine.clone(), clock),
                Durability::Memory,
            )
        }
    })
}

/// Binds one listener, naming what it is for when the address is taken.
async fn listen(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Serves gRPC on a task of its own until `stop`, so shutdown can await it under the grace period.
fn spawn_grpc(
    routes: Routes,
    incoming: ReceiverStream<std::io::Result<Admitted>>,
    auth: AuthLayer,
    consistency: ConsistencyLayer,
    in_flight: Arc<Semaphore>,
    limits: &ConnectionLimits,
    stop: &CancellationToken,
) -> JoinHandle<Result<(), tonic::transport::Error>> {
    let router = Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_connection_age(limits.max_connection_age)
        // Outermost: it sees every refusal, tonic's own mapped to the caller's codes.
        .layer(RefusalsLayer)
        .layer(MapResponseLayer::new(grpc::caller_statuses))
        .layer(grpc::RequestIdLayer)
        // Shed, not queue: a call over the in-flight limit is answered RESOURCE_EXHAUSTED at once.
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
        .layer(RequestBytesLayer::new(limits.max_in_flight_bytes))
        // Innermost: a shed call costs no verification; an admitted one reaches its handler
        // with its caller. Outside it, the request id is on refusals too.
        .layer(auth)
        // Only an admitted call may wait for its consistency token.
        .layer(consistency)
        .add_routes(routes);
    tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()))
}

/// Starts everything that runs beside the gRPC server (the HTTP edge among it), tracked so
/// shutdown can wait for it.
fn spawn_background(
    app: &App,
    http: impl Future<Output = ()> + Send + 'static,
    scrapes: ReceiverStream<std::io::Result<Admitted>>,
    prometheus: PrometheusHandle,
    health: &HealthReporter,
    stop: &CancellationToken,
) -> TaskTracker {
    let tasks = TaskTracker::new();
    tasks.spawn(http);
    tasks.spawn(metrics::serve(
        scrapes,
        prometheus,
        stop.clone().cancelled_owned(),
    ));
    tasks.spawn(observe_loop(app.engine().clone(), stop.clone()));
    tasks.spawn(expiry_loop(app.clone(), stop.clone()));
    tasks.spawn(audit_loop(app.clone(), stop.clone()));
    if let Durability::Redis(store) = app.durability() {
        tasks.spawn(store.clone().snapshot_loop(stop.clone()));
        tasks.spawn(grpc::report_store_health(
            store.watch_up(),
            health.clone(),
            stop.clone(),
        ));
    }
    tasks.close();
    tasks
}

/// Waits at most `grace` for the server and the background tasks: past it, exit rather than hang.
async fn drain(
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
    tasks: TaskTracker,
    grace: Duration,
) -> anyhow::Result<()> {
    let drained = tokio::time::timeout(grace, async {
        let served = serving.await;
        tasks.wait().await;
        served
    })
    .await;
    match drained {
        Ok(served) => served
            .context("gRPC server task failed")?
            .context("gRPC server failed")?,
        Err(_) => {
            tracing::warn!(grace = ?grace, "grace period elapsed; exiting with calls in flight")
        }
    }
    Ok(())
}

/// The final checkpoint makes the next start a snapshot load with an empty journal.
async fn final_snapshot(store: &Store, grace: Duration) {
    match tokio::time::timeout(grace, store.snapshot_once()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(
            error = format!("{error:#}"),
            "final snapshot failed; the journal still holds every acknowledged change"
        ),
        Err(_) => tracing::warn!("final snapshot did not finish within the grace period"),
    }
}

/// One refresh of the state gauges.
pub fn observe_once(engine: &Engine) {
    metrics::observe(&engine.stats());
}

async fn observe_loop(engine: Engine, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(OBSERVE_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => observe_once(&engine),
        }
    }
}

async fn expiry_loop(app: App, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => app.expire_once().await,
        }
    }
}

/// Checks the reservation invariants periodically; the gauges alert, an operator repairs.
async fn audit_loop(app: App, stop: CancellationToken) {
    let first = tokio::time::Instant::now() + AUDIT_INTERVAL;
    let mut ticks = tokio::time::interval_at(first, AUDIT_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                // The audit walks every position: off the runtime, like snapshot copies.
                let auditor = app.clone();
                let Ok(report) = tokio::task::spawn_blocking(move || auditor.audit()).await else {
                    continue;
                };
                if report.drift > 0 {
                    tracing::error!(drift = report.drift, "reservation drift: repair with Admin/CheckInvariants");
                }
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The SIGTERM handler is installed when this is called, not
/// when the future is first polled, so a SIGTERM that arrives while the service is starting
/// up (its listeners already answer) stops it gracefully rather than killing it. Call it in
/// the runtime, before serving.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut terminate = match terminate {
                Ok(terminate) => terminate,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the service");
                    let _ = interrupt.await;
                    return;
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = interrupt.await;
        }
    }
}
