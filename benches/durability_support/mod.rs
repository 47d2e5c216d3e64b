//! Helpers of the durability bench: a private `redis-server`, feeds with their own sequence
//! numbers, durable bulk loading of on-hand positions in the demo network, and latency
//! summaries.
//!
//! Bench programs include it with `mod durability_support;`; each uses only part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use promised::app::{App, Caller};
use promised::checkpoint::{RedisConfig, Store};
use promised::clock::SystemClock;
use promised::domain::{Source, SourceKind, SupplyBatch, SupplyType, SupplyUpdate};
use promised::engine::{Engine, EngineConfig};
use promised::network_file::{self, NetworkFile, DEMO_NETWORK_TOML};
use tokio::task::JoinSet;

/// The Redis binary the bench starts.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Most updates in one batch (the engine's default limit).
pub const MAX_BATCH: usize = 10_000;

/// How Redis itself persists what it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `--save "" --appendonly no`: memory only.
    None,
    /// `--appendonly yes --appendfsync everysec`.
    AofEverySec,
    /// `--appendonly yes --appendfsync always`.
    AofAlways,
}

impl Persistence {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "none" | "no" | "off" => Ok(Self::None),
            "everysec" => Ok(Self::AofEverySec),
            "always" => Ok(Self::AofAlways),
            other => bail!("unknown Redis persistence {other:?}: none, everysec or always"),
        }
    }

    /// The `redis-server` flags, as they would be typed.
    pub fn flags(self) -> &'static [&'static str] {
        match self {
            Self::None => &["--save", "", "--appendonly", "no"],
            Self::AofEverySec => &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ],
            Self::AofAlways => &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        }
    }

    pub fn describe(self) -> String {
        self.flags()
            .iter()
            .map(|flag| if flag.is_empty() { "\"\"" } else { flag })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A `redis-server` of this process only, on a free loopback port, with a private directory;
/// killed (and its directory removed) when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(persistence: Persistence) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("no free loopback port")?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "promised-bench-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).context("creating the Redis directory")?;
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence.flags())
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {REDIS_SERVER}"))?;
        let server = Self {
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.ping().is_err() {
            ensure!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection()
    }

    fn ping(&self) -> redis::RedisResult<String> {
        redis::cmd("PING").query(&mut self.connection()?)
    }

    /// The server's version, from `INFO server`.
    pub fn version(&self) -> anyhow::Result<String> {
        self.info_field("server", "redis_version")
    }

    /// Bytes the server holds (`used_memory`).
    pub fn used_memory(&self) -> anyhow::Result<u64> {
        Ok(self.info_field("memory", "used_memory")?.parse()?)
    }

    /// CPU seconds (user + system) the server has used, from `INFO cpu`.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        let user: f64 = self.info_field("cpu", "used_cpu_user")?.parse()?;
        let sys: f64 = self.info_field("cpu", "used_cpu_sys")?.parse()?;
        Ok(user + sys)
    }

    fn info_field(&self, section: &str, field: &str) -> anyhow::Result<String> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection()?)?;
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|value| value.trim().to_owned())
            .with_context(|| format!("INFO {section} has no {field}"))
    }

    /// Drops every key, so that one measurement's data does not weigh on the next.
    pub fn flush(&self) -> anyhow::Result<()> {
        let () = redis::cmd("FLUSHALL").query(&mut self.connection()?)?;
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Store settings of the bench: a long timeout (bulk loads queue much), no automatic
/// snapshots (the bench takes them).
pub fn redis_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
        timeout: Duration::from_secs(60),
        snapshot_interval: Duration::from_secs(24 * 3600),
        snapshot_after_effects: u64::MAX,
        audit_retention: Duration::from_secs(3600),
        snapshot_copy_percent: promised::config::DEFAULT_SNAPSHOT_COPY_PERCENT,
        access: Default::default(),
    }
}

/// Opens (recovering) the store of `prefix`; returns it with the wall time it took.
pub async fn open_store(url: &str, prefix: &str) -> anyhow::Result<(Arc<Store>, Duration)> {
    let started = Instant::now();
    let store = Store::open(
        redis_config(url, prefix),
        &EngineConfig::default(),
        Arc::new(SystemClock),
    )
    .await?;
    Ok((store, started.elapsed()))
}

