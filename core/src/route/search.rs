//! The branch and bound over which nodes ship an order.
//!
//! It keeps only plans in which every node is needed: a set of nodes that still covers the
//! order without one of them costs that node's package more for nothing, so it is never a
//! runner-up. Every such plan is reached along the path that, line by line, adds the plan's
//! nodes that have the line until it is covered, so the kept plans are the cheapest ones.

use super::{Candidate, Ordered};
use crate::deadline::Deadline;
use crate::domain::Qty;
use crate::error::Result;

/// The branch and bound over which nodes ship.
pub(super) struct Search<'a> {
    order: &'a Ordered<'a>,
    /// Whether each candidate is in the descent's current set.
    in_use: Vec<bool>,
    /// Per line, what the descent's current set offers of it.
    have: Vec<Qty>,
    /// Per line, candidate indices that have some of it, cheapest first.
    options: Vec<Vec<usize>>,
    /// Per line, the options, largest offer first.
    by_offer: Vec<Vec<usize>>,
    /// Per line, per candidate: its place among the line's options (`usize::MAX`: none).
    rank: Vec<Vec<usize>>,
    /// Per line, per option: what that option and the ones after it offer together.
    reach: Vec<Vec<Qty>>,
    /// Lines, fewest options first.
    lines: Vec<usize>,
    keep: usize,
    expanded: u64,
    /// When the search must stop, whatever its budget.
    deadline: &'a Deadline<'a>,
    /// Best plans found: (cost, candidate indices ascending), ascending.
    pub(super) solutions: Vec<(f64, Vec<usize>)>,
    pub(super) optimal: bool,
    pub(super) bound: f64,
}

