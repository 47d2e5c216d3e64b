//! A carrier's rate card for one service level, and what a package weighs: the tables as
//! configured, checked whole before any is used. What they price is computed by the cost
//! module only.
//!
//! A package's zone comes from the longest origin and destination postal prefixes a zone rule
//! matches, else from the distance bands. Its price is the rate row of that zone whose weight
//! range holds its billable weight: the larger of its actual weight and its dimensional weight
//! (volume over the card's divisor).

use std::collections::BTreeSet;

use crate::codec::{CodecError, Decoded, Reader, Writer};
use crate::error::FieldViolation;

/// Heaviest package weight (kg) a rate row or item may state.
pub const MAX_KG: f64 = 100_000.0;

/// Highest zone number.
pub const MAX_ZONE: u32 = 999;

/// A zone by origin and destination postal prefixes; an empty prefix matches any code.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneRule {
    #[serde(default)]
    pub origin_prefix: String,
    #[serde(default)]
    pub destination_prefix: String,
    pub zone: u32,
}

/// The price of packages of one zone whose billable weight is above `from_kg` (or is 0 for the
/// first row) and at most `to_kg`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub zone: u32,
    #[serde(default)]
    pub from_kg: f64,
    pub to_kg: f64,
    pub price: f64,
}

/// One service level's prices by zone and weight, and transit days by zone.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateCard {
    /// Checked before the distance bands; the longest matching prefixes win.
    pub zone_rules: Vec<ZoneRule>,
    /// `(up to km, zone)`, ascending: the zone when no rule matches.
    pub zone_bands: Vec<(f64, u32)>,
    /// Cubic centimetres per billable kilogram; 0 bills the actual weight only.
    pub dim_divisor: f64,
    pub rates: Vec<Rate>,
    /// `(zone, transit days)`: every zone the rules and bands name has one.
    pub transit: Vec<(u32, u32)>,
    /// `(node id, cost)` added to every package the node ships under this level.
    pub handling: Vec<(String, f64)>,
}

/// What an item weighs and measures, per each.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ItemAttributes {
    pub weight_kg: f64,
    pub length_cm: f64,
    pub width_cm: f64,
    pub height_cm: f64,
}

/// Kilograms per one of a weight unit: `kg`, `g`, `lb` or `oz`.
pub fn kg_per(unit: &str) -> Option<f64> {
    match unit {
        "kg" => Some(1.0),
        "g" => Some(0.001),
        "lb" => Some(0.453_592_37),
        "oz" => Some(0.028_349_523_125),
        _ => None,
    }
}

