//! The seed corpus: real encodings of every kind the targets decode. A journaling engine
//! loads `seeds/network.toml`, then takes supply of every type, holds at a node, in a group
//! and anywhere in the network, an update, an extension, a commit, a shipment, a release, an
//! expiry, a safety stock override, a route and a store pickup that hold their answers; its
//! journal records, their parts, its snapshot shards and a manifest over them are the seeds.
//! `tests/corpus.rs` writes them to `corpus/`.

use std::sync::Arc;

use promised_core::clock::ManualClock;
use promised_core::codec::Writer;
use promised_core::deadline::Deadline;
use promised_core::delivery::Destination;
use promised_core::domain::{SupplyBatch, SupplyType, SupplyUpdate, UpdateOp};
use promised_core::engine::{Engine, EngineConfig, SafetyStockEntry};
use promised_core::error::Result;
use promised_core::index::Index;
use promised_core::manifest::Manifest;
use promised_core::mutation::{Mutation, StoredRecord};
use promised_core::network::Network;
use promised_core::network_file::NetworkFile;
use promised_core::promise::{PickupAt, PickupRequest, PromiseRequest};
use promised_core::reservation::{Hold, LineRequest, ReserveRequest};
use promised_core::route::RouteRequest;

use crate::{NOW_MS, SHARDS};

/// The network file the seeds are written under, and its YAML twin.
pub const NETWORK_TOML: &str = include_str!("../seeds/network.toml");
pub const NETWORK_YAML: &str = include_str!("../seeds/network.yaml");

/// One corpus file: the target it seeds, its file name, its bytes.
#[derive(Debug, Clone)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every seed of every target.
pub fn seeds() -> std::result::Result<Vec<Seed>, Box<dyn std::error::Error>> {
    let mut journal = Journal::new();
    journal.load_network()?;
    journal.take_supply()?;
    journal.hold_commit_and_ship()?;
    let mut seeds = vec![
        seed("network_file", "network.toml", NETWORK_TOML.as_bytes()),
        seed("network_file", "network.yaml", NETWORK_YAML.as_bytes()),
    ];
    for (i, (what, bytes)) in journal.records.iter().enumerate() {
        let name = format!("{i:02}-{what}");
        seeds.push(seed("journal_record", &name, bytes));
        // A record the engine wrote always decodes.
        let Ok(record) = StoredRecord::decode(bytes) else {
            continue;
        };
        if let Some(network) = record.network {
            seeds.push(seed("network_codec", &name, network));
        }
        if !record.effects.is_empty() {
            seeds.push(seed("journal_effects", &name, record.effects.rest()));
        }
        for (j, reservation) in record.reservations.iter().enumerate() {
            let mut w = Writer::default();
            reservation.encode(&mut w);
            seeds.push(seed("reservation", &format!("{name}-{j}"), &w.buf));
        }
    }
    seeds.extend(journal.snapshot());
    Ok(seeds)
}

fn seed(target: &'static str, name: &str, bytes: &[u8]) -> Seed {
    Seed {
        target,
        name: name.to_owned(),
        bytes: bytes.to_vec(),
    }
}

/// A journaling engine and the records its mutations left, each named for what it did.
struct Journal {
    engine: Engine,
    clock: Arc<ManualClock>,
    records: Vec<(&'static str, Vec<u8>)>,
    /// The next batch sequence of each source, by name.
    seqs: Vec<(&'static str, u64)>,
}

impl Journal {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let config = EngineConfig {
            shards: SHARDS,
            ..EngineConfig::default()
        };
        let engine = Engine::journaled(
            config,
            clock.clone(),
            Network::default(),
            Index::new(SHARDS),
        );
        Self {
            engine,
            clock,
            records: Vec::new(),
            seqs: Vec::new(),
        }
    }

    /// Keeps the mutation's record, if it left one, settled as the journal writer settles a
    /// durable record (so that the next change of its reservations is taken), and returns
    /// its answer.
    fn keep<T>(&mut self, what: &'static str, mutation: Result<Mutation<T>>) -> Result<T> {
        let (answer, record) = mutation?.into_parts();
        if let Some(record) = record {
            self.records.push((what, record.encode()));
            if let Some((source, seq)) = &record.source_seq {
                self.engine.mark_durable(source, *seq);
            }
            if let Some(ticket) = record.ticket {
                self.engine.settle(ticket);
            }
        }
        Ok(answer)
    }

    fn load_network(&mut self) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let changes = NetworkFile::parse(NETWORK_TOML, false)?.changes()?;
        let engine = self.engine.clone();
        self.keep("groups", engine.upsert_groups(changes.groups))?;
        self.keep("nodes", engine.upsert_nodes(changes.nodes))?;
        self.keep("sources", engine.upsert_sources(changes.sources))?;
        let levels = engine.upsert_service_levels(changes.service_levels);
        self.keep("service-levels", levels)?;
        let codes = engine.upsert_postal_codes(changes.postal_codes);
        self.keep("postal-codes", codes)?;
        Ok(())
    }

