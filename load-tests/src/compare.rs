//! `promised-load compare`: starts every target, loads the same catalogue into each, measures
//! the checkout-subset in closed loop (the most each does), then in open loop at one arrival
//! rate for all (half the slowest target's capacity, unless given), then promised's own
//! scenarios; writes the report. `promised-load run` measures one phase the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::catalogue::Network;
use crate::generator::{run_phase, Mode, PhaseSpec};
use crate::lab::Lab;
use crate::process::{own_cpu_seconds, CpuMeter, Placement};
use crate::report::{Environment, PhaseReport, Report, Settings};
use crate::service::ServiceSettings;
use crate::workload::{Scenario, TargetKind, Workload, ZIPF_EXPONENT};

/// Everything a comparison does, and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub skus: usize,
    pub seed: u64,
    pub connections: usize,
    /// Operations in flight in the closed-loop phases.
    pub concurrency: usize,
    /// Closed-loop phases: warm-up, measured window.
    pub capacity: (Duration, Duration),
    /// Open-loop equal-load phases.
    pub equal_load: (Duration, Duration),
    /// promised's own scenarios.
    pub scenarios: (Duration, Duration),
    /// Arrival rate of the equal-load phases; `None` is half the slowest target's capacity.
    pub rate: Option<f64>,
    /// Arrival rate of promised's scenarios; `None` is the equal-load rate.
    pub scenario_rate: Option<f64>,
    /// Supply updates per second of the feed and mixed scenarios.
    pub feed_rate: f64,
    pub postgres_pool: usize,
    pub report_dir: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// Remarks printed at the top of the report (`--note`).
    pub notes: Vec<String>,
    /// What promised is started with beyond its defaults.
    pub service: ServiceSettings,
}

impl Plan {
    /// The full comparison: about five minutes on two cores.
    pub fn full() -> Self {
        Self {
            name: "full".into(),
            skus: 50_000,
            seed: 42,
            connections: 4,
            concurrency: 32,
            capacity: (Duration::from_secs(3), Duration::from_secs(15)),
            equal_load: (Duration::from_secs(5), Duration::from_secs(30)),
            scenarios: (Duration::from_secs(3), Duration::from_secs(15)),
            rate: None,
            scenario_rate: None,
            feed_rate: 2_000.0,
            postgres_pool: 16,
            report_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports"),
            command: String::new(),
            notes: Vec::new(),
            service: ServiceSettings::default(),
        }
    }

    /// The quick comparison: about a minute and a half.
    pub fn quick() -> Self {
        Self {
            name: "quick".into(),
            skus: 5_000,
            capacity: (Duration::from_secs(1), Duration::from_secs(5)),
            equal_load: (Duration::from_secs(1), Duration::from_secs(6)),
            scenarios: (Duration::from_secs(1), Duration::from_secs(4)),
            ..Self::full()
        }
    }
}

/// The phase's report, with CPU use measured around it.
pub(crate) async fn measure(
    lab: &mut Lab,
    spec: PhaseSpec,
    workload: &Arc<Workload>,
) -> anyhow::Result<PhaseReport> {
    lab.check_alive()?;
    eprintln!("{}", spec.label());
    let clients = lab.clients(spec.target)?;
    let meter = CpuMeter::start(lab.processes(spec.target));
    let generator_before = own_cpu_seconds();
    let started = Instant::now();
    let feed = spec.scenario.has_feed().then(|| lab.feed());
    let run = run_phase(spec, clients, workload.clone(), feed).await?;
    let elapsed = started.elapsed();
    let cpu = meter.stop();
    let generator = own_cpu_seconds() - generator_before;
    let all_ops = run.all_ops;
    let phase = PhaseReport::new(run, cpu, generator, all_ops, elapsed);
    let per_op = if phase.ops > 0 {
        format!(", {:.0} µs CPU/op", phase.server_us_per_op())
    } else {
        String::new()
    };
    eprintln!(
        "  = {:.0} ops/s, {} errors, server {:.2} cores busy{per_op}",
        phase.ops_per_sec,
        phase.errors_total(),
        phase.server_cores(),
    );
    Ok(phase)
}

pub(crate) fn spec(
    target: TargetKind,
    scenario: Scenario,
    mode: Mode,
    (warmup, duration): (Duration, Duration),
    feed_rate: f64,
) -> PhaseSpec {
    PhaseSpec {
        target,
        scenario,
        mode,
        warmup,
        duration,
        feed_rate,
    }
}

fn settings(plan: &Plan, equal_rate: f64) -> Settings {
    Settings {
        skus: plan.skus,
        zipf_exponent: ZIPF_EXPONENT,
        seed: plan.seed,
        connections: plan.connections,
        concurrency: plan.concurrency,
        equal_rate,
        feed_rate: plan.feed_rate,
        postgres_pool: plan.postgres_pool,
    }
}

