//! The load generator. Open loop: arrivals at a fixed rate, paced by a dedicated thread (finer
//! than the async timer's millisecond), each operation's latency counted from its intended
//! send time, so a slow answer cannot hold back the next request and hide its own delay (no
//! coordinated omission). Closed loop: a fixed number of workers, each sending its next
//! operation when the previous one is answered. Operations spread over several HTTP/2
//! connections; a progress line goes to stderr once a second.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::feed::{self, FeedTarget};
use crate::stats::{Recorder, Samples};
use crate::workload::{self, choose, Client, Op, Scenario, TargetKind, Workload};
use crate::workload::{CALL_TIMEOUT, MAX_CALLS_PER_OP};

/// Arrivals beyond this many operations in flight are not sent and count as
/// `CLIENT_OVERLOAD`: the generator's memory stays bounded when a target stalls.
const MAX_IN_FLIGHT: i64 = 20_000;

/// Time for the first arrival to be scheduled after the phase is set up.
const LEAD: Duration = Duration::from_millis(20);

/// Longest an operation can take; the phase waits this long at most for the last ones.
const DRAIN: Duration = Duration::from_secs(CALL_TIMEOUT.as_secs() * MAX_CALLS_PER_OP as u64 + 1);

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Mode {
    /// Arrivals per second.
    Open { rate: f64 },
    /// Operations in flight.
    Closed { concurrency: usize },
}

impl Mode {
    pub fn describe(&self) -> String {
        match self {
            Mode::Open { rate } => format!("open loop {rate:.0}/s"),
            Mode::Closed { concurrency } => format!("closed loop x{concurrency}"),
        }
    }
}

/// One measured run of a scenario against a target.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub target: TargetKind,
    pub scenario: Scenario,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// Supply updates per second, for scenarios with a feed.
    pub feed_rate: f64,
}

impl PhaseSpec {
    pub fn label(&self) -> String {
        format!(
            "{} {} {}",
            self.target.name(),
            self.scenario.name(),
            self.mode.describe()
        )
    }
}

/// What a phase measured.
#[derive(Debug)]
pub struct PhaseRun {
    pub spec: PhaseSpec,
    pub samples: Samples,
    /// Supply updates the feed sent in the window.
    pub feed_updates: u64,
    /// Operations of the whole phase, warm-up included (what the CPU time was spent on).
    pub all_ops: u64,
}

/// Runs a phase: warm-up, then the measured window, then waits (bounded) for the last
/// operations. `clients` are one per connection.
pub async fn run_phase(
    spec: PhaseSpec,
    clients: Vec<Client>,
    workload: Arc<Workload>,
    feed: Option<FeedTarget>,
) -> anyhow::Result<PhaseRun> {
    let ops = spec.scenario.ops(spec.target).ok_or_else(|| {
        anyhow::anyhow!("{} cannot run {}", spec.target.name(), spec.scenario.name())
    })?;
    anyhow::ensure!(
        !clients.is_empty(),
        "no connection to {}",
        spec.target.name()
    );
    let feed = match (feed, spec.scenario.has_feed()) {
        (Some(target), true) => Some(target),
        (None, true) => anyhow::bail!("{} has no feed", spec.target.name()),
        _ => None,
    };
    let t0 = Instant::now() + LEAD;
    let measure_from = t0 + spec.warmup;
    let end = measure_from + spec.duration;
    let recorder = Arc::new(Recorder::new(measure_from, end));
    let progress = AbortOnDrop(tokio::spawn(progress(spec.clone(), recorder.clone(), t0)));
    let feeding = feed.map(|target| {
        AbortOnDrop(tokio::spawn(feed::run(
            target,
            workload.clone(),
            spec.feed_rate,
            (t0, measure_from, end),
            recorder.clone(),
        )))
    });
    if !ops.is_empty() {
        match spec.mode {
            Mode::Open { rate } => {
                open_loop(rate, ops, clients, &workload, &recorder, (t0, end)).await?
            }
            Mode::Closed { concurrency } => {
                closed_loop(concurrency, ops, clients, &workload, &recorder, (t0, end)).await
            }
        }
    }
    let mut feed_updates = 0;
    if let Some(mut feeding) = feeding {
        feed_updates = (&mut feeding.0).await??;
    }
    drop(progress);
    Ok(PhaseRun {
        spec,
        samples: recorder.take(),
        feed_updates,
        all_ops: recorder.live.ops.load(Ordering::Relaxed),
    })
}

/// A background task of a phase, stopped when the phase ends, however it ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One operation, with its own generator; counted in flight while it runs.
async fn arrival(
    op: Op,
    mut client: Client,
    workload: Arc<Workload>,
    mut rng: rand::rngs::SmallRng,
    start: Instant,
    recorder: Arc<Recorder>,
) {
    let ok = workload::run(op, &mut client, &workload, &mut rng, start, &recorder).await;
    recorder.op_done(start, ok);
    recorder.live.in_flight.fetch_sub(1, Ordering::Relaxed);
}

