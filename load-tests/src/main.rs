//! `promised-load`: `compare` runs the whole comparison; `run` one phase; `flood` a
//! well-behaved client beside a flood of large requests; `soak` the mixed scenario for a long
//! run; `serve-promised` and `serve-peer` are the targets, started by the others as child
//! processes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use promised_load::compare::{self, Plan};
use promised_load::flood::{self, FloodPlan, FloodRpc};
use promised_load::generator::Mode;
use promised_load::peer::{self, postgres::PostgresStore, redis::RedisStore};
use promised_load::process::Placement;
use promised_load::service::{self, ServiceSettings};
use promised_load::soak::{self, SoakPlan};
use promised_load::workload::{Scenario, TargetKind};

#[derive(Debug, Parser)]
#[command(
    name = "promised-load",
    about = "Load tests of promised and side-by-side peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every target, load the same catalogue, measure, write the report.
    Compare(CompareArgs),
    /// Measure one scenario against one target.
    Run(RunArgs),
    /// A well-behaved client's latency, idle and beside a flood of large requests.
    Flood(FloodArgs),
    /// The mixed scenario for a long run: p99 and resident memory every minute.
    Soak(SoakArgs),
    /// (Child process) the promised server, journaling to the given Redis.
    #[command(hide = true)]
    ServePromised {
        #[arg(long)]
        redis_url: String,
        #[command(flatten)]
        settings: ServiceSettings,
    },
    /// (Child process) a peer over the given datastore.
    #[command(hide = true)]
    ServePeer {
        #[arg(long, value_enum)]
        backend: Backend,
        #[arg(long)]
        url: String,
        /// PostgreSQL connections.
        #[arg(long, default_value_t = 16)]
        pool: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Redis,
    Postgres,
}

/// Settings shared by `compare` and `run`; each overrides the plan's value.
#[derive(Debug, Args)]
struct PlanArgs {
    /// The quick plan (about a minute and a half) instead of the full one (about five).
    #[arg(long)]
    quick: bool,
    /// Report name: files `<report-dir>/<name>.md|.json|.svg` [default: full, quick or run-...]
    #[arg(long)]
    name: Option<String>,
    /// Where reports go [default: load-tests/reports]
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// SKUs in the catalogue.
    #[arg(long)]
    skus: Option<usize>,
    /// Seconds of warm-up before each measured window.
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Seconds of every measured window.
    #[arg(long)]
    duration_secs: Option<f64>,
    /// HTTP/2 connections per target.
    #[arg(long)]
    connections: Option<usize>,
    /// Operations in flight in closed loop.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Arrivals per second in open loop (for `compare`, of the equal-load phases).
    #[arg(long)]
    rate: Option<f64>,
    /// Arrivals per second of promised's own scenarios in `compare`.
    #[arg(long)]
    scenario_rate: Option<f64>,
    /// Supply updates per second of the feed.
    #[arg(long)]
    feed_rate: Option<f64>,
    /// PostgreSQL peer connections.
    #[arg(long)]
    postgres_pool: Option<usize>,
    /// A remark for the top of the report (repeatable).
    #[arg(long)]
    note: Vec<String>,
    /// Leave every process unpinned (by default servers and generator get separate CPUs).
    #[arg(long)]
    no_pin: bool,
}

#[derive(Debug, Args)]
struct CompareArgs {
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    target: TargetKind,
    #[arg(long, value_enum, default_value = "checkout-subset")]
    scenario: Scenario,
    /// Open loop at `--rate`, or closed loop at `--concurrency`.
    #[arg(long, value_enum, default_value = "open")]
    mode: ModeArg,
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// One-minute windows to run.
    #[arg(long, default_value_t = 30)]
    minutes: u32,
    /// How long the server remembers ended reservations [default: its own, 24 h]: what the
    /// book holds, and so the memory, levels off once this has passed.
    #[arg(long)]
    retention_secs: Option<u64>,
    /// `--rate` is the open loop's arrivals per second [default 1000]; the catalogue,
    /// connections and feed rate are the full plan's unless given.
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Debug, Args)]
struct FloodArgs {
    /// The call every flood request is: a query refused by its length alone, or a supply
    /// batch measured against the in-flight byte limit.
    #[arg(long, value_enum, default_value = "availability")]
    rpc: FloodRpc,
    /// SKUs in the catalogue.
    #[arg(long, default_value_t = 1_000)]
    skus: usize,
    /// Seconds of the idle window and of the flood window.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Flooding callers.
    #[arg(long, default_value_t = 150)]
    callers: usize,
    /// Connections the flood is spread over.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Smallest and largest flood request, in MiB.
    #[arg(long, default_value_t = 4)]
    min_mib: usize,
    #[arg(long, default_value_t = 11)]
    max_mib: usize,
    /// The well-behaved client's calls in flight.
    #[arg(long, default_value_t = 4)]
    probes: usize,
    /// Leave every process unpinned (by default the server and the generator get separate CPUs).
    #[arg(long)]
    no_pin: bool,
    /// What the server is started with: refused calls a connection earns back per second
    /// (0 lets every connection be refused without rest) and may have at once.
    #[command(flatten)]
    service: ServiceSettings,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Open,
    Closed,
}

