//! Why a node that could ship part of an order is in none of the plans answered: every node
//! of the network ends up in the plan, an alternative, or the excluded list with its reason.

use super::search::Search;
use super::{Constraints, Excluded, Ordered};
use crate::deadline::Deadline;
use crate::domain::Qty;
use crate::error::Result;

/// Explains the candidates an order's search left out of every plan it kept.
pub(super) struct Explainer<'a> {
    pub(super) order: &'a Ordered<'a>,
    pub(super) lines: &'a [(String, Qty)],
    pub(super) constraints: &'a Constraints,
    pub(super) search: &'a Search<'a>,
}

impl Explainer<'_> {
    /// Every candidate in none of the kept plans, and why.
    pub(super) fn unplaced(&self, deadline: &Deadline<'_>) -> Result<Vec<Excluded>> {
        let placed = |c: &usize| self.search.solutions.iter().any(|(_, s)| s.contains(c));
        (0..self.order.candidates.len())
            .filter(|c| !placed(c))
            .map(|c| Ok((self.order.candidates[c].node, self.why(c, deadline)?)))
            .collect()
    }

    /// Why candidate `c` is in no kept plan.
    fn why(&self, c: usize, deadline: &Deadline<'_>) -> Result<String> {
        let limit = self.order.limit;
        if limit == 1 {
            if let Some(lacking) = self.lacking(c) {
                return Ok(lacking);
            }
        }
        if self.search.solutions.is_empty() {
            return Ok(self.no_plan());
        }
        if limit == usize::MAX {
            return Ok(self.dearer());
        }
        // Packages are limited: whether any plan with this node fits is a search of its own.
        let forced = Search::run(self.order, 1, Some(c), deadline)?;
        let penalty = self.order.candidates[c].cost - self.order.candidates[c].breakdown.total();
        Ok(match forced.solutions.first() {
            Some((cost, _)) => format!(
                "dearer: its cheapest plan costs {:.2}",
                (cost - penalty).max(0.0)
            ),
            None if forced.optimal => {
                format!(
                    "cannot meet max_packages: no plan of at most {limit} packages ships from it"
                )
            }
            None => format!("in no plan of at most {limit} packages the search found"),
        })
    }

    /// Under one package: the first line the node cannot ship all of.
    fn lacking(&self, c: usize) -> Option<String> {
        let candidate = &self.order.candidates[c];
        let rule = if self.constraints.ship_complete {
            "the order ships complete"
        } else {
            "max_packages is 1"
        };
        let i = (0..self.lines.len()).find(|&i| candidate.offered(i) < self.order.needs[i])?;
        let ((sku, need), when) = (&self.lines[i], self.when());
        Some(match candidate.offered(i) {
            0 => format!("lacks {sku}{when} and {rule}"),
            has => format!("has {has} of the {need} of {sku}{when} and {rule}"),
        })
    }

    /// " by deliver_by" when the order has a deadline: what "has" is measured against.
    fn when(&self) -> &'static str {
        if self.constraints.deliver_by.is_some() {
            " by deliver_by"
        } else {
            ""
        }
    }

    /// Why the order has no plan at all.
    fn no_plan(&self) -> String {
        let short = (0..self.lines.len()).find(|&i| self.search.reach(i) < self.order.needs[i]);
        let when = self.when();
        match short {
            Some(i) if self.constraints.split_lines => {
                let (sku, need) = &self.lines[i];
                let has = self.search.reach(i);
                format!("no plan: the nodes have {has} of the {need} of {sku}{when} together")
            }
            Some(i) => {
                let (sku, need) = &self.lines[i];
                format!("no plan: no node has all {need} of {sku}{when} (split_lines may help)")
            }
            None if !self.search.optimal => "no plan found within the search budget".to_owned(),
            None => format!(
                "cannot meet max_packages: the order needs more than {} packages",
                self.order.limit
            ),
        }
    }

    /// With no package limit: in a plan only dearer than the ones answered.
    fn dearer(&self) -> String {
        let kept = self.search.solutions.len();
        if self.search.optimal {
            format!("dearer: in no plan as cheap as the {kept} answered")
        } else {
            format!("in none of the {kept} cheapest plans the search found within its budget")
        }
    }
}
