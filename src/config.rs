//! Configuration, parsed once into typed values. Flags win over `PROMISED_*` environment
//! variables, which win over defaults. Parsing takes the environment as a map so tests can
//! exercise it without touching the process environment; this is the only module that reads it.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use tonic::codegen::http::Uri;

use crate::allowance::Allowance;
use crate::checkpoint::{RedisAccess, RedisConfig, Secret};
use crate::engine::{EngineConfig, Limits, ReservationLimits};
use crate::index::AtpPolicy;
use crate::sync::SyncLimits;
use crate::tls::TlsFiles;

mod feeds;

pub use feeds::{broker_list, FeedConfig, FeedsConfig, KafkaFeedConfig};

pub const ENV_GRPC_ADDR: &str = "PROMISED_GRPC_ADDR";
pub const ENV_METRICS_ADDR: &str = "PROMISED_METRICS_ADDR";
pub const ENV_HTTP_ADDR: &str = "PROMISED_HTTP_ADDR";
pub const ENV_NETWORK: &str = "PROMISED_NETWORK";
pub const ENV_SHUTDOWN_GRACE_SECS: &str = "PROMISED_SHUTDOWN_GRACE_SECS";
pub const ENV_MAX_PAIRS: &str = "PROMISED_MAX_PAIRS";
pub const ENV_MAX_BATCH_UPDATES: &str = "PROMISED_MAX_BATCH_UPDATES";
pub const ENV_MAX_FIELD_LEN: &str = "PROMISED_MAX_FIELD_LEN";
pub const ENV_REJECTION_LOG_LEN: &str = "PROMISED_REJECTION_LOG_LEN";
pub const ENV_MAX_ORDER_LINES: &str = "PROMISED_MAX_ORDER_LINES";
pub const ENV_MAX_CLOCK_SKEW_SECS: &str = "PROMISED_MAX_CLOCK_SKEW_SECS";
pub const ENV_MAX_SEQ_GAP: &str = "PROMISED_MAX_SEQ_GAP";
pub const ENV_SYNC_TTL_SECS: &str = "PROMISED_SYNC_TTL_SECS";
pub const ENV_MAX_OPEN_SYNCS: &str = "PROMISED_MAX_OPEN_SYNCS";
pub const ENV_MAX_STAGED_SYNC_POSITIONS: &str = "PROMISED_MAX_STAGED_SYNC_POSITIONS";
pub const ENV_SYNC_WIPE_GUARD_PERCENT: &str = "PROMISED_SYNC_WIPE_GUARD_PERCENT";
pub const ENV_MAX_EXPLAINED_COMMITMENTS: &str = "PROMISED_MAX_EXPLAINED_COMMITMENTS";
pub const ENV_MAX_MESSAGE_BYTES: &str = "PROMISED_MAX_MESSAGE_BYTES";
pub const ENV_MAX_QUERY_MESSAGE_BYTES: &str = "PROMISED_MAX_QUERY_MESSAGE_BYTES";
pub const ENV_MAX_FEED_STREAMS: &str = "PROMISED_MAX_FEED_STREAMS";
pub const ENV_MAX_WATCHERS: &str = "PROMISED_MAX_WATCHERS";
pub const ENV_WATCH_BUFFER: &str = "PROMISED_WATCH_BUFFER";
pub const ENV_MAX_CONNECTIONS: &str = "PROMISED_MAX_CONNECTIONS";
pub const ENV_MAX_IN_FLIGHT: &str = "PROMISED_MAX_IN_FLIGHT";
pub const ENV_MAX_IN_FLIGHT_BYTES: &str = "PROMISED_MAX_IN_FLIGHT_BYTES";
pub const ENV_MAX_WORK_MS: &str = "PROMISED_MAX_WORK_MS";
pub const ENV_CONSISTENCY_WAIT_MS: &str = "PROMISED_CONSISTENCY_WAIT_MS";
pub const ENV_HANDSHAKE_TIMEOUT_MS: &str = "PROMISED_HANDSHAKE_TIMEOUT_MS";
pub const ENV_MAX_STREAMS_PER_CONNECTION: &str = "PROMISED_MAX_STREAMS_PER_CONNECTION";
pub const ENV_FEED_IDLE_SECS: &str = "PROMISED_FEED_IDLE_SECS";
pub const ENV_REFUSALS_PER_SEC: &str = "PROMISED_REFUSALS_PER_CONNECTION_PER_SEC";
pub const ENV_REFUSAL_BURST: &str = "PROMISED_REFUSAL_BURST";
pub const ENV_MAX_CONNECTION_AGE_SECS: &str = "PROMISED_MAX_CONNECTION_AGE_SECS";
pub const ENV_STALE_POLICY: &str = "PROMISED_STALE_POLICY";
pub const ENV_PROMISABLE_IN_TRANSIT: &str = "PROMISED_PROMISABLE_IN_TRANSIT_PERCENT";
pub const ENV_PROMISABLE_ON_ORDER: &str = "PROMISED_PROMISABLE_ON_ORDER_PERCENT";
pub const ENV_SHARDS: &str = "PROMISED_SHARDS";
pub const ENV_LOG: &str = "PROMISED_LOG";
pub const ENV_DEFAULT_TTL_SECS: &str = "PROMISED_DEFAULT_TTL_SECS";
pub const ENV_MAX_TTL_SECS: &str = "PROMISED_MAX_TTL_SECS";
pub const ENV_RETENTION_SECS: &str = "PROMISED_RETENTION_SECS";
pub const ENV_MAX_LINES: &str = "PROMISED_MAX_LINES";
pub const ENV_REDIS_URL: &str = "PROMISED_REDIS_URL";
pub const ENV_REDIS_PREFIX: &str = "PROMISED_REDIS_PREFIX";
pub const ENV_REDIS_TIMEOUT_MS: &str = "PROMISED_REDIS_TIMEOUT_MS";
pub const ENV_SNAPSHOT_INTERVAL_SECS: &str = "PROMISED_SNAPSHOT_INTERVAL_SECS";
pub const ENV_SNAPSHOT_AFTER_EFFECTS: &str = "PROMISED_SNAPSHOT_AFTER_EFFECTS";
pub const ENV_AUDIT_RETENTION_SECS: &str = "PROMISED_AUDIT_RETENTION_SECS";
pub const ENV_SNAPSHOT_COPY_PERCENT: &str = "PROMISED_SNAPSHOT_COPY_PERCENT";
pub const ENV_TLS_CERT: &str = "PROMISED_TLS_CERT";
pub const ENV_TLS_KEY: &str = "PROMISED_TLS_KEY";
pub const ENV_TLS_CLIENT_CA: &str = "PROMISED_TLS_CLIENT_CA";
pub const ENV_CREDENTIALS: &str = "PROMISED_CREDENTIALS";
pub const ENV_INSECURE_NO_AUTH: &str = "PROMISED_INSECURE_NO_AUTH";
pub const ENV_REDIS_USERNAME: &str = "PROMISED_REDIS_USERNAME";
pub const ENV_REDIS_PASSWORD: &str = "PROMISED_REDIS_PASSWORD";
pub const ENV_REDIS_PASSWORD_FILE: &str = "PROMISED_REDIS_PASSWORD_FILE";
pub const ENV_REDIS_CA: &str = "PROMISED_REDIS_CA";
pub const ENV_OTLP_ENDPOINT: &str = "PROMISED_OTLP_ENDPOINT";
pub const ENV_FEEDS: &str = "PROMISED_FEEDS";
pub const ENV_EVENTS_OUT: &str = "PROMISED_EVENTS_OUT";

pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50051";
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9464";
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The query services' valid requests stay well under this: 10,000 item-node pairs of
/// 128-byte ids (the default limits) take about 1.3 MB.
pub const DEFAULT_MAX_QUERY_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
pub const DEFAULT_MAX_FEED_STREAMS: usize = 64;
pub const DEFAULT_MAX_WATCHERS: usize = 256;
pub const DEFAULT_WATCH_BUFFER: usize = 1_024;
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 256 * 1024 * 1024;
pub const DEFAULT_MAX_WORK_MS: u64 = 2_000;
pub const DEFAULT_CONSISTENCY_WAIT_MS: u64 = 1_000;
pub const DEFAULT_LOG: &str = "info";
pub const DEFAULT_REDIS_PREFIX: &str = "promised";
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_SNAPSHOT_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_SNAPSHOT_AFTER_EFFECTS: u64 = 5_000_000;
/// A week of journal kept for the audit trail.
pub const DEFAULT_AUDIT_RETENTION_SECS: u64 = 7 * 86_400;
/// A quarter of a core: a snapshot of 10 M positions then takes about 2 s of its 10 s
/// budget, and calls on a 2-core machine rarely find both cores busy (BENCHMARKS.md).
pub const DEFAULT_SNAPSHOT_COPY_PERCENT: u32 = 25;

#[derive(Debug, Parser)]
#[command(
    name = "promised",
    version,
    about = "Real-time inventory availability and order promising"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once, at start")]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Print the OpenAPI document of the HTTP/JSON edge (the one it serves at /openapi.json).
    Openapi,
    /// Send a supply CSV to a running server, as SET batches or (--full) a full sync.
    Import(ImportArgs),
}

/// Flags of `import`: a client of the gRPC API.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The CSV: a header naming sku, node, supply type, quantity, as of (RFC 3339), and
    /// optionally reference and eta; codes are the source's own.
    pub file: PathBuf,
    /// The source whose supply the file states
    #[arg(long)]
    pub source: String,
    /// A full sync per supply type: positions of the source the file leaves out become zero
    #[arg(long)]
    pub full: bool,
    /// Commit a full sync past the wipe guard
    #[arg(long, requires = "full")]
    pub force: bool,
    /// The server's gRPC address (https:// with --tls-ca)
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Bearer token (an API key or a JWT) with scope supply:write:<source>
    #[arg(long)]
    pub token: Option<String>,
    /// CA (PEM) that signed the server's certificate: the connection is TLS
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Rows per batch or sync part
    #[arg(long, default_value_t = 5000)]
    pub rows_per_call: usize,
}