/// Half the slowest target's capacity, to two significant digits.
fn equal_rate(capacity: &[PhaseReport]) -> f64 {
    let slowest = capacity
        .iter()
        .filter(|p| p.target != TargetKind::Floor)
        .map(|p| p.ops_per_sec)
        .fold(f64::MAX, f64::min);
    if slowest == f64::MAX || slowest <= 0.0 {
        return 100.0;
    }
    let half = slowest / 2.0;
    let unit = 10f64.powf(half.log10().floor() - 1.0);
    ((half / unit).floor() * unit).max(10.0)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

fn environment(command: &str, load: &str, placement: &Placement, lab: &Lab) -> Environment {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Environment {
        command: command.to_owned(),
        generated_unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cpus: std::fs::read_to_string("/proc/cpuinfo").map_or(0, |info| {
            info.lines().filter(|l| l.starts_with("processor")).count()
        }),
        cpu_model,
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        load_average_at_start: load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        pinning: placement.describe(),
        durability: lab.durability().into_iter().collect::<BTreeMap<_, _>>(),
    }
}

/// Starts the lab and loads it.
pub(crate) async fn prepare(
    plan: &Plan,
    exe: &Path,
    placement: &Placement,
    targets: &[TargetKind],
) -> anyhow::Result<(Lab, crate::lab::Setup, Arc<Workload>, Environment)> {
    eprintln!(
        "starting {} ({})",
        targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
        placement.describe()
    );
    // Read before anything starts, so that it describes the machine rather than this run.
    let load = read_trimmed("/proc/loadavg");
    let lab = Lab::start(
        exe,
        placement,
        targets,
        plan.connections,
        plan.postgres_pool,
        &plan.service,
    )
    .await?;
    let environment = environment(&plan.command, &load, placement, &lab);
    eprintln!("loading {} SKUs", plan.skus);
    let setup = lab.load(plan.skus, plan.seed).await?;
    eprintln!(
        "loaded {} updates in {:.1} s; {} units available on every target",
        setup.updates, setup.load_seconds, setup.units_available
    );
    let network: Network = lab.network.clone();
    let workload = Arc::new(Workload::new(plan.skus, network, plan.seed));
    Ok((lab, setup, workload, environment))
}

/// The whole comparison; writes and returns the report.
pub async fn compare(plan: &Plan, exe: &Path, placement: &Placement) -> anyhow::Result<Report> {
    let started = Instant::now();
    let (mut lab, setup, workload, environment) =
        prepare(plan, exe, placement, &TargetKind::ALL).await?;
    let subset = Scenario::CheckoutSubset;
    let mut capacity = Vec::new();
    for target in TargetKind::ALL {
        let mode = Mode::Closed {
            concurrency: plan.concurrency,
        };
        capacity.push(
            measure(
                &mut lab,
                spec(target, subset, mode, plan.capacity, 0.0),
                &workload,
            )
            .await?,
        );
    }
    let rate = plan.rate.unwrap_or_else(|| equal_rate(&capacity));
    let mut equal_load = Vec::new();
    for target in TargetKind::ALL {
        let mode = Mode::Open { rate };
        equal_load.push(
            measure(
                &mut lab,
                spec(target, subset, mode, plan.equal_load, 0.0),
                &workload,
            )
            .await?,
        );
    }
    let scenario_rate = plan.scenario_rate.unwrap_or(rate);
    let mut scenarios = Vec::new();
    for scenario in [
        Scenario::Checkout,
        Scenario::Oms,
        Scenario::Feed,
        Scenario::Mixed,
    ] {
        let mode = Mode::Open {
            rate: scenario_rate,
        };
        let phase = spec(
            TargetKind::Promised,
            scenario,
            mode,
            plan.scenarios,
            plan.feed_rate,
        );
        scenarios.push(measure(&mut lab, phase, &workload).await?);
    }
    lab.check_alive()?;
    let report = Report {
        name: plan.name.clone(),
        notes: plan.notes.clone(),
        environment,
        settings: settings(plan, rate),
        setup,
        capacity,
        equal_load,
        scenarios,
    };
    drop(lab);
    let written = report.write(&plan.report_dir)?;
    eprintln!(
        "done in {:.0} s: {}, {}, {}",
        started.elapsed().as_secs_f64(),
        written.markdown.display(),
        written.json.display(),
        written.svg.display()
    );
    Ok(report)
}

/// One phase against one target (`promised-load run`); writes a report holding it.
pub async fn run_one(
    plan: &Plan,
    exe: &Path,
    placement: &Placement,
    target: TargetKind,
    scenario: Scenario,
    mode: Mode,
) -> anyhow::Result<Report> {
    let (mut lab, setup, workload, environment) = prepare(plan, exe, placement, &[target]).await?;
    let phase = spec(target, scenario, mode, plan.equal_load, plan.feed_rate);
    let phase = measure(&mut lab, phase, &workload).await?;
    let rate = match mode {
        Mode::Open { rate } => rate,
        Mode::Closed { .. } => 0.0,
    };
    let (mut capacity, mut equal_load, mut scenarios) = (Vec::new(), Vec::new(), Vec::new());
    match mode {
        Mode::Closed { .. } => capacity.push(phase),
        Mode::Open { .. } if scenario == Scenario::CheckoutSubset => equal_load.push(phase),
        Mode::Open { .. } => scenarios.push(phase),
    }
    let report = Report {
        name: plan.name.clone(),
        notes: plan.notes.clone(),
        environment,
        settings: settings(plan, rate),
        setup,
        capacity,
        equal_load,
        scenarios,
    };
    drop(lab);
    report.write(&plan.report_dir)?;
    Ok(report)
}
