//! What the load is made of: the targets and their clients, scenarios as weighted operations,
//! and one operation run as timed gRPC calls. An operation's requests are drawn from a seeded
//! generator, so every target receives the same sequence of requests.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use promised::grpc::pb::promising_client::PromisingClient;
use promised::grpc::pb::reservations_client::ReservationsClient;
use promised::grpc::pb::routing_client::RoutingClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::catalogue::{sku, Network, Zipf};
use crate::peer::pb as peer;
use crate::peer::pb::stock_client::StockClient;
use crate::stats::{Outcome, Recorder};

/// A call that has not answered by then counts as `CLIENT_TIMEOUT`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Most calls one operation makes (bounds how long an operation can take).
pub const MAX_CALLS_PER_OP: u32 = 3;

/// SKU popularity: Zipf with this exponent.
pub const ZIPF_EXPONENT: f64 = 1.0;

/// SKUs in a cart.
pub const CART_SKUS: usize = 10;

/// Seconds a hold lives if the load test never releases it.
const HOLD_TTL_SECS: u32 = 300;

/// Names of the calls, as reported.
pub mod call {
    pub const HEALTH: &str = "health";
    pub const AVAILABILITY: &str = "availability";
    pub const RESERVE: &str = "reserve";
    pub const RELEASE: &str = "release";
    pub const PROMISE_PRODUCT: &str = "promise.product";
    pub const PROMISE_CART: &str = "promise.cart";
    pub const ROUTE: &str = "route+reserve";
    pub const COMMIT: &str = "commit";
    pub const CANCEL: &str = "cancel";
    pub const FEED: &str = "feed.batch";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// gRPC health Check on the promised server: the cost of a call that does nothing.
    Floor,
    Promised,
    RedisPeer,
    PostgresPeer,
}

impl TargetKind {
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Floor,
        TargetKind::Promised,
        TargetKind::RedisPeer,
        TargetKind::PostgresPeer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Floor => "floor",
            TargetKind::Promised => "promised",
            TargetKind::RedisPeer => "redis-peer",
            TargetKind::PostgresPeer => "postgres-peer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Cart availability of 10 SKUs, and hold + release of 1-2 lines: what every target runs.
    CheckoutSubset,
    /// Product-page promise, cart availability, cart promise, hold + release.
    Checkout,
    /// Route and reserve an order, commit it, cancel it.
    Oms,
    /// Supply feeds streaming at a fixed update rate.
    Feed,
    /// Checkout and OMS operations with the feed running.
    Mixed,
}

/// One arrival of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Health,
    CartAvailability,
    Hold,
    ProductPromise,
    CartPromise,
    Order,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::CheckoutSubset => "checkout-subset",
            Scenario::Checkout => "checkout",
            Scenario::Oms => "oms",
            Scenario::Feed => "feed",
            Scenario::Mixed => "mixed",
        }
    }

    /// Operations and their weights on `target`; `None` when the target cannot run it. The
    /// floor runs the subset as health checks, one per operation.
    pub fn ops(self, target: TargetKind) -> Option<&'static [(Op, u32)]> {
        use Op::*;
        match (self, target) {
            (Scenario::CheckoutSubset, TargetKind::Floor) => Some(&[(Health, 1)]),
            (Scenario::CheckoutSubset, _) => Some(&[(CartAvailability, 2), (Hold, 1)]),
            (_, TargetKind::Promised) => Some(match self {
                Scenario::Checkout => &[
                    (ProductPromise, 4),
                    (CartAvailability, 2),
                    (CartPromise, 1),
                    (Hold, 1),
                ],
                Scenario::Oms => &[(Order, 1)],
                Scenario::Feed => &[],
                _ => &[
                    (ProductPromise, 4),
                    (CartAvailability, 2),
                    (CartPromise, 1),
                    (Hold, 1),
                    (Order, 1),
                ],
            }),
            _ => None,
        }
    }

    pub fn has_feed(self) -> bool {
        matches!(self, Scenario::Feed | Scenario::Mixed)
    }
}

/// Clients of one connection to a target.
#[derive(Debug, Clone)]
pub enum Client {
    Floor(HealthClient<Channel>),
    Promised(Box<PromisedClients>),
    Peer(StockClient<Channel>),
}

impl Client {
    pub fn new(target: TargetKind, channel: Channel) -> Self {
        match target {
            TargetKind::Floor => Client::Floor(HealthClient::new(channel)),
            TargetKind::Promised => Client::Promised(Box::new(PromisedClients {
                availability: AvailabilityClient::new(channel.clone()),
                reservations: ReservationsClient::new(channel.clone()),
                promising: PromisingClient::new(channel.clone()),
                routing: RoutingClient::new(channel),
            })),
            TargetKind::RedisPeer | TargetKind::PostgresPeer => {
                Client::Peer(StockClient::new(channel))
            }
        }
    }
}

