//! `promised-load soak`: the mixed scenario (reads, holds, commits, releases, promises and
//! the supply feed) in open loop for a long run, 30 minutes by default, against promised with
//! its real snapshot interval and audit retention. Each minute is a window of its own: its
//! operations, errors and latency percentiles per call, and at its end the server's resident
//! memory, its positions and its snapshot generation. The report is Markdown, JSON and an SVG
//! plot of p99 and resident memory over the run, so that growth or drift shows as a slope.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use promised::grpc::pb;
use promised::grpc::pb::admin_client::AdminClient;
use serde::Serialize;

use crate::compare::{measure, prepare, spec, Plan};
use crate::generator::Mode;
use crate::lab::connect;
use crate::process::{status_bytes, Placement};
use crate::report::PhaseReport;
use crate::workload::{call, Scenario, TargetKind};

/// The calls whose p99 the plot draws, in its legend's order, with their colours.
const PLOTTED: [(&str, &str); 3] = [
    (call::AVAILABILITY, "#1f5fbf"),
    (call::RESERVE, "#c8302c"),
    (call::PROMISE_CART, "#2e8b3a"),
];

/// What a soak does.
#[derive(Debug, Clone)]
pub struct SoakPlan {
    /// Catalogue, connections, feed rate, report directory and name.
    pub plan: Plan,
    pub minutes: u32,
    /// Operations per second, open loop.
    pub rate: f64,
}

/// Reads one of a minute's memory figures, in MiB.
type MiBOf = fn(&Minute) -> f64;

/// One minute of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Minute {
    pub minute: u32,
    pub ops_per_sec: f64,
    pub errors: u64,
    /// p50 and p99 per call, µs.
    pub calls: Vec<(String, f64, f64)>,
    pub feed_updates_per_sec: f64,
    pub server_cores: f64,
    /// The server's resident memory at the minute's end, MiB.
    pub rss_mib: f64,
    pub positions: u64,
    pub snapshot_generation: u64,
    /// Live reservations (held and committed) and the ended ones the book remembers.
    pub live_reservations: u64,
    pub ended_reservations: u64,
    /// The memory of the Redis promised journals to (`used_memory`), MiB.
    pub redis_mib: f64,
    /// How many times that Redis has rewritten its append-only file so far: a rewrite forks
    /// and writes the whole dataset, on the server's core.
    pub aof_rewrites: u64,
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub command: String,
    pub pinning: String,
    pub load_average_at_start: String,
    pub rate: f64,
    pub feed_rate: f64,
    pub skus: usize,
    pub minutes: Vec<Minute>,
}

/// Runs the soak and writes `<report_dir>/<name>.md|.json|.svg`.
pub async fn soak(
    soak: &SoakPlan,
    exe: &Path,
    placement: &Placement,
) -> anyhow::Result<SoakReport> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let plan = &soak.plan;
    let (mut lab, _, workload, _) = prepare(plan, exe, placement, &[TargetKind::Promised]).await?;
    let mut admin = AdminClient::new(connect(lab.service_addr(), 1).await?.remove(0));
    let mut redis = redis::Client::open(lab.service_redis_url())?
        .get_multiplexed_async_connection()
        .await
        .context("the server's Redis")?;
    let mut minutes = Vec::new();
    for minute in 1..=soak.minutes {
        // Only the first minute warms up; after it, the run is one continuous load.
        let warmup = Duration::from_secs(if minute == 1 { 5 } else { 0 });
        let phase = spec(
            TargetKind::Promised,
            Scenario::Mixed,
            Mode::Open { rate: soak.rate },
            (warmup, Duration::from_secs(60)),
            plan.feed_rate,
        );
        let phase = measure(&mut lab, phase, &workload).await?;
        let stats = admin
            .get_stats(pb::GetStatsRequest::default())
            .await
            .context("server stats")?
            .into_inner();
        let rss = status_bytes(lab.service_pid(), "VmRSS")?;
        let redis_info = RedisInfo::read(&mut redis).await?;
        minutes.push(minute_of(minute, &phase, rss, &redis_info, &stats));
        eprintln!("{}", row(minutes.last().context("a minute")?));
    }
    let report = SoakReport {
        command: plan.command.clone(),
        pinning: placement.describe(),
        load_average_at_start: load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        rate: soak.rate,
        feed_rate: plan.feed_rate,
        skus: plan.skus,
        minutes,
    };
    report.write(&plan.report_dir, &plan.name)?;
    Ok(report)
}

