//! The real binary under a flood of large requests: its resident memory stays within what its
//! in-flight byte limit lets in, plus a fixed allowance, and it answers afterwards.

use std::sync::Arc;

use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use tokio::task::JoinSet;
use tonic::codegen::Bytes;
use tonic::Code;

use crate::binary::Binary;
use crate::raw::{framed, RawConnection};

const MIB: usize = 1 << 20;

/// The server's limit on request bytes in flight.
const LIMIT: usize = 64 * MIB;

/// Concurrent callers of requests of 4 to 11 MiB each: about 1.1 GiB in flight, far over
/// the limit; each sends its next request as soon as the last is answered.
const FLOOD: usize = 150;
const ROUNDS: usize = 4;

/// Connections the flood is spread over.
const CONNECTIONS: usize = 10;

/// What the server may hold beyond what it held before the flood: each message let in at
/// most twice while it is decoded (tonic's buffer and the decoded request), each connection's
/// 1 MiB HTTP/2 window of refused bodies, and an allowance for the allocator and the runtime.
/// Without the limit the same flood took the server to 1.2 GiB.
const ALLOWED_GROWTH: usize = 2 * LIMIT + CONNECTIONS * MIB + 32 * MIB;

/// A kibibyte figure of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: usize = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("kB");
    kib * 1024
}

/// A supply batch naming a source id of `bytes` bytes, framed: within the message limit (a
/// query that long would be refused at its length prefix by the query limit), so decoded
/// whole by the server, then refused as NOT_FOUND (no such source).
fn large_request(bytes: usize) -> Bytes {
    let request = pb::SupplyBatch {
        source_id: "S".repeat(bytes),
        seq: 1,
        ..Default::default()
    };
    framed(&request).into()
}

#[tokio::test]
async fn a_flood_of_large_requests_keeps_memory_within_the_in_flight_limit() {
    let limit = LIMIT.to_string();
    let server = Binary::start(&["--max-in-flight-bytes", &limit, "--log", "error"]).await;
    let before = status_bytes(server.pid(), "VmRSS:");
    // One body per size, shared by every call of that size.
    let bodies: Vec<Bytes> = (4..12).map(|mib| large_request(mib * MIB)).collect();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(Arc::new(RawConnection::open(server.grpc_addr).await));
    }
    let mut callers = JoinSet::new();
    for i in 0..FLOOD {
        let connection = connections[i % CONNECTIONS].clone();
        let body = bodies[i % bodies.len()].clone();
        callers.spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..ROUNDS {
                let method = "/promised.v1.Supply/ApplyBatch";
                let mut call = connection.call(method, &[]).await;
                call.send(body.clone(), true);
                codes.push(call.code().await);
            }
            codes
        });
    }
    let (mut shed, mut taken) = (0, 0);
    while let Some(codes) = callers.join_next().await {
        for code in codes.expect("a caller") {
            match code {
                Code::ResourceExhausted => shed += 1,
                Code::NotFound => taken += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // The high-water mark of the resident set: its peak over the flood.
    let peak = status_bytes(server.pid(), "VmHWM:");
    assert!(shed > 0 && taken > 0, "{taken} taken, {shed} shed");
    assert!(
        peak < before + ALLOWED_GROWTH,
        "resident {} MiB at peak, {} MiB before",
        peak / MIB,
        before / MIB
    );
    let stats = AdminClient::new(server.channel.clone())
        .get_stats(pb::GetStatsRequest {})
        .await;
    assert!(stats.is_ok(), "still answers: {stats:?}");
    let metrics = crate::operations::scrape_at(server.metrics_addr).await;
    assert!(
        metrics.contains(promised::metrics::RPC_DURATION),
        "still scraped, with the calls it answered"
    );
}