impl ItemAttributes {
    /// Negative or non-finite figures, by field under `at`.
    pub fn check(&self, at: &str, violations: &mut Vec<FieldViolation>) {
        for (name, value, most) in [
            ("weight", self.weight_kg, MAX_KG),
            ("length_cm", self.length_cm, 100_000.0),
            ("width_cm", self.width_cm, 100_000.0),
            ("height_cm", self.height_cm, 100_000.0),
        ] {
            if !(value.is_finite() && (0.0..=most).contains(&value)) {
                let problem = format!("must be a number from 0 to {most}");
                violations.push(FieldViolation::new(format!("{at}.{name}"), problem));
            }
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        let ItemAttributes {
            weight_kg,
            length_cm,
            width_cm,
            height_cm,
        } = self;
        for figure in [weight_kg, length_cm, width_cm, height_cm] {
            w.f64(*figure);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Decoded<ItemAttributes> {
        Ok(ItemAttributes {
            weight_kg: r.f64()?,
            length_cm: r.f64()?,
            width_cm: r.f64()?,
            height_cm: r.f64()?,
        })
    }
}

impl RateCard {
    /// Every problem of the card, by field under `at`: a zone the rules or bands name without
    /// rows or transit days, a zone's weight ranges not starting at 0 or leaving a gap, a
    /// negative or unordered figure, a node the handling costs name twice.
    pub fn check(&self, at: &str, violations: &mut Vec<FieldViolation>) {
        let mut problem = |field: String, text: &str| {
            violations.push(FieldViolation::new(format!("{at}.{field}"), text));
        };
        let named: BTreeSet<u32> = self
            .zone_rules
            .iter()
            .map(|r| r.zone)
            .chain(self.zone_bands.iter().map(|b| b.1))
            .collect();
        if named.is_empty() {
            problem("zone_bands".into(), "needs a zone rule or a distance band");
        }
        let ascending = self.zone_bands.windows(2).all(|w| w[0].0 < w[1].0);
        if !ascending {
            problem("zone_bands".into(), "distance bands must ascend");
        }
        for (j, (km, zone)) in self.zone_bands.iter().enumerate() {
            if !(km.is_finite() && *km > 0.0) || *zone > MAX_ZONE {
                let text = "a positive distance and a zone up to 999";
                problem(format!("zone_bands[{j}]"), text);
            }
        }
        if !(self.dim_divisor.is_finite() && self.dim_divisor >= 0.0) {
            problem("dim_divisor".into(), "must not be negative");
        }
        self.check_rates(&named, &mut problem);
        for zone in &named {
            if !self.transit.iter().any(|(z, _)| z == zone) {
                problem(
                    "transit".into(),
                    &format!("no transit days for zone {zone}"),
                );
            }
        }
        for (j, (node, cost)) in self.handling.iter().enumerate() {
            if !(cost.is_finite() && *cost >= 0.0) {
                problem(format!("handling[{j}].cost"), "must not be negative");
            }
            if self.handling[..j].iter().any(|(n, _)| n == node) {
                problem(format!("handling[{j}].node_id"), "appears twice");
            }
        }
    }

    /// Each named zone's rows must run from 0 kg without a gap.
    fn check_rates(&self, named: &BTreeSet<u32>, problem: &mut impl FnMut(String, &str)) {
        for (j, rate) in self.rates.iter().enumerate() {
            let ordered = rate.from_kg >= 0.0 && rate.from_kg < rate.to_kg && rate.to_kg <= MAX_KG;
            if !ordered {
                problem(
                    format!("rates[{j}].to_kg"),
                    "weights from 0 up, to above from",
                );
            }
            if !(rate.price.is_finite() && rate.price >= 0.0) {
                problem(format!("rates[{j}].price"), "must not be negative");
            }
        }
        for &zone in named {
            let mut rows: Vec<&Rate> = self.rates.iter().filter(|r| r.zone == zone).collect();
            rows.sort_by(|a, b| a.from_kg.total_cmp(&b.from_kg));
            let mut reached = 0.0;
            for row in &rows {
                if row.from_kg != reached {
                    let text = format!("zone {zone}: no row covers {reached} kg and above");
                    problem("rates".into(), &text);
                    break;
                }
                reached = row.to_kg;
            }
            if rows.is_empty() {
                problem("rates".into(), &format!("zone {zone} has no rows"));
            }
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.len(self.zone_rules.len());
        for rule in &self.zone_rules {
            w.str(&rule.origin_prefix);
            w.str(&rule.destination_prefix);
            w.var(u64::from(rule.zone));
        }
        w.len(self.zone_bands.len());
        for (km, zone) in &self.zone_bands {
            w.f64(*km);
            w.var(u64::from(*zone));
        }
        w.f64(self.dim_divisor);
        w.len(self.rates.len());
        for rate in &self.rates {
            w.var(u64::from(rate.zone));
            for figure in [rate.from_kg, rate.to_kg, rate.price] {
                w.f64(figure);
            }
        }
        w.len(self.transit.len());
        for (zone, days) in &self.transit {
            w.var(u64::from(*zone));
            w.var(u64::from(*days));
        }
        w.len(self.handling.len());
        for (node, cost) in &self.handling {
            w.str(node);
            w.f64(*cost);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Decoded<RateCard> {
        let small = |r: &mut Reader<'_>| u32::try_from(r.var()?).map_err(|_| CodecError("zone"));
        let zone_rules = (0..r.len()?)
            .map(|_| {
                Ok(ZoneRule {
                    origin_prefix: r.str()?.to_owned(),
                    destination_prefix: r.str()?.to_owned(),
                    zone: small(r)?,
                })
            })
            .collect::<Decoded<_>>()?;
        let zone_bands = (0..r.len()?)
            .map(|_| Ok((r.f64()?, small(r)?)))
            .collect::<Decoded<_>>()?;
        let dim_divisor = r.f64()?;
        let rates = (0..r.len()?)
            .map(|_| {
                Ok(Rate {
                    zone: small(r)?,
                    from_kg: r.f64()?,
                    to_kg: r.f64()?,
                    price: r.f64()?,
                })
            })
            .collect::<Decoded<_>>()?;
        let transit = (0..r.len()?)
            .map(|_| Ok((small(r)?, small(r)?)))
            .collect::<Decoded<_>>()?;
        let handling = (0..r.len()?)
            .map(|_| Ok((r.str()?.to_owned(), r.f64()?)))
            .collect::<Decoded<_>>()?;
        Ok(RateCard {
            zone_rules,
            zone_bands,
            dim_divisor,
            rates,
            transit,
            handling,
        })
    }
}

#[cfg(test)]
#[path = "rate_card_tests.rs"]
pub(crate) mod tests;