    /// Sends one batch of `updates` from `source`.
    fn batch(
        &mut self,
        what: &'static str,
        source: &'static str,
        updates: Vec<SupplyUpdate>,
    ) -> Result<()> {
        let batch = self.next_batch(source, updates);
        let engine = self.engine.clone();
        self.keep(what, engine.apply_batch(&batch))?;
        Ok(())
    }

    /// Sends one batch of `updates` from `source` as a broker feed read it at `broker_seq`.
    fn broker_batch(
        &mut self,
        what: &'static str,
        source: &'static str,
        broker_seq: u64,
        updates: Vec<SupplyUpdate>,
    ) -> Result<()> {
        let batch = self.next_batch(source, updates);
        let engine = self.engine.clone();
        self.keep(what, engine.apply_broker_batch(&batch, broker_seq))?;
        Ok(())
    }

    /// `source`'s next batch, of `updates`.
    fn next_batch(&mut self, source: &'static str, updates: Vec<SupplyUpdate>) -> SupplyBatch {
        let seq = match self.seqs.iter_mut().find(|(s, _)| *s == source) {
            Some((_, seq)) => {
                *seq += 1;
                *seq
            }
            None => {
                self.seqs.push((source, 1));
                1
            }
        };
        SupplyBatch {
            source_id: source.into(),
            seq,
            updates,
        }
    }

    fn take_supply(&mut self) -> Result<()> {
        let on_hand = vec![
            update("SKU-1", "DC-EDISON-NJ", SupplyType::OnHand, set(), 40),
            update("SKU-2", "DC-EDISON-NJ", SupplyType::OnHand, set(), 7),
            update("SKU-1", "3PL-RENO-NV", SupplyType::OnHand, set(), 12),
        ];
        self.batch("on-hand", "WMS", on_hand)?;
        let asn = SupplyUpdate {
            reference: "ASN-77/1".into(),
            eta: "2026-03-05".into(),
            ..update("SKU-2", "DC-EDISON-NJ", SupplyType::InTransit, set(), 30)
        };
        self.batch("in-transit", "WMS", vec![asn])?;
        let po = SupplyUpdate {
            reference: "PO-1001/2".into(),
            eta: "2026-03-20".into(),
            ..update(
                "SKU-1",
                "STORE-BOSTON-MA",
                SupplyType::OnOrder,
                UpdateOp::Adjust,
                25,
            )
        };
        self.batch("on-order", "ERP", vec![po])?;
        let store = update(
            "SKU-1",
            "STORE-BOSTON-MA",
            SupplyType::OnHand,
            UpdateOp::Adjust,
            5,
        );
        self.batch("store-adjust", "POS", vec![store])?;
        let safety = SafetyStockEntry {
            sku: "SKU-1".into(),
            node_id: "DC-EDISON-NJ".into(),
            quantity: 3,
        };
        let engine = self.engine.clone();
        self.keep("safety-stock", engine.set_safety_stock(&[safety]))?;
        Ok(())
    }

