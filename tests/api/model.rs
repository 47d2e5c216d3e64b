//! A model-based test of reservations: random sequences of supply changes, reserve, update,
//! extend, release, commit, ship, expiry (with a controlled clock) and restarts (recovery from
//! Redis), each compared with a plain reference model, with the invariants checked after
//! every step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use promised::app::{App, Caller};
use promised::auth::Identity;
use promised::checkpoint::trail::AuditQuery;
use promised::checkpoint::{Durability, RedisConfig, Store};
use promised::clock::ManualClock;
use promised::domain::{
    Node, NodeKind, Source, SourceKind, SupplyBatch, SupplyType, SupplyUpdate, UpdateOp,
};
use promised::engine::EngineConfig;
use promised::error::Error;
use promised::query::AvailabilityQuery;
use promised::reservation::{LineRequest, ReserveRequest, Scope, State};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::helpers::START_MS;
use crate::redis::RedisServer;

const SKUS: [&str; 2] = ["S0", "S1"];
const NODES: [&str; 2] = ["A", "B"];
const IDS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    /// Absolute on-hand from the feed (may drop under holds).
    Set {
        sku: usize,
        node: usize,
        quantity: i64,
    },
    Adjust {
        sku: usize,
        node: usize,
        delta: i64,
    },
    /// Lines of (sku, node or None for the network, quantity).
    Reserve {
        id: usize,
        lines: Vec<(usize, Option<usize>, i64)>,
    },
    Update {
        id: usize,
        sku: usize,
        node: Option<usize>,
        quantity: i64,
    },
    Extend {
        id: usize,
    },
    Release {
        id: usize,
    },
    Commit {
        id: usize,
    },
    Ship {
        id: usize,
        quantity: i64,
    },
    Advance {
        secs: i64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let node = prop::option::of(0..NODES.len());
    prop_oneof![
        (0..2usize, 0..2usize, 0..12i64).prop_map(|(sku, node, quantity)| Op::Set {
            sku,
            node,
            quantity
        }),
        (0..2usize, 0..2usize, -3..6i64).prop_map(|(sku, node, delta)| Op::Adjust {
            sku,
            node,
            delta
        }),
        (
            0..IDS,
            prop::collection::vec((0..2usize, node.clone(), 1..5i64), 1..3)
        )
            .prop_map(|(id, lines)| Op::Reserve { id, lines }),
        (0..IDS, 0..2usize, node, 0..5i64).prop_map(|(id, sku, node, quantity)| Op::Update {
            id,
            sku,
            node,
            quantity
        }),
        (0..IDS).prop_map(|id| Op::Extend { id }),
        (0..IDS).prop_map(|id| Op::Release { id }),
        (0..IDS).prop_map(|id| Op::Commit { id }),
        (0..IDS, 1..4i64).prop_map(|(id, quantity)| Op::Ship { id, quantity }),
        (1..400i64).prop_map(|secs| Op::Advance { secs }),
        Just(Op::Restart),
    ]
}

/// The reference: plain counters, one day, no receipts, no safety stock.
#[derive(Debug, Default, Clone)]
struct Model {
    on_hand: BTreeMap<(usize, usize), i64>,
    reservations: BTreeMap<usize, Res>,
    now_ms: i64,
}

#[derive(Debug, Clone)]
struct Res {
    state: State,
    /// The lines first asked for: a retry with these answers the same.
    requested: Vec<(usize, Option<usize>, i64)>,
    /// (sku, node or network, quantity)
    lines: Vec<(usize, Option<usize>, i64)>,
    expires_at_ms: i64,
    /// Open allocations after commit: (sku, node, quantity not yet shipped).
    allocations: Vec<(usize, usize, i64)>,
}

const TTL_MS: i64 = 300_000;

impl Model {
    /// Net per (sku, node) and network holds per sku, with `skip` left out.
    fn nets(&self, skip: Option<usize>) -> (BTreeMap<(usize, usize), i64>, BTreeMap<usize, i64>) {
        let mut net: BTreeMap<(usize, usize), i64> = BTreeMap::new();
        for sku in 0..SKUS.len() {
            for node in 0..NODES.len() {
                net.insert(
                    (sku, node),
                    self.on_hand.get(&(sku, node)).copied().unwrap_or(0),
                );
            }
        }
        let mut pooled: BTreeMap<usize, i64> = BTreeMap::new();
        for (id, res) in &self.reservations {
            if Some(*id) == skip {
                continue;
            }
            match res.state {
                State::Held => {
                    for &(sku, node, q) in &res.lines {
                        match node {
                            Some(node) => *net.entry((sku, node)).or_default() -= q,
                            None => *pooled.entry(sku).or_default() += q,
                        }
                    }
                }
                State::Committed => {
                    for &(sku, node, q) in &res.allocations {
                        *net.entry((sku, node)).or_default() -= q;
                    }
                }
                _ => {}
            }
        }
        (net, pooled)
    }