/// What every operation draws from: SKU popularity, the network, unique ids.
#[derive(Debug)]
pub struct Workload {
    pub zipf: Zipf,
    pub network: Network,
    seed: u64,
    /// Makes ids unique across runs against the same datastore.
    run: String,
    next_id: AtomicU64,
}

impl Workload {
    pub fn new(skus: usize, network: Network, seed: u64) -> Self {
        Self {
            zipf: Zipf::new(skus, ZIPF_EXPONENT),
            network,
            seed,
            run: format!("{}-{}", std::process::id(), seed),
            next_id: AtomicU64::new(0),
        }
    }

    /// The generator of arrival `index` of a phase's `stream` (a closed-loop worker, or 0
    /// for the open-loop arrivals): the same for every target.
    pub fn rng(&self, stream: u64, index: u64) -> SmallRng {
        let mix = index
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        SmallRng::seed_from_u64(self.seed ^ mix)
    }

    pub fn id(&self, kind: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{kind}-{}-{n}", self.run)
    }

    fn skus(&self, rng: &mut SmallRng, count: usize) -> Vec<String> {
        self.zipf
            .distinct(rng, count)
            .into_iter()
            .map(sku)
            .collect()
    }

    /// A customer near one of the network's places.
    fn destination(&self, rng: &mut SmallRng) -> pb::Destination {
        let (lat, lon) = self.network.places[rng.random_range(0..self.network.places.len())];
        pb::Destination {
            lat: lat + rng.random_range(-0.3..0.3),
            lon: lon + rng.random_range(-0.3..0.3),
            ..Default::default()
        }
    }

    fn node(&self, rng: &mut SmallRng) -> String {
        self.network.fulfilment[rng.random_range(0..self.network.fulfilment.len())].clone()
    }
}

