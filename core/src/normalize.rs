//! Normalization per source: a feed's own codes and units made into promised's before an
//! update is validated. A source with an item table names items by its own codes (item
//! numbers or GTINs); with a location table, nodes by its own location codes; a unit factor
//! states how many eaches one of the source's units of a SKU is, as an exact ratio. A code a
//! table lacks, or a quantity the factor does not turn into whole eaches, rejects that update
//! alone; nothing is ever rounded.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::domain::{id_problem, Qty, RejectReason, SupplyUpdate};
use crate::error::FieldViolation;

/// Longest code or SKU a table holds: the ingest's default field limit.
const MAX_CODE_LEN: usize = 128;

/// Eaches per source unit as `eaches / units`: a case of 12 is 12/1; a source that counts
/// single items of a SKU sold in pairs is 1/2, so only even counts convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitFactor {
    pub eaches: u32,
    pub units: u32,
}

/// One source's tables as configured (an admin call, the network file): lists, so a problem
/// is named by its place in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMapping {
    pub source_id: String,
    /// (source item code or GTIN, SKU). When not empty, every update's `sku` is such a code.
    pub items: Vec<(String, String)>,
    /// (source location code, node id). When not empty, every update's `node_id` is a code.
    pub locations: Vec<(String, String)>,
    /// (SKU, what one source unit of it is in eaches); a SKU without one counts in eaches.
    pub units: Vec<(String, UnitFactor)>,
}

impl SourceMapping {
    /// Checks the tables' own fields (ids, repeated codes, factors); `at` prefixes each field
    /// path (`mappings[2]`). Whether the nodes named exist is the network's to check.
    pub fn check(&self, at: &str, violations: &mut Vec<FieldViolation>) {
        let mut ids = Vec::new();
        for (j, (code, sku)) in self.items.iter().enumerate() {
            ids.push((format!("{at}.items[{j}].code"), code));
            ids.push((format!("{at}.items[{j}].sku"), sku));
        }
        for (j, (code, _)) in self.locations.iter().enumerate() {
            ids.push((format!("{at}.locations[{j}].code"), code));
        }
        for (j, (sku, _)) in self.units.iter().enumerate() {
            ids.push((format!("{at}.units[{j}].sku"), sku));
        }
        for (field, value) in ids {
            if let Some(problem) = id_problem(value, MAX_CODE_LEN) {
                violations.push(FieldViolation::new(field, problem));
            }
        }
        let keys = |table: &'static str, keys: Vec<&String>, violations: &mut Vec<_>| {
            for (j, key) in keys.iter().enumerate() {
                if keys[..j].contains(key) {
                    let field = format!("{at}.{table}[{j}]");
                    violations.push(FieldViolation::new(field, format!("repeats {key:?}")));
                }
            }
        };
        keys(
            "items",
            self.items.iter().map(|(c, _)| c).collect(),
            violations,
        );
        keys(
            "locations",
            self.locations.iter().map(|(c, _)| c).collect(),
            violations,
        );
        keys(
            "units",
            self.units.iter().map(|(s, _)| s).collect(),
            violations,
        );
        for (j, (_, factor)) in self.units.iter().enumerate() {
            if factor.eaches == 0 || factor.units == 0 {
                let field = format!("{at}.units[{j}]");
                violations.push(FieldViolation::new(
                    field,
                    "eaches and units must be at least 1",
                ));
            }
        }
    }

    /// The tables as lookups.
    pub fn compile(&self) -> Normalizer {
        Normalizer {
            source_id: self.source_id.clone(),
            items: self.items.iter().cloned().collect(),
            locations: self.locations.iter().cloned().collect(),
            units: self.units.iter().cloned().collect(),
        }
    }
}

/// One source's tables as lookups, held by the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalizer {
    pub source_id: String,
    pub items: BTreeMap<String, String>,
    pub locations: BTreeMap<String, String>,
    pub units: BTreeMap<String, UnitFactor>,
}

/// Why an update does not normalize: its reason and detail.
pub type Unmapped = (RejectReason, String);

impl Normalizer {
    /// `update` in promised's SKU, node and eaches; borrowed when nothing needs translating.
    pub fn normalize<'u>(
        &self,
        update: &'u SupplyUpdate,
    ) -> Result<Cow<'u, SupplyUpdate>, Unmapped> {
        if self.items.is_empty() && self.locations.is_empty() && self.units.is_empty() {
            return Ok(Cow::Borrowed(update));
        }
        let mut normalized = update.clone();
        if !self.items.is_empty() {
            normalized.sku = lookup(&self.items, &update.sku, RejectReason::UnknownSkuCode)?;
        }
        if !self.locations.is_empty() {
            let node = lookup(
                &self.locations,
                &update.node_id,
                RejectReason::UnknownLocationCode,
            );
            normalized.node_id = node?;
        }
        if let Some(factor) = self.units.get(&normalized.sku) {
            normalized.quantity = convert(update.quantity, *factor)?;
        }
        Ok(Cow::Owned(normalized))
    }

    /// The tables as configured, in key order.
    pub fn mapping(&self) -> SourceMapping {
        SourceMapping {
            source_id: self.source_id.clone(),
            items: self.items.clone().into_iter().collect(),
            locations: self.locations.clone().into_iter().collect(),
            units: self.units.clone().into_iter().collect(),
        }
    }
}

