//! The catalogue every target serves: SKU names, the demo network's nodes, the supply the
//! service is loaded with (deterministic for a seed), and Zipf-distributed SKU popularity.

use std::sync::Arc;

use promised::app::App;
use promised::checkpoint::Durability;
use promised::clock::SystemClock;
use promised::domain::NodeKind;
use promised::engine::{Engine, EngineConfig};
use promised::network_file::{self, NetworkFile, DEMO_NETWORK_TOML};
use rand::Rng;

/// The name of SKU number `i` (rank `i` in popularity).
pub fn sku(i: usize) -> String {
    format!("SKU-{i:06}")
}

/// What the load generator knows of the demo network (`promised::network_file::DEMO_NETWORK_TOML`).
#[derive(Debug, Clone)]
pub struct Network {
    /// DCs and 3PL warehouses whose on-hand and in-transit supply the `WMS` source owns.
    pub fulfilment: Vec<String>,
    /// Stores, whose on-hand supply the `POS` source owns.
    pub stores: Vec<String>,
    /// Node coordinates, used as delivery destinations (customers live where the nodes are).
    pub places: Vec<(f64, f64)>,
}

impl Network {
    /// Reads the demo network the way the service does, into a throw-away in-memory engine.
    pub async fn demo() -> anyhow::Result<Self> {
        let engine = Engine::new(EngineConfig::default(), Arc::new(SystemClock));
        let app = App::new(engine, Durability::Memory);
        network_file::apply(NetworkFile::parse(DEMO_NETWORK_TOML, false)?, &app).await?;
        let network = app.engine().network();
        let nodes = network.nodes();
        let ids = |store: bool| {
            nodes
                .iter()
                .filter(|n| (n.kind == NodeKind::Store) == store)
                .map(|n| n.id.clone())
                .collect()
        };
        // Only WMS's: the Memphis 3PL reports its own stock in its own codes.
        let wms = network
            .source("WMS")
            .map(|source| &source.def.owned_node_ids);
        let fulfilment: Vec<String> = ids(false);
        let fulfilment = fulfilment
            .into_iter()
            .filter(|id| wms.is_some_and(|owned| owned.contains(id)))
            .collect();
        Ok(Self {
            fulfilment,
            stores: ids(true),
            places: nodes.iter().map(|n| (n.lat, n.lon)).collect(),
        })
    }
}

/// Zipf popularity over ranks `0..n`: rank `k` is drawn with probability proportional to
/// `1 / (k + 1)^s`. Sampling is a binary search of the cumulative distribution.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (0..n.max(1))
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect();
        for p in &mut cdf {
            *p /= total;
        }
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&p| p < u).min(self.cdf.len() - 1)
    }

    /// `count` distinct ranks (fewer if the catalogue is smaller), most popular first drawn.
    pub fn distinct(&self, rng: &mut impl Rng, count: usize) -> Vec<usize> {
        let count = count.min(self.cdf.len());
        let mut picked = Vec::with_capacity(count);
        // Popular ranks repeat; the attempt bound keeps this finite, falling back to any rank.
        for _ in 0..count * 50 {
            if picked.len() == count {
                break;
            }
            let rank = self.sample(rng);
            if !picked.contains(&rank) {
                picked.push(rank);
            }
        }
        let mut next = 0;
        while picked.len() < count {
            if !picked.contains(&next) {
                picked.push(next);
            }
            next += 1;
        }
        picked
    }
}

/// One SKU's supply at load time.
#[derive(Debug, Clone, Default)]
pub struct SkuSupply {
    /// On-hand at DCs and 3PL warehouses (the WMS's).
    pub fulfilment_on_hand: Vec<(usize, i64)>,
    /// On-hand at stores (the POS's).
    pub store_on_hand: Vec<(usize, i64)>,
    /// An advance ship notice: node, days from today, quantity.
    pub in_transit: Option<(usize, u32, i64)>,
    /// A purchase order: node, days from today, quantity.
    pub on_order: Option<(usize, u32, i64)>,
}

/// The supply of SKU `i`, the same for a given seed: 2 to 5 fulfilment nodes with 150 to 600
/// units on hand, 0 to 3 stores with up to 20, and some dated receipts (as the demo's feed).
pub fn supply(seed: u64, i: usize, network: &Network) -> SkuSupply {
    use rand::SeedableRng;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
    let fulfilment = network.fulfilment.len();
    let stores = network.stores.len();
    let fulfilment_on_hand = rng.random_range(2..=5).min(fulfilment);
    let store_on_hand = rng.random_range(0..=3).min(stores);
    SkuSupply {
        fulfilment_on_hand: distinct_nodes(&mut rng, fulfilment, fulfilment_on_hand)
            .into_iter()
            .map(|node| (node, rng.random_range(150..=600)))
            .collect(),
        store_on_hand: distinct_nodes(&mut rng, stores, store_on_hand)
            .into_iter()
            .map(|node| (node, rng.random_range(0..=20)))
            .collect(),
        in_transit: rng.random_bool(0.2).then(|| {
            (
                rng.random_range(0..fulfilment),
                rng.random_range(1..8),
                rng.random_range(10..200),
            )
        }),
        on_order: rng.random_bool(0.3).then(|| {
            (
                rng.random_range(0..fulfilment),
                rng.random_range(7..46),
                rng.random_range(100..1000),
            )
        }),
    }
}

fn distinct_nodes(rng: &mut impl Rng, nodes: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..nodes).collect();
    // A partial Fisher-Yates shuffle: the first `count` are a uniform distinct sample.
    for k in 0..count.min(nodes) {
        let j = rng.random_range(k..nodes);
        all.swap(k, j);
    }
    all.truncate(count);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let draws: Vec<usize> = (0..20_000).map(|_| zipf.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&rank| rank < 1000));
        let top = draws.iter().filter(|&&rank| rank == 0).count() as f64 / 20_000.0;
        // 1 / H(1000) = 0.1336.
        assert!((0.12..0.15).contains(&top), "rank 0 drawn {top}");
    }

    #[test]
    fn distinct_ranks_are_distinct_even_when_asking_for_all() {
        let zipf = Zipf::new(12, 1.0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut ranks = zipf.distinct(&mut rng, 12);
        ranks.sort_unstable();
        assert_eq!(ranks, (0..12).collect::<Vec<_>>());
    }
}