    /// Whether `lines` can be held on top of everything but `skip` (the engine's rule: a node
    /// line needs its node's ATP, then every SKU's network holds must fit in its nodes' ATP).
    fn fits(&self, lines: &[(usize, Option<usize>, i64)], skip: Option<usize>) -> bool {
        let (mut net, mut pooled) = self.nets(skip);
        for &(sku, node, q) in lines {
            match node {
                Some(node) => {
                    let at = net.entry((sku, node)).or_default();
                    if (*at).max(0) < q {
                        return false;
                    }
                    *at -= q;
                }
                None => *pooled.entry(sku).or_default() += q,
            }
        }
        let touched: Vec<usize> = lines.iter().map(|l| l.0).collect();
        touched.iter().all(|&sku| {
            let capacity: i64 = (0..NODES.len()).map(|n| net[&(sku, n)].max(0)).sum();
            capacity >= pooled.get(&sku).copied().unwrap_or(0)
        })
    }

    /// Whether the network holds of each of `skus` fit in its nodes' ATP. Coverage is per SKU:
    /// another SKU's shortfall is no reason to refuse a change to these.
    fn covered(&self, skus: &[usize]) -> bool {
        let (net, pooled) = self.nets(None);
        pooled
            .iter()
            .filter(|(sku, _)| skus.contains(sku))
            .all(|(&sku, &held)| {
                let capacity: i64 = (0..NODES.len()).map(|n| net[&(sku, n)].max(0)).sum();
                capacity >= held
            })
    }

    fn oversold(&self) -> u64 {
        let (net, _) = self.nets(None);
        let committed = |sku: usize, node: usize| {
            self.reservations.values().any(|r| match r.state {
                State::Held => r.lines.iter().any(|l| l.0 == sku && l.1 == Some(node)),
                State::Committed => r
                    .allocations
                    .iter()
                    .any(|a| a.0 == sku && a.1 == node && a.2 > 0),
                _ => false,
            })
        };
        net.iter()
            .filter(|(&(sku, node), &n)| n < 0 && committed(sku, node))
            .count() as u64
    }
}

fn request(id: usize, lines: &[(usize, Option<usize>, i64)]) -> ReserveRequest {
    ReserveRequest {
        reservation_id: format!("R{id}"),
        lines: lines
            .iter()
            .map(|&(sku, node, quantity)| LineRequest {
                sku: SKUS[sku].into(),
                node_id: node.map(|n| NODES[n].to_owned()).unwrap_or_default(),
                group_id: String::new(),
                quantity,
                need_date: None,
            })
            .collect(),
        ttl_secs: (TTL_MS / 1000) as u64,
        owner: String::new(),
    }
}

struct System {
    store: Arc<Store>,
    app: App,
    seq: u64,
}

async fn open(redis: &RedisServer, prefix: &str, clock: &ManualClock) -> System {
    let config = RedisConfig {
        url: redis.url(),
        prefix: prefix.into(),
        timeout: Duration::from_secs(2),
        snapshot_interval: Duration::from_secs(3600),
        snapshot_after_effects: u64::MAX,
        audit_retention: Duration::from_secs(3600),
        snapshot_copy_percent: promised::config::DEFAULT_SNAPSHOT_COPY_PERCENT,
        access: Default::default(),
    };
    let store = Store::open(config, &EngineConfig::default(), Arc::new(clock.clone()))
        .await
        .expect("store");
    let engine = store.engine().clone();
    let seq = engine
        .stats()
        .source_stats
        .first()
        .map_or(0, |s| s.last_seq);
    System {
        app: App::new(engine, Durability::Redis(store.clone())),
        store,
        seq,
    }
}

