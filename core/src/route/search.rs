//! The branch and bound over which nodes ship an order.

use super::Candidate;
use crate::deadline::Deadline;
use crate::error::Result;

/// The branch and bound over which nodes ship.
pub(super) struct Search<'a> {
    candidates: &'a [Candidate],
    /// Per line, candidate indices that can ship it, cheapest first.
    options: Vec<Vec<usize>>,
    /// Lines, fewest options first.
    order: Vec<usize>,
    limit: usize,
    keep: usize,
    budget: u64,
    expanded: u64,
    /// When the search must stop, whatever its budget.
    deadline: &'a Deadline<'a>,
    /// Best plans found: (cost, candidate indices), ascending.
    pub(super) solutions: Vec<(f64, Vec<usize>)>,
    pub(super) optimal: bool,
    pub(super) bound: f64,
}

impl<'a> Search<'a> {
    pub(super) fn run(
        candidates: &'a [Candidate],
        lines: usize,
        limit: usize,
        keep: usize,
        budget: u64,
        deadline: &'a Deadline<'a>,
    ) -> Result<Search<'a>> {
        let options: Vec<Vec<usize>> = (0..lines)
            .map(|i| {
                let mut options: Vec<usize> = (0..candidates.len())
                    .filter(|&c| candidates[c].legs[i].is_some())
                    .collect();
                options.sort_by(|&a, &b| {
                    candidates[a]
                        .cost
                        .total_cmp(&candidates[b].cost)
                        .then(a.cmp(&b))
                });
                options
            })
            .collect();
        let mut order: Vec<usize> = (0..lines).collect();
        order.sort_by_key(|&i| (options[i].len(), i));
        let mut search = Search {
            candidates,
            options,
            order,
            limit,
            keep,
            budget,
            expanded: 0,
            deadline,
            solutions: Vec::new(),
            optimal: true,
            bound: 0.0,
        };
        search.bound = search.lower_bound(0, &[]);
        if search.options.iter().all(|o| !o.is_empty()) {
            search.greedy()?;
            search.descend(0, &mut Vec::new(), 0.0)?;
        }
        search.optimal = search.expanded <= search.budget;
        if search.optimal {
            search.bound = search.solutions.first().map_or(search.bound, |s| s.0);
        }
        Ok(search)
    }

    /// A first plan, so that a search cut short still answers: repeatedly the node shipping
    /// most of the lines left, cheaper first.
    fn greedy(&mut self) -> Result<()> {
        let lines = self.options.len();
        let mut left: Vec<usize> = (0..lines).collect();
        let mut used: Vec<usize> = Vec::new();
        while !left.is_empty() && used.len() < self.limit {
            let work = self.candidates.len() * left.len();
            self.deadline.spend(work as u64)?;
            let serves = |c: usize| {
                left.iter()
                    .filter(|&&i| self.candidates[c].legs[i].is_some())
                    .count()
            };
            let best = (0..self.candidates.len())
                .filter(|&c| serves(c) > 0)
                .max_by(|&a, &b| {
                    serves(a)
                        .cmp(&serves(b))
                        .then(self.candidates[b].cost.total_cmp(&self.candidates[a].cost))
                });
            let Some(best) = best else { return Ok(()) };
            left.retain(|&i| self.candidates[best].legs[i].is_none());
            used.push(best);
        }
        if left.is_empty() {
            let cost = used.iter().map(|&c| self.candidates[c].cost).sum();
            self.record(cost, &used);
        }
        Ok(())
    }

    /// The dearest of the cheapest new nodes the lines from `depth` on still need.
    fn lower_bound(&self, depth: usize, used: &[usize]) -> f64 {
        self.order[depth..]
            .iter()
            .filter(|&&i| !self.options[i].iter().any(|c| used.contains(c)))
            .map(|&i| {
                self.options[i]
                    .first()
                    .map_or(f64::INFINITY, |&c| self.candidates[c].cost)
            })
            .fold(0.0, f64::max)
    }

    /// The cost a plan must beat to be kept.
    fn cutoff(&self) -> f64 {
        if self.solutions.len() < self.keep {
            f64::INFINITY
        } else {
            self.solutions.last().map_or(f64::INFINITY, |s| s.0)
        }
    }

    fn descend(&mut self, depth: usize, used: &mut Vec<usize>, cost: f64) -> Result<()> {
        self.expanded += 1;
        if self.expanded > self.budget {
            return Ok(());
        }
        let Some(&line) = self.order.get(depth) else {
            self.record(cost, used);
            return Ok(());
        };
        // A node already shipping costs nothing more for this line.
        if self.options[line].iter().any(|c| used.contains(c)) {
            return self.descend(depth + 1, used, cost);
        }
        if used.len() == self.limit {
            return Ok(());
        }
        for k in 0..self.options[line].len() {
            // Each option's bound looks at every line left.
            self.deadline.spend((self.order.len() - depth) as u64)?;
            let c = self.options[line][k];
            let next = cost + self.candidates[c].cost;
            used.push(c);
            if next + self.lower_bound(depth + 1, used) < self.cutoff() {
                self.descend(depth + 1, used, next)?;
            }
            used.pop();
        }
        Ok(())
    }

    fn record(&mut self, cost: f64, used: &[usize]) {
        let mut nodes = used.to_vec();
        nodes.sort_unstable();
        if self.solutions.iter().any(|(_, s)| *s == nodes) {
            return;
        }
        let at = self
            .solutions
            .partition_point(|(c, s)| (*c, s) < (cost, &nodes));
        self.solutions.insert(at, (cost, nodes));
        self.solutions.truncate(self.keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Day;
    use crate::network::NodeIdx;
    use crate::route::CostBreakdown;
    use crate::route::DEFAULT_SEARCH_BUDGET;
    use proptest::prelude::*;

    fn candidates(costs: &[f64], serves: &[Vec<bool>]) -> Vec<Candidate> {
        costs
            .iter()
            .enumerate()
            .map(|(n, &cost)| Candidate {
                node: n as NodeIdx,
                cost,
                breakdown: CostBreakdown::default(),
                legs: serves
                    .iter()
                    .map(|line| line[n].then_some((Day(0), Day(1))))
                    .collect(),
            })
            .collect()
    }

    /// Every assignment of lines to nodes, the cheapest set of nodes within the limit.
    fn brute_force(costs: &[f64], serves: &[Vec<bool>], limit: usize) -> Option<f64> {
        let nodes = costs.len();
        let mut best: Option<f64> = None;
        for mask in 1u32..(1 << nodes) {
            let chosen: Vec<usize> = (0..nodes).filter(|n| mask & (1 << n) != 0).collect();
            let covers = serves.iter().all(|line| chosen.iter().any(|&n| line[n]));
            if covers && chosen.len() <= limit {
                let cost: f64 = chosen.iter().map(|&n| costs[n]).sum();
                best = Some(best.map_or(cost, |b: f64| b.min(cost)));
            }
        }
        best
    }

    proptest! {
        #[test]
        fn branch_and_bound_finds_the_brute_force_optimum(
            costs in prop::collection::vec(1.0..50.0f64, 1..9),
            lines in 1..6usize,
            seed in any::<u64>(),
            limit in 1..4usize,
        ) {
            let nodes = costs.len();
            let serves: Vec<Vec<bool>> = (0..lines)
                .map(|i| (0..nodes).map(|n| (seed >> ((i * nodes + n) % 64)) & 1 == 1 || (i + n) % 5 == 0).collect())
                .collect();
            let candidates = candidates(&costs, &serves);
            let never = Deadline::never();
            let search = Search::run(&candidates, lines, limit, 1, DEFAULT_SEARCH_BUDGET, &never)
                .expect("no deadline");
            let found = search.solutions.first().map(|s| s.0);
            let expected = brute_force(&costs, &serves, limit);
            prop_assert!(search.optimal);
            match (found, expected) {
                (Some(f), Some(e)) => prop_assert!((f - e).abs() < 1e-9, "found {f}, optimum {e}"),
                (f, e) => prop_assert_eq!(f.is_some(), e.is_some()),
            }
        }
    }
}
