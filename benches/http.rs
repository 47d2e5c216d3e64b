//! The HTTP/JSON edge end to end over loopback, beside gRPC in the same run: the service runs
//! in-process on its own multi-thread runtime (in memory, no authentication, the demo
//! network), clients on a single-thread runtime of their own, each on one kept-alive
//! connection.
//!
//! - `GET /v1/skus/{sku}/availability?node_ids=..` against `Availability/GetAvailability` of
//!   the same SKU and node over gRPC: criterion's figures for each, then the ratio of the
//!   medians of alternating rounds, so that a change in machine load affects both alike.
//! - Webhook ingest: 1,000-update batches posted to `/v1/sources/{source}/batches`, one
//!   delivery in flight per on-hand source (WMS and POS, so two at once), as updates per
//!   second, answers included.
//!
//! `cargo bench --bench http` (add `-- ingest` or `-- availability` to run part of it).

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
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use promised::clock::SystemClock;
use promised::config::{Config, ServeArgs};
use promised::domain::SupplyType;
use promised::grpc::pb::{self, availability_client::AvailabilityClient};
use promised::server::Application;
use serde_json::json;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

use common::{benchmarking, load_demo_network, on_hand_owner, owned_nodes, Feed, BATCH};

const SKU: &str = "HTTP-BENCH-1";
/// Alternating rounds for the ratio, and the calls in each.
const ROUNDS: usize = 15;
const CALLS_PER_ROUND: usize = 300;

struct Bench {
    server: Runtime,
    client: Runtime,
    grpc: SocketAddr,
    http: SocketAddr,
    /// The node of the availability calls.
    node: String,
    /// Each on-hand source, the nodes it owns and its webhook path.
    feeds: [(&'static str, Vec<String>, String); 2],
}

impl Bench {
    fn start() -> Self {
        let server = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (grpc, http, node, feeds) = server.block_on(async {
            let args = ServeArgs {
                grpc_addr: Some("127.0.0.1:0".into()),
                metrics_addr: Some("127.0.0.1:0".into()),
                http_addr: Some("127.0.0.1:0".into()),
                insecure_no_auth: true,
                ..ServeArgs::default()
            };
            let config = Config::resolve(&args, &HashMap::new()).expect("a valid configuration");
            let app = Application::build(config, Arc::new(SystemClock))
                .await
                .expect("the service builds");
            load_demo_network(app.engine(), app.durability()).await;
            let engine = app.engine().clone();
            let node = engine.network().nodes()[0].id.clone();
            let mut feed = Feed::resume(&engine, on_hand_owner(&engine, &node));
            let now_ms = engine.now_ms();
            feed.apply_all(
                &engine,
                vec![common::on_hand_set(SKU.into(), node.clone(), 50, now_ms)],
            );
            let feeds = ["WMS", "POS"].map(|source| {
                let nodes = owned_nodes(&engine, source, SupplyType::OnHand);
                (source, nodes, format!("/v1/sources/{source}/batches"))
            });
            let addrs = (app.grpc_addr(), app.http_addr());
            tokio::spawn(app.run_until_stopped(std::future::pending()));
            (addrs.0, addrs.1, node, feeds)
        });
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Self {
            server,
            client,
            grpc,
            http,
            node,
            feeds,
        }
    }

    fn grpc_client(&self) -> AvailabilityClient<Channel> {
        let url = format!("http://{}", self.grpc);
        self.client
            .block_on(AvailabilityClient::connect(url))
            .expect("gRPC connects")
    }

    fn http_client(&self) -> SendRequest<Full<Bytes>> {
        let http = self.http;
        self.client.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(http)
                .await
                .expect("HTTP connects");
            tcp.set_nodelay(true).expect("no delay");
            let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(connection);
            // A connection silent for the handshake timeout is closed: speak at once.
            let mut send = send;
            let (status, _) = call(&mut send, "GET", "/v1/stats", Bytes::new()).await;
            assert_eq!(status, 200);
            send
        })
    }
}

/// One call over HTTP: the answer's status and body.
async fn call(
    send: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Bytes,
) -> (u16, Bytes) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("a request");
    send.ready().await.expect("the connection is open");
    let response = send.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes(),
    )
}