/// Picks an operation by weight.
pub fn choose(ops: &[(Op, u32)], rng: &mut SmallRng) -> Option<Op> {
    let total: u32 = ops.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.random_range(0..total);
    for &(op, weight) in ops {
        if pick < weight {
            return Some(op);
        }
        pick -= weight;
    }
    None
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Awaits a call under [`CALL_TIMEOUT`] and records it as started at `start`.
async fn timed<T>(
    recorder: &Recorder,
    name: &'static str,
    start: Instant,
    call: impl Future<Output = Result<T, Status>>,
) -> Option<T> {
    let answer = tokio::time::timeout(CALL_TIMEOUT, call).await;
    let outcome = match &answer {
        Ok(Ok(_)) => Outcome::Ok,
        Ok(Err(status)) => Outcome::Failed(code_name(status.code())),
        Err(_) => Outcome::Failed("CLIENT_TIMEOUT"),
    };
    recorder.record(name, start, outcome);
    answer.ok()?.ok()
}

/// A peer's "not enough stock" is the service's FAILED_PRECONDITION, so the tables compare.
fn insufficient() -> Status {
    Status::failed_precondition("insufficient stock")
}

/// Runs one operation; its first call counts from `start` (the intended send time in open
/// loop), later calls from when they are sent. Returns whether every call succeeded.
pub async fn run(
    op: Op,
    client: &mut Client,
    workload: &Workload,
    rng: &mut SmallRng,
    start: Instant,
    recorder: &Recorder,
) -> bool {
    match client {
        Client::Floor(health) if op == Op::Health => {
            let request = HealthCheckRequest {
                service: String::new(),
            };
            timed(recorder, call::HEALTH, start, health.check(request))
                .await
                .is_some()
        }
        Client::Peer(stock) => run_peer(op, stock, workload, rng, start, recorder).await,
        Client::Promised(clients) => {
            run_promised(op, clients, workload, rng, start, recorder).await
        }
        Client::Floor(_) => {
            recorder.record("unsupported", start, Outcome::Failed("UNSUPPORTED"));
            false
        }
    }
}

/// Lines of a hold: 1 or 2 SKUs, 1 or 2 units each.
fn hold_lines(workload: &Workload, rng: &mut SmallRng) -> Vec<(String, i64)> {
    let count = rng.random_range(1..=2);
    workload
        .skus(rng, count)
        .into_iter()
        .map(|sku| (sku, rng.random_range(1..=2)))
        .collect()
}

async fn run_peer(
    op: Op,
    stock: &mut StockClient<Channel>,
    workload: &Workload,
    rng: &mut SmallRng,
    start: Instant,
    recorder: &Recorder,
) -> bool {
    match op {
        Op::CartAvailability => {
            let skus = workload.skus(rng, CART_SKUS);
            let request = peer::AvailabilityRequest { skus };
            timed(
                recorder,
                call::AVAILABILITY,
                start,
                stock.availability(request),
            )
            .await
            .is_some()
        }
        Op::Hold => {
            let id = workload.id("hold");
            let lines = hold_lines(workload, rng)
                .into_iter()
                .map(|(sku, quantity)| peer::Line { sku, quantity })
                .collect();
            let request = peer::ReserveRequest {
                reservation_id: id.clone(),
                lines,
            };
            let reserve = async {
                let answer = stock.reserve(request).await?.into_inner();
                if answer.ok {
                    Ok(answer)
                } else {
                    Err(insufficient())
                }
            };
            if timed(recorder, call::RESERVE, start, reserve)
                .await
                .is_none()
            {
                return false;
            }
            let request = peer::ReleaseRequest { reservation_id: id };
            timed(
                recorder,
                call::RELEASE,
                Instant::now(),
                stock.release(request),
            )
            .await
            .is_some()
        }
        _ => {
            recorder.record("unsupported", start, Outcome::Failed("UNSUPPORTED"));
            false
        }
    }
}

/// The service's clients on one connection.
#[derive(Debug, Clone)]
pub struct PromisedClients {
    availability: AvailabilityClient<Channel>,
    reservations: ReservationsClient<Channel>,
    promising: PromisingClient<Channel>,
    routing: RoutingClient<Channel>,
}

fn promise_lines(skus: Vec<String>) -> Vec<pb::PromiseLine> {
    skus.into_iter()
        .map(|sku| pb::PromiseLine { sku, quantity: 1 })
        .collect()
}

async fn run_promised(
    op: Op,
    clients: &mut PromisedClients,
    workload: &Workload,
    rng: &mut SmallRng,
    start: Instant,
    recorder: &Recorder,
) -> bool {
    match op {
        Op::CartAvailability => {
            // The API reports every node unless told which: ask for one (the customer's
            // nearest DC) and the network total, what the peers answer.
            let request = pb::AvailabilityRequest {
                skus: workload.skus(rng, CART_SKUS),
                node_ids: vec![workload.node(rng)],
                ..Default::default()
            };
            let call = clients.availability.get_availability(request);
            timed(recorder, call::AVAILABILITY, start, call)
                .await
                .is_some()
        }
        Op::Hold => {
            let id = workload.id("hold");
            let lines = hold_lines(workload, rng)
                .into_iter()
                .map(|(sku, quantity)| pb::ReservationLine {
                    sku,
                    quantity,
                    ..Default::default()
                })
                .collect();
            let request = pb::ReserveRequest {
                reservation_id: id.clone(),
                lines,
                ttl_seconds: HOLD_TTL_SECS,
            };
            let call = clients.reservations.reserve(request);
            if timed(recorder, call::RESERVE, start, call).await.is_none() {
                return false;
            }
            release(clients, id, call::RELEASE, recorder).await
        }
        Op::ProductPromise => {
            let request = pb::PromiseRequest {
                lines: promise_lines(workload.skus(rng, 1)),
                destination: Some(workload.destination(rng)),
                ..Default::default()
            };
            let call = clients.promising.promise_order(request);
            timed(recorder, call::PROMISE_PRODUCT, start, call)
                .await
                .is_some()
        }
        Op::CartPromise => {
            let request = pb::PromiseRequest {
                lines: promise_lines(workload.skus(rng, 3)),
                destination: Some(workload.destination(rng)),
                allow_split: true,
                ..Default::default()
            };
            let call = clients.promising.promise_order(request);
            timed(recorder, call::PROMISE_CART, start, call)
                .await
                .is_some()
        }
        Op::Order => {
            let order_id = workload.id("order");
            let count = rng.random_range(1..=3);
            let request = pb::RouteRequest {
                order_id: order_id.clone(),
                lines: promise_lines(workload.skus(rng, count)),
                destination: Some(workload.destination(rng)),
                service_level: "GROUND".into(),
                constraints: Some(pb::RouteConstraints::default()),
                reserve: true,
                reservation_id: order_id.clone(),
                ttl_seconds: HOLD_TTL_SECS,
                ..Default::default()
            };
            let routing = &mut clients.routing;
            let route = async {
                let answer = routing.route_order(request).await?.into_inner();
                match answer.reservation {
                    Some(_) => Ok(answer),
                    None => Err(Status::failed_precondition("no plan could be held")),
                }
            };
            if timed(recorder, call::ROUTE, start, route).await.is_none() {
                return false;
            }
            let commit = pb::CommitRequest {
                reservation_id: order_id.clone(),
                order_id: order_id.clone(),
            };
            let call = clients.reservations.commit(commit);
            if timed(recorder, call::COMMIT, Instant::now(), call)
                .await
                .is_none()
            {
                return false;
            }
            // Cancelled at once, so that a long run does not drain the stock.
            release(clients, order_id, call::CANCEL, recorder).await
        }
        Op::Health => {
            recorder.record("unsupported", start, Outcome::Failed("UNSUPPORTED"));
            false
        }
    }
}

async fn release(
    clients: &mut PromisedClients,
    reservation_id: String,
    name: &'static str,
    recorder: &Recorder,
) -> bool {
    let request = pb::ReleaseRequest { reservation_id };
    let call = clients.reservations.release(request);
    timed(recorder, name, Instant::now(), call).await.is_some()
}
