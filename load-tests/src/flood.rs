//! `promised-load flood`: a well-behaved client's latency while other clients flood the server
//! with large requests, against the same client's latency on the idle server, and how fast
//! the flood's excess is shed (`RESOURCE_EXHAUSTED` from the in-flight byte limit).
//!
//! The flood's requests are of 4 to 11 MiB, encoded once and sent as they are, so the
//! generator spends its CPU on sending rather than on encoding; by `--rpc`, either:
//! - availability requests of one SKU id that long: far over the query services' message
//!   limit, each is refused at its length prefix, unread (`RESOURCE_EXHAUSTED`);
//! - supply batches (`ApplyBatch`) naming a source id that long: within the message limit,
//!   each is either shed at its length prefix by the in-flight byte limit, or let in,
//!   decoded whole and refused as `NOT_FOUND` (no source has that id).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tonic::codegen::http::{HeaderMap, Request};
use tonic::codegen::Bytes;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::catalogue::sku;
use crate::lab::{connect, Lab};
use crate::process::{own_cpu_seconds, status_bytes, CpuMeter, Placement};
use crate::service::ServiceSettings;
use crate::stats::{summarize, CallSummary};
use crate::workload::TargetKind;

const MIB: usize = 1 << 20;

/// The generator's idea of a call that hangs: far beyond any answer the server should give.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The timing probe's wait between its large calls: it measures refusals, it is not part of
/// the flood, and sent back to back it would take the CPU the flood's senders need.
const PROBE_PAUSE: Duration = Duration::from_millis(10);

/// Connections the timing probe takes turns on: it stands for clients that are refused now
/// and then, each within the allowance of refusals the server gives a connection (at most
/// about 100 calls/s over 16 connections is 6 a second each; the default allowance is 20).
const PROBE_CONNECTIONS: usize = 16;

/// The call the flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloodRpc {
    /// `Availability/GetAvailability`, a query: refused by its length alone.
    Availability,
    /// `Supply/ApplyBatch`, a feed batch: measured against the in-flight byte limit.
    ApplyBatch,
}

impl FloodRpc {
    fn path(self) -> &'static str {
        match self {
            FloodRpc::Availability => "/promised.v1.Availability/GetAvailability",
            FloodRpc::ApplyBatch => "/promised.v1.Supply/ApplyBatch",
        }
    }

    /// A framed request (gRPC's length prefix, then the message) of about `bytes` bytes,
    /// nearly all of them one over-long id.
    fn request(self, bytes: usize) -> Bytes {
        let id = "S".repeat(bytes);
        let message = match self {
            FloodRpc::Availability => pb::AvailabilityRequest {
                skus: vec![id],
                ..Default::default()
            }
            .encode_to_vec(),
            FloodRpc::ApplyBatch => pb::SupplyBatch {
                source_id: id,
                seq: 1,
                ..Default::default()
            }
            .encode_to_vec(),
        };
        let mut framed = Vec::with_capacity(5 + message.len());
        framed.push(0);
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        framed.into()
    }
}

/// What a flood run does.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    /// The call every large request is.
    pub rpc: FloodRpc,
    /// SKUs loaded before the run; the well-behaved client reads them at random.
    pub skus: usize,
    /// Length of the idle window and of the flood window.
    pub window: Duration,
    /// Flooding callers, each sending its next request as soon as the last is answered.
    pub callers: usize,
    /// Connections the flood is spread over.
    pub connections: usize,
    /// Size range of a flood request, in MiB.
    pub min_mib: usize,
    pub max_mib: usize,
    /// The well-behaved client's calls in flight (closed loop, on a connection of its own).
    pub probes: usize,
    /// What the server is started with.
    pub service: ServiceSettings,
}

/// The figures of a run.
#[derive(Debug)]
pub struct FloodReport {
    pub idle: CallSummary,
    pub during_flood: CallSummary,
    /// The flood's own calls, as its saturated senders saw them.
    pub flood: Outcomes,
    /// One large request at a time from the well-behaved client's thread during the flood:
    /// how long a refusal takes for a sender that is not itself saturated.
    pub shed_probe: Outcomes,
    /// CPU seconds per second of the flood window: the server, and this generator.
    pub server_cores: f64,
    pub generator_cores: f64,
    /// The server's peak resident memory (VmHWM) after the run, in MiB.
    pub server_peak_mib: f64,
}

