//! What a package and a plan cost, computed here only: routing minimises it and promises
//! report it, so a shipment's cost means the same in both answers.
//!
//! A package pays the carrier's price (for its distance, or by its service level's rate card
//! for its zone and billable weight, see [`crate::rate_card`]), plus its node's priority and the share
//! of the node's daily capacity already used on its ship day, each times its weight. A plan of
//! `n` packages also pays the package penalty `n - 1` times (one package is the baseline, each
//! extra one a split); each package carries an equal `(n - 1) / n` share of that, so the
//! packages' costs add up to the plan's whatever order they are listed in.

use crate::codec::{Decoded, Reader, Writer};
use crate::domain::{Node, Qty, ServiceLevel};
use crate::rate_card::{ItemAttributes, RateCard};

/// The objective's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Added per package beyond the first.
    pub package_penalty: f64,
    /// Per package, times the node's priority (lower is preferred).
    pub priority: f64,
    /// Per package, times the share of the node's daily capacity already used.
    pub capacity: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            package_penalty: 3.0,
            priority: 0.5,
            capacity: 2.0,
        }
    }
}

/// A cost by its terms; [`CostBreakdown::total`] is the cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostBreakdown {
    /// The carrier's price.
    pub shipping: f64,
    /// The package penalty (a package's share of its plan's).
    pub packages: f64,
    /// The priority term.
    pub priority: f64,
    /// The capacity-pressure term.
    pub capacity: f64,
}

impl CostBreakdown {
    /// The sum of the terms.
    pub fn total(&self) -> f64 {
        self.shipping + self.packages + self.priority + self.capacity
    }

    /// For the answer a promise or route keeps with the hold of its plan. Destructured in
    /// full, so a term added here is written too.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let CostBreakdown {
            shipping,
            packages,
            priority,
            capacity,
        } = self;
        for term in [shipping, packages, priority, capacity] {
            w.f64(*term);
        }
    }

    /// Reads what [`CostBreakdown::encode`] wrote.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Decoded<CostBreakdown> {
        Ok(CostBreakdown {
            shipping: r.f64()?,
            packages: r.f64()?,
            priority: r.f64()?,
            capacity: r.f64()?,
        })
    }

    fn add(&mut self, other: &CostBreakdown) {
        self.shipping += other.shipping;
        self.packages += other.packages;
        self.priority += other.priority;
        self.capacity += other.capacity;
    }
}

/// One package from `node` whose carrier price is `shipping`, with `capacity` of the node's
/// ship day already used: every term but the package penalty, which depends on the plan.
pub fn package(shipping: f64, node: &Node, capacity: f64, weights: &Weights) -> CostBreakdown {
    CostBreakdown {
        shipping,
        packages: 0.0,
        priority: weights.priority * f64::from(node.priority),
        capacity: weights.capacity * capacity,
    }
}

/// The carrier's price of the parcel under `level`: its rate card's, else base plus per
/// kilometre; `None` where the card does not carry it.
pub fn shipping(level: &ServiceLevel, parcel: &Parcel<'_>) -> Option<f64> {
    match &level.rate_card {
        Some(card) => carrier_price(card, parcel),
        None => Some(level.cost(parcel.km)),
    }
}

/// The least any package from the parcel's node pays under `level` when it weighs at least
/// the parcel's actual weight: what the search may count before it knows a package's
/// contents. `None` where no such package is carried.
pub fn least_shipping(level: &ServiceLevel, parcel: &Parcel<'_>) -> Option<f64> {
    let Some(card) = &level.rate_card else {
        return Some(level.cost(parcel.km));
    };
    let zone = zone(card, parcel)?;
    let rows = card
        .rates
        .iter()
        .filter(|r| r.zone == zone && parcel.kg <= r.to_kg);
    let least = rows.map(|r| r.price).min_by(f64::total_cmp)?;
    Some(least + handling(card, parcel.node_id))
}

/// Transit days under `level`: by the card's zone, else by the distance bands.
pub fn transit_days(level: &ServiceLevel, parcel: &Parcel<'_>) -> Option<u32> {
    match &level.rate_card {
        Some(card) => zone_transit_days(card, parcel),
        None => level.transit_days(parcel.km),
    }
}