/// Flags of `serve` (and of the demo example); each also reads the environment variable named in its help.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// gRPC listen address [env PROMISED_GRPC_ADDR] [default 0.0.0.0:50051]
    #[arg(long)]
    pub grpc_addr: Option<String>,
    /// Prometheus listen address [env PROMISED_METRICS_ADDR] [default 0.0.0.0:9464]
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// HTTP/JSON listen address [env PROMISED_HTTP_ADDR] [default 0.0.0.0:8080]
    #[arg(long)]
    pub http_addr: Option<String>,
    /// Network file (TOML, or YAML by extension) loaded at startup [env PROMISED_NETWORK]
    #[arg(long)]
    pub network: Option<String>,
    /// Seconds to drain at shutdown [env PROMISED_SHUTDOWN_GRACE_SECS] [default 10]
    #[arg(long)]
    pub shutdown_grace_secs: Option<String>,
    /// Item-node pairs per availability call [env PROMISED_MAX_PAIRS] [default 10000]
    #[arg(long)]
    pub max_pairs: Option<String>,
    /// Updates per supply batch [env PROMISED_MAX_BATCH_UPDATES] [default 10000]
    #[arg(long)]
    pub max_batch_updates: Option<String>,
    /// Bytes of a SKU or reference [env PROMISED_MAX_FIELD_LEN] [default 128]
    #[arg(long)]
    pub max_field_len: Option<String>,
    /// Rejections kept for ListRejections [env PROMISED_REJECTION_LOG_LEN] [default 10000]
    #[arg(long)]
    pub rejection_log_len: Option<String>,
    /// Lines per promise or route request [env PROMISED_MAX_ORDER_LINES] [default 1000]
    #[arg(long)]
    pub max_order_lines: Option<String>,
    /// Seconds a SET's as_of may be ahead of the server clock [env PROMISED_MAX_CLOCK_SKEW_SECS]
    /// [default 300]
    #[arg(long)]
    pub max_clock_skew_secs: Option<String>,
    /// Largest jump of a feed's batch sequence [env PROMISED_MAX_SEQ_GAP] [default 1000000]
    #[arg(long)]
    pub max_seq_gap: Option<String>,
    /// Seconds an open full sync lives without a part or commit [env PROMISED_SYNC_TTL_SECS]
    /// [default 3600]
    #[arg(long)]
    pub sync_ttl_secs: Option<String>,
    /// Full syncs open at once [env PROMISED_MAX_OPEN_SYNCS] [default 16]
    #[arg(long)]
    pub max_open_syncs: Option<String>,
    /// Positions staged across open full syncs [env PROMISED_MAX_STAGED_SYNC_POSITIONS]
    /// [default 2000000]
    #[arg(long)]
    pub max_staged_sync_positions: Option<String>,
    /// Largest share (percent) of a source's positions one full sync may zero without force
    /// [env PROMISED_SYNC_WIPE_GUARD_PERCENT] [default 50]
    #[arg(long)]
    pub sync_wipe_guard_percent: Option<String>,
    /// Holds and allocations one Explain answer lists [env PROMISED_MAX_EXPLAINED_COMMITMENTS]
    /// [default 1000]
    #[arg(long)]
    pub max_explained_commitments: Option<String>,
    /// Largest gRPC message accepted [env PROMISED_MAX_MESSAGE_BYTES] [default 16 MiB]
    #[arg(long)]
    pub max_message_bytes: Option<String>,
    /// Largest message of the query services (Availability, Promising, Reservations), whose
    /// valid requests are far smaller than a supply batch's; a larger one is refused at its
    /// length prefix, unread [env PROMISED_MAX_QUERY_MESSAGE_BYTES] [default 2 MiB]
    #[arg(long)]
    pub max_query_message_bytes: Option<String>,
    /// Concurrent feed streams [env PROMISED_MAX_FEED_STREAMS] [default 64]
    #[arg(long)]
    pub max_feed_streams: Option<String>,
    /// Open watches (WatchAvailability, WatchOrders) [env PROMISED_MAX_WATCHERS] [default 256]
    #[arg(long)]
    pub max_watchers: Option<String>,
    /// Messages one watch may have waiting for its client before it is ended as behind
    /// [env PROMISED_WATCH_BUFFER] [default 1024]
    #[arg(long)]
    pub watch_buffer: Option<String>,
    /// Longest a call with `x-min-consistency-token` waits for the journal to reach it
    /// [env PROMISED_CONSISTENCY_WAIT_MS] [default 1000]
    #[arg(long)]
    pub consistency_wait_ms: Option<String>,
    /// Open gRPC connections [env PROMISED_MAX_CONNECTIONS] [default 1000]
    #[arg(long)]
    pub max_connections: Option<String>,
    /// Calls in flight over all connections; one more is shed [env PROMISED_MAX_IN_FLIGHT]
    /// [default 4096]
    #[arg(long)]
    pub max_in_flight: Option<String>,
    /// Bytes of request messages in flight over all connections; a message that would take
    /// the total over is refused [env PROMISED_MAX_IN_FLIGHT_BYTES] [default 256 MiB]
    #[arg(long)]
    pub max_in_flight_bytes: Option<String>,
    /// Milliseconds a promise or route may work; a caller's shorter grpc-timeout wins
    /// [env PROMISED_MAX_WORK_MS] [default 2000]
    #[arg(long)]
    pub max_work_ms: Option<String>,
    /// Milliseconds a new connection may stay silent [env PROMISED_HANDSHAKE_TIMEOUT_MS]
    /// [default 10000]
    #[arg(long)]
    pub handshake_timeout_ms: Option<String>,
    /// Concurrent calls on one connection [env PROMISED_MAX_STREAMS_PER_CONNECTION]
    /// [default 256]
    #[arg(long)]
    pub max_streams_per_connection: Option<String>,
    /// Seconds a feed stream may send nothing before it is ended [env PROMISED_FEED_IDLE_SECS]
    /// [default 90]
    #[arg(long)]
    pub feed_idle_secs: Option<String>,
    /// Calls refused for resources (RESOURCE_EXHAUSTED, HTTP 413/429) a connection earns back
    /// per second; one that has spent its burst is not read until it earns one, 0 turns
    /// this off [env PROMISED_REFUSALS_PER_CONNECTION_PER_SEC] [default 20]
    #[arg(long)]
    pub refusals_per_connection_per_sec: Option<String>,
    /// Refusals a connection may have at once before that rate applies
    /// [env PROMISED_REFUSAL_BURST] [default 40]
    #[arg(long)]
    pub refusal_burst: Option<String>,
    /// Seconds before a connection is asked to reconnect [env PROMISED_MAX_CONNECTION_AGE_SECS]
    /// [default 3600]
    #[arg(long)]
    pub max_connection_age_secs: Option<String>,
    /// Stale-feed policy: `exclude` or `buffer:PERCENT` [env PROMISED_STALE_POLICY] [default exclude]
    #[arg(long)]
    pub stale_policy: Option<String>,
    /// Percent of in-transit receipts that count as promisable [env PROMISED_PROMISABLE_IN_TRANSIT_PERCENT] [default 100]
    #[arg(long)]
    pub promisable_in_transit_percent: Option<String>,
    /// Percent of on-order receipts that count as promisable [env PROMISED_PROMISABLE_ON_ORDER_PERCENT] [default 100]
    #[arg(long)]
    pub promisable_on_order_percent: Option<String>,
    /// Index shards [env PROMISED_SHARDS] [default 256]
    #[arg(long)]
    pub shards: Option<String>,
    /// Log filter, tracing-subscriber syntax [env PROMISED_LOG] [default info]
    #[arg(long)]
    pub log: Option<String>,
    /// TTL of a reservation that asks for none [env PROMISED_DEFAULT_TTL_SECS] [default 900]
    #[arg(long)]
    pub default_ttl_secs: Option<String>,
    /// Longest reservation TTL [env PROMISED_MAX_TTL_SECS] [default 86400]
    #[arg(long)]
    pub max_ttl_secs: Option<String>,
    /// Seconds an ended reservation's id is remembered for idempotent retries [env PROMISED_RETENTION_SECS] [default 86400]
    #[arg(long)]
    pub retention_secs: Option<String>,
    /// Lines per reservation [env PROMISED_MAX_LINES] [default 1000]
    #[arg(long)]
    pub max_lines: Option<String>,
    /// Journal and snapshot to Redis, `redis://HOST:PORT/DB`; without it state is in memory
    /// only [env PROMISED_REDIS_URL]
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Namespace and cluster hash tag of the Redis keys [env PROMISED_REDIS_PREFIX] [default promised]
    #[arg(long)]
    pub redis_prefix: Option<String>,
    /// A mutation Redis has not confirmed in this many ms fails with UNAVAILABLE [env PROMISED_REDIS_TIMEOUT_MS] [default 1000]
    #[arg(long)]
    pub redis_timeout_ms: Option<String>,
    /// Seconds between snapshots [env PROMISED_SNAPSHOT_INTERVAL_SECS] [default 300]
    #[arg(long)]
    pub snapshot_interval_secs: Option<String>,
    /// Journaled position changes that trigger a snapshot early [env PROMISED_SNAPSHOT_AFTER_EFFECTS] [default 5000000]
    #[arg(long)]
    pub snapshot_after_effects: Option<String>,
    /// Seconds the journal keeps changes for the audit trail after a snapshot covers them [env PROMISED_AUDIT_RETENTION_SECS] [default 604800]
    #[arg(long)]
    pub audit_retention_secs: Option<String>,
    /// Share of one core, in percent, a snapshot's copy of the index may use; 100 copies
    /// without pausing [env PROMISED_SNAPSHOT_COPY_PERCENT] [default 25]
    #[arg(long)]
    pub snapshot_copy_percent: Option<String>,
    /// Redis ACL user [env PROMISED_REDIS_USERNAME]
    #[arg(long)]
    pub redis_username: Option<String>,
    /// File holding the Redis password [env PROMISED_REDIS_PASSWORD_FILE]; or the password itself
    /// in PROMISED_REDIS_PASSWORD. Never on the command line, never in the URL
    #[arg(long)]
    pub redis_password_file: Option<String>,
    /// CA certificate (PEM) a rediss:// server must chain to, instead of the system's roots
    /// [env PROMISED_REDIS_CA]
    #[arg(long)]
    pub redis_ca: Option<String>,
    /// TLS certificate chain (PEM) of the gRPC and metrics listeners; reloaded when it changes
    /// [env PROMISED_TLS_CERT]
    #[arg(long)]
    pub tls_cert: Option<String>,
    /// Private key (PEM) of --tls-cert [env PROMISED_TLS_KEY]
    #[arg(long)]
    pub tls_key: Option<String>,
    /// CA (PEM) for client certificates: mutual TLS, the certificate naming the caller
    /// [env PROMISED_TLS_CLIENT_CA]
    #[arg(long)]
    pub tls_client_ca: Option<String>,
    /// Credentials file (TOML): API keys, JWT keys, client certificates, and their scopes
    /// [env PROMISED_CREDENTIALS]
    #[arg(long)]
    pub credentials: Option<String>,
    /// Serve without authentication: every caller may do everything. Only for local
    /// experiments [env PROMISED_INSECURE_NO_AUTH=true]
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// OTLP/gRPC collector (an http:// URL, such as a node-local agent) to export traces to;
    /// none are kept or propagated without it [env PROMISED_OTLP_ENDPOINT]
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Broker feeds file (TOML): NATS servers and, per source, the JetStream stream, subject,
    /// durable consumer and dead-letter subject its batches use [env PROMISED_FEEDS]
    #[arg(long)]
    pub feeds: Option<String>,
    /// Events-out file (TOML): webhooks and NATS JetStream sinks the journal's changes are
    /// sent to as CloudEvents; needs --redis-url [env PROMISED_EVENTS_OUT]
    #[arg(long)]
    pub events_out: Option<String>,
}

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The HTTP/JSON edge's listener (src/http), beside the gRPC one.
    pub http_addr: SocketAddr,
    pub network_file: Option<PathBuf>,
    pub shutdown_grace: Duration,
    pub max_message_bytes: usize,
    /// The query services' largest message: at most `max_message_bytes`.
    pub max_query_message_bytes: usize,
    pub max_feed_streams: usize,
    pub max_watchers: usize,
    pub watch_buffer: usize,
    /// Longest a promise or route works; past it (or its caller's shorter timeout) it stops.
    pub max_work: Duration,
    /// Longest a call waits for the journal to reach its `x-min-consistency-token`.
    pub consistency_wait: Duration,
    pub connections: ConnectionLimits,
    pub engine: EngineConfig,
    pub log_filter: String,
    /// `None` runs in memory only.
    pub redis: Option<RedisConfig>,
    /// TLS on the gRPC and metrics listeners; `None` is plaintext.
    pub tls: Option<TlsFiles>,
    pub auth: AuthConfig,
    /// Where traces are exported (OTLP over gRPC); `None` keeps none.
    pub otlp_endpoint: Option<Uri>,
    /// Supply feeds read from NATS JetStream; `None` reads none.
    pub feeds: Option<FeedsConfig>,
    /// The events-out file (src/publish/settings.rs); it needs Redis, for the sinks' cursors.
    pub events_out: Option<PathBuf>,
}

