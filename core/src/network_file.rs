//! The network file: groups, nodes, sources, service levels, postal codes and sources'
//! normalization tables (`[[mappings]]`) in TOML (or
//! YAML), parsed and checked into the domain's types. Reading it from disk and applying it,
//! each part made durable, is the server's (`promised::network_file`); the network's own
//! checks (ids, references, coordinates) run when it is applied, as for the Admin RPCs.

use serde::Deserialize;

use crate::domain::{
    parse_time_zone, Node, NodeGroup, NodeKind, ServiceLevel, Source, SourceKind, SupplyType,
};
use crate::error::{Error, FieldViolation};
use crate::normalize::{SourceMapping, UnitFactor};
use crate::rate_card::ItemAttributes;
use crate::spec::{nested, FulfilmentSpec, ItemSpec, PickupSpec, ServiceLevelSpec};

/// A network file as written, before its time zones and fulfilment settings are checked.
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
    #[serde(default)]
    mappings: Vec<MappingEntry>,
    /// Items' weights and dimensions (`[[items]]`).
    #[serde(default)]
    items: Vec<ItemSpec>,
}

/// A source's normalization tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingEntry {
    source_id: String,
    #[serde(default)]
    items: Vec<ItemEntry>,
    #[serde(default)]
    locations: Vec<LocationEntry>,
    #[serde(default)]
    units: Vec<UnitEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemEntry {
    code: String,
    sku: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationEntry {
    code: String,
    node_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitEntry {
    sku: String,
    eaches: u32,
    #[serde(default = "one")]
    units: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    id: String,
    #[serde(default)]
    description: String,
}

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
    /// A store's opening hours, pick time, cutoff and transfers, if it offers pickup.
    #[serde(default)]
    pickup: Option<PickupSpec>,
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
    /// A file holding the shared secret its webhook deliveries are signed with (HMAC-SHA256
    /// over HTTP); without one they are not signed. Relative to the network file.
    #[serde(default)]
    webhook_secret_file: Option<String>,
}

/// What a network file defines, in the order it is applied: each part may refer to the ones
/// before it (nodes to groups, sources to nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkChanges {
    pub groups: Vec<NodeGroup>,
    pub nodes: Vec<Node>,
    pub sources: Vec<Source>,
    pub service_levels: Vec<ServiceLevel>,
    /// (country, postal code) and (lat, lon).
    pub postal_codes: Vec<((String, String), (f64, f64))>,
    /// Sources' item, location and unit tables; they refer to sources and nodes.
    pub mappings: Vec<SourceMapping>,
    /// (SKU, weight and dimensions).
    pub items: Vec<(String, ItemAttributes)>,
}

/// Why a network file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("invalid TOML network file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid YAML network file: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("node {node}: unknown time zone {zone:?}")]
    TimeZone { node: String, zone: String },
    #[error("node {node}: {error}")]
    Fulfilment { node: String, error: Error },
    #[error("service level {name}: {error}")]
    ServiceLevel { name: String, error: Error },
    #[error("item {sku}: {error}")]
    Item { sku: String, error: Error },
}

impl NetworkFile {
    /// Parses TOML, or YAML when `yaml` is set.
    pub fn parse(text: &str, yaml: bool) -> Result<NetworkFile, FileError> {
        if yaml {
            Ok(serde_yaml::from_str(text)?)
        } else {
            Ok(toml::from_str(text)?)
        }
    }

    /// (source id, secret file) of each source whose webhook deliveries are signed.
    pub fn webhook_secret_files(&self) -> Vec<(String, String)> {
        self.sources
            .iter()
            .filter_map(|s| Some((s.id.clone(), s.webhook_secret_file.clone()?)))
            .collect()
    }

