//! The report of a run: JSON (everything measured), Markdown (the tables a reader needs, with
//! the ratios), and an SVG latency-percentile chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::generator::{Mode, PhaseRun};
use crate::lab::Setup;
use crate::stats::{summarize, CallSummary};
use crate::svg;
use crate::workload::{call, Scenario, TargetKind};

/// Where and how the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub command: String,
    pub generated_unix_secs: u64,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_average_at_start: String,
    pub pinning: String,
    pub durability: BTreeMap<String, String>,
}

/// The settings of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub skus: usize,
    pub zipf_exponent: f64,
    pub seed: u64,
    pub connections: usize,
    pub concurrency: usize,
    /// Arrivals per second of the equal-load comparison.
    pub equal_rate: f64,
    pub feed_rate: f64,
    pub postgres_pool: usize,
}

/// CPU one process (tree) used during a phase.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub process: String,
    pub seconds: f64,
    /// Average cores busy over the phase.
    pub cores: f64,
    /// CPU microseconds per operation; none when the phase had no operations (the feed).
    pub us_per_op: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub target: TargetKind,
    pub scenario: Scenario,
    #[serde(flatten)]
    pub mode: Mode,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub ops: u64,
    pub ok_ops: u64,
    pub ops_per_sec: f64,
    pub calls: Vec<CallSummary>,
    /// Failed calls by call and status code.
    pub errors: BTreeMap<String, BTreeMap<String, u64>>,
    pub feed_updates_per_sec: Option<f64>,
    /// Open loop: how late the generator sent arrivals after their intended time (part of
    /// every latency above).
    pub send_lateness: Option<CallSummary>,
    /// Server-side processes, then the generator; over the whole phase (warm-up included).
    pub cpu: Vec<CpuUse>,
}

impl PhaseReport {
    /// `cpu` is measured over `elapsed`, in which `all_ops` operations ran.
    pub fn new(
        run: PhaseRun,
        cpu: BTreeMap<String, f64>,
        generator_cpu: f64,
        all_ops: u64,
        elapsed: Duration,
    ) -> Self {
        let window = run.spec.duration;
        let samples = run.samples;
        let mut calls: Vec<CallSummary> = samples
            .latencies
            .into_iter()
            .map(|(name, latencies)| summarize(name, latencies, window))
            .collect();
        calls.sort_by_key(|c| call_order(&c.call));
        let per_op = |seconds: f64| (all_ops > 0).then(|| seconds * 1e6 / all_ops as f64);
        let usage = |process: String, seconds: f64| CpuUse {
            process,
            seconds,
            cores: seconds / elapsed.as_secs_f64().max(1e-9),
            us_per_op: per_op(seconds),
        };
        let mut cpu: Vec<CpuUse> = cpu.into_iter().map(|(p, s)| usage(p, s)).collect();
        cpu.push(usage(GENERATOR.to_owned(), generator_cpu));
        Self {
            target: run.spec.target,
            scenario: run.spec.scenario,
            mode: run.spec.mode,
            warmup_secs: run.spec.warmup.as_secs_f64(),
            duration_secs: window.as_secs_f64(),
            ops: samples.ops,
            ok_ops: samples.ok_ops,
            ops_per_sec: samples.ops as f64 / window.as_secs_f64().max(1e-9),
            calls,
            errors: samples
                .errors
                .into_iter()
                .map(|(call, codes)| {
                    let codes = codes.into_iter().map(|(c, n)| (c.to_owned(), n)).collect();
                    (call.to_owned(), codes)
                })
                .collect(),
            feed_updates_per_sec: run
                .spec
                .scenario
                .has_feed()
                .then(|| run.feed_updates as f64 / window.as_secs_f64().max(1e-9)),
            send_lateness: matches!(run.spec.mode, Mode::Open { .. })
                .then(|| summarize("send lateness", samples.send_lateness, window)),
            cpu,
        }
    }

    pub fn call(&self, name: &str) -> Option<&CallSummary> {
        self.calls.iter().find(|c| c.call == name)
    }

    fn server_cpu(&self) -> impl Iterator<Item = &CpuUse> {
        self.cpu.iter().filter(|c| c.process != GENERATOR)
    }

    /// CPU µs per operation of the server side (target and its datastore); 0 without
    /// operations.
    pub fn server_us_per_op(&self) -> f64 {
        self.server_cpu().filter_map(|c| c.us_per_op).sum()
    }

    /// Cores the server side kept busy on average.
    pub fn server_cores(&self) -> f64 {
        self.server_cpu().map(|c| c.cores).sum()
    }