/// How callers authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// Every caller may do everything (`--insecure-no-auth`).
    Insecure,
    /// The credentials file.
    Credentials(PathBuf),
}

/// What one client can hold open on the gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Calls in flight over all connections (a feed stream counts while it is open); one more
    /// is shed at once with RESOURCE_EXHAUSTED rather than queued.
    pub max_in_flight: usize,
    /// Bytes of request messages in flight over all connections, counted from each message's
    /// length prefix before its body is read; a message that would take the total over is
    /// refused with RESOURCE_EXHAUSTED.
    pub max_in_flight_bytes: usize,
    /// A connection that sends nothing this long after it opens is closed.
    pub handshake_timeout: Duration,
    /// Concurrent calls on one connection, advertised as HTTP/2 `max_concurrent_streams`.
    pub max_streams_per_connection: u32,
    /// A feed stream that sends no batch (nor heartbeat) this long is ended.
    pub feed_idle: Duration,
    /// Calls a connection may have refused for resources before it is read more slowly.
    pub refusals: Allowance,
    /// After this long a connection is asked to reconnect, which reclaims idle ones.
    pub max_connection_age: Duration,
}

/// The process environment, for [`Config::resolve`].
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// Flags and environment side by side, so each setting reads as one short lookup.
struct Sources<'a> {
    env: &'a HashMap<String, String>,
}

impl Sources<'_> {
    /// One setting: the flag if given, else the environment variable, else the default.
    fn pick<T>(&self, flag: &Option<String>, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let (text, origin) = match (flag, self.env.get(name)) {
            (Some(text), _) => (text, "flag"),
            (None, Some(text)) => (text, name),
            (None, None) => return Ok(default),
        };
        text.parse()
            .map_err(|e| anyhow!("invalid value {text:?} from {origin} for {name}: {e}"))
    }

    /// Paths and URLs are taken verbatim and may be absent, so they need no default or parsing.
    fn optional(&self, flag: &Option<String>, name: &str) -> Option<String> {
        flag.clone().or_else(|| self.env.get(name).cloned())
    }
}

fn percent_to_permille(percent: u32, name: &str) -> anyhow::Result<u32> {
    if percent > 100 {
        return Err(anyhow!("{name} must be a percentage from 0 to 100"));
    }
    Ok(percent * 10)
}