async fn network(system: &System) {
    let nodes = NODES
        .iter()
        .map(|id| Node {
            id: (*id).into(),
            kind: NodeKind::Dc,
            lat: 0.0,
            lon: 0.0,
            postal_code: String::new(),
            country: "US".into(),
            time_zone: chrono_tz::UTC,
            priority: 0,
            group_ids: Vec::new(),
            safety_stock: 0,
            fulfilment: Default::default(),
            pickup: None,
        })
        .collect();
    system
        .app
        .upsert_nodes(&caller(), nodes)
        .await
        .expect("nodes");
    let source = Source {
        id: "WMS".into(),
        kind: SourceKind::Wms,
        owned_node_ids: Vec::new(),
        owned_supply_types: vec![SupplyType::OnHand],
        stale_after_ms: None,
    };
    system
        .app
        .upsert_sources(&caller(), vec![source])
        .await
        .expect("sources");
}

impl System {
    async fn feed(&mut self, sku: usize, node: usize, op: UpdateOp, quantity: i64) -> u32 {
        self.seq += 1;
        let update = SupplyUpdate {
            sku: SKUS[sku].into(),
            node_id: NODES[node].into(),
            supply_type: Some(SupplyType::OnHand),
            op: Some(op),
            quantity,
            reference: String::new(),
            eta: String::new(),
        };
        let batch = SupplyBatch {
            source_id: "WMS".into(),
            seq: self.seq,
            updates: vec![update],
        };
        self.app
            .apply_batch(&caller(), &batch)
            .await
            .expect("a valid batch, durable")
            .applied
    }

    /// Compares every position and the invariants with the model.
    fn check(&self, model: &Model, step: &Op) {
        let (net, pooled) = model.nets(None);
        let query = AvailabilityQuery {
            skus: SKUS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let answer = self.app.availability(&query).expect("query");
        for (sku, item) in answer.items.iter().enumerate() {
            for (node, view) in item.nodes.iter().enumerate() {
                let on_hand = model.on_hand.get(&(sku, node)).copied().unwrap_or(0);
                assert_eq!(
                    view.on_hand, on_hand,
                    "after {step:?}: on-hand {sku}@{node}"
                );
                let committed = on_hand - net[&(sku, node)];
                assert_eq!(
                    view.reserved + view.allocated,
                    committed,
                    "after {step:?}: demand {sku}@{node}: {view:?}"
                );
                assert_eq!(
                    view.atp,
                    net[&(sku, node)].max(0),
                    "after {step:?}: ATP {sku}@{node}"
                );
            }
            let capacity: i64 = (0..NODES.len()).map(|n| net[&(sku, n)].max(0)).sum();
            let held = pooled.get(&sku).copied().unwrap_or(0);
            assert_eq!(
                item.network_atp,
                (capacity - held).max(0),
                "after {step:?}: network ATP of {sku}"
            );
        }
        let audit = self.app.audit();
        assert_eq!(audit.drift, 0, "after {step:?}");
        assert_eq!(audit.oversold, model.oversold(), "after {step:?}");
    }
}

async fn run(redis: &RedisServer, prefix: String, ops: Vec<Op>) {
    let clock = ManualClock::new(START_MS);
    let mut system = open(redis, &prefix, &clock).await;
    network(&system).await;
    let mut model = Model {
        now_ms: START_MS,
        ..Model::default()
    };
    for op in &ops {
        step(&mut system, &mut model, op, redis, &prefix, &clock).await;
        system.check(&model, op);
    }
    assert_every_change_has_its_cause(&system.store).await;
    drop(system.store);
}

/// Every journaled change names who made it: the model's caller, or expiry.
async fn assert_every_change_has_its_cause(store: &Store) {
    let mut query = AuditQuery {
        limit: 1_000,
        ..AuditQuery::default()
    };
    let mut entries = 0;
    loop {
        let page = store.audit(&query).await.expect("the trail reads");
        entries += page.entries.len();
        for entry in &page.entries {
            let expected = if entry.action == "expire" {
                "system:expiry"
            } else {
                "model"
            };
            assert_eq!(entry.actor, expected, "{entry:?}");
        }
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => break,
        }
    }
    assert!(entries > 0, "the run journaled changes");
}

