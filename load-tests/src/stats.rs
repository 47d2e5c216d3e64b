//! Recording calls and summarising them: every latency of the measured window is kept (a run
//! is bounded in time and rate, so this is bounded too) and percentiles are exact.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A gRPC code name, or `CLIENT_TIMEOUT` / `CLIENT_OVERLOAD` on the generator's side.
    Failed(&'static str),
}

/// What the measured window collected.
#[derive(Debug, Default)]
pub struct Samples {
    /// Latency in nanoseconds of every call, answered or failed, by call name.
    pub latencies: HashMap<&'static str, Vec<u64>>,
    /// Failed calls by call name and code.
    pub errors: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Operations started in the window, and those whose calls all succeeded.
    pub ops: u64,
    pub ok_ops: u64,
    /// Open loop: how late each arrival was sent after its intended time, in nanoseconds
    /// (included in the latencies; large values mean the generator could not keep up).
    pub send_lateness: Vec<u64>,
}

/// Counters for the progress line, over the whole phase (warm-up included).
#[derive(Debug, Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    pub latency_ns: AtomicU64,
    pub calls: AtomicU64,
    pub in_flight: AtomicI64,
}

/// Collects one phase. Calls that start before the warm-up is over or after the window are
/// not kept.
#[derive(Debug)]
pub struct Recorder {
    from: Instant,
    until: Instant,
    pub live: Live,
    samples: Mutex<Samples>,
}

impl Recorder {
    pub fn new(from: Instant, until: Instant) -> Self {
        Self {
            from,
            until,
            live: Live::default(),
            samples: Mutex::new(Samples::default()),
        }
    }

    fn measured(&self, start: Instant) -> bool {
        start >= self.from && start < self.until
    }

    fn with<R>(&self, f: impl FnOnce(&mut Samples) -> R) -> R {
        // A panic while holding the lock cannot leave `Samples` half-updated in a way that
        // matters for a report, so a poisoned lock is used as is.
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut samples)
    }

    /// A call that started at `start` ended now.
    pub fn record(&self, call: &'static str, start: Instant, outcome: Outcome) {
        let latency = start.elapsed().as_nanos() as u64;
        self.live.calls.fetch_add(1, Ordering::Relaxed);
        self.live.latency_ns.fetch_add(latency, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.live.errors.fetch_add(1, Ordering::Relaxed);
        }
        if !self.measured(start) {
            return;
        }
        self.with(|samples| {
            samples.latencies.entry(call).or_default().push(latency);
            if let Outcome::Failed(code) = outcome {
                *samples
                    .errors
                    .entry(call)
                    .or_default()
                    .entry(code)
                    .or_default() += 1;
            }
        });
    }

    /// An operation that started at `start` ended now.
    pub fn op_done(&self, start: Instant, ok: bool) {
        self.live.ops.fetch_add(1, Ordering::Relaxed);
        if self.measured(start) {
            self.with(|samples| {
                samples.ops += 1;
                samples.ok_ops += u64::from(ok);
            });
        }
    }

    /// An open-loop arrival intended at `intended` is being sent now.
    pub fn sent(&self, intended: Instant) {
        if self.measured(intended) {
            let late = intended.elapsed().as_nanos() as u64;
            self.with(|samples| samples.send_lateness.push(late));
        }
    }

    /// An arrival the generator could not send because too many were in flight.
    pub fn dropped(&self, start: Instant) {
        self.record("dropped", start, Outcome::Failed("CLIENT_OVERLOAD"));
        self.op_done(start, false);
    }

    /// What the window collected (an operation finishing later is not in it).
    pub fn take(&self) -> Samples {
        self.with(std::mem::take)
    }
}

/// Latency distribution of one call, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub call: String,
    pub count: u64,
    pub per_sec: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// `[percentile, latency µs]` from the 50th to the 99.99th, evenly spaced in nines.
    pub curve: Vec<[f64; 2]>,
}

/// Points of the latency curve.
const CURVE_POINTS: u32 = 40;

/// Percentiles of the latency curve, from the 50th to the 99.99th evenly spaced in nines
/// (`-log10(1 - p/100)`, from log10 2 to 4).
pub fn curve_percentiles() -> impl Iterator<Item = f64> {
    let (first, last) = (std::f64::consts::LOG10_2, 4.0);
    (0..CURVE_POINTS).map(move |k| {
        let nines = first + (last - first) * f64::from(k) / f64::from(CURVE_POINTS - 1);
        100.0 * (1.0 - 10f64.powf(-nines))
    })
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999 despite binary floating point.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(call: &str, mut latencies: Vec<u64>, window: Duration) -> CallSummary {
    latencies.sort_unstable();
    let us = |ns: u64| ns as f64 / 1_000.0;
    let at = |p: f64| us(percentile(&latencies, p));
    let count = latencies.len() as u64;
    let mean = if count == 0 {
        0.0
    } else {
        us(latencies.iter().sum::<u64>()) / count as f64
    };
    CallSummary {
        call: call.to_owned(),
        count,
        per_sec: count as f64 / window.as_secs_f64().max(1e-9),
        mean_us: mean,
        p50_us: at(50.0),
        p90_us: at(90.0),
        p99_us: at(99.0),
        p999_us: at(99.9),
        max_us: us(latencies.last().copied().unwrap_or(0)),
        curve: curve_percentiles().map(|p| [p, at(p)]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&values, 50.0), 500);
        assert_eq!(percentile(&values, 99.9), 999);
        assert_eq!(percentile(&values, 100.0), 1000);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn the_curve_spans_fifty_to_four_nines() {
        let points: Vec<f64> = curve_percentiles().collect();
        assert!((points[0] - 50.0).abs() < 1e-9, "{}", points[0]);
        let last = points.last().copied().unwrap_or_default();
        assert!((last - 99.99).abs() < 1e-6, "{last}");
    }
}