impl PlanArgs {
    fn plan(&self, default_name: &str) -> Plan {
        let mut plan = if self.quick {
            Plan::quick()
        } else {
            Plan::full()
        };
        plan.name = self
            .name
            .clone()
            .unwrap_or_else(|| default_name.replace("{plan}", &plan.name));
        let args: Vec<String> = std::env::args().skip(1).collect();
        plan.command = format!("promised-load {}", args.join(" "));
        if let Some(dir) = &self.report_dir {
            plan.report_dir = dir.clone();
        }
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        for (warmup, window) in [
            &mut plan.capacity,
            &mut plan.equal_load,
            &mut plan.scenarios,
        ]
        .map(|p| (&mut p.0, &mut p.1))
        {
            if let Some(s) = self.warmup_secs {
                *warmup = secs(s);
            }
            if let Some(s) = self.duration_secs {
                *window = secs(s).max(Duration::from_millis(100));
            }
        }
        plan.skus = self.skus.unwrap_or(plan.skus).max(20);
        plan.connections = self.connections.unwrap_or(plan.connections).max(1);
        plan.concurrency = self.concurrency.unwrap_or(plan.concurrency).max(1);
        plan.rate = self.rate.or(plan.rate);
        plan.scenario_rate = self.scenario_rate.or(plan.scenario_rate);
        plan.feed_rate = self.feed_rate.unwrap_or(plan.feed_rate);
        plan.postgres_pool = self.postgres_pool.unwrap_or(plan.postgres_pool).max(1);
        plan.notes = self.note.clone();
        plan
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Worker threads default to the CPUs this process may run on (after pinning).
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::ServePromised {
            redis_url,
            settings,
        } => runtime()?.block_on(service::serve(redis_url, settings)),
        Command::ServePeer { backend, url, pool } => runtime()?.block_on(async move {
            match backend {
                Backend::Redis => peer::serve(RedisStore::open(&url).await?).await,
                Backend::Postgres => peer::serve(PostgresStore::open(&url, pool).await?).await,
            }
        }),
        Command::Compare(args) => {
            let plan = args.plan.plan("{plan}");
            let placement = Placement::split(!args.plan.no_pin);
            placement.pin_generator()?;
            let exe = std::env::current_exe().context("locating this binary")?;
            runtime()?.block_on(compare::compare(&plan, &exe, &placement))?;
            Ok(())
        }
        Command::Flood(args) => {
            let plan = FloodPlan {
                rpc: args.rpc,
                skus: args.skus.max(1),
                window: Duration::from_secs_f64(args.duration_secs.max(0.1)),
                callers: args.callers,
                connections: args.connections.max(1),
                min_mib: args.min_mib,
                max_mib: args.max_mib,
                probes: args.probes.max(1),
                service: args.service,
            };
            let placement = Placement::split(!args.no_pin);
            placement.pin_generator()?;
            let exe = std::env::current_exe().context("locating this binary")?;
            let report = runtime()?.block_on(flood::flood(&plan, &exe, &placement))?;
            println!("{}", report.markdown(&plan, &placement));
            Ok(())
        }
        Command::Soak(args) => {
            let mut plan = args.plan.plan("soak");
            plan.service.retention_secs = args.retention_secs;
            let soak = SoakPlan {
                rate: plan.rate.unwrap_or(1_000.0),
                minutes: args.minutes.max(1),
                plan,
            };
            let placement = Placement::split(!args.plan.no_pin);
            placement.pin_generator()?;
            let exe = std::env::current_exe().context("locating this binary")?;
            runtime()?.block_on(soak::soak(&soak, &exe, &placement))?;
            Ok(())
        }
        Command::Run(args) => {
            let name = format!("run-{}-{}", args.target.name(), args.scenario.name());
            let plan = args.plan.plan(&name);
            let mode = match args.mode {
                ModeArg::Open => Mode::Open {
                    rate: plan.rate.unwrap_or(1_000.0),
                },
                ModeArg::Closed => Mode::Closed {
                    concurrency: plan.concurrency,
                },
            };
            let placement = Placement::split(!args.plan.no_pin);
            placement.pin_generator()?;
            let exe = std::env::current_exe().context("locating this binary")?;
            runtime()?.block_on(compare::run_one(
                &plan,
                &exe,
                &placement,
                args.target,
                args.scenario,
                mode,
            ))?;
            Ok(())
        }
    }
}