/// Large calls by how they ended, latencies in nanoseconds.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Refused before they were read (`RESOURCE_EXHAUSTED`).
    pub shed: Vec<u64>,
    /// Let in, decoded and refused (`INVALID_ARGUMENT`, or `NOT_FOUND` for an unknown source).
    pub admitted: Vec<u64>,
    /// Any other end, by code.
    pub other: Vec<(Code, u64)>,
}

impl Outcomes {
    fn add(&mut self, code: Code, nanos: u64) {
        match code {
            Code::ResourceExhausted => self.shed.push(nanos),
            // The request's own fault, found once it was read whole.
            Code::InvalidArgument | Code::NotFound => self.admitted.push(nanos),
            code => match self.other.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => self.other.push((code, 1)),
            },
        }
    }
}

/// Starts promised, loads a catalogue, measures the idle window, then the flood window.
pub async fn flood(
    plan: &FloodPlan,
    exe: &std::path::Path,
    placement: &Placement,
) -> anyhow::Result<FloodReport> {
    let promised = [TargetKind::Promised];
    let lab = Lab::start(exe, placement, &promised, 1, 1, &plan.service).await?;
    lab.load(plan.skus, 7).await?;
    let requests = Arc::new(flood_requests(plan));
    let (idle, _) = probes(plan, lab.service_addr(), "idle", None).await?;

    let meter = CpuMeter::start(lab.processes(TargetKind::Promised));
    let generator_cpu = own_cpu_seconds();
    let started = Instant::now();
    let until = started + plan.window;
    let smallest = (plan.rpc, requests[0].clone());
    let flood = on_own_thread(
        Priority::Lowest,
        flood_window(lab.service_addr(), plan.clone(), requests, until),
    );
    let (during_flood, shed_probe) =
        probes(plan, lab.service_addr(), "during flood", Some(smallest)).await?;
    let flood = flood.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu: f64 = meter.stop().get("promised").copied().unwrap_or(0.0);
    Ok(FloodReport {
        idle,
        during_flood,
        flood,
        shed_probe,
        server_cores: server_cpu / elapsed,
        generator_cores: (own_cpu_seconds() - generator_cpu) / elapsed,
        server_peak_mib: status_bytes(lab.service_pid(), "VmHWM")? as f64 / MIB as f64,
    })
}

/// The flood until `until`: `plan.callers` callers spread over `plan.connections`
/// connections of their own.
async fn flood_window(
    addr: SocketAddr,
    plan: FloodPlan,
    requests: Arc<Vec<Bytes>>,
    until: Instant,
) -> anyhow::Result<Outcomes> {
    let flooders = Sender::open_all(addr, plan.connections).await?;
    let mut callers = JoinSet::new();
    let rpc = plan.rpc;
    for caller in 0..plan.callers {
        let sender = [flooders[caller % flooders.len()].clone()];
        let requests = requests.clone();
        callers.spawn(async move {
            let caller = (caller, Duration::ZERO);
            flood_caller(rpc, &sender, requests, caller, until).await
        });
    }
    let mut flood = Outcomes::default();
    while let Some(calls) = callers.join_next().await {
        for (code, nanos) in calls.context("a flood caller panicked")? {
            flood.add(code, nanos);
        }
    }
    Ok(flood)
}

/// The well-behaved client for one window: `plan.probes` callers in closed loop, each asking
/// the network availability of one random SKU, and with `large`, one caller sending that
/// request over and over. Each runs on a thread, runtime and connection of its own, so that
/// neither the flood's sending nor the large body queues the small calls inside the
/// generator. Any failure of a small call ends the run: a well-behaved client must never be
/// refused.
async fn probes(
    plan: &FloodPlan,
    addr: SocketAddr,
    label: &str,
    large: Option<(FloodRpc, Bytes)>,
) -> anyhow::Result<(CallSummary, Outcomes)> {
    let (probes, skus, window) = (plan.probes, plan.skus, plan.window);
    let until = Instant::now() + window;
    let large = large.map(|(rpc, body)| {
        on_own_thread(Priority::Normal, async move {
            let senders = Sender::open_all(addr, PROBE_CONNECTIONS).await?;
            let caller = (0, PROBE_PAUSE);
            Ok(flood_caller(rpc, &senders, Arc::new(vec![body]), caller, until).await)
        })
    });
    let small = on_own_thread(Priority::Normal, async move {
        let channel = connect(addr, 1).await?.remove(0);
        probe_window(channel, probes, skus, until).await
    });
    let latencies = small.await?;
    let mut outcomes = Outcomes::default();
    if let Some(large) = large {
        for (code, nanos) in large.await? {
            outcomes.add(code, nanos);
        }
    }
    Ok((summarize(label, latencies, window), outcomes))
}