    /// The file's definitions as domain values, with time zones, fulfilment settings and
    /// service level calendars checked.
    pub fn changes(self) -> Result<NetworkChanges, FileError> {
        let groups = self
            .groups
            .into_iter()
            .map(|g| NodeGroup {
                id: g.id,
                description: g.description,
            })
            .collect();
        let nodes = self.nodes.into_iter().map(node).collect::<Result<_, _>>()?;
        let service_levels = self
            .service_levels
            .into_iter()
            .map(|spec| {
                let name = spec.name.clone();
                spec.resolve().map_err(|v| FileError::ServiceLevel {
                    name,
                    error: Error::InvalidArgument(v),
                })
            })
            .collect::<Result<_, _>>()?;
        let postal_codes = self
            .postal_codes
            .into_iter()
            .map(|p| ((p.country, p.postal_code), (p.lat, p.lon)))
            .collect();
        Ok(NetworkChanges {
            groups,
            nodes,
            sources: self.sources.into_iter().map(source).collect(),
            service_levels,
            postal_codes,
            mappings: self.mappings.into_iter().map(mapping).collect(),
            items: self
                .items
                .into_iter()
                .map(|spec| {
                    let sku = spec.sku.clone();
                    let error = |v| FileError::Item {
                        sku,
                        error: Error::InvalidArgument(v),
                    };
                    spec.resolve().map_err(error)
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A node with its time zone and fulfilment settings checked.
fn node(n: NodeEntry) -> Result<Node, FileError> {
    let Some(time_zone) = parse_time_zone(&n.time_zone) else {
        return Err(FileError::TimeZone {
            node: n.id,
            zone: n.time_zone,
        });
    };
    let invalid = |v: Vec<FieldViolation>| FileError::Fulfilment {
        node: n.id.clone(),
        error: Error::InvalidArgument(v),
    };
    let fulfilment = n.fulfilment.resolve().map_err(invalid)?;
    let pickup = n
        .pickup
        .as_ref()
        .map(|p| p.resolve().map_err(|v| invalid(nested("pickup", v))))
        .transpose()?;
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
        pickup,
    })
}

fn mapping(m: MappingEntry) -> SourceMapping {
    let factor = |u: UnitEntry| {
        let factor = UnitFactor {
            eaches: u.eaches,
            units: u.units,
        };
        (u.sku, factor)
    };
    SourceMapping {
        source_id: m.source_id,
        items: m.items.into_iter().map(|i| (i.code, i.sku)).collect(),
        locations: m
            .locations
            .into_iter()
            .map(|l| (l.code, l.node_id))
            .collect(),
        units: m.units.into_iter().map(factor).collect(),
    }
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

    fn changes(text: &str, yaml: bool) -> NetworkChanges {
        NetworkFile::parse(text, yaml)
            .expect("parses")
            .changes()
            .expect("valid")
    }

    #[test]
    fn toml_and_yaml_state_the_same_changes() {
        let toml = changes(TOML, false);
        assert_eq!(toml, changes(YAML, true));
        assert_eq!(toml.nodes.len(), 1);
        assert_eq!(toml.nodes[0].group_ids, ["EAST"]);
        assert_eq!(toml.sources[0].stale_after_ms, Some(60_000));
    }

    #[test]
    fn unknown_fields_and_time_zones_are_refused() {
        let unknown_field = format!("{TOML}\nsurprise = 1\n");
        assert!(NetworkFile::parse(&unknown_field, false).is_err());
        let bad_zone = TOML.replace("America/New_York", "Atlantis/Central");
        let refused = NetworkFile::parse(&bad_zone, false)
            .expect("parses")
            .changes();
        assert!(matches!(refused, Err(FileError::TimeZone { .. })));
    }

    #[test]
    fn rate_cards_and_items_are_read_with_their_units() {
        let text = r#"
            [[service_levels]]
            name = "GROUND"
            transit = [[5000.0, 3]]
            [service_levels.rate_card]
            zone_bands = [[800.0, 1], [5000.0, 2]]
            dim_divisor = 5000.0
            rates = [
                { zone = 1, to_kg = 30.0, price = 6.0 },
                { zone = 2, to_kg = 30.0, price = 9.0 },
            ]
            transit = [[1, 1], [2, 3]]
            handling = [["DC-1", 0.5]]

            [[items]]
            sku = "SKU-1"
            weight = 2.0
            weight_unit = "lb"
            length_cm = 10.0
        "#;
        let read = changes(text, false);
        let card = read.service_levels[0].rate_card.as_ref().expect("a card");
        assert_eq!(card.zone_bands, [(800.0, 1), (5000.0, 2)]);
        assert_eq!(card.rates[1].price, 9.0);
        assert_eq!(card.handling, [("DC-1".to_owned(), 0.5)]);
        let (sku, item) = &read.items[0];
        assert_eq!(sku, "SKU-1");
        assert!((item.weight_kg - 0.907_184_74).abs() < 1e-9, "{item:?}");
        assert_eq!(item.length_cm, 10.0);

        let stones = text.replace(r#"weight_unit = "lb""#, r#"weight_unit = "stone""#);
        let refused = NetworkFile::parse(&stones, false)
            .expect("parses")
            .changes();
        assert!(
            matches!(refused, Err(FileError::Item { .. })),
            "{refused:?}"
        );
    }
}