async fn open_loop(
    rate: f64,
    ops: &'static [(Op, u32)],
    clients: Vec<Client>,
    workload: &Arc<Workload>,
    recorder: &Arc<Recorder>,
    (t0, end): (Instant, Instant),
) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "the arrival rate must be positive");
    let arrivals = ((end - t0).as_secs_f64() * rate).round() as u64;
    let (done, finished) = oneshot::channel();
    let handle = Handle::current();
    let (workload, recorder) = (workload.clone(), recorder.clone());
    std::thread::Builder::new()
        .name("arrivals".into())
        .spawn(move || {
            precise_timing();
            for i in 0..arrivals {
                let intended = t0 + Duration::from_secs_f64(i as f64 / rate);
                wait_until(intended);
                let mut rng = workload.rng(0, i);
                let Some(op) = choose(ops, &mut rng) else {
                    continue;
                };
                if recorder.live.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    recorder.live.in_flight.fetch_sub(1, Ordering::Relaxed);
                    recorder.dropped(intended);
                    continue;
                }
                let client = clients[i as usize % clients.len()].clone();
                recorder.sent(intended);
                handle.spawn(arrival(
                    op,
                    client,
                    workload.clone(),
                    rng,
                    intended,
                    recorder.clone(),
                ));
            }
            let _ = done.send(recorder);
        })?;
    let recorder = finished
        .await
        .map_err(|_| anyhow::anyhow!("the arrivals thread died"))?;
    let deadline = Instant::now() + DRAIN;
    while recorder.live.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The last stretch before an arrival is spun rather than slept, which wakes late.
const SPIN: Duration = Duration::from_micros(20);

/// Sleeps, then spins, until `at`.
fn wait_until(at: Instant) {
    let now = Instant::now();
    if at > now + SPIN {
        std::thread::sleep(at - now - SPIN);
    }
    // Bounded by `at`.
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}

/// Makes this thread's sleeps end on time: no timer slack (50 µs by default), and a higher
/// priority than the generator's other threads where allowed, so that it preempts them when
/// an arrival is due. Best effort: without the privilege the priority stays.
fn precise_timing() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) and setpriority on the calling thread take plain
    // integers and touch no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10);
    }
}

async fn closed_loop(
    concurrency: usize,
    ops: &'static [(Op, u32)],
    clients: Vec<Client>,
    workload: &Arc<Workload>,
    recorder: &Arc<Recorder>,
    (t0, end): (Instant, Instant),
) {
    tokio::time::sleep_until(t0.into()).await;
    let mut workers = JoinSet::new();
    for w in 0..concurrency {
        let mut client = clients[w % clients.len()].clone();
        let (workload, recorder) = (workload.clone(), recorder.clone());
        workers.spawn(async move {
            let mut j = 0u64;
            // Bounded by time: each operation is bounded by the call timeouts.
            while Instant::now() < end {
                let mut rng = workload.rng(w as u64 + 1, j);
                j += 1;
                let Some(op) = choose(ops, &mut rng) else {
                    return;
                };
                let start = Instant::now();
                recorder.live.in_flight.fetch_add(1, Ordering::Relaxed);
                let ok =
                    workload::run(op, &mut client, &workload, &mut rng, start, &recorder).await;
                recorder.op_done(start, ok);
                recorder.live.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    let _ = tokio::time::timeout(
        end.saturating_duration_since(Instant::now()) + DRAIN,
        async { while workers.join_next().await.is_some() {} },
    )
    .await;
    workers.abort_all();
}

/// Prints a line a second: elapsed, operations and calls per second, mean latency of the
/// last second, errors so far, operations in flight.
async fn progress(spec: PhaseSpec, recorder: Arc<Recorder>, t0: Instant) {
    let total = spec.warmup + spec.duration;
    let label = spec.label();
    let mut ticks =
        tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let live = &recorder.live;
    let (mut ops, mut calls, mut latency) = (0, 0, 0);
    loop {
        ticks.tick().await;
        let now_ops = live.ops.load(Ordering::Relaxed);
        let now_calls = live.calls.load(Ordering::Relaxed);
        let now_latency = live.latency_ns.load(Ordering::Relaxed);
        let mean_ms = (now_latency - latency) as f64 / (now_calls - calls).max(1) as f64 / 1e6;
        let phase = if t0.elapsed() < spec.warmup {
            "warm-up"
        } else {
            "measuring"
        };
        eprintln!(
            "  [{label}] {:>3.0}/{:.0}s {phase}: {} ops/s, {} calls/s, mean {mean_ms:.3} ms, {} errors, {} in flight",
            t0.elapsed().as_secs_f64(),
            total.as_secs_f64(),
            now_ops - ops,
            now_calls - calls,
            live.errors.load(Ordering::Relaxed),
            live.in_flight.load(Ordering::Relaxed),
        );
        (ops, calls, latency) = (now_ops, now_calls, now_latency);
    }
}