/// The CPU priority of a client thread of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priority {
    Normal,
    /// The lowest (nice 19): it gets little of a CPU a thread of normal priority wants. The
    /// flood's senders run so: on a real network they would be other machines, and here they
    /// would otherwise take the well-behaved client's CPU and put the generator's queueing in
    /// its latencies. The server gets no such help; its own CPU is the flood's.
    Lowest,
}

impl Priority {
    fn apply(self) -> anyhow::Result<()> {
        if self == Priority::Normal {
            return Ok(());
        }
        // SAFETY: gettid and setpriority take and return plain integers; the target is the
        // calling thread.
        let set =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
        if set != 0 {
            let error = std::io::Error::last_os_error();
            anyhow::bail!("cannot lower the flood's thread priority: {error}");
        }
        Ok(())
    }
}

/// Starts `work` at once on a new thread of `priority` with a runtime of its own
/// (connections it opens are driven there too); the answer is its result.
fn on_own_thread<T: Send + 'static>(
    priority: Priority,
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> impl std::future::Future<Output = anyhow::Result<T>> {
    let thread = std::thread::spawn(move || {
        priority.apply()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(work)
    });
    async move {
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?
    }
}

async fn probe_window(
    channel: Channel,
    probes: usize,
    skus: usize,
    until: Instant,
) -> anyhow::Result<Vec<u64>> {
    let mut callers = JoinSet::new();
    for caller in 0..probes {
        let mut client = AvailabilityClient::new(channel.clone());
        callers.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(caller as u64);
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let request = pb::AvailabilityRequest {
                    skus: vec![sku(rng.random_range(0..skus))],
                    ..Default::default()
                };
                let start = Instant::now();
                client.get_availability(request).await?;
                latencies.push(start.elapsed().as_nanos() as u64);
            }
            Ok::<_, Status>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(caller) = callers.join_next().await {
        latencies.extend(
            caller
                .context("a probe panicked")?
                .context("a well-behaved call")?,
        );
    }
    Ok(latencies)
}

/// Eight encoded flood requests of sizes spread over the plan's range.
fn flood_requests(plan: &FloodPlan) -> Vec<Bytes> {
    let (min, max) = (plan.min_mib * MIB, plan.max_mib.max(plan.min_mib) * MIB);
    (0..8)
        .map(|k| plan.rpc.request(min + (max - min) * k / 7))
        .collect()
}

/// One flooding caller until `until`, cycling through `requests` from its own offset and
/// taking turns on `senders`, each call `pause` after the last was answered: each call's
/// final code and latency in nanoseconds.
async fn flood_caller(
    rpc: FloodRpc,
    senders: &[Sender],
    requests: Arc<Vec<Bytes>>,
    (caller, pause): (usize, Duration),
    until: Instant,
) -> Vec<(Code, u64)> {
    let mut calls = Vec::new();
    let mut next = caller;
    while Instant::now() < until {
        let body = requests[next % requests.len()].clone();
        let sender = &senders[next % senders.len()];
        next += 1;
        calls.push(sender.call(rpc.path(), body).await);
        tokio::time::sleep(pause).await;
    }
    calls
}

/// One HTTP/2 connection of the flood, its gRPC calls written by hand: a request's framed
/// bytes are handed to the connection as they are, where tonic's client would copy each
/// message into a buffer of its own first, and a flood sender would spend its CPU on that.
#[derive(Clone)]
struct Sender {
    authority: String,
    requests: h2::client::SendRequest<Bytes>,
}

impl Sender {
    /// Connects; the connection is driven on the current runtime.
    async fn open(addr: SocketAddr) -> anyhow::Result<Sender> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (requests, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        Ok(Sender {
            authority: addr.to_string(),
            requests,
        })
    }