/// What `code` stands for in `table`, or the rejection naming the code.
fn lookup(
    table: &BTreeMap<String, String>,
    code: &str,
    reason: RejectReason,
) -> Result<String, Unmapped> {
    table.get(code).cloned().ok_or_else(|| {
        let what = match reason {
            RejectReason::UnknownSkuCode => "item code",
            _ => "location code",
        };
        (
            reason,
            format!(
                "{what} {:?} is not mapped for this source",
                crate::domain::echo(code)
            ),
        )
    })
}

/// `quantity` source units in eaches, exactly; the ingest then holds it to the index's limit.
fn convert(quantity: Qty, factor: UnitFactor) -> Result<Qty, Unmapped> {
    let scaled = i128::from(quantity) * i128::from(factor.eaches);
    let units = i128::from(factor.units);
    let not_convertible = |why: String| (RejectReason::UnitNotConvertible, why);
    if units == 0 || scaled % units != 0 {
        return Err(not_convertible(format!(
            "{quantity} units at {}/{} eaches each is not a whole number of eaches",
            factor.eaches, factor.units
        )));
    }
    let eaches = scaled / units;
    Qty::try_from(eaches)
        .map_err(|_| not_convertible(format!("{quantity} units are {eaches} eaches, too many")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SupplyType, UpdateOp};

    fn mapping() -> Normalizer {
        SourceMapping {
            source_id: "3PL".into(),
            items: vec![
                ("ITEM-9".into(), "SKU-1".into()),
                ("00012345678905".into(), "SKU-2".into()),
            ],
            locations: vec![("WH1".into(), "DC-EAST".into())],
            units: vec![
                (
                    "SKU-1".into(),
                    UnitFactor {
                        eaches: 12,
                        units: 1,
                    },
                ),
                (
                    "SKU-2".into(),
                    UnitFactor {
                        eaches: 1,
                        units: 2,
                    },
                ),
            ],
        }
        .compile()
    }

    fn update(sku: &str, node: &str, quantity: Qty) -> SupplyUpdate {
        SupplyUpdate {
            sku: sku.into(),
            node_id: node.into(),
            supply_type: Some(SupplyType::OnHand),
            op: Some(UpdateOp::Adjust),
            quantity,
            reference: String::new(),
            eta: String::new(),
        }
    }

    fn normalized(
        sku: &str,
        node: &str,
        quantity: Qty,
    ) -> Result<(String, String, Qty), RejectReason> {
        let update = update(sku, node, quantity);
        mapping()
            .normalize(&update)
            .map(|u| (u.sku.clone(), u.node_id.clone(), u.quantity))
            .map_err(|(reason, _)| reason)
    }

    #[test]
    fn codes_and_units_become_skus_nodes_and_eaches() {
        assert_eq!(
            normalized("ITEM-9", "WH1", 3),
            Ok(("SKU-1".into(), "DC-EAST".into(), 36))
        );
        assert_eq!(
            normalized("ITEM-9", "WH1", -2),
            Ok(("SKU-1".into(), "DC-EAST".into(), -24))
        );
        assert_eq!(
            normalized("00012345678905", "WH1", 8),
            Ok(("SKU-2".into(), "DC-EAST".into(), 4))
        );
    }

    #[test]
    fn an_unmapped_code_or_an_inexact_unit_is_rejected_never_rounded() {
        assert_eq!(
            normalized("SKU-1", "WH1", 1),
            Err(RejectReason::UnknownSkuCode)
        );
        assert_eq!(
            normalized("ITEM-9", "DC-EAST", 1),
            Err(RejectReason::UnknownLocationCode)
        );
        assert_eq!(
            normalized("00012345678905", "WH1", 7),
            Err(RejectReason::UnitNotConvertible)
        );
        let huge = Qty::MAX / 12 + 1;
        assert_eq!(
            normalized("ITEM-9", "WH1", huge),
            Err(RejectReason::UnitNotConvertible)
        );
    }

    #[test]
    fn a_repeated_code_or_a_zero_factor_is_named_by_its_place() {
        let mut tables = mapping().mapping();
        tables.items.push(("ITEM-9".into(), "SKU-3".into()));
        tables.units[0].1.units = 0;
        let mut violations = Vec::new();
        tables.check("mappings[0]", &mut violations);
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["mappings[0].items[2]", "mappings[0].units[0]"]);
    }

    #[test]
    fn a_source_without_tables_is_taken_as_sent() {
        let update = update("SKU-1", "DC-EAST", 5);
        let empty = Normalizer::default();
        assert!(matches!(empty.normalize(&update), Ok(Cow::Borrowed(_))));
    }
}