impl Config {
    pub fn resolve(args: &ServeArgs, env: &HashMap<String, String>) -> anyhow::Result<Config> {
        let s = Sources { env };
        let engine = engine_config(args, &s)?;
        let network_file = s.optional(&args.network, ENV_NETWORK).map(PathBuf::from);
        let default_grpc = default_addr(DEFAULT_GRPC_ADDR, "default gRPC address")?;
        let default_metrics = default_addr(DEFAULT_METRICS_ADDR, "default metrics address")?;
        let default_http = default_addr(DEFAULT_HTTP_ADDR, "default HTTP address")?;
        let max_message_bytes = s.pick(
            &args.max_message_bytes,
            ENV_MAX_MESSAGE_BYTES,
            DEFAULT_MAX_MESSAGE_BYTES,
        )?;
        let config = Config {
            grpc_addr: s.pick(&args.grpc_addr, ENV_GRPC_ADDR, default_grpc)?,
            metrics_addr: s.pick(&args.metrics_addr, ENV_METRICS_ADDR, default_metrics)?,
            http_addr: s.pick(&args.http_addr, ENV_HTTP_ADDR, default_http)?,
            network_file,
            shutdown_grace: Duration::from_secs(s.pick(
                &args.shutdown_grace_secs,
                ENV_SHUTDOWN_GRACE_SECS,
                DEFAULT_SHUTDOWN_GRACE_SECS,
            )?),
            max_message_bytes,
            max_query_message_bytes: s.pick(
                &args.max_query_message_bytes,
                ENV_MAX_QUERY_MESSAGE_BYTES,
                // Unset, it is the default or the largest message, whichever is smaller.
                DEFAULT_MAX_QUERY_MESSAGE_BYTES.min(max_message_bytes),
            )?,
            max_feed_streams: s.pick(
                &args.max_feed_streams,
                ENV_MAX_FEED_STREAMS,
                DEFAULT_MAX_FEED_STREAMS,
            )?,
            max_watchers: s.pick(&args.max_watchers, ENV_MAX_WATCHERS, DEFAULT_MAX_WATCHERS)?,
            watch_buffer: s.pick(&args.watch_buffer, ENV_WATCH_BUFFER, DEFAULT_WATCH_BUFFER)?,
            max_work: Duration::from_millis(s.pick(
                &args.max_work_ms,
                ENV_MAX_WORK_MS,
                DEFAULT_MAX_WORK_MS,
            )?),
            consistency_wait: Duration::from_millis(s.pick(
                &args.consistency_wait_ms,
                ENV_CONSISTENCY_WAIT_MS,
                DEFAULT_CONSISTENCY_WAIT_MS,
            )?),
            connections: connection_limits(args, &s)?,
            engine,
            log_filter: s.pick(&args.log, ENV_LOG, DEFAULT_LOG.to_owned())?,
            redis: redis_config(args, &s)?,
            tls: tls_files(args, &s)?,
            auth: auth_config(args, &s)?,
            otlp_endpoint: otlp_endpoint(args, &s)?,
            feeds: s
                .optional(&args.feeds, ENV_FEEDS)
                .map(|path| FeedsConfig::read(path.as_ref()))
                .transpose()?,
            events_out: s
                .optional(&args.events_out, ENV_EVENTS_OUT)
                .map(PathBuf::from),
        };
        if config.events_out.is_some() && config.redis.is_none() {
            return Err(anyhow!(
                "{ENV_EVENTS_OUT} needs {ENV_REDIS_URL}: each sink keeps its cursor in Redis"
            ));
        }
        config.check_in_flight_bytes()?;
        // A query message larger than every message could never arrive: the limit would lie.
        let (query, message) = (config.max_query_message_bytes, max_message_bytes);
        if query > message {
            return Err(anyhow!(
                "{ENV_MAX_QUERY_MESSAGE_BYTES} ({query}) must be at most {ENV_MAX_MESSAGE_BYTES} ({message})"
            ));
        }
        Ok(config)
    }

    /// The in-flight byte limit must take the largest message, or that message would be
    /// refused however idle the server.
    fn check_in_flight_bytes(&self) -> anyhow::Result<()> {
        let (in_flight, message) = (self.connections.max_in_flight_bytes, self.max_message_bytes);
        if in_flight < message {
            return Err(anyhow!(
                "{ENV_MAX_IN_FLIGHT_BYTES} ({in_flight}) must be at least {ENV_MAX_MESSAGE_BYTES} ({message})"
            ));
        }
        Ok(())
    }
}

/// An absolute `http://` URL of an OTLP/gRPC collector, if one is given. Plaintext only: the
/// exporter is built without TLS, so an `https://` one could never connect.
fn otlp_endpoint(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<Option<Uri>> {
    let Some(text) = s.optional(&args.otlp_endpoint, ENV_OTLP_ENDPOINT) else {
        return Ok(None);
    };
    let uri: Uri = text
        .parse()
        .map_err(|e| anyhow!("invalid {ENV_OTLP_ENDPOINT} {text:?}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(anyhow!(
            "{ENV_OTLP_ENDPOINT} must be an http:// URL with a host, not {text:?}"
        ));
    }
    Ok(Some(uri))
}

/// Certificate and key go together; a client CA needs them.
fn tls_files(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<Option<TlsFiles>> {
    let cert = s.optional(&args.tls_cert, ENV_TLS_CERT);
    let key = s.optional(&args.tls_key, ENV_TLS_KEY);
    let client_ca = s.optional(&args.tls_client_ca, ENV_TLS_CLIENT_CA);
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: client_ca.map(PathBuf::from),
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        _ => Err(anyhow!(
            "TLS needs both {ENV_TLS_CERT} and {ENV_TLS_KEY} (--tls-cert, --tls-key); {ENV_TLS_CLIENT_CA} needs them too"
        )),
    }
}

/// A credentials file, or the explicit choice of none; never neither, never both.
fn auth_config(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<AuthConfig> {
    let insecure = args.insecure_no_auth || s.pick(&None, ENV_INSECURE_NO_AUTH, false)?;
    match (s.optional(&args.credentials, ENV_CREDENTIALS), insecure) {
        (Some(path), false) => Ok(AuthConfig::Credentials(path.into())),
        (None, true) => Ok(AuthConfig::Insecure),
        (Some(_), true) => Err(anyhow!(
            "{ENV_CREDENTIALS} and {ENV_INSECURE_NO_AUTH} exclude each other"
        )),
        (None, false) => Err(anyhow!(
            "no credentials file: give --credentials FILE ({ENV_CREDENTIALS}), or --insecure-no-auth ({ENV_INSECURE_NO_AUTH}=true) to serve without authentication"
        )),
    }
}

/// The Redis password, from its file or the environment; a URL that carries one is refused,
/// since URLs end up on command lines and in logs.
fn redis_access(args: &ServeArgs, s: &Sources<'_>, url: &str) -> anyhow::Result<RedisAccess> {
    let authority = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Err(anyhow!(
            "the Redis URL carries a password: put it in --redis-password-file or {ENV_REDIS_PASSWORD} instead"
        ));
    }
    let password = match (
        s.optional(&args.redis_password_file, ENV_REDIS_PASSWORD_FILE),
        s.env.get(ENV_REDIS_PASSWORD),
    ) {
        (Some(_), Some(_)) => {
            return Err(anyhow!(
                "{ENV_REDIS_PASSWORD_FILE} and {ENV_REDIS_PASSWORD} exclude each other"
            ))
        }
        (Some(file), None) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the Redis password file {file}"))?;
            Some(Secret(text.trim_end_matches(['\r', '\n']).to_owned()))
        }
        (None, Some(password)) => Some(Secret(password.clone())),
        (None, None) => None,
    };
    let ca_file = s.optional(&args.redis_ca, ENV_REDIS_CA).map(PathBuf::from);
    if ca_file.is_some() && !url.starts_with("rediss://") {
        return Err(anyhow!("{ENV_REDIS_CA} needs a rediss:// URL"));
    }
    Ok(RedisAccess {
        username: s.optional(&args.redis_username, ENV_REDIS_USERNAME),
        password,
        ca_file,
    })
}

