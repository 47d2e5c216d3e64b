//! End-to-end benchmarks over real gRPC on loopback: the service runs in-process on its own
//! multi-thread runtime, built as `promised serve` builds it, and a client with its own
//! single-thread runtime (as a separate client process would have) calls it from the bench
//! thread.
//!
//! Latency of GetAvailability is compared with the empty call (the standard health check)
//! measured in the same run, and over TLS with a JWT (a second service with authentication
//! on) with plaintext without authentication; stream ingest is measured as updates per second
//! including the acks, with several batches in flight.
//!
//! `cargo bench --bench grpc` (add a filter after `--` to run part of it, e.g. `-- stream`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use promised::clock::{Clock, SystemClock};
use promised::config::{Config, ServeArgs};
use promised::domain::{SupplyBatch, SupplyType};
use promised::engine::Engine;
use promised::grpc::pb::{
    self, availability_client::AvailabilityClient, supply_client::SupplyClient,
};
use promised::server::Application;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use common::{
    load_demo_network, on_hand_owner, on_hand_set, owned_nodes, BenchSecurity, Feed, BATCH,
};

/// SKUs with on-hand at every node, for the availability calls.
const QUERY_SKUS: usize = 20;

/// SKUs the ingest stream writes to, and the batches it cycles through.
const STREAM_SKUS: usize = 100_000;
const STREAM_BATCHES: usize = 100;

/// Batches sent but not yet acknowledged on the ingest stream.
const IN_FLIGHT: usize = 8;

/// Sources are told the feed is alive this often, so none goes stale during a long run (a
/// stale source would degrade its nodes and change what the availability calls compute).
const HEARTBEAT: Duration = Duration::from_secs(10);

fn query_sku(i: usize) -> String {
    format!("QUERY-{i:02}")
}

/// The service, running, and a client connection to it.
struct Server {
    /// Runs the service (multi-thread, one worker per core).
    runtime: Runtime,
    /// Runs the client side, on the bench thread.
    client: Runtime,
    channel: Channel,
    engine: Engine,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Builds and starts the service with `args` on free loopback ports with the demo network
    /// and on-hand for [`QUERY_SKUS`] SKUs at all 50 nodes, and connects a client channel
    /// through `endpoint`.
    fn start(args: ServeArgs, endpoint: impl FnOnce(SocketAddr) -> Endpoint) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (stop, stopped) = oneshot::channel::<()>();
        let (engine, addr, serving) = runtime.block_on(async {
            let args = ServeArgs {
                grpc_addr: Some("127.0.0.1:0".into()),
                metrics_addr: Some("127.0.0.1:0".into()),
                http_addr: Some("127.0.0.1:0".into()),
                ..args
            };
            let config = Config::resolve(&args, &HashMap::new()).expect("a valid configuration");
            let app = Application::build(config, Arc::new(SystemClock))
                .await
                .expect("the service builds");
            load_demo_network(app.engine(), app.durability()).await;
            let engine = app.engine().clone();
            let addr = app.grpc_addr();
            let serving = tokio::spawn(app.run_until_stopped(async {
                let _ = stopped.await;
            }));
            (engine, addr, serving)
        });
        load_query_skus(&engine);
        runtime.spawn(heartbeats(engine.clone()));
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let channel = client.block_on(connect(endpoint(addr)));
        Self {
            runtime,
            client,
            channel,
            engine,
            stop,
            serving,
        }
    }

    /// Shuts the service down gracefully and waits for it.
    fn stop(self) {
        let _ = self.stop.send(());
        self.runtime
            .block_on(self.serving)
            .expect("the server task completes")
            .expect("the server stops cleanly");
    }

    /// Times `iters` sequential calls of `call`.
    fn time_calls<C, F, R>(&self, iters: u64, client: &C, call: impl Fn(C) -> F) -> Duration
    where
        C: Clone,
        F: std::future::Future<Output = R>,
    {
        self.client.block_on(async {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(call(client.clone()).await);
            }
            started.elapsed()
        })
    }
}

/// The plaintext service without authentication.
fn plaintext() -> Server {
    let args = ServeArgs {
        insecure_no_auth: true,
        ..ServeArgs::default()
    };
    Server::start(args, |addr| {
        Endpoint::from_shared(format!("http://{addr}")).expect("a valid URI")
    })
}

