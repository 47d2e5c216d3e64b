//! Whether pooled holds can all be served: a small bipartite max-flow. Holds are sources with
//! their quantity, nodes are sinks with their ATP, and a hold may draw from the nodes of its
//! pool. The holds fit exactly when the maximum flow carries all of them (Hall's condition for
//! overlapping groups, checked exactly rather than group by group).

use crate::domain::Qty;

/// One hold: how much, and which of the capacities (by position in `capacity`) may serve it.
#[derive(Debug, Clone)]
pub struct Demand<'a> {
    pub quantity: Qty,
    pub nodes: &'a [usize],
}

/// The maximum flow from `demands` into nodes with `capacity`, and the flow each demand sends
/// to each node (`assignment[d]` lists `(node, quantity)`).
pub fn max_flow(demands: &[Demand<'_>], capacity: &[Qty]) -> (Qty, Vec<Vec<(usize, Qty)>>) {
    // Vertices: 0 = source, 1..=D demands, then N nodes, then the sink.
    let (d, n) = (demands.len(), capacity.len());
    let sink = d + n + 1;
    let mut graph = Graph::new(sink + 1);
    for (i, demand) in demands.iter().enumerate() {
        graph.edge(0, 1 + i, demand.quantity.max(0));
        for &node in demand.nodes {
            graph.edge(1 + i, 1 + d + node, Qty::MAX / 4);
        }
    }
    for (node, &cap) in capacity.iter().enumerate() {
        graph.edge(1 + d + node, sink, cap.max(0));
    }
    let total = graph.run(0, sink);
    let assignment = (0..d)
        .map(|i| {
            graph.adjacency[1 + i]
                .iter()
                .map(|&e| &graph.edges[e])
                .filter(|edge| edge.to > d && edge.to < sink && edge.flow > 0)
                .map(|edge| (edge.to - 1 - d, edge.flow))
                .collect()
        })
        .collect();
    (total, assignment)
}

#[derive(Debug)]
struct Edge {
    to: usize,
    capacity: Qty,
    flow: Qty,
}

/// Edmonds–Karp over adjacency lists; graphs here have tens of vertices.
#[derive(Debug)]
struct Graph {
    edges: Vec<Edge>,
    adjacency: Vec<Vec<usize>>,
}

impl Graph {
    fn new(vertices: usize) -> Self {
        Self {
            edges: Vec::new(),
            adjacency: vec![Vec::new(); vertices],
        }
    }

    /// Adds an edge and its residual twin (at the next index, so `e ^ 1` is the twin).
    fn edge(&mut self, from: usize, to: usize, capacity: Qty) {
        self.adjacency[from].push(self.edges.len());
        self.edges.push(Edge {
            to,
            capacity,
            flow: 0,
        });
        self.adjacency[to].push(self.edges.len());
        self.edges.push(Edge {
            to: from,
            capacity: 0,
            flow: 0,
        });
    }

    fn run(&mut self, source: usize, sink: usize) -> Qty {
        let mut total = 0;
        loop {
            // Shortest augmenting path by breadth-first search, remembering the edge used.
            let mut via: Vec<Option<usize>> = vec![None; self.adjacency.len()];
            let mut queue = std::collections::VecDeque::from([source]);
            while let Some(at) = queue.pop_front() {
                for &e in &self.adjacency[at] {
                    let edge = &self.edges[e];
                    if edge.to != source && via[edge.to].is_none() && edge.capacity > edge.flow {
                        via[edge.to] = Some(e);
                        queue.push_back(edge.to);
                    }
                }
            }
            if via[sink].is_none() {
                return total;
            }
            let mut push = Qty::MAX;
            let mut at = sink;
            while let Some(e) = via[at] {
                push = push.min(self.edges[e].capacity - self.edges[e].flow);
                at = self.edges[e ^ 1].to;
            }
            let mut at = sink;
            while let Some(e) = via[at] {
                self.edges[e].flow += push;
                self.edges[e ^ 1].flow -= push;
                at = self.edges[e ^ 1].to;
            }
            total += push;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_pools_are_checked_jointly() {
        // Nodes A, B, C with 5 each; region 1 = {A, B}, region 2 = {B, C}, network = all.
        let capacity = [5, 5, 5];
        let (r1, r2, all) = ([0, 1], [1, 2], [0, 1, 2]);
        let fits = |holds: &[(Qty, &[usize])]| {
            let demands: Vec<Demand<'_>> = holds
                .iter()
                .map(|&(quantity, nodes)| Demand { quantity, nodes })
                .collect();
            let wanted: Qty = holds.iter().map(|h| h.0).sum();
            max_flow(&demands, &capacity).0 == wanted
        };
        assert!(fits(&[(10, &r1), (5, &r2)]));
        // Each region alone fits (8 <= 10), but together they need 16 of 15.
        assert!(fits(&[(8, &r1)]) && fits(&[(8, &r2)]));
        assert!(!fits(&[(8, &r1), (8, &r2)]));
        assert!(!fits(&[(10, &r1), (5, &r2), (1, &all)]));
    }

    #[test]
    fn assignment_serves_each_demand_from_its_pool() {
        let capacity = [3, 4];
        let demands = [
            Demand {
                quantity: 3,
                nodes: &[0],
            },
            Demand {
                quantity: 4,
                nodes: &[0, 1],
            },
        ];
        let (total, assignment) = max_flow(&demands, &capacity);
        assert_eq!(total, 7);
        assert_eq!(assignment[0], [(0, 3)]);
        assert_eq!(assignment[1], [(1, 4)]);
    }
}