    /// `connections` senders to `addr`.
    async fn open_all(addr: SocketAddr, connections: usize) -> anyhow::Result<Vec<Sender>> {
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            senders.push(Sender::open(addr).await?);
        }
        Ok(senders)
    }

    /// One call of `path` with an already framed request: how it ended and how long it took,
    /// in nanoseconds, from just before its headers were sent.
    async fn call(&self, path: &str, framed: Bytes) -> (Code, u64) {
        let start = Instant::now();
        let code = match tokio::time::timeout(CALL_TIMEOUT, self.exchange(path, framed)).await {
            Ok(Ok(code)) => code,
            // A reset stream or a lost connection: the call was not answered.
            Ok(Err(_)) => Code::Unavailable,
            Err(_) => Code::DeadlineExceeded,
        };
        (code, start.elapsed().as_nanos() as u64)
    }

    async fn exchange(&self, path: &str, framed: Bytes) -> anyhow::Result<Code> {
        let request = Request::post(format!("http://{}{path}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let mut requests = self.requests.clone().ready().await?;
        let (response, mut body) = requests.send_request(request, false)?;
        // Buffered until the server's window allows; a server that has answered already
        // resets the stream, and the rest is never sent.
        let _ = body.send_data(framed, true);
        let (parts, mut answer) = response.await?.into_parts();
        if let Some(code) = grpc_status(&parts.headers) {
            return Ok(code);
        }
        while let Some(data) = answer.data().await {
            let _ = answer.flow_control().release_capacity(data?.len());
        }
        let trailers = answer.trailers().await?.unwrap_or_default();
        grpc_status(&trailers).context("an answer without grpc-status")
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(Code::from(code))
}

impl FloodReport {
    /// The report as Markdown: the two windows of the well-behaved client and the large
    /// calls' outcomes.
    pub fn markdown(&self, plan: &FloodPlan, placement: &Placement) -> String {
        let row = |name: &str, s: &CallSummary| {
            format!(
                "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                s.count, s.per_sec, s.p50_us, s.p99_us, s.p999_us, s.max_us
            )
        };
        let window = plan.window;
        let mut out = format!(
            "flood: {} callers over {} connections, {:?} requests of {}-{} MiB, {} s windows; \
             well-behaved client: {} in flight, and one {} MiB request every 10 ms or more \
             taking turns on {PROBE_CONNECTIONS} connections, each on a thread of its own; \
             refusals a connection earns back per second: {}, at once: {}; {}\n\n",
            plan.callers,
            plan.connections,
            plan.rpc,
            plan.min_mib,
            plan.max_mib,
            window.as_secs_f64(),
            plan.probes,
            plan.min_mib,
            plan.service
                .refusals_per_connection_per_sec
                .map_or("the server's default".to_owned(), |rate| rate.to_string()),
            plan.service
                .refusal_burst
                .map_or("the server's default".to_owned(), |burst| burst.to_string()),
            placement.describe(),
        );
        out.push_str("| calls | count | per s | p50 µs | p99 µs | p99.9 µs | max µs |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&row("well-behaved, idle", &self.idle));
        out.push_str(&row("well-behaved, during the flood", &self.during_flood));
        for (who, outcomes) in [("flood", &self.flood), ("probe", &self.shed_probe)] {
            let shed = summarize("shed", outcomes.shed.clone(), window);
            let admitted = summarize("admitted", outcomes.admitted.clone(), window);
            out.push_str(&row(&format!("{who}: shed (RESOURCE_EXHAUSTED)"), &shed));
            out.push_str(&row(
                &format!("{who}: admitted, read whole and refused"),
                &admitted,
            ));
            for (code, count) in &outcomes.other {
                out.push_str(&format!("| {who}: ended {code:?} | {count} | | | | | |\n"));
            }
        }
        let ratio = self.during_flood.p99_us / self.idle.p99_us.max(1e-9);
        out.push_str(&format!(
            "\nwell-behaved p99 during the flood / idle: {ratio:.2}x; CPU during the flood: \
             server {:.2} cores, generator {:.2} cores; server peak RSS {:.0} MiB\n",
            self.server_cores, self.generator_cores, self.server_peak_mib
        ));
        out
    }
}
