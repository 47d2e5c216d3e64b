//! The network file given with `--network`: groups, nodes and sources in TOML (or YAML, by
//! the `.yaml`/`.yml` extension), loaded through the same validation as the Admin RPCs.

use std::path::Path;

use anyhow::{anyhow, Context};
use serde::Deserialize;

use crate::app::{App, Caller};
use crate::domain::{parse_time_zone, Node, NodeGroup, NodeKind, Source, SourceKind, SupplyType};
use crate::error::Error;
use crate::spec::{FulfilmentSpec, ServiceLevelSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    #[serde(default)]
    groups: Vec<GroupEntry>,
    #[serde(default)]
    nodes: Vec<NodeEntry>,
    #[serde(default)]
    sources: Vec<SourceEntry>,
    #[serde(default)]
    service_levels: Vec<ServiceLevelSpec>,
    #[serde(default)]
    postal_codes: Vec<PostalCodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    id: String,
    #[serde(default)]
    description: String,
}

/// The demo network (50 US nodes: 8 DCs, 6 3PL warehouses, 36 stores); also an example of a
/// `--network` file.
pub const DEMO_NETWORK_TOML: &str = include_str!("demo_network.toml");

/// Unknown fields are not refused: serde cannot combine that with the flattened fulfilment.
#[derive(Debug, Deserialize)]
struct NodeEntry {
    id: String,
    kind: NodeKind,
    lat: f64,
    lon: f64,
    #[serde(default)]
    postal_code: String,
    #[serde(default)]
    country: String,
    time_zone: String,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    group_ids: Vec<String>,
    #[serde(default)]
    safety_stock: i64,
    #[serde(flatten)]
    fulfilment: FulfilmentSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostalCodeEntry {
    postal_code: String,
    #[serde(default = "us")]
    country: String,
    lat: f64,
    lon: f64,
}

fn us() -> String {
    "US".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceEntry {
    id: String,
    kind: SourceKind,
    #[serde(default)]
    owned_node_ids: Vec<String>,
    owned_supply_types: Vec<SupplyType>,
    #[serde(default)]
    stale_after_seconds: u32,
}

impl NetworkFile {
    /// Parses TOML, or YAML when `yaml` is set.
    pub fn parse(text: &str, yaml: bool) -> anyhow::Result<NetworkFile> {
        if yaml {
            serde_yaml::from_str(text).context("invalid YAML network file")
        } else {
            toml::from_str(text).context("invalid TOML network file")
        }
    }

    pub fn read(path: &Path) -> anyhow::Result<NetworkFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read network file {}", path.display()))?;
        let yaml = path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        Self::parse(&text, yaml).with_context(|| format!("in {}", path.display()))
    }

    /// Upserts the file's groups, then nodes, then sources (each refers to the ones before),
    /// then service levels and postal codes, each made durable before the next.
    pub async fn apply(self, app: &App) -> anyhow::Result<()> {
        let caller = Caller::system("network-file");
        let groups: Vec<NodeGroup> = self
            .groups
            .into_iter()
            .map(|g| NodeGroup {
                id: g.id,
                description: g.description,
            })
            .collect();
        app.upsert_groups(&caller, groups).await.context("groups")?;
        app.upsert_nodes(&caller, nodes(self.nodes)?)
            .await
            .context("nodes")?;
        let sources = self.sources.into_iter().map(source).collect();
        app.upsert_sources(&caller, sources)
            .await
            .context("sources")?;
        let levels = self
            .service_levels
            .into_iter()
            .map(|spec| {
                let name = spec.name.clone();
                spec.resolve()
                    .map_err(|v| anyhow!("service level {name}: {}", Error::InvalidArgument(v)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        app.upsert_service_levels(&caller, levels)
            .await
            .context("service levels")?;
        let codes: Vec<_> = self
            .postal_codes
            .into_iter()
            .map(|p| ((p.country, p.postal_code), (p.lat, p.lon)))
            .collect();
        app.upsert_postal_codes(&caller, codes)
            .await
            .context("postal codes")?;
        Ok(())
    }
}

/// The file's nodes, with their time zones and fulfilment settings checked.
fn nodes(specs: Vec<NodeEntry>) -> anyhow::Result<Vec<Node>> {
    specs
        .into_iter()
        .map(|n| {
            let time_zone = parse_time_zone(&n.time_zone)
                .ok_or_else(|| anyhow!("node {}: unknown time zone {:?}", n.id, n.time_zone))?;
            let fulfilment = n
                .fulfilment
                .resolve()
                .map_err(|v| anyhow!("node {}: {}", n.id, Error::InvalidArgument(v)))?;
            Ok(Node {
                id: n.id,
                kind: n.kind,
                lat: n.lat,
                lon: n.lon,
                postal_code: n.postal_code,
                country: n.country,
                time_zone,
                priority: n.priority,
                group_ids: n.group_ids,
                safety_stock: n.safety_stock,
                fulfilment,
            })
        })
        .collect()
}

fn source(s: SourceEntry) -> Source {
    Source {
        id: s.id,
        kind: s.kind,
        owned_node_ids: s.owned_node_ids,
        owned_supply_types: s.owned_supply_types,
        stale_after_ms: (s.stale_after_seconds > 0)
            .then(|| i64::from(s.stale_after_seconds) * 1000),
    }
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

    const YAML: &str = r#"
groups:
  - id: EAST
nodes:
  - id: DC-1
    kind: DC
    lat: 40.5
    lon: -74.4
    time_zone: America/New_York
    group_ids: [EAST]
sources:
  - id: WMS
    kind: WMS
    owned_supply_types: [ON_HAND]
    stale_after_seconds: 60
"#;

    fn app() -> App {
        let engine = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(0)));
        App::new(engine, Durability::Memory)
    }

    #[tokio::test]
    async fn toml_and_yaml_describe_the_same_network() {
        for (text, yaml) in [(TOML, false), (YAML, true)] {
            let app = app();
            let file = NetworkFile::parse(text, yaml).expect("parses");
            file.apply(&app).await.expect("valid");
            let network = app.engine().network();
            assert_eq!(network.nodes().len(), 1);
            assert_eq!(network.group_members("EAST"), Some(&[0u32][..]));
            assert_eq!(
                network.source("WMS").and_then(|s| s.def.stale_after_ms),
                Some(60_000)
            );
        }
    }

    #[tokio::test]
    async fn unknown_group_and_fields_are_refused() {
        let bad_group = TOML.replace(r#"group_ids = ["EAST"]"#, r#"group_ids = ["WEST"]"#);
        let file = NetworkFile::parse(&bad_group, false).expect("parses");
        assert!(file.apply(&app()).await.is_err());
        let unknown_field = format!("{TOML}\nsurprise = 1\n");
        assert!(NetworkFile::parse(&unknown_field, false).is_err());
    }
}