async fn step(
    system: &mut System,
    model: &mut Model,
    op: &Op,
    redis: &RedisServer,
    prefix: &str,
    clock: &ManualClock,
) {
    match op.clone() {
        Op::Set {
            sku,
            node,
            quantity,
        } => {
            system
                .feed(
                    sku,
                    node,
                    UpdateOp::Set {
                        as_of_ms: Some(model.now_ms),
                    },
                    quantity,
                )
                .await;
            model.on_hand.insert((sku, node), quantity);
        }
        Op::Adjust { sku, node, delta } => {
            let current = model.on_hand.get(&(sku, node)).copied().unwrap_or(0);
            let applied = system.feed(sku, node, UpdateOp::Adjust, delta).await;
            assert_eq!(
                applied == 1,
                current + delta >= 0,
                "adjust below zero is refused"
            );
            if applied == 1 {
                model.on_hand.insert((sku, node), current + delta);
            }
        }
        Op::Reserve { id, lines } => {
            let answer = system.app.reserve(&caller(), &request(id, &lines)).await;
            match model.reservations.get(&id) {
                Some(existing) if existing.requested == lines => {
                    assert!(answer.is_ok(), "a retry answers the same: {answer:?}");
                }
                Some(_) => assert!(matches!(answer, Err(Error::AlreadyExists(_))), "{answer:?}"),
                None if model.fits(&lines, None) => {
                    answer.expect("fits");
                    let res = Res {
                        state: State::Held,
                        requested: lines.clone(),
                        lines,
                        expires_at_ms: model.now_ms + TTL_MS,
                        allocations: Vec::new(),
                    };
                    model.reservations.insert(id, res);
                }
                None => assert!(
                    matches!(answer, Err(Error::InsufficientStock(_))),
                    "{answer:?}"
                ),
            }
        }
        Op::Update {
            id,
            sku,
            node,
            quantity,
        } => {
            let change = [(sku, node, quantity)];
            let answer = system
                .app
                .update_reservation(&caller(), &request(id, &change))
                .await;
            let Some(res) = model
                .reservations
                .get(&id)
                .filter(|r| r.state == State::Held)
                .cloned()
            else {
                assert!(answer.is_err());
                return;
            };
            let mut lines: Vec<_> = res
                .lines
                .iter()
                .copied()
                .filter(|l| (l.0, l.1) != (sku, node))
                .collect();
            if quantity > 0 {
                lines.push((sku, node, quantity));
            }
            if model.fits(&lines, Some(id)) {
                answer.expect("fits");
                let res = model.reservations.get_mut(&id).expect("held");
                res.lines = lines;
                res.expires_at_ms = model.now_ms + TTL_MS;
            } else {
                assert!(
                    matches!(answer, Err(Error::InsufficientStock(_))),
                    "{answer:?}"
                );
            }
        }
        Op::Extend { id } => {
            let answer = system
                .app
                .extend(&caller(), &format!("R{id}"), (TTL_MS / 1000) as u64)
                .await;
            match model
                .reservations
                .get_mut(&id)
                .filter(|r| r.state == State::Held)
            {
                Some(res) => {
                    answer.expect("held");
                    res.expires_at_ms = model.now_ms + TTL_MS;
                }
                None => assert!(answer.is_err()),
            }
        }
        Op::Release { id } => {
            let answer = system.app.release(&caller(), &format!("R{id}")).await;
            match model.reservations.get_mut(&id) {
                Some(res) => {
                    answer.expect("known");
                    if !res.state.is_ended() {
                        res.state = State::Released;
                        res.allocations.clear();
                    }
                }
                None => assert!(matches!(answer, Err(Error::NotFound(_)))),
            }
        }
        Op::Commit { id } => {
            let answer = system
                .app
                .commit_reservation(&caller(), &format!("R{id}"), &format!("O{id}"))
                .await;
            let skus: Vec<usize> = model
                .reservations
                .get(&id)
                .map(|r| r.lines.iter().map(|l| l.0).collect())
                .unwrap_or_default();
            match model.reservations.get(&id).map(|r| r.state) {
                Some(State::Held) if !model.covered(&skus) => {
                    // Supply fell under the holds since they were made: binding is refused.
                    assert!(
                        matches!(answer, Err(Error::InsufficientStock(_))),
                        "{answer:?}"
                    );
                }
                Some(State::Held) => {
                    let held = answer.expect("a held reservation commits");
                    let mut allocations = Vec::new();
                    for line in &held.reservation.lines {
                        let sku = SKUS.iter().position(|s| *s == line.sku).expect("known sku");
                        let bound: i64 = line.allocations.iter().map(|a| a.quantity).sum();
                        assert_eq!(bound, line.quantity, "every unit bound");
                        if let Scope::Node(node) = line.scope {
                            assert!(
                                line.allocations.iter().all(|a| a.node == node),
                                "node lines stay put"
                            );
                        }
                        allocations.extend(
                            line.allocations
                                .iter()
                                .map(|a| (sku, a.node as usize, a.quantity)),
                        );
                    }
                    let res = model.reservations.get_mut(&id).expect("held");
                    res.state = State::Committed;
                    res.allocations = allocations;
                    let (net, _) = model.nets(None);
                    assert!(
                        net.values().all(|n| *n >= 0) || model.oversold() > 0,
                        "binding never oversells"
                    );
                }
                Some(State::Committed) => assert!(answer.is_ok(), "same order again"),
                _ => assert!(answer.is_err()),
            }
        }
        Op::Ship { id, quantity } => {
            let Some(res) = model
                .reservations
                .get(&id)
                .filter(|r| r.state == State::Committed)
                .cloned()
            else {
                return;
            };
            let Some(&(sku, node, open)) = res.allocations.iter().find(|a| a.2 > 0) else {
                return;
            };
            let quantity = quantity.min(open);
            let on_hand = model.on_hand.get(&(sku, node)).copied().unwrap_or(0);
            let ship = UpdateOp::Ship {
                order_id: format!("O{id}"),
            };
            let applied = system.feed(sku, node, ship, quantity).await;
            assert_eq!(
                applied == 1,
                on_hand >= quantity,
                "a shipment needs the units on hand"
            );
            if applied == 1 {
                model.on_hand.insert((sku, node), on_hand - quantity);
                let res = model.reservations.get_mut(&id).expect("committed");
                let mut left = quantity;
                for allocation in res
                    .allocations
                    .iter_mut()
                    .filter(|a| a.0 == sku && a.1 == node)
                {
                    let take = left.min(allocation.2);
                    allocation.2 -= take;
                    left -= take;
                }
                if res.allocations.iter().all(|a| a.2 == 0) {
                    res.state = State::Shipped;
                }
            }
        }
        Op::Advance { secs } => {
            clock.advance_ms(secs * 1000);
            model.now_ms += secs * 1000;
            system.app.expire_once().await;
            for res in model.reservations.values_mut() {
                if res.state == State::Held && res.expires_at_ms <= model.now_ms {
                    res.state = State::Expired;
                }
            }
        }
        Op::Restart => {
            *system = open(redis, prefix, clock).await;
        }
    }
}

