//! Helpers shared by the bench programs: the demo network, who owns what in it, supply
//! updates in domain terms, and per-source sequence numbers.
//!
//! Each bench binary includes this module with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::sync::Arc;

use promised::app::{App, Caller};
use promised::checkpoint::Durability;
use promised::clock::{ManualClock, UnixMillis};
use promised::domain::{BatchOutcome, Day, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp};
use promised::engine::{Engine, EngineConfig};
use promised::network_file::{self, NetworkFile, DEMO_NETWORK_TOML};

/// 2026-03-02T15:00:00Z: the fixed "now" of in-process benches (a manual clock never moves,
/// so no feed goes stale mid-run).
pub const NOW_MS: UnixMillis = 1_772_463_600_000;

/// Updates per batch (the engine's default limit is 10,000).
pub const BATCH: usize = 1_000;

/// An in-memory engine (no durable store) with the 50-node demo network, on a manual clock
/// at [`NOW_MS`].
pub fn demo_engine() -> Engine {
    let engine = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(NOW_MS)));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
        .block_on(load_demo_network(&engine, &Durability::Memory));
    engine
}

/// Loads the demo network (5 groups, 50 nodes, sources WMS, POS and ERP) into `engine`.
pub async fn load_demo_network(engine: &Engine, durability: &Durability) {
    let app = App::new(engine.clone(), durability.clone());
    let demo = NetworkFile::parse(DEMO_NETWORK_TOML, false).expect("the demo network parses");
    network_file::apply(demo, &app)
        .await
        .expect("the demo network is valid");
    // The demo's Memphis 3PL sends files in its own codes; the benches feed every DC and 3PL
    // through WMS in SKU ids, so WMS owns Memphis again here, as it did before that source.
    let mut wms = engine
        .network()
        .source("WMS")
        .expect("the demo network has WMS")
        .def
        .clone();
    wms.owned_node_ids.push("3PL-MEMPHIS-TN".into());
    app.upsert_sources(&Caller::system("bench"), vec![wms])
        .await
        .expect("WMS owns Memphis");
}

/// Whether the program runs as a benchmark (`cargo bench`) rather than as a smoke test
/// (`cargo test --benches`, or `cargo bench -- --test`): criterion's rule.
pub fn benchmarking() -> bool {
    let flag = |name: &str| std::env::args().any(|a| a == name);
    flag("--bench") && !flag("--test")
}

/// The on-hand feeds of the demo network: WMS at the DCs and 3PLs, POS at the stores.
pub const ON_HAND_SOURCES: [&str; 2] = ["WMS", "POS"];

/// Ids of the nodes where `source_id` owns `supply_type`, in network order.
pub fn owned_nodes(engine: &Engine, source_id: &str, supply_type: SupplyType) -> Vec<String> {
    let network = engine.network();
    let source = network
        .source(source_id)
        .unwrap_or_else(|| panic!("the demo network has source {source_id}"));
    network
        .nodes()
        .iter()
        .enumerate()
        .filter(|(idx, _)| source.owns(*idx as u32, supply_type))
        .map(|(_, node)| node.id.clone())
        .collect()
}

/// The source owning on-hand at `node_id` in the demo network.
pub fn on_hand_owner(engine: &Engine, node_id: &str) -> &'static str {
    let network = engine.network();
    let node = network
        .node_idx(node_id)
        .unwrap_or_else(|| panic!("unknown node {node_id}"));
    ON_HAND_SOURCES
        .into_iter()
        .find(|id| {
            network
                .source(id)
                .is_some_and(|s| s.owns(node, SupplyType::OnHand))
        })
        .unwrap_or_else(|| panic!("no on-hand owner for {node_id}"))
}

/// The SKU code of catalogue item `i`.
pub fn sku(i: usize) -> String {
    format!("SKU-{i:07}")
}

/// An absolute on-hand quantity as of `as_of_ms`.
pub fn on_hand_set(sku: String, node_id: String, quantity: i64, as_of_ms: i64) -> SupplyUpdate {
    SupplyUpdate {
        sku,
        node_id,
        supply_type: Some(SupplyType::OnHand),
        op: Some(UpdateOp::Set {
            as_of_ms: Some(as_of_ms),
        }),
        quantity,
        reference: String::new(),
        eta: String::new(),
    }
}

/// A signed on-hand delta.
pub fn on_hand_adjust(sku: String, node_id: String, delta: i64) -> SupplyUpdate {
    SupplyUpdate {
        op: Some(UpdateOp::Adjust),
        ..on_hand_set(sku, node_id, delta, 0)
    }
}

/// A dated receipt (IN_TRANSIT or ON_ORDER line `reference`) arriving on `eta`.
pub fn receipt(
    sku: String,
    node_id: String,
    supply_type: SupplyType,
    reference: String,
    eta: Day,
    quantity: i64,
    as_of_ms: i64,
) -> SupplyUpdate {
    SupplyUpdate {
        supply_type: Some(supply_type),
        reference,
        eta: eta.to_string(),
        ..on_hand_set(sku, node_id, quantity, as_of_ms)
    }
}

