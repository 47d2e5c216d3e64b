//! The network file given with `--network`: read from disk and applied through the [`App`],
//! each part made durable before the next. Its format (TOML, or YAML by the `.yaml`/`.yml`
//! extension) and checks are the core's ([`promised_core::network_file`]).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};

use crate::app::{App, Caller};
pub use promised_core::network_file::{FileError, NetworkChanges, NetworkFile};

/// The demo network (50 US nodes: 8 DCs, 6 3PL warehouses, 36 stores); also an example of a
/// `--network` file.
pub const DEMO_NETWORK_TOML: &str = include_str!("demo_network.toml");

pub fn read(path: &Path) -> anyhow::Result<NetworkFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read network file {}", path.display()))?;
    let yaml = path
        .extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml");
    NetworkFile::parse(&text, yaml).with_context(|| format!("in {}", path.display()))
}

/// Shortest webhook secret accepted: a guessable one would let anyone sign deliveries.
const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// The webhook secret of each source that has one, read from the files the network file at
/// `path` names (relative to its directory); a trailing newline is not part of a secret.
pub fn webhook_secrets(
    path: &Path,
    file: &NetworkFile,
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut secrets = HashMap::new();
    for (source, secret_file) in file.webhook_secret_files() {
        let secret_path = dir.join(secret_file);
        let secret = std::fs::read(&secret_path).with_context(|| {
            format!(
                "source {source}: cannot read webhook secret {}",
                secret_path.display()
            )
        })?;
        let secret = secret.trim_ascii_end().to_vec();
        if secret.len() < MIN_WEBHOOK_SECRET_BYTES {
            bail!("source {source}: the webhook secret must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes");
        }
        secrets.insert(source, secret);
    }
    Ok(secrets)
}

/// Checks the whole file, then upserts its groups, nodes and sources (each refers to the ones
/// before), service levels, postal codes, mappings and items, each made durable before the
/// next.
pub async fn apply(file: NetworkFile, app: &App) -> anyhow::Result<()> {
    let changes = file.changes()?;
    let caller = Caller::system("network-file");
    app.upsert_groups(&caller, changes.groups)
        .await
        .context("groups")?;
    app.upsert_nodes(&caller, changes.nodes)
        .await
        .context("nodes")?;
    app.upsert_sources(&caller, changes.sources)
        .await
        .context("sources")?;
    app.upsert_service_levels(&caller, changes.service_levels)
        .await
        .context("service levels")?;
    app.upsert_postal_codes(&caller, changes.postal_codes)
        .await
        .context("postal codes")?;
    if !changes.mappings.is_empty() {
        app.upsert_mappings(&caller, changes.mappings)
            .await
            .context("mappings")?;
    }
    if !changes.items.is_empty() {
        app.upsert_items(&caller, changes.items)
            .await
            .context("items")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Durability;
    use crate::clock::ManualClock;
    use crate::engine::{Engine, EngineConfig};
    use std::sync::Arc;

    const TOML: &str = r#"
        [[groups]]
        id = "EAST"

        [[nodes]]
        id = "DC-1"
        kind = "DC"
        lat = 40.5
        lon = -74.4
        time_zone = "America/New_York"
        group_ids = ["EAST"]

        [[sources]]
        id = "WMS"
        kind = "WMS"
        owned_supply_types = ["ON_HAND"]
        stale_after_seconds = 60
    "#;

    const MAPPINGS: &str = r#"
        [[mappings]]
        source_id = "WMS"
        items = [{ code = "00012", sku = "SKU-1" }]
        locations = [{ code = "W1", node_id = "DC-1" }]
        units = [{ sku = "SKU-1", eaches = 12 }]
    "#;

    fn app() -> App {
        let engine = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(0)));
        App::new(engine, Durability::Memory)
    }

    #[tokio::test]
    async fn a_file_becomes_the_network() {
        let app = app();
        let file = NetworkFile::parse(TOML, false).expect("parses");
        apply(file, &app).await.expect("valid");
        let network = app.engine().network();
        assert_eq!(network.nodes().len(), 1);
        assert_eq!(network.group_members("EAST"), Some(&[0u32][..]));
        assert_eq!(
            network.source("WMS").and_then(|s| s.def.stale_after_ms),
            Some(60_000)
        );
    }

    #[test]
    fn webhook_secrets_are_read_beside_the_file() {
        let dir = std::env::temp_dir().join(format!("promised-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(dir.join("wms.secret"), "0123456789abcdef0123\n").expect("written");
        std::fs::write(dir.join("short.secret"), "short").expect("written");
        let signed = TOML.replace(
            "stale_after_seconds = 60",
            "stale_after_seconds = 60\nwebhook_secret_file = \"wms.secret\"",
        );
        let file = NetworkFile::parse(&signed, false).expect("parses");
        let secrets = webhook_secrets(&dir.join("network.toml"), &file).expect("readable");
        assert_eq!(secrets["WMS"], b"0123456789abcdef0123");
        let weak = signed.replace("wms.secret", "short.secret");
        let file = NetworkFile::parse(&weak, false).expect("parses");
        assert!(webhook_secrets(&dir.join("network.toml"), &file).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn mappings_come_from_the_file_and_must_name_known_nodes() {
        let mapped = format!("{TOML}{MAPPINGS}");
        let app = app();
        apply(NetworkFile::parse(&mapped, false).expect("parses"), &app)
            .await
            .expect("valid");
        let network = app.engine().network();
        let mapping = network.mapping("WMS").expect("mapped");
        assert_eq!(
            mapping.items.get("00012").map(String::as_str),
            Some("SKU-1")
        );
        assert_eq!(
            mapping.units.get("SKU-1").map(|f| (f.eaches, f.units)),
            Some((12, 1))
        );
        let nowhere = mapped.replace(r#"node_id = "DC-1""#, r#"node_id = "DC-9""#);
        let error = apply(NetworkFile::parse(&nowhere, false).expect("parses"), &app).await;
        let error = format!("{:#}", error.expect_err("unknown node"));
        assert!(
            error.contains("mappings[0].locations[0].node_id"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unknown_group_is_refused() {
        let bad_group = TOML.replace(r#"group_ids = ["EAST"]"#, r#"group_ids = ["WEST"]"#);
        let file = NetworkFile::parse(&bad_group, false).expect("parses");
        assert!(apply(file, &app()).await.is_err());
    }
}