/// The service over TLS with authentication on, its credentials from `security`.
fn secure(security: &BenchSecurity) -> Server {
    let ca = security.cert_pem.clone();
    Server::start(security.args(), move |addr| {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        Endpoint::from_shared(format!("https://{addr}"))
            .expect("a valid URI")
            .tls_config(tls)
            .expect("a TLS configuration")
    })
}

/// A channel to the service, once it answers its health check with SERVING.
async fn connect(endpoint: Endpoint) -> Channel {
    let channel = endpoint
        .connect()
        .await
        .expect("the service accepts connections");
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("the health check answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    channel
}

/// On-hand for the query SKUs at every node, through the engine directly (setup, not measured).
fn load_query_skus(engine: &Engine) {
    let mut feeds = [Feed::resume(engine, "WMS"), Feed::resume(engine, "POS")];
    let nodes: Vec<String> = engine
        .network()
        .nodes()
        .iter()
        .map(|n| n.id.clone())
        .collect();
    for feed in &mut feeds {
        let now_ms = engine.now_ms();
        let updates = (0..QUERY_SKUS)
            .flat_map(|i| {
                nodes
                    .iter()
                    .filter(|n| on_hand_owner(engine, n) == feed.source_id)
                    .map(move |n| on_hand_set(query_sku(i), n.clone(), 10 + i as i64, now_ms))
            })
            .collect();
        feed.apply_all(engine, updates);
    }
}

/// Keeps every source of the demo network fresh with empty batches (heartbeats).
async fn heartbeats(engine: Engine) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    loop {
        ticks.tick().await;
        for source_id in ["WMS", "POS", "ERP"] {
            let heartbeat = SupplyBatch {
                source_id: source_id.into(),
                seq: 0,
                updates: Vec::new(),
            };
            engine
                .apply_batch(&heartbeat)
                .expect("a heartbeat is valid")
                .into_result();
        }
    }
}

/// The calls compared, by name; the first is the baseline.
#[derive(Clone, Copy)]
enum Call {
    Health,
    OneSkuOneNode,
    OneSkuAllNodes,
    /// The same 50 nodes, answering the network total only (`totals_only`).
    OneSkuAllNodesTotals,
    /// The same 50 nodes' figures as packed columns (`columns`).
    OneSkuAllNodesColumns,
    /// Columns, the caller holding the node ids of an earlier answer (`known_node_list`).
    OneSkuAllNodesHeldList,
    TwentySkusAllNodes,
}

impl Call {
    const ALL: [Call; 7] = [
        Self::Health,
        Self::OneSkuOneNode,
        Self::OneSkuAllNodes,
        Self::OneSkuAllNodesTotals,
        Self::OneSkuAllNodesColumns,
        Self::OneSkuAllNodesHeldList,
        Self::TwentySkusAllNodes,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Health => "health_check_empty_call",
            Self::OneSkuOneNode => "get_availability_1_sku_1_node",
            Self::OneSkuAllNodes => "get_availability_1_sku_50_nodes",
            Self::OneSkuAllNodesTotals => "get_availability_1_sku_50_nodes_totals_only",
            Self::OneSkuAllNodesColumns => "get_availability_1_sku_50_nodes_columns",
            Self::OneSkuAllNodesHeldList => "get_availability_1_sku_50_nodes_held_node_list",
            Self::TwentySkusAllNodes => "get_availability_20_skus_50_nodes",
        }
    }

    /// The availability request of this call; `None` for the health check.
    fn request(self, one_node: &str) -> Option<pb::AvailabilityRequest> {
        let (skus, node_ids) = match self {
            Self::Health => return None,
            Self::OneSkuOneNode => (1, vec![one_node.to_owned()]),
            Self::OneSkuAllNodes
            | Self::OneSkuAllNodesTotals
            | Self::OneSkuAllNodesColumns
            | Self::OneSkuAllNodesHeldList => (1, Vec::new()),
            Self::TwentySkusAllNodes => (QUERY_SKUS, Vec::new()),
        };
        Some(pb::AvailabilityRequest {
            skus: (0..skus).map(query_sku).collect(),
            node_ids,
            totals_only: matches!(self, Self::OneSkuAllNodesTotals),
            columns: matches!(
                self,
                Self::OneSkuAllNodesColumns | Self::OneSkuAllNodesHeldList
            ),
            ..pb::AvailabilityRequest::default()
        })
    }
}

