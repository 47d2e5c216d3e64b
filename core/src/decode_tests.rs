//! The decoders of durable state (journal records, network images, positions, reservations,
//! snapshot manifests and shards, replayed effects) answer an error for any damaged input, never a panic or
//! an unbounded allocation: arbitrary bytes, and real records with bytes changed or cut off.

use std::sync::Arc;

use proptest::prelude::*;

use crate::clock::ManualClock;
use crate::codec::{Reader, Writer};
use crate::domain::{SupplyBatch, SupplyType, SupplyUpdate, UpdateOp};
use crate::engine::{Engine, EngineConfig};
use crate::index::{Index, Position, MAX_QUANTITY, MAX_SHARDS};
use crate::manifest::Manifest;
use crate::mutation::StoredRecord;
use crate::network::Network;
use crate::network_file::NetworkFile;
use crate::reservation::{Layout, LineRequest, Reservation, ReserveRequest};

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
        owner: "checkout".into(),
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
    let _ = Reservation::decode_layout(&mut Reader::new(bytes), Layout::Ownerless);
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

#[test]
fn a_reservation_keeps_its_owner_and_older_records_read_without_one() {
    let records = real_records();
    let held = records.last().expect("the reservation's record");
    let record = StoredRecord::decode(held).expect("decodes");
    let reservation = &record.reservations[0];
    assert_eq!(reservation.owner, "checkout");
    // The same record as version 2 wrote it: no owner after the lines.
    let mut old = Writer::default();
    old.u8(2);
    old.u8(0);
    old.len(1);
    reservation.encode(&mut old);
    // The empty answer's length, then the owner and its length.
    old.buf
        .truncate(old.buf.len() - 1 - 1 - reservation.owner.len());
    let read = StoredRecord::decode(&old.buf).expect("a version 2 record decodes");
    let expected = Reservation {
        owner: String::new(),
        ..reservation.clone()
    };
    assert_eq!(read.reservations, vec![expected]);
}

#[test]
fn a_reservation_keeps_its_answer_and_version_3_records_read_without_one() {
    let records = real_records();
    let held = StoredRecord::decode(records.last().expect("the reservation's record"))
        .expect("decodes")
        .reservations
        .remove(0);
    let kept = Reservation {
        answer: b"the plan".to_vec(),
        ..held
    };
    let mut now = Writer::default();
    now.u8(4);
    now.u8(0);
    now.len(1);
    kept.encode(&mut now);
    let read = StoredRecord::decode(&now.buf).expect("a version 4 record decodes");
    assert_eq!(read.reservations, vec![kept.clone()]);
    // The same record as version 3 wrote it: nothing after the owner.
    let mut old = now;
    old.buf[0] = 3;
    old.buf.truncate(old.buf.len() - 1 - kept.answer.len());
    let read = StoredRecord::decode(&old.buf).expect("a version 3 record decodes");
    let expected = Reservation {
        answer: Vec::new(),
        ..kept
    };
    assert_eq!(read.reservations, vec![expected]);
}

/// Version 3 carries both the cause and the reservations' owners, and reads back whole.
#[test]
fn a_record_keeps_its_cause_and_its_reservations_owner() {
    let records = real_records();
    let held =
        StoredRecord::decode(records.last().expect("the reservation's record")).expect("decodes");
    let cause = crate::mutation::Cause {
        actor: "checkout".into(),
        request_id: "req-1".into(),
        action: "reserve".into(),
        at_ms: 1_700_000_000_000,
    };
    let record = crate::mutation::Record {
        reservations: held.reservations.clone(),
        cause: Some(cause.clone()),
        ..crate::mutation::Record::default()
    };
    let bytes = record.encode();
    let read = StoredRecord::decode(&bytes).expect("decodes");
    assert_eq!(read.cause, Some(cause));
    assert_eq!(read.reservations, held.reservations);
    assert_eq!(read.reservations[0].owner, "checkout");
}

/// Version 6 carries a broker feed's position beside the batch's sequence; version 5 records
/// (the same bytes without it) still read, with none.
#[test]
fn a_record_keeps_its_broker_position_and_version_5_records_read_without_one() {
    let record = crate::mutation::Record {
        source_seq: Some(("WMS".into(), 3)),
        broker_seq: Some(41),
        ..crate::mutation::Record::default()
    };
    let bytes = record.encode();
    let read = StoredRecord::decode(&bytes).expect("decodes");
    assert_eq!(
        (read.source_seq, read.broker_seq),
        (Some(("WMS", 3)), Some(41))
    );
    let mut old = crate::mutation::Record {
        broker_seq: None,
        ..record
    }
    .encode();
    old[0] = 5;
    let read = StoredRecord::decode(&old).expect("a version 5 record decodes");
    assert_eq!((read.source_seq, read.broker_seq), (Some(("WMS", 3)), None));
}