/// Gives each of a plan's packages its share of the plan's package penalty, and returns the
/// plan's cost: the sum of its packages'.
pub fn plan(packages: &mut [CostBreakdown], weights: &Weights) -> CostBreakdown {
    let n = packages.len() as f64;
    let share = if packages.is_empty() {
        0.0
    } else {
        weights.package_penalty * (n - 1.0) / n
    };
    let mut total = CostBreakdown::default();
    for package in packages.iter_mut() {
        package.packages = share;
        total.add(package);
    }
    total
}

/// A package as a carrier's rate card sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parcel<'a> {
    pub node_id: &'a str,
    pub origin_postal: &'a str,
    pub destination_postal: &'a str,
    pub km: f64,
    /// Actual weight.
    pub kg: f64,
    /// Volume in cubic centimetres.
    pub cm3: f64,
}

/// The weight and volume of `lines` of items, each a quantity of eaches.
pub fn contents(lines: impl IntoIterator<Item = (ItemAttributes, Qty)>) -> (f64, f64) {
    lines
        .into_iter()
        .fold((0.0, 0.0), |(kg, cm3), (item, qty)| {
            let each = item.length_cm * item.width_cm * item.height_cm;
            let qty = qty.max(0) as f64;
            (kg + item.weight_kg * qty, cm3 + each * qty)
        })
}

/// The larger of the actual weight and the dimensional weight (volume over the divisor).
pub fn billable_kg(card: &RateCard, kg: f64, cm3: f64) -> f64 {
    if card.dim_divisor > 0.0 {
        kg.max(cm3 / card.dim_divisor)
    } else {
        kg
    }
}

/// The parcel's zone: the rule with the longest matching prefixes, else the distance band;
/// `None` beyond the last band.
pub fn zone(card: &RateCard, parcel: &Parcel<'_>) -> Option<u32> {
    let matching = card.zone_rules.iter().filter(|rule| {
        parcel.origin_postal.starts_with(&rule.origin_prefix)
            && parcel
                .destination_postal
                .starts_with(&rule.destination_prefix)
    });
    let longest = matching.max_by_key(|r| (r.origin_prefix.len(), r.destination_prefix.len()));
    longest.map(|rule| rule.zone).or_else(|| {
        let band = card.zone_bands.iter().find(|(km, _)| parcel.km <= *km);
        band.map(|(_, zone)| *zone)
    })
}

/// Transit days of the parcel's zone; `None` where the card does not carry it.
pub fn zone_transit_days(card: &RateCard, parcel: &Parcel<'_>) -> Option<u32> {
    let zone = zone(card, parcel)?;
    card.transit.iter().find(|(z, _)| *z == zone).map(|t| t.1)
}

/// The carrier's price of the parcel, plus its node's handling cost: the row of its zone whose
/// weight range holds its billable weight. `None` when it is heavier than the zone's last row
/// or beyond the card's zones.
pub fn carrier_price(card: &RateCard, parcel: &Parcel<'_>) -> Option<f64> {
    let zone = zone(card, parcel)?;
    let kg = billable_kg(card, parcel.kg, parcel.cm3);
    let row = card.rates.iter().find(|rate| {
        rate.zone == zone && (rate.from_kg < kg || rate.from_kg == 0.0) && kg <= rate.to_kg
    })?;
    Some(row.price + handling(card, parcel.node_id))
}

fn handling(card: &RateCard, node_id: &str) -> f64 {
    let cost = card.handling.iter().find(|(node, _)| node == node_id);
    cost.map_or(0.0, |h| h.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_share_the_penalty_and_add_up_to_the_plan() {
        let weights = Weights::default();
        let one = CostBreakdown {
            shipping: 5.0,
            priority: 0.5,
            ..CostBreakdown::default()
        };
        let mut single = [one];
        assert_eq!(
            plan(&mut single, &weights).total(),
            5.5,
            "one package: no penalty"
        );
        let mut three = [one, one, one];
        let total = plan(&mut three, &weights);
        assert!((total.packages - 6.0).abs() < 1e-9, "two extra packages");
        let sum: f64 = three.iter().map(CostBreakdown::total).sum();
        assert!((sum - total.total()).abs() < 1e-9);
        assert!(
            (three[0].packages - 2.0).abs() < 1e-9,
            "an equal share each"
        );
    }
}