    pub fn generator_cores(&self) -> f64 {
        self.cpu
            .iter()
            .find(|c| c.process == GENERATOR)
            .map_or(0.0, |c| c.cores)
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().flat_map(|codes| codes.values()).sum()
    }
}

/// The name of the generator's own CPU use.
const GENERATOR: &str = "load generator";

/// Calls in a fixed, readable order.
fn call_order(name: &str) -> usize {
    const ORDER: [&str; 10] = [
        call::HEALTH,
        call::AVAILABILITY,
        call::RESERVE,
        call::RELEASE,
        call::PROMISE_PRODUCT,
        call::PROMISE_CART,
        call::ROUTE,
        call::COMMIT,
        call::CANCEL,
        call::FEED,
    ];
    ORDER.iter().position(|&n| n == name).unwrap_or(ORDER.len())
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    /// Remarks given on the command line.
    pub notes: Vec<String>,
    pub environment: Environment,
    pub settings: Settings,
    pub setup: Setup,
    /// Closed loop, checkout-subset: the most each target does.
    pub capacity: Vec<PhaseReport>,
    /// Open loop at the same arrival rate, checkout-subset: the headline comparison.
    pub equal_load: Vec<PhaseReport>,
    /// The service's own scenarios, open loop.
    pub scenarios: Vec<PhaseReport>,
}

/// Paths of the written files.
pub struct Written {
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
}

impl Report {
    pub fn write(&self, dir: &Path) -> anyhow::Result<Written> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let written = Written {
            markdown: dir.join(format!("{}.md", self.name)),
            json: dir.join(format!("{}.json", self.name)),
            svg: dir.join(format!("{}.svg", self.name)),
        };
        std::fs::write(&written.json, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::write(
            &written.svg,
            svg::chart(&self.equal_load, self.settings.equal_rate),
        )?;
        std::fs::write(&written.markdown, self.markdown())?;
        Ok(written)
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.write_markdown(&mut md)
            .expect("formatting into a String cannot fail");
        md
    }

    fn write_markdown(&self, md: &mut String) -> std::fmt::Result {
        let env = &self.environment;
        let set = &self.settings;
        writeln!(md, "# Load test `{}`\n", self.name)?;
        writeln!(
            md,
            "`{}` on {} CPUs ({}), Linux {}; load average at start {}. Pinning: {}.\n",
            env.command,
            env.cpus,
            env.cpu_model,
            env.kernel,
            env.load_average_at_start,
            env.pinning
        )?;
        writeln!(
            md,
            "Catalogue: {} SKUs on the demo network (50 nodes), {} supply updates loaded \
             through `Supply/ApplyBatch` in {:.1} s; every target starts with the same {} units \
             available. SKU popularity Zipf (s = {}). {} HTTP/2 connections per target.\n",
            self.setup.skus,
            self.setup.updates,
            self.setup.load_seconds,
            self.setup.units_available,
            set.zipf_exponent,
            set.connections
        )?;
        for note in &self.notes {
            writeln!(md, "> **Note.** {note}\n")?;
        }
        self.write_equal_load(md)?;
        self.write_capacity(md)?;
        self.write_scenarios(md)?;
        self.write_every_call(md)?;
        self.write_errors(md)?;
        writeln!(md, "## Durability\n")?;
        for (target, note) in &env.durability {
            writeln!(md, "- **{target}**: {note}")?;
        }
        writeln!(md)?;
        writeln!(md, "{}", METHOD)?;
        Ok(())
    }