/// The environment variable that replays one seed of the model test.
const SEED_VAR: &str = "PROMISED_MODEL_SEED";

/// Seeds that found a disagreement, replayed on every run beside the random one: 246, 303,
/// 318 and 322 failed when the model refused a commit for another SKU's uncovered network
/// hold. Add the seed of any future failure here once it is fixed.
const REGRESSION_SEEDS: [u64; 4] = [246, 303, 318, 322];

/// Runs 64 random op sequences from `seed`; a failure names the seed that replays it.
fn run_model(seed: u64) {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let config = Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let case = std::sync::atomic::AtomicU64::new(0);
    let outcome = runner.run(&prop::collection::vec(op(), 1..60), |ops| {
        let prefix = format!(
            "model-{seed}-{}",
            case.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        runtime.block_on(run(&redis, prefix, ops));
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("the engine differs from the model with seed {seed} (replay: {SEED_VAR}={seed}): {failure}");
    }
}

#[test]
fn reservations_follow_the_reference_model_through_restarts() {
    let seed = match std::env::var(SEED_VAR) {
        Ok(text) => text.parse().expect("PROMISED_MODEL_SEED is a whole number"),
        Err(_) => rand::random(),
    };
    eprintln!("model seed {seed}; replay with {SEED_VAR}={seed}");
    run_model(seed);
}

/// A network hold on S0 left uncovered by a SET to 0 does not stop an unrelated hold on S1
/// from committing: coverage is a property of each SKU's own holds.
#[test]
fn another_skus_uncovered_network_hold_does_not_block_a_commit() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ops = vec![
        Op::Set {
            sku: 0,
            node: 0,
            quantity: 5,
        },
        Op::Reserve {
            id: 0,
            lines: vec![(0, None, 3)],
        },
        Op::Set {
            sku: 0,
            node: 0,
            quantity: 0,
        },
        Op::Set {
            sku: 1,
            node: 1,
            quantity: 5,
        },
        Op::Reserve {
            id: 1,
            lines: vec![(1, Some(1), 2)],
        },
        Op::Commit { id: 1 },
        Op::Commit { id: 0 },
    ];
    runtime.block_on(run(&redis, "model-uncovered-other-sku".into(), ops));
}

#[test]
fn reservations_follow_the_reference_model_on_the_regression_seeds() {
    for seed in REGRESSION_SEEDS {
        run_model(seed);
    }
}

/// The model's calls, as one named caller.
fn caller() -> Caller {
    Caller::new(Identity::new("model", Vec::new()), "")
}