impl<'a> Search<'a> {
    /// The `keep` cheapest plans, each shipping from `forced` too if given.
    pub(super) fn run(
        order: &'a Ordered<'a>,
        keep: usize,
        forced: Option<usize>,
        deadline: &'a Deadline<'a>,
    ) -> Result<Search<'a>> {
        let candidates = order.candidates;
        let options = options(order);
        let reach = per_line(candidates, &options, reach);
        let by_offer = per_line(candidates, &options, by_offer);
        let rank = per_line(candidates, &options, rank);
        let mut lines: Vec<usize> = (0..order.needs.len()).collect();
        lines.sort_by_key(|&i| (options[i].len(), i));
        let mut search = Search {
            order,
            in_use: vec![false; candidates.len()],
            have: vec![0; order.needs.len()],
            options,
            by_offer,
            rank,
            reach,
            lines,
            keep,
            expanded: 0,
            deadline,
            solutions: Vec::new(),
            optimal: true,
            bound: 0.0,
        };
        let mut used: Vec<usize> = forced.into_iter().collect();
        for &c in &used {
            search.take(c);
        }
        let cost = used.iter().map(|&c| candidates[c].cost).sum();
        search.bound = cost + search.lower_bound(0, 0);
        let coverable = (0..order.needs.len()).all(|i| {
            search.reach[i]
                .first()
                .is_some_and(|&r| r >= order.needs[i])
        });
        if coverable && used.len() <= order.limit {
            search.greedy(&used)?;
            search.descend(0, &mut used, cost, 0)?;
        }
        search.optimal = search.expanded <= order.budget;
        if search.optimal {
            search.bound = search.solutions.first().map_or(search.bound, |s| s.0);
        }
        Ok(search)
    }

    /// What every node with some of line `i` offers of it together.
    pub(super) fn reach(&self, i: usize) -> Qty {
        self.reach[i].first().copied().unwrap_or(0)
    }

    fn candidate(&self, c: usize) -> &Candidate {
        &self.order.candidates[c]
    }

    /// How much of line `i` the nodes `used` offer, leaving out `without`.
    fn covered(&self, i: usize, used: &[usize], without: Option<usize>) -> Qty {
        used.iter()
            .filter(|&&c| Some(c) != without)
            .map(|&c| self.candidate(c).offered(i))
            .sum()
    }

    /// A first plan, so that a search cut short still answers: repeatedly the node that
    /// completes most of the lines left, then offers most of what is left, then is cheaper.
    fn greedy(&mut self, forced: &[usize]) -> Result<()> {
        let lines = self.order.needs.len();
        let mut left: Vec<Qty> = (0..lines)
            .map(|i| self.order.needs[i] - self.covered(i, forced, None))
            .collect();
        let mut used = forced.to_vec();
        while left.iter().any(|&q| q > 0) && used.len() < self.order.limit {
            let candidates = self.order.candidates.len();
            self.deadline.spend((candidates * lines) as u64)?;
            let gain = |c: usize| {
                let offered = |i: usize| self.candidate(c).offered(i).min(left[i].max(0));
                let completes = (0..lines).filter(|&i| left[i] > 0 && offered(i) == left[i]);
                (completes.count(), (0..lines).map(offered).sum::<Qty>())
            };
            let best = (0..candidates)
                .filter(|c| !used.contains(c) && gain(*c).1 > 0)
                .max_by(|&a, &b| {
                    gain(a)
                        .cmp(&gain(b))
                        .then(self.candidate(b).cost.total_cmp(&self.candidate(a).cost))
                });
            let Some(best) = best else { return Ok(()) };
            for (i, left) in left.iter_mut().enumerate() {
                *left -= self.candidate(best).offered(i);
            }
            used.push(best);
        }
        if left.iter().all(|&q| q <= 0) {
            self.prune(&mut used, forced);
            let cost = used.iter().map(|&c| self.candidate(c).cost).sum();
            self.record(cost, &used);
        }
        Ok(())
    }

    /// Drops nodes the plan covers the order without, dearest first, never a forced one.
    fn prune(&self, used: &mut Vec<usize>, forced: &[usize]) {
        let mut by_cost = used.clone();
        by_cost.sort_by(|&a, &b| self.candidate(b).cost.total_cmp(&self.candidate(a).cost));
        for c in by_cost {
            if !forced.contains(&c) && self.needless(c, used) {
                used.retain(|&u| u != c);
            }
        }
    }

    /// Whether `used` covers the order without `c`.
    fn needless(&self, c: usize, used: &[usize]) -> bool {
        (0..self.order.needs.len()).all(|i| self.covered(i, used, Some(c)) >= self.order.needs[i])
    }

    /// The dearest of what the lines from `depth` on still need from new nodes: a line short
    /// of `r` needs at least the `k` nodes whose `k` largest offers reach `r`, and those cost
    /// at least the `k` cheapest. The line at `depth` takes its next nodes from its options
    /// from `from` on (the descent adds a line's nodes in option order).
    fn lower_bound(&self, depth: usize, from: usize) -> f64 {
        self.lines[depth..]
            .iter()
            .enumerate()
            .map(|(d, &i)| {
                let short = self.order.needs[i] - self.have[i];
                if short <= 0 {
                    return 0.0;
                }
                let first = if d == 0 { from } else { 0 };
                let open = |c: &&usize| !self.in_use[**c] && self.rank[i][**c] >= first;
                let mut reached = 0;
                let nodes = self.by_offer[i]
                    .iter()
                    .filter(open)
                    .take_while(|&&c| {
                        let short_before = reached < short;
                        reached += self.candidate(c).offered(i);
                        short_before
                    })
                    .count();
                if reached < short {
                    return f64::INFINITY;
                }
                let cheapest = self.options[i][first..].iter().filter(open);
                cheapest.take(nodes).map(|&c| self.candidate(c).cost).sum()
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

    /// Covers the line at `depth` with options from `from` on, then the lines after it.
    fn descend(
        &mut self,
        depth: usize,
        used: &mut Vec<usize>,
        cost: f64,
        from: usize,
    ) -> Result<()> {
        self.expanded += 1;
        if self.expanded > self.order.budget {
            return Ok(());
        }
        let Some(&line) = self.lines.get(depth) else {
            self.record(cost, used);
            return Ok(());
        };
        let covered = self.have[line];
        // The nodes already shipping cover this line: it costs nothing more.
        if covered >= self.order.needs[line] {
            return self.descend(depth + 1, used, cost, 0);
        }
        if used.len() == self.order.limit {
            return Ok(());
        }
        for k in from..self.options[line].len() {
            if covered + self.reach[line][k] < self.order.needs[line] {
                break;
            }
            // Each option's bound looks at every line left.
            self.deadline.spend((self.lines.len() - depth) as u64)?;
            let c = self.options[line][k];
            if self.in_use[c] {
                continue;
            }
            let next = cost + self.candidate(c).cost;
            used.push(c);
            self.take(c);
            let kept = if next + self.lower_bound(depth, k + 1) < self.cutoff() {
                self.descend(depth, used, next, k + 1)
            } else {
                Ok(())
            };
            self.put_back(c);
            used.pop();
            kept?;
        }
        Ok(())
    }

    /// Adds candidate `c` to the descent's current set.
    fn take(&mut self, c: usize) {
        self.in_use[c] = true;
        for (i, have) in self.have.iter_mut().enumerate() {
            *have += self.order.candidates[c].offered(i);
        }
    }

    /// Takes candidate `c` out of the descent's current set.
    fn put_back(&mut self, c: usize) {
        self.in_use[c] = false;
        for (i, have) in self.have.iter_mut().enumerate() {
            *have -= self.order.candidates[c].offered(i);
        }
    }

    /// Keeps the plan if every node of it is needed and it is among the cheapest.
    fn record(&mut self, counted: f64, used: &[usize]) {
        if used.iter().any(|&c| self.needless(c, used)) {
            return;
        }
        let mut nodes = used.to_vec();
        nodes.sort_unstable();
        let Some(cost) = self.order.search_cost(&nodes, counted) else {
            return;
        };
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

/// Per line, the candidates that have some of it, cheapest first.
fn options(order: &Ordered<'_>) -> Vec<Vec<usize>> {
    let candidates = order.candidates;
    (0..order.needs.len())
        .map(|i| {
            let mut options: Vec<usize> = (0..candidates.len())
                .filter(|&c| candidates[c].offered(i) > 0)
                .collect();
            options.sort_by(|&a, &b| {
                candidates[a]
                    .cost
                    .total_cmp(&candidates[b].cost)
                    .then(a.cmp(&b))
            });
            options
        })
        .collect()
}

/// `table` of each line's options.
fn per_line<T>(
    candidates: &[Candidate],
    options: &[Vec<usize>],
    table: fn(&[Candidate], usize, &[usize]) -> Vec<T>,
) -> Vec<Vec<T>> {
    let lines = options.iter().enumerate();
    lines.map(|(i, o)| table(candidates, i, o)).collect()
}

/// Per option of line `i`: what it and the options after it offer of the line together.
fn reach(candidates: &[Candidate], i: usize, options: &[usize]) -> Vec<Qty> {
    let mut sum = 0;
    let mut reach: Vec<Qty> = options
        .iter()
        .rev()
        .map(|&c| {
            sum += candidates[c].offered(i);
            sum
        })
        .collect();
    reach.reverse();
    reach
}

/// The options of line `i`, largest offer first.
fn by_offer(candidates: &[Candidate], i: usize, options: &[usize]) -> Vec<usize> {
    let mut by_offer = options.to_vec();
    by_offer.sort_by_key(|&c| std::cmp::Reverse(candidates[c].offered(i)));
    by_offer
}

/// Per candidate, its place among line `i`'s options (`usize::MAX`: none).
fn rank(candidates: &[Candidate], _: usize, options: &[usize]) -> Vec<usize> {
    let mut rank = vec![usize::MAX; candidates.len()];
    for (k, &c) in options.iter().enumerate() {
        rank[c] = k;
    }
    rank
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