fn minute_of(
    minute: u32,
    phase: &PhaseReport,
    rss: u64,
    redis: &RedisInfo,
    stats: &pb::Stats,
) -> Minute {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    Minute {
        minute,
        ops_per_sec: phase.ops_per_sec,
        errors: phase.errors_total(),
        calls: phase
            .calls
            .iter()
            .map(|c| (c.call.clone(), c.p50_us, c.p99_us))
            .collect(),
        feed_updates_per_sec: phase.feed_updates_per_sec.unwrap_or(0.0),
        server_cores: phase.server_cores(),
        rss_mib: mib(rss),
        positions: stats.positions,
        snapshot_generation: stats.snapshot_generation,
        live_reservations: stats.held_reservations + stats.committed_reservations,
        ended_reservations: stats.ended_reservations,
        redis_mib: mib(redis.used_memory),
        aof_rewrites: redis.aof_rewrites,
    }
}

/// What Redis's `INFO` says of its memory and its append-only file.
struct RedisInfo {
    used_memory: u64,
    aof_rewrites: u64,
}

impl RedisInfo {
    async fn read(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<Self> {
        let info: String = redis::cmd("INFO").query_async(redis).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse().ok())
                .with_context(|| format!("no {name} in Redis's INFO"))
        };
        Ok(Self {
            used_memory: field("used_memory")?,
            aof_rewrites: field("aof_rewrites")?,
        })
    }
}

fn p99(minute: &Minute, name: &str) -> Option<f64> {
    minute
        .calls
        .iter()
        .find(|(call, ..)| call == name)
        .map(|&(_, _, p99)| p99)
}

fn row(m: &Minute) -> String {
    let cell = |name| p99(m, name).map_or_else(String::new, |us| format!("{us:.0}"));
    format!(
        "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {:.1} | {} |",
        m.minute,
        m.ops_per_sec,
        m.errors,
        m.feed_updates_per_sec,
        cell(call::AVAILABILITY),
        cell(call::RESERVE),
        cell(call::PROMISE_CART),
        m.server_cores,
        m.rss_mib,
        m.positions,
        m.snapshot_generation,
        m.live_reservations,
        m.ended_reservations,
        m.redis_mib,
        m.aof_rewrites
    )
}