    fn write_equal_load(&self, md: &mut String) -> std::fmt::Result {
        writeln!(
            md,
            "## Same workload, same load: checkout-subset, open loop at {:.0} operations/s\n",
            self.settings.equal_rate
        )?;
        writeln!(
            md,
            "An operation is a cart availability of {} SKUs (2 in 3) or a hold of 1-2 lines and \
             its release (1 in 3); the floor answers a health check instead. Latency counts from \
             the intended send time (\"sent late\": how late the generator actually sent, \
             included in every latency). ![latency percentiles]({}.svg)\n",
            crate::workload::CART_SKUS,
            self.name
        )?;
        writeln!(
            md,
            "| target | ops/s | availability p50 / p99 / p99.9 ms | reserve p50 / p99 / p99.9 ms | release p99 ms | max ms | server CPU µs/op | server cores | sent late p99 ms | errors |"
        )?;
        writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for phase in &self.equal_load {
            let first = if phase.target == TargetKind::Floor {
                call::HEALTH
            } else {
                call::AVAILABILITY
            };
            let max = phase.calls.iter().map(|c| c.max_us).fold(0.0, f64::max);
            writeln!(
                md,
                "| {} | {:.0} | {} | {} | {} | {} | {:.0} | {:.2} | {} | {} |",
                phase.target.name(),
                phase.ops_per_sec,
                triple(phase.call(first)),
                triple(phase.call(call::RESERVE)),
                phase
                    .call(call::RELEASE)
                    .map_or("-".into(), |c| ms(c.p99_us)),
                ms(max),
                phase.server_us_per_op(),
                phase.server_cores(),
                phase
                    .send_lateness
                    .as_ref()
                    .map_or("-".into(), |c| ms(c.p99_us)),
                phase.errors_total()
            )?;
        }
        writeln!(md)?;
        let find = |target| self.equal_load.iter().find(|p| p.target == target);
        if let Some(promised) = find(TargetKind::Promised) {
            writeln!(
                md,
                "Ratios at equal load (p99 latency; server CPU per operation):\n"
            )?;
            writeln!(md, "| | availability p99 | reserve p99 | server CPU/op |")?;
            writeln!(md, "|---|---:|---:|---:|")?;
            if let Some(floor) = find(TargetKind::Floor) {
                let floor_p99 = floor.call(call::HEALTH).map(|c| c.p99_us);
                writeln!(
                    md,
                    "| promised ÷ floor | {} | {} | {} |",
                    ratio(
                        promised.call(call::AVAILABILITY).map(|c| c.p99_us),
                        floor_p99
                    ),
                    ratio(promised.call(call::RESERVE).map(|c| c.p99_us), floor_p99),
                    ratio(
                        Some(promised.server_us_per_op()),
                        Some(floor.server_us_per_op())
                    )
                )?;
            }
            for peer in [TargetKind::RedisPeer, TargetKind::PostgresPeer] {
                if let Some(other) = find(peer) {
                    let p99 = |phase: &PhaseReport, name| phase.call(name).map(|c| c.p99_us);
                    writeln!(
                        md,
                        "| {} ÷ promised | {} | {} | {} |",
                        peer.name(),
                        ratio(
                            p99(other, call::AVAILABILITY),
                            p99(promised, call::AVAILABILITY)
                        ),
                        ratio(p99(other, call::RESERVE), p99(promised, call::RESERVE)),
                        ratio(
                            Some(other.server_us_per_op()),
                            Some(promised.server_us_per_op())
                        )
                    )?;
                }
            }
            writeln!(md)?;
        }
        Ok(())
    }

    fn write_capacity(&self, md: &mut String) -> std::fmt::Result {
        let Some(first) = self.capacity.first() else {
            return Ok(());
        };
        let concurrency = match first.mode {
            Mode::Closed { concurrency } => concurrency,
            Mode::Open { .. } => 0,
        };
        writeln!(
            md,
            "## Most it does: checkout-subset, closed loop with {concurrency} operations in flight\n"
        )?;
        writeln!(
            md,
            "| target | ops/s | ÷ promised | calls/s | p50 ms | p99 ms | p99.9 ms | server cores busy | server CPU µs/op | generator cores busy | errors |"
        )?;
        writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        let promised = self
            .capacity
            .iter()
            .find(|p| p.target == TargetKind::Promised)
            .map(|p| p.ops_per_sec);
        for phase in &self.capacity {
            let calls: f64 = phase.calls.iter().map(|c| c.per_sec).sum();
            let main = phase
                .call(call::AVAILABILITY)
                .or_else(|| phase.call(call::HEALTH));
            writeln!(
                md,
                "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {:.2} | {:.0} | {:.2} | {} |",
                phase.target.name(),
                phase.ops_per_sec,
                ratio(Some(phase.ops_per_sec), promised),
                calls,
                main.map_or("-".into(), |c| ms(c.p50_us)),
                main.map_or("-".into(), |c| ms(c.p99_us)),
                main.map_or("-".into(), |c| ms(c.p999_us)),
                phase.server_cores(),
                phase.server_us_per_op(),
                phase.generator_cores(),
                phase.errors_total()
            )?;
        }
        writeln!(
            md,
            "\nLatencies here are of the availability call (health for the floor); a closed loop \
             measures capacity, its latencies include queueing behind the other workers.\n"
        )
    }

    fn write_scenarios(&self, md: &mut String) -> std::fmt::Result {
        if self.scenarios.is_empty() {
            return Ok(());
        }
        writeln!(md, "## promised's own scenarios, open loop\n")?;
        for phase in &self.scenarios {
            let feed = phase
                .feed_updates_per_sec
                .map_or(String::new(), |rate| format!(", feed {rate:.0} updates/s"));
            let per_op = if phase.ops > 0 {
                format!(", {:.0} µs/op", phase.server_us_per_op())
            } else {
                String::new()
            };
            writeln!(
                md,
                "**{}** ({}{feed}): {:.0} ops/s; server CPU {:.2} cores{per_op}.\n",
                phase.scenario.name(),
                phase.mode.describe(),
                phase.ops_per_sec,
                phase.server_cores()
            )?;
            write_calls(md, std::slice::from_ref(phase), false)?;
            writeln!(md)?;
        }
        Ok(())
    }