/// A position without dated supply, as `Position::encode` writes it: node, on hand, the
/// on-hand SET's source time, no safety override.
fn plain_position(w: &mut Writer, node: u64, on_hand: i64) {
    w.var(node);
    w.ivar(on_hand);
    w.ivar(0);
    w.ivar(-1);
    w.u8(0);
}

/// A position at node 0 with dated receipts (ETA day, quantity) and demand (day, reserved),
/// in the order given, as `Position::encode` writes them.
fn dated_position(receipts: &[(i32, i64)], demand: &[(i32, i64)]) -> Vec<u8> {
    let mut w = Writer::default();
    w.var(0);
    w.ivar(5);
    w.ivar(0);
    w.ivar(-1);
    w.u8(1);
    w.len(receipts.len());
    for &(eta, quantity) in receipts {
        w.str("ASN-1");
        w.u8(1);
        w.ivar(eta.into());
        w.ivar(quantity);
        w.ivar(0);
    }
    w.ivar(0);
    w.len(demand.len());
    for &(day, reserved) in demand {
        w.ivar(day.into());
        w.ivar(reserved);
        w.ivar(0);
    }
    w.buf
}

fn position_decodes(bytes: &[u8]) -> bool {
    Position::decode(&mut Reader::new(bytes)).is_ok()
}

/// Found by fuzzing (`journal_effects`): a replayed position with an on-hand near `i64::MIN`
/// decoded, and computing its ATP overflowed.
#[test]
fn a_position_with_a_quantity_beyond_the_limit_is_refused() {
    let at_the_limit = dated_position(&[(3, MAX_QUANTITY)], &[(3, -MAX_QUANTITY)]);
    assert!(position_decodes(&at_the_limit));
    assert!(!position_decodes(&dated_position(
        &[(3, MAX_QUANTITY + 1)],
        &[]
    )));
    assert!(!position_decodes(&dated_position(
        &[],
        &[(3, -MAX_QUANTITY - 1)]
    )));
    let mut w = Writer::default();
    plain_position(&mut w, 0, i64::MIN);
    assert!(!position_decodes(&w.buf));
}

/// ATP walks receipts by ETA and demand by day, and demand is found by binary search.
#[test]
fn a_position_with_receipts_or_demand_out_of_order_is_refused() {
    let in_order = dated_position(&[(3, 1), (3, 1), (5, 1)], &[(3, 1), (4, 1)]);
    assert!(position_decodes(&in_order));
    assert!(!position_decodes(&dated_position(&[(5, 1), (3, 1)], &[])));
    assert!(!position_decodes(&dated_position(&[], &[(4, 1), (3, 1)])));
    assert!(!position_decodes(&dated_position(&[], &[(4, 1), (4, 1)])));
}

fn shard_restores(bytes: &[u8]) -> bool {
    Index::new(1).restore_shard(&mut Reader::new(bytes)).is_ok()
}

/// Pooled holds are added up like demand.
#[test]
fn pooled_holds_beyond_the_quantity_limit_are_refused() {
    let pooled = |quantity: i64| {
        let mut w = Writer::default();
        w.var(0);
        w.var(7);
        w.len(1);
        w.str("SKU-1");
        w.len(0);
        w.len(1);
        w.var(0);
        w.ivar(3);
        w.ivar(quantity);
        w.buf
    };
    assert!(shard_restores(&pooled(MAX_QUANTITY)));
    assert!(!shard_restores(&pooled(MAX_QUANTITY + 1)));
    assert!(!shard_restores(&pooled(i64::MIN)));
}

/// Shard 0 of a one-shard index as `Index::encode_shard` writes it: each SKU with positions
/// at the nodes given, in that order, and no pooled holds.
fn one_shard(skus: &[(&str, &[u64])]) -> Vec<u8> {
    let mut w = Writer::default();
    w.var(0);
    w.var(7);
    w.len(skus.len());
    for (sku, nodes) in skus {
        w.str(sku);
        w.len(nodes.len());
        for &node in *nodes {
            plain_position(&mut w, node, 1);
        }
        w.len(0);
    }
    w.buf
}