impl SoakReport {
    fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = |ext: &str| -> PathBuf { dir.join(format!("{name}.{ext}")) };
        std::fs::write(path("md"), self.markdown(name))?;
        std::fs::write(path("json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(path("svg"), self.chart())?;
        eprintln!("written {}", path("md").display());
        Ok(())
    }

    pub fn markdown(&self, name: &str) -> String {
        let mut out = format!(
            "# Soak `{name}`\n\n`{}`\n\nmixed scenario, open loop {:.0} ops/s, feed {:.0} \
             updates/s, {} SKUs, {} one-minute windows; {}; load average at start {}\n\n\
             ![p99 and resident memory per minute]({name}.svg)\n\n",
            self.command,
            self.rate,
            self.feed_rate,
            self.skus,
            self.minutes.len(),
            self.pinning,
            self.load_average_at_start
        );
        out.push_str(
            "| minute | ops/s | errors | feed/s | availability p99 µs | reserve p99 µs | \
             promise.cart p99 µs | server cores | RSS MiB | positions | snapshot | live \
             reservations | ended reservations | Redis MiB | AOF rewrites |\n",
        );
        out.push_str(
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for minute in &self.minutes {
            out.push_str(&row(minute));
            out.push('\n');
        }
        out
    }

    /// Two panels over the minutes: p99 of the plotted calls (log scale), and resident memory.
    fn chart(&self) -> String {
        let (width, height, left, panel_w, panel_h) = (1000.0, 420.0, 80.0, 380.0, 300.0);
        let lefts = [left, left + panel_w + 120.0];
        let last = self.minutes.len().max(2) as f64;
        let x = |panel: usize, minute: u32| {
            lefts[panel] + panel_w * (f64::from(minute) - 1.0) / (last - 1.0)
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        let top = 60.0;
        let latencies: Vec<f64> = self
            .minutes
            .iter()
            .flat_map(|m| PLOTTED.iter().filter_map(move |(c, _)| p99(m, c)))
            .filter(|us| *us > 0.0)
            .collect();
        let lo = latencies.iter().copied().fold(f64::MAX, f64::min).max(1.0);
        let hi = latencies.iter().copied().fold(1.0, f64::max).max(lo * 10.0);
        let (log_lo, log_hi) = (lo.log10().floor(), hi.log10().ceil());
        let y_latency = |us: f64| top + panel_h * (1.0 - (us.log10() - log_lo) / (log_hi - log_lo));
        let rss_hi = self
            .minutes
            .iter()
            .map(|m| m.rss_mib.max(m.redis_mib))
            .fold(1.0, f64::max)
            * 1.25;
        let y_rss = |mib: f64| top + panel_h * (1.0 - mib / rss_hi);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"30\" font-size=\"15\">p99 per minute (µs, log scale)</text>\n\
             <text x=\"{}\" y=\"30\" font-size=\"15\">memory (MiB): server resident, Redis used</text>",
            lefts[0], lefts[1]
        );
        for (panel, &l) in lefts.iter().enumerate() {
            let _ = writeln!(
                svg,
                "<rect x=\"{l}\" y=\"{top}\" width=\"{panel_w}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#999\"/>\n\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">minute</text>",
                l + panel_w / 2.0,
                top + panel_h + 35.0
            );
            for minute in [1, self.minutes.len() as u32] {
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{minute}</text>",
                    x(panel, minute),
                    top + panel_h + 16.0
                );
            }
        }
        let mut decade = log_lo;
        while decade <= log_hi {
            let us = 10f64.powf(decade);
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{us:.0}</text>",
                lefts[0] - 6.0,
                y_latency(us) + 4.0
            );
            decade += 1.0;
        }
        for mib in [0.0, rss_hi / 2.0, rss_hi] {
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{mib:.0}</text>",
                lefts[1] - 6.0,
                y_rss(mib) + 4.0
            );
        }
        for (k, (name, colour)) in PLOTTED.iter().enumerate() {
            let points: Vec<String> = self
                .minutes
                .iter()
                .filter_map(|m| p99(m, name).filter(|us| *us > 0.0).map(|us| (m.minute, us)))
                .map(|(minute, us)| format!("{:.1},{:.1}", x(0, minute), y_latency(us)))
                .collect();
            let legend = (lefts[0] + 10.0 + 130.0 * k as f64, top + panel_h + 55.0);
            line(&mut svg, &points, colour, name, legend);
        }
        let memories: [(&str, &str, MiBOf); 2] = [
            ("server RSS", "#1f5fbf", |m| m.rss_mib),
            ("Redis", "#c8302c", |m| m.redis_mib),
        ];
        for (k, (name, colour, mib)) in memories.into_iter().enumerate() {
            let points: Vec<String> = self
                .minutes
                .iter()
                .map(|m| format!("{:.1},{:.1}", x(1, m.minute), y_rss(mib(m))))
                .collect();
            let legend = (lefts[1] + 10.0 + 130.0 * k as f64, top + panel_h + 55.0);
            line(&mut svg, &points, colour, name, legend);
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Draws one series: its line through `points` and its name at `legend`, in `colour`.
fn line(svg: &mut String, points: &[String], colour: &str, name: &str, legend: (f64, f64)) {
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
         <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
        points.join(" "),
        legend.0,
        legend.1
    );
}