    fn write_every_call(&self, md: &mut String) -> std::fmt::Result {
        let phases: Vec<PhaseReport> = self
            .capacity
            .iter()
            .chain(&self.equal_load)
            .cloned()
            .collect();
        if phases.is_empty() {
            return Ok(());
        }
        writeln!(
            md,
            "## Every call of the checkout-subset phases
"
        )?;
        write_calls(md, &phases, true)?;
        writeln!(md)
    }

    fn write_errors(&self, md: &mut String) -> std::fmt::Result {
        writeln!(md, "## Errors by status code\n")?;
        let phases = self
            .capacity
            .iter()
            .chain(&self.equal_load)
            .chain(&self.scenarios);
        let mut any = false;
        for phase in phases {
            for (call, codes) in &phase.errors {
                for (code, count) in codes {
                    if !any {
                        writeln!(md, "| target | scenario | mode | call | code | count |")?;
                        writeln!(md, "|---|---|---|---|---|---:|")?;
                        any = true;
                    }
                    writeln!(
                        md,
                        "| {} | {} | {} | {call} | {code} | {count} |",
                        phase.target.name(),
                        phase.scenario.name(),
                        phase.mode.describe()
                    )?;
                }
            }
        }
        if !any {
            writeln!(md, "None: every call of every phase answered OK.")?;
        }
        writeln!(
            md,
            "\n`FAILED_PRECONDITION` on a hold is not enough stock (the peers' `ok: false` is \
             counted the same way); `CLIENT_TIMEOUT` is no answer within 5 s; \
             `CLIENT_OVERLOAD` an arrival the generator dropped with 20,000 in flight.\n"
        )
    }
}

const METHOD: &str = "## Method\n\n\
- Every target runs on loopback, started by `promised-load`: promised (the real server, in \
  a child process, journaling every acknowledged change to its own `redis-server`), the floor \
  (the gRPC health check on that same server: the cost of a call that does nothing), the Redis \
  peer and the PostgreSQL peer (the same small gRPC server, `load-tests/proto/peer.proto`, over \
  their own `redis-server` and PostgreSQL cluster).\n\
- Same workload: an operation's requests are drawn from a generator seeded by its arrival \
  number, so every target receives the same sequence of SKUs and quantities; the peers are \
  loaded with the network availability promised computes after its catalogue is loaded.\n\
- What a call does differs in kind: promised answers time-phased available-to-promise (on \
  hand less safety stock, receipts and holds by date, with look-ahead) at a node and over the \
  network, and holds at network level against that, idempotently and with an expiry; a peer \
  reads or decrements one counter per SKU (a Lua script in Redis; `SELECT ... FOR UPDATE` in \
  SKU order then `UPDATE` in PostgreSQL).\n\
- Open loop: a dedicated thread sends arrivals at the fixed rate whether or not earlier ones \
  were answered, and latency is counted from the intended send time (no coordinated omission). \
  Closed loop: a fixed number of operations in flight, each sent when the previous is answered.\n\
- CPU time is read from `/proc/<pid>/stat` for each server process tree (PostgreSQL with its \
  backends) and for the generator, over each whole phase.\n";

/// A table of every call of `phases`, with the target and mode when `labelled`.
fn write_calls(md: &mut String, phases: &[PhaseReport], labelled: bool) -> std::fmt::Result {
    let label = if labelled { "| target | mode " } else { "" };
    let rule = if labelled { "|---|---" } else { "" };
    writeln!(
        md,
        "{label}| call | calls/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |"
    )?;
    writeln!(md, "{rule}|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for phase in phases {
        for c in &phase.calls {
            if labelled {
                write!(md, "| {} | {} ", phase.target.name(), phase.mode.describe())?;
            }
            let errors: u64 = phase.errors.get(&c.call).map_or(0, |e| e.values().sum());
            writeln!(
                md,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {errors} |",
                c.call,
                c.per_sec,
                ms(c.p50_us),
                ms(c.p90_us),
                ms(c.p99_us),
                ms(c.p999_us),
                ms(c.max_us)
            )?;
        }
    }
    Ok(())
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1_000.0)
}

fn triple(call: Option<&CallSummary>) -> String {
    call.map_or("-".into(), |c| {
        format!("{} / {} / {}", ms(c.p50_us), ms(c.p99_us), ms(c.p999_us))
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "-".into(),
    }
}
