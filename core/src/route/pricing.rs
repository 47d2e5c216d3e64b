//! Packages priced by what they hold, for service levels with a rate card: the search counts
//! each node at the least it could pay (its lightest possible package), and a plan it finds
//! is priced by the weight each of its packages really carries.

use super::{Candidate, Ordered};
use crate::cost::{self, CostBreakdown, Parcel};
use crate::domain::{Qty, ServiceLevel};
use crate::network::Network;
use crate::rate_card::ItemAttributes;

/// How packages are priced by their contents.
pub(super) struct Pricing<'a> {
    pub(super) level: &'a ServiceLevel,
    pub(super) network: &'a Network,
    pub(super) destination_postal: &'a str,
    /// Per line, one of its items.
    pub(super) items: Vec<ItemAttributes>,
    /// Per package beyond the first.
    pub(super) penalty: f64,
}

/// Per line, what one of its items weighs and measures.
pub(super) fn items(network: &Network, lines: &[(String, Qty)]) -> Vec<ItemAttributes> {
    lines.iter().map(|(sku, _)| network.item(sku)).collect()
}

/// Each line from the first of `nodes` that has any of it left, as much as that one offers:
/// per node that gets any, `(candidate, [(line, quantity)])`.
pub(super) fn allocate(
    candidates: &[Candidate],
    needs: &[Qty],
    nodes: &[usize],
) -> Vec<(usize, Vec<(usize, Qty)>)> {
    let mut left = needs.to_vec();
    let mut packages = Vec::with_capacity(nodes.len());
    for &c in nodes {
        let mut on = Vec::new();
        for (i, left) in left.iter_mut().enumerate() {
            let quantity = candidates[c].offered(i).min(*left);
            if quantity > 0 {
                *left -= quantity;
                on.push((i, quantity));
            }
        }
        if !on.is_empty() {
            packages.push((c, on));
        }
    }
    packages
}

impl Pricing<'_> {
    /// The candidate's package of `on`, priced by its weight; `None` where the card does not
    /// carry it.
    fn package(&self, candidate: &Candidate, on: &[(usize, Qty)]) -> Option<CostBreakdown> {
        let node = self.network.node(candidate.node);
        let (kg, cm3) = cost::contents(on.iter().map(|&(i, q)| (self.items[i], q)));
        let parcel = Parcel {
            node_id: &node.id,
            origin_postal: &node.postal_code,
            destination_postal: self.destination_postal,
            km: candidate.km,
            kg,
            cm3,
        };
        let shipping = cost::shipping(self.level, &parcel)?;
        Some(CostBreakdown {
            shipping,
            ..candidate.breakdown
        })
    }
}

/// A package of a plan: its candidate, its `(line, quantity)` and its cost.
pub(super) type Package = (usize, Vec<(usize, Qty)>, CostBreakdown);

impl Ordered<'_> {
    /// The packages of the plan shipping from `nodes`, each priced; `None` when the rate card
    /// carries one of them not.
    pub(super) fn packages(&self, nodes: &[usize]) -> Option<Vec<Package>> {
        let allocated = allocate(self.candidates, self.needs, nodes).into_iter();
        allocated
            .map(|(c, on)| {
                let candidate = &self.candidates[c];
                let cost = match &self.pricing {
                    Some(pricing) => pricing.package(candidate, &on)?,
                    None => candidate.breakdown,
                };
                Some((c, on, cost))
            })
            .collect()
    }

    /// What the search counts for the plan shipping from `nodes` (each package's terms and
    /// one package penalty): the candidates' own costs unless packages are priced by weight.
    pub(super) fn search_cost(&self, nodes: &[usize], counted: f64) -> Option<f64> {
        let Some(pricing) = &self.pricing else {
            return Some(counted);
        };
        let packages = self.packages(nodes)?;
        let terms: f64 = packages.iter().map(|p| p.2.total()).sum();
        Some(terms + pricing.penalty * packages.len() as f64)
    }
}