/// Clients and requests for the compared calls.
struct Caller {
    health: HealthClient<Channel>,
    availability: AvailabilityClient<Channel>,
    requests: Vec<Option<pb::AvailabilityRequest>>,
    /// `authorization` of every availability call, when the service authenticates.
    bearer: Option<MetadataValue<Ascii>>,
}

impl Caller {
    fn new(server: &Server, token: Option<&str>) -> Self {
        let one_node = server.engine.network().nodes()[0].id.clone();
        let mut caller = Self {
            health: HealthClient::new(server.channel.clone()),
            availability: AvailabilityClient::new(server.channel.clone()),
            requests: Call::ALL.iter().map(|c| c.request(&one_node)).collect(),
            bearer: token.map(|t| format!("Bearer {t}").parse().expect("an ASCII token")),
        };
        caller.hold_node_list(server);
        caller
    }

    /// One answer to the availability request of `call`.
    fn answer(&self, server: &Server, call: Call) -> pb::AvailabilityResponse {
        let request = self.requests[call as usize].as_ref().expect("a request");
        let mut client = self.availability.clone();
        server
            .client
            .block_on(client.get_availability(self.ask(request)))
            .expect("GetAvailability answers")
            .into_inner()
    }

    /// Keeps the node list of one columns answer for [`Call::OneSkuAllNodesHeldList`].
    fn hold_node_list(&mut self, server: &Server) {
        let answer = self.answer(server, Call::OneSkuAllNodesColumns);
        let held = self.requests[Call::OneSkuAllNodesHeldList as usize]
            .as_mut()
            .expect("a request");
        held.known_node_list = answer.node_list;
    }

    /// The request, with the caller's credential if it has one.
    fn ask(&self, request: &pb::AvailabilityRequest) -> Request<pb::AvailabilityRequest> {
        let mut request = Request::new(request.clone());
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }

    /// Times `iters` sequential calls of `call`.
    fn time(&self, server: &Server, call: Call, iters: u64) -> Duration {
        match &self.requests[call as usize] {
            None => server.time_calls(iters, &self.health, |mut client| async move {
                client
                    .check(HealthCheckRequest::default())
                    .await
                    .expect("the health check answers")
            }),
            Some(request) => server.time_calls(iters, &self.availability, |mut client| {
                let request = self.ask(request);
                async move {
                    client
                        .get_availability(request)
                        .await
                        .expect("GetAvailability answers")
                }
            }),
        }
    }

    /// Checks once that each availability call answers what it claims to measure, and prints
    /// the size of each answer.
    fn check_answers(&self, server: &Server) {
        let nodes = server.engine.network().nodes().len();
        for (call, items, nodes) in [
            (Call::OneSkuOneNode, 1, 1),
            (Call::OneSkuAllNodes, 1, nodes),
            (Call::OneSkuAllNodesTotals, 1, 0),
            (Call::OneSkuAllNodesColumns, 1, nodes),
            (Call::OneSkuAllNodesHeldList, 1, nodes),
            (Call::TwentySkusAllNodes, QUERY_SKUS, nodes),
        ] {
            let answer = self.answer(server, call);
            assert_eq!(answer.items.len(), items, "{}", call.name());
            // Columns name their nodes unless the caller holds the list.
            match call {
                Call::OneSkuAllNodesColumns => assert_eq!(answer.node_ids.len(), nodes),
                Call::OneSkuAllNodesHeldList => assert!(answer.node_ids.is_empty()),
                _ => {}
            }
            let bytes = prost::Message::encoded_len(&answer);
            println!("{:<50} answers {bytes} bytes", call.name());
            for item in &answer.items {
                let answered = match &item.columns {
                    Some(columns) => columns.atp.len(),
                    None => item.nodes.len(),
                };
                assert_eq!(answered, nodes, "{}", call.name());
                assert!(item.network_atp > 0, "{}", call.name());
            }
        }
    }
}

fn latency(c: &mut Criterion, server: &Server, caller: &Caller) {
    let mut group = c.benchmark_group("grpc");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sample_size(50);
    for call in Call::ALL {
        group.bench_function(call.name(), |b| {
            b.iter_custom(|iters| caller.time(server, call, iters))
        });
    }
    group.finish();
}

/// Something timed: a name, and `iters` sequential calls of it.
type Timed<'a> = (String, Box<dyn Fn(u64) -> Duration + 'a>);