    fn hold_commit_and_ship(&mut self) -> Result<()> {
        let engine = self.engine.clone();
        let cart = hold("cart-1", vec![line("SKU-1", "DC-EDISON-NJ", "", 4)]);
        self.keep("hold-at-node", engine.reserve(&cart))?;
        let grouped = hold(
            "cart-2",
            vec![line("SKU-1", "", "EAST", 3), line("SKU-2", "", "", 2)],
        );
        self.keep("hold-in-group-and-network", engine.reserve(&grouped))?;
        let updated = hold("cart-1", vec![line("SKU-1", "DC-EDISON-NJ", "", 6)]);
        self.keep("update", engine.update_reservation(&updated))?;
        self.keep("extend", engine.extend("cart-1", 900))?;
        self.keep("commit", engine.commit("cart-1", "ORDER-1"))?;
        let ship = update(
            "SKU-1",
            "DC-EDISON-NJ",
            SupplyType::OnHand,
            UpdateOp::Ship {
                order_id: "ORDER-1".into(),
            },
            2,
        );
        self.batch("ship", "WMS", vec![ship])?;
        self.keep("release", engine.release("cart-2"))?;
        let expiring = hold("cart-3", vec![line("SKU-2", "DC-EDISON-NJ", "", 1)]);
        self.keep("hold-to-expire", engine.reserve(&expiring))?;
        self.clock.advance_ms(3_600_000);
        for expired in engine.expire_due() {
            self.keep("expire", Ok(expired))?;
        }
        // A route that holds its plan, once the WMS is heard from again after the hour: the
        // hold keeps the answer.
        let heartbeat = SupplyBatch {
            source_id: "WMS".into(),
            seq: 0,
            updates: Vec::new(),
        };
        let _ = engine.apply_batch(&heartbeat)?;
        let order = RouteRequest {
            order_id: "ORDER-2".into(),
            lines: vec![("SKU-1".into(), 2), ("SKU-2".into(), 1)],
            destination: Destination {
                postal_code: "10001".into(),
                country: "US".into(),
                ..Destination::default()
            },
            service_level: "GROUND".into(),
            alternatives: 1,
            ..RouteRequest::default()
        };
        let plan = Hold {
            reservation_id: "order-2".into(),
            ttl_secs: 600,
            owner: "oms".into(),
        };
        let routed = engine.route_and_reserve(&order, &plan, &Deadline::never());
        self.keep("route-and-hold", routed)?;
        // A promise that holds the cart for pickup at the store: the hold keeps its options.
        let cart = PromiseRequest {
            lines: vec![("SKU-1".into(), 1)],
            destination: order.destination.clone(),
            reserve: Some(Hold {
                reservation_id: "pickup-1".into(),
                ttl_secs: 600,
                owner: "checkout".into(),
            }),
            pickup: Some(PickupRequest {
                at: PickupAt::Store("STORE-BOSTON-MA".into()),
                hold: true,
            }),
            ..PromiseRequest::default()
        };
        let promised = engine.promise(&cart, &Deadline::never());
        self.keep("promise-pickup-and-hold", promised)?;
        // A store's count read from a broker feed, with the message's stream sequence.
        let counted = update(
            "SKU-1",
            "STORE-BOSTON-MA",
            SupplyType::OnHand,
            UpdateOp::Adjust,
            -1,
        );
        self.broker_batch("broker-adjust", "POS", 17, vec![counted])?;
        Ok(())
    }

    /// A snapshot of the engine: its shards one chunk per shard and all in one chunk, as the
    /// server writes them, and a manifest over the one chunk.
    fn snapshot(&self) -> Vec<Seed> {
        let index = self.engine.index();
        let mut seeds = Vec::new();
        let mut chunk = Writer::default();
        let mut positions = 0;
        for shard in 0..index.shard_count() {
            let mut w = Writer::default();
            positions += index.encode_shard(shard, &mut w);
            seeds.push(seed("snapshot_chunk", &format!("shard-{shard}"), &w.buf));
            chunk.buf.extend_from_slice(&w.buf);
        }
        seeds.push(seed("snapshot_chunk", "all-shards", &chunk.buf));
        let mut reservations = Writer::default();
        for shard in 0..self.engine.book_shards() {
            self.engine.encode_reservations(shard, &mut reservations);
        }
        let sum = |bytes: &[u8]| (bytes.len() as u32, crc32fast::hash(bytes));
        let network = self.engine.network();
        let manifest = Manifest {
            generation: 2,
            created_ms: self.engine.now_ms(),
            shard_count: SHARDS as u32,
            journal_mark: "1772463600000-3".into(),
            network: network.encode(),
            source_seqs: network
                .sources()
                .iter()
                .map(|s| (s.def.id.clone(), s.feed.seqs().0))
                .collect(),
            broker_seqs: self.engine.broker_seqs(),
            sync_marks: self.engine.sync_marks(),
            chunks: vec![sum(&chunk.buf)],
            positions,
            reservation_chunks: vec![sum(&reservations.buf)],
        };
        seeds.push(seed("manifest", "one-chunk", &manifest.encode()));
        seeds
    }
}

fn set() -> UpdateOp {
    UpdateOp::Set {
        as_of_ms: Some(NOW_MS),
    }
}

fn update(
    sku: &str,
    node_id: &str,
    supply_type: SupplyType,
    op: UpdateOp,
    quantity: i64,
) -> SupplyUpdate {
    SupplyUpdate {
        sku: sku.into(),
        node_id: node_id.into(),
        supply_type: Some(supply_type),
        op: Some(op),
        quantity,
        reference: String::new(),
        eta: String::new(),
    }
}

fn line(sku: &str, node_id: &str, group_id: &str, quantity: i64) -> LineRequest {
    LineRequest {
        sku: sku.into(),
        node_id: node_id.into(),
        group_id: group_id.into(),
        quantity,
        need_date: None,
    }
}

fn hold(reservation_id: &str, lines: Vec<LineRequest>) -> ReserveRequest {
    ReserveRequest {
        reservation_id: reservation_id.into(),
        lines,
        ttl_secs: 600,
        owner: "checkout".into(),
    }
}
