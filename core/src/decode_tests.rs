//! The decoders of durable state (journal records, network images, positions, reservations,
//! snapshot manifests and shards, replayed effects) answer an error for any damaged input, never a panic or
//! an unbounded allocation: arbitrary bytes, and real records with bytes changed or cut off.

use std::sync::Arc;

use proptest::prelude::*;

use crate::clock::ManualClock;
use crate::codec::Reader;
use crate::domain::{SupplyBatch, SupplyType, SupplyUpdate, UpdateOp};
use crate::engine::{Engine, EngineConfig};
use crate::index::{Index, Position};
use crate::manifest::Manifest;
use crate::mutation::StoredRecord;
use crate::network::Network;
use crate::reservation::{LineRequest, Reservation, ReserveRequest};

/// Journal records a journaling engine really writes: a network change, a supply batch and a
/// reservation.
fn real_records() -> Vec<Vec<u8>> {
    let clock = Arc::new(ManualClock::new(1_000));
    let engine = Engine::journaled(
        EngineConfig::default(),
        clock,
        Network::default(),
        Index::new(4),
    );
    let mut records = Vec::new();
    let mut keep = |record: Option<&crate::mutation::Record>| {
        records.extend(record.map(|r| r.encode()));
    };
    let nodes = engine
        .upsert_nodes(vec![crate::test_support::node("DC")])
        .expect("node");
    keep(nodes.record());
    let source = crate::test_support::wms();
    keep(
        engine
            .upsert_sources(vec![source])
            .expect("source")
            .record(),
    );
    let update = SupplyUpdate {
        sku: "SKU-1".into(),
        node_id: "DC".into(),
        supply_type: Some(SupplyType::OnHand),
        op: Some(UpdateOp::Set {
            as_of_ms: Some(1_000),
        }),
        quantity: 9,
        reference: String::new(),
        eta: String::new(),
    };
    let batch = SupplyBatch {
        source_id: "WMS".into(),
        seq: 1,
        updates: vec![update],
    };
    keep(engine.apply_batch(&batch).expect("batch").record());
    let line = LineRequest {
        sku: "SKU-1".into(),
        node_id: "DC".into(),
        group_id: String::new(),
        quantity: 2,
        need_date: None,
    };
    let hold = ReserveRequest {
        reservation_id: "cart".into(),
        lines: vec![line],
        ttl_secs: 60,
    };
    keep(engine.reserve(&hold).expect("held").record());
    records
}

/// Decodes `bytes` every way durable state is read back; only errors may come out.
fn decode_everything(bytes: &[u8]) {
    if let Ok(record) = StoredRecord::decode(bytes) {
        if let Some(network) = record.network {
            let _ = Network::decode(network, 0);
        }
        let index = Index::new(4);
        let mut replay = index.begin_replay();
        let mut effects = record.effects;
        let _ = index.replay(&mut effects, &mut replay);
    }
    let _ = Network::decode(bytes, 0);
    let _ = Manifest::decode(bytes);
    let _ = Position::decode(&mut Reader::new(bytes));
    let _ = Reservation::decode(&mut Reader::new(bytes));
    let _ = Index::new(4).restore_shard(&mut Reader::new(bytes));
}

/// A real record with some bytes changed and perhaps cut short.
fn damaged_record() -> impl Strategy<Value = Vec<u8>> {
    let records = real_records();
    let count = records.len();
    (
        0..count,
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        any::<usize>(),
    )
        .prop_map(move |(which, changes, cut)| {
            let mut bytes = records[which].clone();
            for (at, value) in changes {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            bytes
        })
}

#[test]
fn real_records_decode_whole() {
    for bytes in real_records() {
        let record = StoredRecord::decode(&bytes).expect("a record the engine wrote decodes");
        let index = Index::new(4);
        let mut replay = index.begin_replay();
        let mut effects = record.effects;
        index
            .replay(&mut effects, &mut replay)
            .expect("its effects replay");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn damaged_records_never_panic_a_decoder(bytes in damaged_record()) {
        decode_everything(&bytes);
    }
}