/// Per-call latency of each of `timed`, measured in alternating rounds (each for about
/// `round` per round) so that a change in machine load affects all alike; prints the median
/// round of each and its ratio to the first, the baseline.
fn interleaved_ratios(timed: &[Timed<'_>], rounds: usize, round: Duration) {
    let mut per_call: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); timed.len()];
    // Calls per round, from one timed call each (at least one call per round).
    let calls: Vec<u64> = timed
        .iter()
        .map(|(_, time)| {
            let once = time(1).max(Duration::from_micros(1));
            (round.as_nanos() / once.as_nanos()).max(1) as u64
        })
        .collect();
    for _ in 0..rounds {
        for (i, (_, time)) in timed.iter().enumerate() {
            let took = time(calls[i]);
            per_call[i].push(took.as_secs_f64() * 1e6 / calls[i] as f64);
        }
    }
    let medians: Vec<f64> = per_call
        .iter_mut()
        .map(|rounds| {
            rounds.sort_by(f64::total_cmp);
            rounds[rounds.len() / 2]
        })
        .collect();
    println!(
        "\ninterleaved: median of {rounds} rounds of about {round:?} of sequential calls each"
    );
    for (i, (name, _)) in timed.iter().enumerate() {
        println!(
            "  {:<50} {:>9.1} µs/call  {:>6.2}x {}  ({} calls/round)",
            name,
            medians[i],
            medians[i] / medians[0],
            timed[0].0,
            calls[i],
        );
    }
}

/// Each call of [`Call::ALL`] on `server`, the empty call first.
fn every_call<'a>(server: &'a Server, caller: &'a Caller) -> Vec<Timed<'a>> {
    Call::ALL
        .iter()
        .map(|&call| {
            let time: Box<dyn Fn(u64) -> Duration + 'a> =
                Box::new(move |iters| caller.time(server, call, iters));
            (call.name().to_owned(), time)
        })
        .collect()
}

/// `GetAvailability` of 1 SKU at 1 node, and at 50, plaintext without authentication first,
/// then over TLS with a JWT.
fn tls_and_jwt<'a>(
    plain: (&'a Server, &'a Caller),
    secure: (&'a Server, &'a Caller),
) -> Vec<Timed<'a>> {
    let mut timed: Vec<Timed<'a>> = Vec::new();
    for call in [Call::OneSkuOneNode, Call::OneSkuAllNodes] {
        for (label, (server, caller)) in [("plaintext_no_auth", plain), ("tls_jwt", secure)] {
            let time: Box<dyn Fn(u64) -> Duration + 'a> =
                Box::new(move |iters| caller.time(server, call, iters));
            timed.push((format!("{label}/{}", call.name()), time));
        }
    }
    timed
}

