//! Startup and shutdown: binds the listeners, builds the engine, serves gRPC (with health and
//! reflection) and Prometheus metrics, and drains on a shutdown signal under a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::checkpoint::{Durability, Store};
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::Engine;
use crate::grpc::pb::admin_server::AdminServer;
use crate::grpc::pb::availability_server::AvailabilityServer;
use crate::grpc::pb::promising_server::PromisingServer;
use crate::grpc::pb::reservations_server::ReservationsServer;
use crate::grpc::pb::routing_server::RoutingServer;
use crate::grpc::pb::supply_server::SupplyServer;
use crate::grpc::{
    pb, AdminService, AvailabilityService, Handlers, PromisingService, ReservationService,
    RoutingService, SupplyService,
};
use crate::metrics::{self, RpcMetrics};
use crate::network_file::NetworkFile;

/// How often expired holds are swept; holds end at most this long after their deadline.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(250);

/// How often the reservation invariants are checked. An audit holds every reservation book
/// shard while it reads the index, so reservations wait for it: not too often.
const AUDIT_INTERVAL: Duration = Duration::from_secs(300);

/// How often the state gauges (counts, freshness, memory) are refreshed.
const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// Fully qualified names of the services health checking reports on.
const SERVICE_NAMES: [&str; 7] = [
    "",
    "promised.v1.Routing",
    "promised.v1.Admin",
    "promised.v1.Availability",
    "promised.v1.Promising",
    SUPPLY_SERVICE,
    RESERVATIONS_SERVICE,
];
const SUPPLY_SERVICE: &str = "promised.v1.Supply";
const RESERVATIONS_SERVICE: &str = "promised.v1.Reservations";
/// The services that report NOT_SERVING while mutations are refused.
const MUTATING_SERVICES: [&str; 2] = [SUPPLY_SERVICE, RESERVATIONS_SERVICE];

/// A built, bound, not yet running service.
pub struct Application {
    config: Config,
    engine: Engine,
    durability: Durability,
    grpc: TcpListener,
    metrics: TcpListener,
    prometheus: PrometheusHandle,
}

impl Application {
    /// Recovers state from Redis when configured (in memory otherwise), loads the network
    /// file if any, and binds the listeners (port 0 picks a free port).
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let prometheus = metrics::install()?;
        let (engine, durability) = match &config.redis {
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
        };
        if let Some(path) = &config.network_file {
            NetworkFile::read(path)?.apply(&engine, &durability).await?;
        }
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_addr))?;
        let metrics = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {}", config.metrics_addr))?;
        Ok(Self {
            config,
            engine,
            durability,
            grpc,
            metrics,
            prometheus,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// Serves until `shutdown` resolves, then: health NOT_SERVING, stop accepting, end feed
    /// streams, drain in-flight calls, all within the configured grace period.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in SERVICE_NAMES {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let handlers = Handlers {
            engine: self.engine.clone(),
            durability: self.durability.clone(),
            rpc: Arc::new(RpcMetrics::default()),
            feed_streams: Arc::new(Semaphore::new(self.config.max_feed_streams)),
            shutdown: stop.clone(),
        };
        let max = self.config.max_message_bytes;
        let router = Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                AdminServer::new(AdminService(handlers.clone())).max_decoding_message_size(max),
            )
            .add_service(
                SupplyServer::new(SupplyService(handlers.clone())).max_decoding_message_size(max),
            )
            .add_service(
                AvailabilityServer::new(AvailabilityService(handlers.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                ReservationsServer::new(ReservationService(handlers.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                PromisingServer::new(PromisingService(handlers.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                RoutingServer::new(RoutingService(handlers)).max_decoding_message_size(max),
            );
        // Small request/response pairs must not wait for Nagle's algorithm (40 ms with delayed
        // ACKs); the builder's own TCP settings do not apply to an incoming stream we hand it.
        let incoming = TcpListenerStream::new(self.grpc).map(|accepted| {
            if let Ok(stream) = &accepted {
                let _ = stream.set_nodelay(true);
            }
            accepted
        });
        let serving = tokio::spawn(
            router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
        );
        let tasks = TaskTracker::new();
        tasks.spawn(metrics::serve(
            self.metrics,
            self.prometheus,
            stop.clone().cancelled_owned(),
        ));
        tasks.spawn(observe_loop(self.engine.clone(), stop.clone()));
        tasks.spawn(expiry_loop(
            self.engine.clone(),
            self.durability.clone(),
            stop.clone(),
        ));
        tasks.spawn(audit_loop(self.engine.clone(), stop.clone()));
        if let Durability::Redis(store) = &self.durability {
            tasks.spawn(store.clone().snapshot_loop(stop.clone()));
            tasks.spawn(report_store_health(
                store.watch_up(),
                health.clone(),
                stop.clone(),
            ));
        }
        tasks.close();

        shutdown.await;
        tracing::info!("shutting down");
        for name in SERVICE_NAMES {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        stop.cancel();
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
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
                tracing::warn!(grace = ?self.config.shutdown_grace, "grace period elapsed; exiting with calls in flight")
            }
        }
        if let Durability::Redis(store) = &self.durability {
            // The final checkpoint makes the next start a snapshot load with an empty journal.
            match tokio::time::timeout(self.config.shutdown_grace, store.snapshot_once()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(
                    error = format!("{error:#}"),
                    "final snapshot failed; the journal still holds every acknowledged change"
                ),
                Err(_) => tracing::warn!("final snapshot did not finish within the grace period"),
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Mutating services report NOT_SERVING while the journal cannot reach Redis (mutations are
/// refused then); reads keep serving from memory.
async fn report_store_health(
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

/// One sweep of reservation expiry: expired holds are released and journaled.
pub async fn expire_once(engine: &Engine, durability: &Durability) {
    for expired in engine.expire_due() {
        if let Err(error) = durability.commit(expired).await {
            // Expiry already happened in memory; the journal writer keeps the record and retries.
            tracing::debug!(%error, "expiry not yet durable");
        }
    }
}

async fn expiry_loop(engine: Engine, durability: Durability, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => expire_once(&engine, &durability).await,
        }
    }
}

/// Checks the reservation invariants periodically; the gauges alert, an operator repairs.
async fn audit_loop(engine: Engine, stop: CancellationToken) {
    let first = tokio::time::Instant::now() + AUDIT_INTERVAL;
    let mut ticks = tokio::time::interval_at(first, AUDIT_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                // The audit walks every position: off the runtime, like snapshot copies.
                let auditor = engine.clone();
                let Ok(report) = tokio::task::spawn_blocking(move || auditor.audit(false).result).await else {
                    continue;
                };
                if report.drift > 0 {
                    tracing::error!(drift = report.drift, "reservation drift: repair with Admin/CheckInvariants");
                }
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
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