/// Loads the demo network (50 nodes, sources WMS, POS and ERP), durably.
pub async fn load_demo_network(app: &App) -> anyhow::Result<()> {
    network_file::apply(NetworkFile::parse(DEMO_NETWORK_TOML, false)?, app).await
}

/// Adds `count` sources `BENCH-nn` that own on-hand at every node, so that each concurrent
/// writer is a feed of its own with its own sequence, as separate feed streams are.
pub async fn add_bench_feeds(
    engine: &Engine,
    app: &App,
    count: usize,
) -> anyhow::Result<Vec<Feed>> {
    let sources: Vec<Source> = (0..count)
        .map(|i| Source {
            id: format!("BENCH-{i:02}"),
            kind: SourceKind::Wms,
            owned_node_ids: Vec::new(),
            owned_supply_types: vec![SupplyType::OnHand],
            stale_after_ms: None,
        })
        .collect();
    let ids: Vec<String> = sources.iter().map(|s| s.id.clone()).collect();
    app.upsert_sources(&Caller::system("bench"), sources)
        .await?;
    Ok(ids.into_iter().map(|id| Feed::resume(engine, id)).collect())
}

/// An absolute on-hand quantity (the benches' shared helper).
pub use super::common::on_hand_set;

/// The SKU code of catalogue item `i`.
pub fn sku(i: usize) -> String {
    format!("SKU-{i:08}")
}

/// One source's feed: hands out increasing sequence numbers, as a real feed does.
#[derive(Debug, Clone)]
pub struct Feed {
    pub source_id: String,
    pub seq: u64,
}

impl Feed {
    /// A feed continuing after the engine's last applied sequence of `source_id`.
    pub fn resume(engine: &Engine, source_id: String) -> Self {
        let seq = engine
            .network()
            .source(&source_id)
            .map_or(0, |source| source.feed.seqs().0);
        Self { source_id, seq }
    }

    /// The next batch of this feed.
    pub fn batch(&mut self, updates: Vec<SupplyUpdate>) -> SupplyBatch {
        self.seq += 1;
        SupplyBatch {
            source_id: self.source_id.clone(),
            seq: self.seq,
            updates,
        }
    }

    /// Applies the next batch and waits until it is durable; errors unless every update
    /// was applied (a bench must measure real work, not duplicates, stale SETs or rejections).
    /// The feed's next batch of `updates`.
    pub fn next_batch(&mut self, updates: Vec<SupplyUpdate>) -> SupplyBatch {
        self.seq += 1;
        SupplyBatch {
            source_id: self.source_id.clone(),
            seq: self.seq,
            updates,
        }
    }

    /// Applies `batch` as the feed's next, through `app`, and checks it applied whole.
    pub async fn apply_durably(
        &mut self,
        app: &App,
        batch: &mut SupplyBatch,
    ) -> anyhow::Result<()> {
        self.seq += 1;
        batch.seq = self.seq;
        let outcome = app.apply_batch(&Caller::system("bench"), batch).await?;
        check_applied(batch, outcome.applied, outcome.duplicate)?;
        Ok(())
    }
}

pub fn check_applied(batch: &SupplyBatch, applied: u32, duplicate: bool) -> anyhow::Result<()> {
    ensure!(
        !duplicate && applied as usize == batch.updates.len(),
        "batch {} of {}: {applied} of {} updates applied (duplicate: {duplicate})",
        batch.seq,
        batch.source_id,
        batch.updates.len()
    );
    Ok(())
}

/// The on-hand owners of the demo network with the nodes each owns: WMS at the DCs and 3PLs
/// (14 nodes), POS at the stores (36 nodes).
pub fn on_hand_owners(engine: &Engine) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let network = engine.network();
    ["WMS", "POS"]
        .into_iter()
        .map(|id| {
            let source = network
                .source(id)
                .with_context(|| format!("the demo network has no source {id}"))?;
            let nodes = network
                .nodes()
                .iter()
                .enumerate()
                .filter(|(idx, _)| source.owns(*idx as u32, SupplyType::OnHand))
                .map(|(_, node)| node.id.clone())
                .collect();
            Ok((id.to_owned(), nodes))
        })
        .collect()
}