/// Found by fuzzing (`snapshot_chunk`): positions at nodes [0, 326, 2] restored, and
/// lookups by node, which are binary searches, missed the last.
#[test]
fn a_shard_with_positions_out_of_node_order_is_refused() {
    assert!(shard_restores(&one_shard(&[("SKU-1", &[0, 2, 326])])));
    assert!(!shard_restores(&one_shard(&[("SKU-1", &[0, 326, 2])])));
    assert!(!shard_restores(&one_shard(&[("SKU-1", &[2, 2])])));
}

/// The second copy replaced the first while both were counted.
#[test]
fn a_shard_naming_a_sku_twice_is_refused() {
    assert!(!shard_restores(&one_shard(&[
        ("SKU-1", &[0]),
        ("SKU-1", &[1])
    ])));
}

#[test]
fn a_shard_restored_again_is_counted_once() {
    let index = Index::new(1);
    let bytes = one_shard(&[("SKU-1", &[0, 1]), ("SKU-2", &[0])]);
    for _ in 0..2 {
        index
            .restore_shard(&mut Reader::new(&bytes))
            .expect("a well-formed shard restores");
    }
    assert_eq!(index.sku_count(), 2);
    assert_eq!(index.position_count(), 3);
}

/// Found by fuzzing (`manifest`): a manifest stating about 2^32 shards decoded, and recovery
/// allocated an index of that many shards (256 GiB) before any check.
#[test]
fn a_manifest_with_a_shard_count_no_index_has_is_refused() {
    let max = MAX_SHARDS as u32;
    for (shards, usable) in [
        (1, true),
        (256, true),
        (max, true),
        (0, false),
        (3, false),
        (max * 2, false),
        (u32::MAX, false),
    ] {
        let manifest = Manifest {
            generation: 1,
            created_ms: 0,
            shard_count: shards,
            journal_mark: "0-0".into(),
            network: Vec::new(),
            source_seqs: Vec::new(),
            broker_seqs: Vec::new(),
            sync_marks: Vec::new(),
            chunks: Vec::new(),
            positions: 0,
            reservation_chunks: Vec::new(),
        };
        let decoded = Manifest::decode(&manifest.encode());
        assert_eq!(decoded.is_ok(), usable, "{shards} shards");
    }
    assert_eq!(Index::new(usize::MAX).shard_count(), MAX_SHARDS);
}

/// A committed reservation as `Reservation::encode` writes it: one line at node 0 holding
/// `quantity`, allocated there as `allocated`, of which `shipped` has shipped.
fn committed(quantity: i64, allocated: i64, shipped: i64) -> Vec<u8> {
    let mut w = Writer::default();
    w.str("cart");
    w.var(2);
    w.u8(1);
    w.ivar(0);
    w.str("ORDER-1");
    w.var(0);
    w.ivar(i64::MIN);
    w.len(1);
    w.str("SKU-1");
    w.u8(0);
    w.var(0);
    w.ivar(quantity);
    w.ivar(0);
    w.len(1);
    w.var(0);
    w.ivar(allocated);
    w.ivar(shipped);
    w.str("");
    w.bytes(&[]);
    w.buf
}

/// Found by fuzzing (`reservation`): an allocation with extreme quantities decoded, and the
/// audit's open quantity of it (allocated less shipped) overflowed.
#[test]
fn a_reservation_with_quantities_no_request_makes_is_refused() {
    let decodes = |bytes: &[u8]| Reservation::decode(&mut Reader::new(bytes)).is_ok();
    assert!(decodes(&committed(
        MAX_QUANTITY,
        MAX_QUANTITY,
        MAX_QUANTITY
    )));
    assert!(!decodes(&committed(MAX_QUANTITY + 1, 0, 0)));
    assert!(!decodes(&committed(2, -1, 0)));
    assert!(!decodes(&committed(2, 2, i64::MIN)));
    assert!(!decodes(&committed(2, 1, 2)));
}

/// Found by fuzzing (`network_file`): a network file's postal code at latitude 431.64 was
/// taken; the Admin RPC refused it, but that check was the gRPC edge's alone.
#[test]
fn a_network_file_postal_code_off_the_globe_or_unnamed_is_refused() {
    let file = |code: &str, lat: &str| {
        let text = format!(
            "[[postal_codes]]\npostal_code = {code:?}\ncountry = \"CA\"\nlat = {lat}\nlon = -79.39\n"
        );
        let changes = NetworkFile::parse(&text, false).and_then(NetworkFile::changes);
        let changes = changes.expect("a well-formed file");
        Network::default().with_postal_codes(changes.postal_codes)
    };
    assert!(file("M5V", "43.64").is_ok());
    assert!(file("M5V", "431.64").is_err());
    assert!(file("M5V", "nan").is_err());
    assert!(file("", "43.64").is_err());
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