fn connection_limits(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<ConnectionLimits> {
    let secs = |flag, name, default| s.pick(flag, name, default).map(Duration::from_secs);
    Ok(ConnectionLimits {
        max_connections: s.pick(&args.max_connections, ENV_MAX_CONNECTIONS, 1_000)?,
        max_in_flight: s.pick(&args.max_in_flight, ENV_MAX_IN_FLIGHT, 4_096)?,
        max_in_flight_bytes: s.pick(
            &args.max_in_flight_bytes,
            ENV_MAX_IN_FLIGHT_BYTES,
            DEFAULT_MAX_IN_FLIGHT_BYTES,
        )?,
        handshake_timeout: Duration::from_millis(s.pick(
            &args.handshake_timeout_ms,
            ENV_HANDSHAKE_TIMEOUT_MS,
            10_000,
        )?),
        max_streams_per_connection: s.pick(
            &args.max_streams_per_connection,
            ENV_MAX_STREAMS_PER_CONNECTION,
            256,
        )?,
        feed_idle: secs(&args.feed_idle_secs, ENV_FEED_IDLE_SECS, 90)?,
        refusals: Allowance {
            per_second: s.pick(
                &args.refusals_per_connection_per_sec,
                ENV_REFUSALS_PER_SEC,
                20,
            )?,
            burst: s.pick(&args.refusal_burst, ENV_REFUSAL_BURST, 40)?,
        },
        max_connection_age: secs(
            &args.max_connection_age_secs,
            ENV_MAX_CONNECTION_AGE_SECS,
            3_600,
        )?,
    })
}

/// Parses a built-in address; only a bad edit of the constant can make it fail.
fn default_addr(text: &str, what: &'static str) -> anyhow::Result<SocketAddr> {
    text.parse().context(what)
}

/// The engine's settings; field order is evaluation order, which decides the error reported.
fn engine_config(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<EngineConfig> {
    let defaults = EngineConfig::default();
    Ok(EngineConfig {
        limits: limits(args, s, defaults.limits)?,
        atp: atp_policy(args, s)?,
        reservations: reservation_limits(args, s, defaults.reservations)?,
        stale: s.pick(&args.stale_policy, ENV_STALE_POLICY, defaults.stale)?,
        shards: s.pick(&args.shards, ENV_SHARDS, defaults.shards)?,
        sync: sync_limits(args, s, defaults.sync)?,
    })
}

/// Bounds of full syncs.
fn sync_limits(args: &ServeArgs, s: &Sources<'_>, d: SyncLimits) -> anyhow::Result<SyncLimits> {
    let wipe_guard_percent = s.pick(
        &args.sync_wipe_guard_percent,
        ENV_SYNC_WIPE_GUARD_PERCENT,
        d.wipe_guard_percent,
    )?;
    if wipe_guard_percent > 100 {
        return Err(anyhow!(
            "--sync-wipe-guard-percent is a share: at most 100, not {wipe_guard_percent}"
        ));
    }
    Ok(SyncLimits {
        ttl_secs: s.pick(&args.sync_ttl_secs, ENV_SYNC_TTL_SECS, d.ttl_secs)?,
        max_open: s.pick(&args.max_open_syncs, ENV_MAX_OPEN_SYNCS, d.max_open)?,
        max_staged_positions: s.pick(
            &args.max_staged_sync_positions,
            ENV_MAX_STAGED_SYNC_POSITIONS,
            d.max_staged_positions,
        )?,
        wipe_guard_percent,
    })
}

/// Request and state limits, kept apart because they share one set of defaults.
fn limits(args: &ServeArgs, s: &Sources<'_>, d: Limits) -> anyhow::Result<Limits> {
    Ok(Limits {
        max_pairs: s.pick(&args.max_pairs, ENV_MAX_PAIRS, d.max_pairs)?,
        max_batch_updates: s.pick(
            &args.max_batch_updates,
            ENV_MAX_BATCH_UPDATES,
            d.max_batch_updates,
        )?,
        max_field_len: s.pick(&args.max_field_len, ENV_MAX_FIELD_LEN, d.max_field_len)?,
        rejection_log_len: s.pick(
            &args.rejection_log_len,
            ENV_REJECTION_LOG_LEN,
            d.rejection_log_len,
        )?,
        max_order_lines: s.pick(
            &args.max_order_lines,
            ENV_MAX_ORDER_LINES,
            d.max_order_lines,
        )?,
        max_clock_skew_secs: s.pick(
            &args.max_clock_skew_secs,
            ENV_MAX_CLOCK_SKEW_SECS,
            d.max_clock_skew_secs,
        )?,
        max_seq_gap: s.pick(&args.max_seq_gap, ENV_MAX_SEQ_GAP, d.max_seq_gap)?,
        max_explained_commitments: s.pick(
            &args.max_explained_commitments,
            ENV_MAX_EXPLAINED_COMMITMENTS,
            d.max_explained_commitments,
        )?,
    })
}

/// Promisable shares of receipts: configured in percent, held in permille, on hand always whole.
fn atp_policy(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<AtpPolicy> {
    let in_transit_flag = &args.promisable_in_transit_percent;
    let in_transit = s.pick(in_transit_flag, ENV_PROMISABLE_IN_TRANSIT, 100u32)?;
    let on_order_flag = &args.promisable_on_order_percent;
    let on_order = s.pick(on_order_flag, ENV_PROMISABLE_ON_ORDER, 100u32)?;
    Ok(AtpPolicy {
        promisable_permille: [
            1000,
            percent_to_permille(in_transit, ENV_PROMISABLE_IN_TRANSIT)?,
            percent_to_permille(on_order, ENV_PROMISABLE_ON_ORDER)?,
        ],
    })
}

/// Reservation policy, kept apart because it shares one set of defaults.
fn reservation_limits(
    args: &ServeArgs,
    s: &Sources<'_>,
    d: ReservationLimits,
) -> anyhow::Result<ReservationLimits> {
    Ok(ReservationLimits {
        default_ttl_secs: s.pick(
            &args.default_ttl_secs,
            ENV_DEFAULT_TTL_SECS,
            d.default_ttl_secs,
        )?,
        max_ttl_secs: s.pick(&args.max_ttl_secs, ENV_MAX_TTL_SECS, d.max_ttl_secs)?,
        retention_secs: s.pick(&args.retention_secs, ENV_RETENTION_SECS, d.retention_secs)?,
        max_lines: s.pick(&args.max_lines, ENV_MAX_LINES, d.max_lines)?,
    })
}

/// Durability settings, which only matter once a Redis URL turns durability on.
fn redis_config(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<Option<RedisConfig>> {
    let Some(url) = s.optional(&args.redis_url, ENV_REDIS_URL) else {
        return Ok(None);
    };
    let timeout_ms = s.pick(
        &args.redis_timeout_ms,
        ENV_REDIS_TIMEOUT_MS,
        DEFAULT_REDIS_TIMEOUT_MS,
    )?;
    let interval_secs = s.pick(
        &args.snapshot_interval_secs,
        ENV_SNAPSHOT_INTERVAL_SECS,
        DEFAULT_SNAPSHOT_INTERVAL_SECS,
    )?;
    Ok(Some(RedisConfig {
        access: redis_access(args, s, &url)?,
        url,
        prefix: s.pick(
            &args.redis_prefix,
            ENV_REDIS_PREFIX,
            DEFAULT_REDIS_PREFIX.to_owned(),
        )?,
        timeout: Duration::from_millis(timeout_ms.max(1)),
        snapshot_interval: Duration::from_secs(interval_secs.max(1)),
        snapshot_after_effects: s.pick(
            &args.snapshot_after_effects,
            ENV_SNAPSHOT_AFTER_EFFECTS,
            DEFAULT_SNAPSHOT_AFTER_EFFECTS,
        )?,
        audit_retention: Duration::from_secs(s.pick(
            &args.audit_retention_secs,
            ENV_AUDIT_RETENTION_SECS,
            DEFAULT_AUDIT_RETENTION_SECS,
        )?),
        snapshot_copy_percent: snapshot_copy_percent(args, s)?,
    }))
}

/// The copy's share of a core: a percentage from 1 to 100.
fn snapshot_copy_percent(args: &ServeArgs, s: &Sources<'_>) -> anyhow::Result<u32> {
    let percent = s.pick(
        &args.snapshot_copy_percent,
        ENV_SNAPSHOT_COPY_PERCENT,
        DEFAULT_SNAPSHOT_COPY_PERCENT,
    )?;
    anyhow::ensure!(
        (1..=100).contains(&percent),
        "{ENV_SNAPSHOT_COPY_PERCENT} must be from 1 to 100, not {percent}"
    );
    Ok(percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StalePolicy;

    /// The variables, and authentication explicitly off unless they say otherwise.
    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !vars.contains_key(ENV_CREDENTIALS) {
            vars.entry(ENV_INSECURE_NO_AUTH.into())
                .or_insert_with(|| "true".into());
        }
        vars
    }

    #[test]
    fn authentication_is_a_credentials_file_or_explicitly_off() {
        let none = HashMap::new();
        let error = Config::resolve(&ServeArgs::default(), &none).expect_err("neither");
        assert!(error.to_string().contains("--insecure-no-auth"), "{error}");
        let insecure = ServeArgs {
            insecure_no_auth: true,
            ..ServeArgs::default()
        };
        let config = Config::resolve(&insecure, &none).expect("explicitly off");
        assert_eq!(config.auth, AuthConfig::Insecure);
        let vars = env(&[(ENV_CREDENTIALS, "/etc/promised/credentials.toml")]);
        let config = Config::resolve(&ServeArgs::default(), &vars).expect("a file");
        let file = PathBuf::from("/etc/promised/credentials.toml");
        assert_eq!(config.auth, AuthConfig::Credentials(file));
        let both = Config::resolve(&insecure, &vars).expect_err("both");
        assert!(both.to_string().contains("exclude each other"), "{both}");
    }

    #[test]
    fn events_out_needs_redis_for_the_cursors() {
        let vars = env(&[(ENV_EVENTS_OUT, "/etc/promised/events.toml")]);
        let error = Config::resolve(&ServeArgs::default(), &vars).expect_err("no Redis");
        assert!(error.to_string().contains(ENV_REDIS_URL), "{error}");
        let vars = env(&[
            (ENV_EVENTS_OUT, "/etc/promised/events.toml"),
            (ENV_REDIS_URL, "redis://127.0.0.1:6379/0"),
        ]);
        let config = Config::resolve(&ServeArgs::default(), &vars).expect("valid");
        let file = PathBuf::from("/etc/promised/events.toml");
        assert_eq!(config.events_out, Some(file));
    }

    #[test]
    fn traces_are_exported_only_to_an_http_otlp_endpoint() {
        let off = Config::resolve(&ServeArgs::default(), &env(&[])).expect("valid");
        assert_eq!(off.otlp_endpoint, None, "off by default");
        let vars = env(&[(ENV_OTLP_ENDPOINT, "http://collector:4317")]);
        let on = Config::resolve(&ServeArgs::default(), &vars).expect("valid");
        let endpoint = on.otlp_endpoint.expect("on");
        assert_eq!(endpoint.host(), Some("collector"));
        assert_eq!(endpoint.port_u16(), Some(4317));
        for bad in [
            "collector:4317",
            "udp://collector:4317",
            "https://collector:4317",
            "/v1/traces",
            "http://",
        ] {
            let error = Config::resolve(&ServeArgs::default(), &env(&[(ENV_OTLP_ENDPOINT, bad)]))
                .expect_err(bad);
            assert!(error.to_string().contains(ENV_OTLP_ENDPOINT), "{error}");
        }
    }

    #[test]
    fn tls_needs_a_certificate_and_its_key() {
        let vars = env(&[(ENV_TLS_CERT, "cert.pem"), (ENV_TLS_KEY, "key.pem")]);
        let tls = Config::resolve(&ServeArgs::default(), &vars)
            .expect("valid")
            .tls
            .expect("TLS on");
        assert_eq!((tls.cert.to_str(), tls.client_ca), (Some("cert.pem"), None));
        for partial in [
            &[(ENV_TLS_CERT, "cert.pem")][..],
            &[(ENV_TLS_CLIENT_CA, "ca.pem")],
        ] {
            assert!(Config::resolve(&ServeArgs::default(), &env(partial)).is_err());
        }
    }

    #[test]
    fn a_redis_password_comes_from_the_environment_never_the_url() {
        let vars = env(&[
            (ENV_REDIS_URL, "rediss://cache.internal:6380/0"),
            (ENV_REDIS_USERNAME, "promised"),
            (ENV_REDIS_PASSWORD, "hunter2"),
        ]);
        let redis = Config::resolve(&ServeArgs::default(), &vars)
            .expect("valid")
            .redis
            .expect("durable");
        assert_eq!(redis.access.username.as_deref(), Some("promised"));
        assert_eq!(redis.access.password, Some(Secret("hunter2".into())));
        assert!(!format!("{redis:?}").contains("hunter2"), "never printed");
        let in_url = env(&[(ENV_REDIS_URL, "redis://promised:hunter2@cache:6379/0")]);
        let error = Config::resolve(&ServeArgs::default(), &in_url).expect_err("refused");
        assert!(error.to_string().contains("password"), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn defaults_apply_without_flags_or_environment() {
        let config = Config::resolve(&ServeArgs::default(), &env(&[])).expect("defaults are valid");
        assert_eq!(config.grpc_addr.to_string(), DEFAULT_GRPC_ADDR);
        assert_eq!(config.metrics_addr.to_string(), DEFAULT_METRICS_ADDR);
        assert_eq!(config.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(config.engine.limits, Limits::default());
        assert_eq!(config.engine.stale, StalePolicy::Exclude);
        assert_eq!(config.network_file, None);
        assert_eq!(config.redis, None, "in memory unless a Redis URL is given");
        assert_eq!(config.max_work, Duration::from_millis(DEFAULT_MAX_WORK_MS));
    }

    #[test]
    fn the_http_address_is_a_flag_or_a_variable() {
        let args = ServeArgs {
            http_addr: Some("127.0.0.1:8181".into()),
            ..ServeArgs::default()
        };
        let from_env = env(&[(ENV_HTTP_ADDR, "127.0.0.1:9191")]);
        let flagged = Config::resolve(&args, &from_env).expect("valid settings");
        assert_eq!(flagged.http_addr.to_string(), "127.0.0.1:8181");
        let config = Config::resolve(&ServeArgs::default(), &from_env).expect("valid settings");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:9191");
        let bad = env(&[(ENV_HTTP_ADDR, "port 80")]);
        let error = Config::resolve(&ServeArgs::default(), &bad).expect_err("refused");
        assert!(error.to_string().contains(ENV_HTTP_ADDR), "{error}");
    }

    #[test]
    fn a_redis_url_turns_durability_on() {
        let vars = env(&[
            (ENV_REDIS_URL, "redis://127.0.0.1:6380/2"),
            (ENV_REDIS_PREFIX, "east"),
        ]);
        let redis = Config::resolve(&ServeArgs::default(), &vars)
            .expect("valid settings")
            .redis
            .expect("durable");
        assert_eq!(
            (redis.url.as_str(), redis.prefix.as_str()),
            ("redis://127.0.0.1:6380/2", "east")
        );
        assert_eq!(
            redis.timeout,
            Duration::from_millis(DEFAULT_REDIS_TIMEOUT_MS)
        );
        assert_eq!(redis.snapshot_copy_percent, DEFAULT_SNAPSHOT_COPY_PERCENT);
    }

    #[test]
    fn the_snapshot_copy_share_is_from_1_to_100_percent() {
        let durable = |percent: &str| {
            let vars = env(&[
                (ENV_REDIS_URL, "redis://127.0.0.1:6380/2"),
                (ENV_SNAPSHOT_COPY_PERCENT, percent),
            ]);
            Config::resolve(&ServeArgs::default(), &vars)
                .map(|config| config.redis.map(|redis| redis.snapshot_copy_percent))
        };
        assert_eq!(durable("100").expect("unpaced"), Some(100));
        assert_eq!(durable("1").expect("slowest"), Some(1));
        for refused in ["0", "101"] {
            let error = durable(refused).expect_err("outside 1 to 100");
            assert!(
                error.to_string().contains(ENV_SNAPSHOT_COPY_PERCENT),
                "{error}"
            );
        }
    }

    #[test]
    fn the_query_message_limit_is_at_most_the_message_limit() {
        let resolve = |vars: &[(&str, &str)]| Config::resolve(&ServeArgs::default(), &env(vars));
        let defaults = resolve(&[]).expect("defaults");
        assert_eq!(
            defaults.max_query_message_bytes,
            DEFAULT_MAX_QUERY_MESSAGE_BYTES
        );
        let small = resolve(&[(ENV_MAX_MESSAGE_BYTES, "4096")]).expect("a small message limit");
        assert_eq!(small.max_query_message_bytes, 4096);
        let error = resolve(&[
            (ENV_MAX_MESSAGE_BYTES, "4096"),
            (ENV_MAX_QUERY_MESSAGE_BYTES, "4097"),
        ])
        .expect_err("a query message larger than any message");
        assert!(
            error.to_string().contains(ENV_MAX_QUERY_MESSAGE_BYTES),
            "{error}"
        );
    }

    #[test]
    fn flags_win_over_environment_which_wins_over_defaults() {
        let args = ServeArgs {
            max_pairs: Some("2000".into()),
            ..ServeArgs::default()
        };
        let vars = env(&[
            (ENV_MAX_PAIRS, "3000"),
            (ENV_GRPC_ADDR, "127.0.0.1:7000"),
            (ENV_STALE_POLICY, "buffer:15"),
            (ENV_PROMISABLE_ON_ORDER, "40"),
        ]);
        let config = Config::resolve(&args, &vars).expect("valid settings");
        assert_eq!(config.engine.limits.max_pairs, 2000);
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(config.engine.stale, StalePolicy::Buffer { percent: 15 });
        assert_eq!(config.engine.atp.promisable_permille, [1000, 1000, 400]);
    }

    #[test]
    fn the_in_flight_bytes_must_hold_the_largest_message() {
        let vars = env(&[
            (ENV_MAX_MESSAGE_BYTES, "2000000"),
            (ENV_MAX_IN_FLIGHT_BYTES, "1000000"),
        ]);
        let error = Config::resolve(&ServeArgs::default(), &vars).expect_err("refused");
        assert!(
            error.to_string().contains(ENV_MAX_IN_FLIGHT_BYTES),
            "{error}"
        );
        let defaults = Config::resolve(&ServeArgs::default(), &env(&[])).expect("defaults");
        assert_eq!(
            defaults.connections.max_in_flight_bytes,
            DEFAULT_MAX_IN_FLIGHT_BYTES
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (name, value) in [
            (ENV_GRPC_ADDR, "not-an-address"),
            (ENV_STALE_POLICY, "sometimes"),
            (ENV_MAX_PAIRS, "-1"),
            (ENV_PROMISABLE_IN_TRANSIT, "150"),
        ] {
            let error = Config::resolve(&ServeArgs::default(), &env(&[(name, value)]))
                .expect_err("invalid setting must be refused");
            assert!(
                error.to_string().contains(name),
                "{error} should name {name}"
            );
        }
    }
}