/// How a durable bulk load went.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    pub updates: u64,
    pub batches: u64,
    pub took: Duration,
}

impl LoadReport {
    pub fn per_sec(&self) -> f64 {
        self.updates as f64 / self.took.as_secs_f64()
    }
}

/// Sets on-hand of SKUs `0..skus` at every node of the demo network (`skus` × 50 positions)
/// to `quantity(sku)`, through the two on-hand feeds at once, in batches of `batch` updates
/// with up to `in_flight` batches per feed awaiting durability. Returns the feeds, which
/// continue where the load ended.
pub async fn load_positions(
    engine: &Engine,
    app: &App,
    skus: usize,
    batch: usize,
    in_flight: usize,
    quantity: fn(usize) -> i64,
) -> anyhow::Result<(Vec<Feed>, LoadReport)> {
    let started = Instant::now();
    let mut loaders = JoinSet::new();
    for (source_id, nodes) in on_hand_owners(engine)? {
        let engine = engine.clone();
        let app = app.clone();
        let feed = Feed::resume(&engine, source_id);
        loaders.spawn(async move {
            load_feed(&engine, &app, feed, skus, nodes, batch, in_flight, quantity).await
        });
    }
    let mut feeds = Vec::new();
    let mut report = LoadReport {
        updates: 0,
        batches: 0,
        took: Duration::ZERO,
    };
    while let Some(loaded) = loaders.join_next().await {
        let (feed, updates, batches) = loaded.context("a loader task failed")??;
        feeds.push(feed);
        report.updates += updates;
        report.batches += batches;
    }
    report.took = started.elapsed();
    Ok((feeds, report))
}

/// One feed's share of [`load_positions`]: (feed, updates, batches).
#[allow(clippy::too_many_arguments)]
async fn load_feed(
    engine: &Engine,
    app: &App,
    mut feed: Feed,
    skus: usize,
    nodes: Vec<String>,
    batch: usize,
    in_flight: usize,
    quantity: fn(usize) -> i64,
) -> anyhow::Result<(Feed, u64, u64)> {
    let total = skus * nodes.len();
    let mut next_pair = 0;
    let mut pending = JoinSet::new();
    let (mut updates, mut batches) = (0u64, 0u64);
    loop {
        let as_of_ms = engine.now_ms();
        let end = total.min(next_pair + batch);
        let next: Vec<SupplyUpdate> = (next_pair..end)
            .map(|pair| {
                let (s, node) = (pair / nodes.len(), &nodes[pair % nodes.len()]);
                on_hand_set(sku(s), node.clone(), quantity(s), as_of_ms)
            })
            .collect();
        next_pair = end;
        if next.is_empty() {
            break;
        }
        updates += next.len() as u64;
        batches += 1;
        let next = feed.batch(next);
        let queued = app.submit_batch(&Caller::system("bench"), &next).await?;
        pending.spawn(async move {
            let outcome = queued.durable().await?;
            check_applied(&next, outcome.applied, outcome.duplicate)
        });
        while pending.len() >= in_flight {
            if let Some(done) = pending.join_next().await {
                done.context("a commit task failed")??;
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        done.context("a commit task failed")??;
    }
    Ok((feed, updates, batches))
}

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut sample: Vec<Duration>) -> Self {
        sample.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len());
            sample[rank - 1]
        };
        if sample.is_empty() {
            return Self::default();
        }
        Self {
            count: sample.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: sample[sample.len() - 1],
        }
    }
}

/// A duration in the most readable unit.
pub fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// A byte count in MiB.
pub fn fmt_mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A count with thousands separators.
/// A bench's numeric setting: `flag VALUE` on the command line, else the variable `env`, else
/// `default`.
pub fn setting(flag: &str, env: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .map_or(default, |v| v.parse().expect("a number"))
}

pub fn fmt_count(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