/// Today (UTC) at the engine's clock.
pub fn today(engine: &Engine) -> Day {
    Day::in_zone(chrono_tz::UTC, engine.now_ms())
}

/// One source's feed: hands out increasing sequence numbers, as a real feed does.
#[derive(Debug)]
pub struct Feed {
    pub source_id: &'static str,
    pub seq: u64,
}

impl Feed {
    /// A feed continuing after the engine's last applied sequence of `source_id`.
    pub fn resume(engine: &Engine, source_id: &'static str) -> Self {
        let seq = engine
            .stats()
            .source_stats
            .iter()
            .find(|s| s.source_id == source_id)
            .unwrap_or_else(|| panic!("the demo network has source {source_id}"))
            .last_seq;
        Self { source_id, seq }
    }

    /// The next batch of this feed.
    pub fn batch(&mut self, updates: Vec<SupplyUpdate>) -> SupplyBatch {
        self.seq += 1;
        SupplyBatch {
            source_id: self.source_id.to_owned(),
            seq: self.seq,
            updates,
        }
    }

    /// Re-sends a prepared batch under this feed's next sequence number.
    pub fn renumber(&mut self, batch: &mut SupplyBatch) {
        self.seq += 1;
        batch.seq = self.seq;
    }

    /// Applies `updates` as the next batch and checks that every update was applied. The
    /// engine keeps everything in memory, so there is nothing to make durable.
    pub fn apply_all(&mut self, engine: &Engine, updates: Vec<SupplyUpdate>) -> BatchOutcome {
        let batch = self.batch(updates);
        let outcome = engine
            .apply_batch(&batch)
            .expect("a valid batch")
            .into_result();
        assert_fully_applied(&batch, &outcome);
        outcome
    }
}

/// Panics unless every update of `batch` was applied: a bench must measure real work, not
/// duplicates, stale SETs or rejections.
pub fn assert_fully_applied(batch: &SupplyBatch, outcome: &BatchOutcome) {
    assert!(
        !outcome.duplicate
            && outcome.applied as usize == batch.updates.len()
            && outcome.rejections.is_empty(),
        "batch {} of {}: {} of {} applied (duplicate: {}, stale: {}), first rejection: {:?}",
        batch.seq,
        batch.source_id,
        outcome.applied,
        batch.updates.len(),
        outcome.duplicate,
        outcome.stale,
        outcome.rejections.first(),
    );
}

/// What the security benches need on disk: a self-signed certificate for `localhost`, an
/// HS256 secret, and a credentials file trusting tokens signed with it. Removed when dropped.
pub struct BenchSecurity {
    pub dir: std::path::PathBuf,
    /// The certificate, which clients trust as their CA.
    pub cert_pem: String,
    secret: Vec<u8>,
}

pub const BENCH_ISSUER: &str = "https://login.bench/";
pub const BENCH_AUDIENCE: &str = "promised";
/// The static API key of the bench credentials file.
pub const BENCH_API_KEY: &str = "bench-api-key-0123456789abcdef";

impl BenchSecurity {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("promised-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bench directory");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let cert_pem = certified.cert.pem();
        std::fs::write(dir.join("cert.pem"), &cert_pem).expect("write");
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("write");
        let secret = b"a bench secret of at least thirty-two bytes".to_vec();
        std::fs::write(dir.join("hs256.secret"), &secret).expect("write");
        let key_sha256: String = promised::auth::digest(BENCH_API_KEY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let credentials = format!(
            "[jwt]\nissuer = \"{BENCH_ISSUER}\"\naudience = \"{BENCH_AUDIENCE}\"\nhs256_secret_file = \"hs256.secret\"\n\n[[api_key]]\nid = \"bench\"\nsha256 = \"{key_sha256}\"\nscopes = [\"availability:read\"]\n"
        );
        std::fs::write(dir.join("credentials.toml"), credentials).expect("write");
        Self {
            dir,
            cert_pem,
            secret,
        }
    }

    /// The service's flags for TLS with this certificate and these credentials.
    pub fn args(&self) -> promised::config::ServeArgs {
        let path = |name: &str| Some(self.dir.join(name).display().to_string());
        promised::config::ServeArgs {
            tls_cert: path("cert.pem"),
            tls_key: path("key.pem"),
            credentials: path("credentials.toml"),
            ..promised::config::ServeArgs::default()
        }
    }

    pub fn credentials_file(&self) -> std::path::PathBuf {
        self.dir.join("credentials.toml")
    }

    /// A token of `sub` with `scopes`, good until `exp_ms`.
    pub fn token(&self, sub: &str, scopes: &str, exp_ms: UnixMillis) -> String {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            aud: &'a str,
            sub: &'a str,
            exp: i64,
            scope: &'a str,
        }
        let claims = Claims {
            iss: BENCH_ISSUER,
            aud: BENCH_AUDIENCE,
            sub,
            exp: exp_ms / 1000,
            scope: scopes,
        };
        let key = jsonwebtoken::EncodingKey::from_secret(&self.secret).expect("an HS256 key");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("signed")
    }
}

impl Drop for BenchSecurity {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