fn availability(c: &mut Criterion, bench: &Bench) {
    let mut grpc = bench.grpc_client();
    let mut http = bench.http_client();
    let request = pb::AvailabilityRequest {
        skus: vec![SKU.into()],
        node_ids: vec![bench.node.clone()],
        ..Default::default()
    };
    let path = format!("/v1/skus/{SKU}/availability?node_ids={}", bench.node);
    let mut over_grpc = |n: usize| {
        bench.client.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                let answer = grpc
                    .get_availability(request.clone())
                    .await
                    .expect("answers");
                black_box(answer);
            }
            started.elapsed()
        })
    };
    let mut over_http = |n: usize| {
        bench.client.block_on(async {
            let started = Instant::now();
            for _ in 0..n {
                let (status, body) = call(&mut http, "GET", &path, Bytes::new()).await;
                assert_eq!(status, 200, "{body:?}");
                black_box(body);
            }
            started.elapsed()
        })
    };
    let mut group = c.benchmark_group("http");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("grpc_get_availability_1_sku_1_node", |b| {
        b.iter_custom(|iters| over_grpc(iters as usize))
    });
    group.bench_function("http_get_availability_1_sku_1_node", |b| {
        b.iter_custom(|iters| over_http(iters as usize))
    });
    group.finish();
    if !benchmarking() {
        return;
    }
    let (mut grpc_rounds, mut http_rounds) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        grpc_rounds.push(over_grpc(CALLS_PER_ROUND).as_secs_f64());
        http_rounds.push(over_http(CALLS_PER_ROUND).as_secs_f64());
    }
    let median = |rounds: &mut Vec<f64>| {
        rounds.sort_by(f64::total_cmp);
        rounds[rounds.len() / 2] * 1e6 / CALLS_PER_ROUND as f64
    };
    let (grpc_us, http_us) = (median(&mut grpc_rounds), median(&mut http_rounds));
    println!(
        "\nalternating rounds ({ROUNDS} x {CALLS_PER_ROUND} calls): gRPC {grpc_us:.1} µs/call, \
         HTTP/JSON {http_us:.1} µs/call, ratio {:.2}x",
        http_us / grpc_us
    );
}

/// A delivery of `BATCH` on-hand adjustments at `nodes`.
fn delivery(seq: u64, nodes: &[String]) -> Bytes {
    let updates: Vec<_> = (0..BATCH)
        .map(|i| {
            json!({"sku": format!("INGEST-{i:05}"), "nodeId": nodes[i % nodes.len()],
                "supplyType": "SUPPLY_TYPE_ON_HAND", "op": "UPDATE_OP_ADJUST", "quantity": "1"})
        })
        .collect();
    Bytes::from(json!({"seq": seq.to_string(), "updates": updates}).to_string())
}

fn ingest(c: &mut Criterion, bench: &Bench) {
    let [wms, pos] = &bench.feeds;
    let (mut to_wms, mut to_pos) = (bench.http_client(), bench.http_client());
    // Past every earlier batch of either source, within the sequence gap a batch may jump.
    let mut seq = 1_000u64;
    let mut group = c.benchmark_group("http");
    group
        .throughput(Throughput::Elements(2 * BATCH as u64))
        .measurement_time(Duration::from_secs(8))
        .sample_size(20);
    group.bench_function("webhook_ingest_1000_update_batches", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                let bodies = (delivery(seq, &wms.1), delivery(seq, &pos.1));
                took += bench.client.block_on(async {
                    let started = Instant::now();
                    let (a, b) = tokio::join!(
                        call(&mut to_wms, "POST", &wms.2, bodies.0),
                        call(&mut to_pos, "POST", &pos.2, bodies.1),
                    );
                    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
                    started.elapsed()
                });
            }
            took
        })
    });
    group.finish();
}

fn main() {
    let bench = Bench::start();
    let mut c = Criterion::default().configure_from_args();
    availability(&mut c, &bench);
    ingest(&mut c, &bench);
    c.final_summary();
    drop(bench.server);
}