/// Criterion's figures of [`tls_and_jwt`].
fn security_latency(c: &mut Criterion, timed: &[Timed<'_>]) {
    let mut group = c.benchmark_group("grpc_security");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sample_size(50);
    for (name, time) in timed {
        group.bench_function(name, |b| b.iter_custom(time));
    }
    group.finish();
}

/// One feed's open `StreamUpdates` stream, replaying prepared batches under fresh sequence
/// numbers with up to [`IN_FLIGHT`] batches awaiting their ack.
struct IngestStream {
    batches: mpsc::Sender<pb::SupplyBatch>,
    acks: Streaming<pb::SupplyAck>,
    prepared: Vec<pb::SupplyBatch>,
    next: usize,
    seq: u64,
    in_flight: usize,
}

impl IngestStream {
    /// Opens a WMS stream with batches of SETs and ADJUSTs of on-hand at random WMS nodes.
    fn open(server: &Server) -> Self {
        let nodes = owned_nodes(&server.engine, "WMS", SupplyType::OnHand);
        let as_of = prost_types::Timestamp {
            seconds: server.engine.now_ms() / 1000,
            nanos: 0,
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let prepared = (0..STREAM_BATCHES)
            .map(|_| pb::SupplyBatch {
                source_id: "WMS".into(),
                seq: 0,
                updates: (0..BATCH)
                    .map(|_| {
                        let set = rng.random_bool(0.5);
                        pb::SupplyUpdate {
                            sku: common::sku(rng.random_range(0..STREAM_SKUS)),
                            node_id: nodes[rng.random_range(0..nodes.len())].clone(),
                            supply_type: pb::SupplyType::OnHand.into(),
                            op: if set {
                                pb::UpdateOp::Set
                            } else {
                                pb::UpdateOp::Adjust
                            }
                            .into(),
                            quantity: if set {
                                rng.random_range(0..500)
                            } else {
                                rng.random_range(1..4)
                            },
                            as_of: set.then_some(as_of),
                            ..pb::SupplyUpdate::default()
                        }
                    })
                    .collect(),
            })
            .collect();
        let seq = Feed::resume(&server.engine, "WMS").seq;
        let (batches, outbound) = mpsc::channel(IN_FLIGHT);
        let mut client = SupplyClient::new(server.channel.clone());
        let acks = server
            .client
            .block_on(client.stream_updates(ReceiverStream::new(outbound)))
            .expect("the feed stream opens")
            .into_inner();
        Self {
            batches,
            acks,
            prepared,
            next: 0,
            seq,
            in_flight: 0,
        }
    }

    /// Sends `count` batches and waits for all their acks; returns the updates applied.
    async fn run(&mut self, count: u64) -> u64 {
        let mut applied = 0;
        for _ in 0..count {
            if self.in_flight == IN_FLIGHT {
                applied += self.ack().await;
            }
            self.seq += 1;
            let mut batch = self.prepared[self.next].clone();
            self.next = (self.next + 1) % self.prepared.len();
            batch.seq = self.seq;
            self.batches
                .send(batch)
                .await
                .expect("the feed stream is open");
            self.in_flight += 1;
        }
        while self.in_flight > 0 {
            applied += self.ack().await;
        }
        applied
    }

    /// The next ack, checked to be for a batch applied in full.
    async fn ack(&mut self) -> u64 {
        let ack = self
            .acks
            .message()
            .await
            .expect("the feed stream answers")
            .expect("an ack per batch");
        self.in_flight -= 1;
        assert!(
            !ack.duplicate && ack.rejected == 0 && ack.stale == 0,
            "batch {} not applied in full: {ack:?}",
            ack.seq
        );
        u64::from(ack.applied)
    }
}

fn stream_ingest(c: &mut Criterion, server: &Server) {
    let mut stream = IngestStream::open(server);
    // One pass creates the positions, so that the bench measures steady-state updates, and
    // proves that every update of every prepared batch is applied.
    let applied = server.client.block_on(stream.run(STREAM_BATCHES as u64));
    assert_eq!(applied, (STREAM_BATCHES * BATCH) as u64);

    let mut group = c.benchmark_group("grpc_stream");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .sample_size(20)
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("stream_updates_batches_of_1000", |b| {
        b.iter_custom(|batches| {
            let started = Instant::now();
            let applied = server.client.block_on(stream.run(batches));
            let took = started.elapsed();
            assert_eq!(applied, batches * BATCH as u64);
            took
        })
    });
    group.finish();
}

/// The TLS + JWT comparison, on a second service that runs only meanwhile: a client
/// connection left idle would miss the server's keepalive pings (the client's runtime runs
/// only inside its calls) and be closed.
fn security_comparison(criterion: &mut Criterion, server: &Server, caller: &Caller) {
    let security = BenchSecurity::new("grpc");
    let protected = secure(&security);
    let token = security.token(
        "bench",
        "availability:read",
        SystemClock.now_ms() + 86_400_000,
    );
    let authenticated = Caller::new(&protected, Some(&token));
    authenticated.check_answers(&protected);
    let compared = tls_and_jwt((server, caller), (&protected, &authenticated));
    security_latency(criterion, &compared);
    if common::benchmarking() {
        interleaved_ratios(&compared, 30, Duration::from_millis(50));
    }
    drop(compared);
    protected.stop();
}

fn main() {
    let server = plaintext();
    let caller = Caller::new(&server, None);
    caller.check_answers(&server);
    let mut criterion = Criterion::default().configure_from_args();
    latency(&mut criterion, &server, &caller);
    security_comparison(&mut criterion, &server, &caller);
    stream_ingest(&mut criterion, &server);
    criterion.final_summary();
    // Only when benchmarking: `cargo test --benches` runs each bench once as a smoke test.
    if common::benchmarking() {
        interleaved_ratios(&every_call(&server, &caller), 30, Duration::from_millis(50));
    }
    server.stop();
}
