//! What the fuzz targets check, one function per decoder the server owns. Each takes the
//! fuzzer's bytes and panics when a property breaks; bytes that do not decode are fine, as
//! long as they are refused without a panic. The targets in `fuzz_targets/` call these, and
//! `tests/corpus.rs` replays the committed corpus through them without a fuzzer.
//!
//! Where a decoder has an encoder, the property is a round trip: what decodes, encoded again,
//! decodes to the same value (and encodes to the same bytes). Where decoding rebuilds state
//! (snapshot shards, journal effects), the state must keep the invariants the rest of the
//! core relies on, and survive a snapshot of itself.

#![forbid(unsafe_code)]

pub mod seeds;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use promised_core::clock::{ManualClock, UnixMillis};
use promised_core::codec::{Reader, Writer};
use promised_core::domain::Day;
use promised_core::engine::{Engine, EngineConfig};
use promised_core::error::Result;
use promised_core::index::{AtpPolicy, Index, SkuPositions};
use promised_core::manifest::Manifest;
use promised_core::mutation::{Record, StoredRecord};
use promised_core::network::Network;
use promised_core::network_file::{NetworkChanges, NetworkFile};
use promised_core::reservation::Reservation;

/// Shards of the index the snapshot and replay targets restore into; the seeds are written
/// with as many.
pub const SHARDS: usize = 4;

/// "Now" wherever a decoder or an engine asks: 2026-03-02T15:00:00Z.
pub const NOW_MS: UnixMillis = 1_772_463_600_000;

/// A journal record (`StoredRecord::decode`): the record re-encoded from its decoded parts
/// decodes to the same parts, and its network and effects pass their own checks, as
/// recovery reads them.
pub fn journal_record(data: &[u8]) {
    let Ok(record) = StoredRecord::decode(data) else {
        return;
    };
    let effects = record.effects.rest();
    let encoded = reencode(&record);
    let again = StoredRecord::decode(&encoded).expect("a re-encoded record decodes");
    assert_eq!(again.source_seq, record.source_seq);
    assert_eq!(again.network, record.network);
    assert_eq!(again.cause, record.cause);
    assert_eq!(again.sync, record.sync);
    assert_eq!(again.reservations, record.reservations);
    assert_eq!(again.effects.rest(), effects);
    assert_eq!(reencode(&again), encoded, "a record has one encoding");
    if let Some(network) = record.network {
        network_codec(network);
    }
    journal_effects(effects);
    audited(record.reservations);
}

/// The bytes `Record::encode` writes for `record`: its effects stay encoded, so they are
/// appended as they are, where `Record::encode` puts them.
fn reencode(record: &StoredRecord<'_>) -> Vec<u8> {
    let parts = Record {
        source_seq: record
            .source_seq
            .map(|(source, seq)| (source.to_owned(), seq)),
        network: record.network.map(<[u8]>::to_vec),
        reservations: record.reservations.clone(),
        cause: record.cause.clone(),
        sync: record.sync.clone(),
        ..Record::default()
    };
    let mut bytes = parts.encode();
    bytes.extend_from_slice(record.effects.rest());
    bytes
}

/// One reservation (`Reservation::decode`): it round-trips, its encoding is read whole, and
/// it can be audited.
pub fn reservation(data: &[u8]) {
    let Ok(decoded) = Reservation::decode(&mut Reader::new(data)) else {
        return;
    };
    let mut w = Writer::default();
    decoded.encode(&mut w);
    let mut r = Reader::new(&w.buf);
    let again = Reservation::decode(&mut r).expect("an encoded reservation decodes");
    assert_eq!(again, decoded);
    assert!(r.is_empty(), "decoding reads the whole encoding");
    audited(vec![decoded]);
}

/// Puts `reservations` in a book as recovery does and audits it, as the audit loop does
/// soon after: the audit adds up every line's and allocation's quantities.
fn audited(reservations: Vec<Reservation>) {
    let config = EngineConfig {
        shards: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::new(config, Arc::new(ManualClock::new(NOW_MS)));
    engine.restore_reservations(reservations);
    let _ = engine.audit(false).into_result();
}

/// A network image (`Network::decode`): what decodes encodes to bytes that decode and encode
/// to the same bytes again.
pub fn network_codec(data: &[u8]) {
    let Ok(network) = Network::decode(data, NOW_MS) else {
        return;
    };
    let encoded = network.encode();
    let again = Network::decode(&encoded, NOW_MS).expect("an encoded network decodes");
    assert_eq!(again.version(), network.version());
    assert_eq!(again.encode(), encoded, "a network has one encoding");
}

/// A snapshot chunk: shards (`Index::restore_shard`) one after another, as recovery reads
/// them. What restores keeps the index's invariants and survives a snapshot of itself.
pub fn snapshot_chunk(data: &[u8]) {
    let index = Index::new(SHARDS);
    let mut r = Reader::new(data);
    while !r.is_empty() {
        if index.restore_shard(&mut r).is_err() {
            return;
        }
    }
    let restored = contents(&index);
    assert_consistent(&index, &restored);
    let copy = snapshot_of(&index);
    assert_eq!(
        contents(&copy),
        restored,
        "a snapshot holds what was restored"
    );
    assert_consistent(&copy, &restored);
}

/// Journal effects replayed (`Index::replay`) onto an empty index. What replays keeps the
/// index's invariants; replaying the same effects again changes nothing, and neither does
/// replaying them onto a snapshot of the result, which already holds every one of them.
pub fn journal_effects(data: &[u8]) {
    let index = Index::new(SHARDS);
    let mut replay = index.begin_replay();
    if index.replay(&mut Reader::new(data), &mut replay).is_err() {
        return;
    }
    let replayed = contents(&index);
    assert_consistent(&index, &replayed);
    let applied = replay.applied;
    index
        .replay(&mut Reader::new(data), &mut replay)
        .expect("effects that replayed once replay again");
    assert_eq!(replay.applied, applied, "nothing applies twice");
    assert_eq!(contents(&index), replayed);
    let copy = snapshot_of(&index);
    let mut on_copy = copy.begin_replay();
    copy.replay(&mut Reader::new(data), &mut on_copy)
        .expect("effects that replayed once replay onto a snapshot");
    assert_eq!(on_copy.applied, 0, "the snapshot holds every effect");
    assert_eq!(contents(&copy), replayed);
}

/// A snapshot manifest (`Manifest::decode`), as stored and with its checksum made right, so
/// that mutations reach the fields behind it. A manifest that decodes round-trips, its
/// network passes its own check, and an index of its shard count can be made, as recovery
/// makes one.
pub fn manifest(data: &[u8]) {
    manifest_decoded(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    manifest_decoded(&sealed);
}

fn manifest_decoded(data: &[u8]) {
    let Ok(decoded) = Manifest::decode(data) else {
        return;
    };
    let again = Manifest::decode(&decoded.encode()).expect("an encoded manifest decodes");
    assert_eq!(again, decoded);
    assert_eq!(
        again.encode(),
        decoded.encode(),
        "a manifest has one encoding"
    );
    network_codec(&decoded.network);
    let index = Index::new(decoded.shard_count as usize);
    assert_eq!(index.shard_count(), decoded.shard_count as usize);
}

/// A network file (`NetworkFile::parse`, then `changes`), as TOML and as YAML. A file that
/// parses and applies gives a network that survives the journal's encoding, and holds only
/// postal codes an Admin RPC would take: named, on the globe.
pub fn network_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for yaml in [false, true] {
        let Ok(changes) = NetworkFile::parse(text, yaml).and_then(NetworkFile::changes) else {
            continue;
        };
        let codes = changes.postal_codes.clone();
        let Ok(network) = applied(changes) else {
            continue;
        };
        for ((country, code), (lat, lon)) in codes {
            assert!(!code.is_empty(), "a postal code is named");
            let on_globe = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
            assert!(
                on_globe,
                "{country} {code} at ({lat}, {lon}) is on the globe"
            );
        }
        let encoded = network.encode();
        let decoded = Network::decode(&encoded, NOW_MS).expect("a network a file built decodes");
        assert_eq!(decoded.encode(), encoded);
    }
}

/// The network `changes` make, upserted part by part as the server applies a file.
pub fn applied(changes: NetworkChanges) -> Result<Arc<Network>> {
    let engine = Engine::new(EngineConfig::default(), Arc::new(ManualClock::new(NOW_MS)));
    engine.upsert_groups(changes.groups)?.into_result();
    engine.upsert_nodes(changes.nodes)?.into_result();
    engine.upsert_sources(changes.sources)?.into_result();
    engine
        .upsert_service_levels(changes.service_levels)?
        .into_result();
    engine
        .upsert_postal_codes(changes.postal_codes)?
        .into_result();
    Ok(engine.network())
}

/// Every SKU's entry, by SKU. The index lists its SKUs only to an audit, so `reconcile`
/// (which repairs nothing here) is the way to learn them.
fn contents(index: &Index) -> BTreeMap<String, SkuPositions> {
    let skus = RefCell::new(Vec::new());
    index.reconcile(
        &|_, _| Vec::new(),
        &|sku| {
            skus.borrow_mut().push(sku.to_owned());
            Vec::new()
        },
        &mut |_| {},
        false,
        None,
    );
    skus.into_inner()
        .into_iter()
        .map(|sku| {
            let entry = index.read(&sku, |entry| entry.cloned());
            (sku, entry.expect("a listed SKU has an entry"))
        })
        .collect()
}

/// The invariants the core relies on: counters agree with the entries, each SKU's
/// positions ascend by node (lookups are binary searches) and the figures of an
/// availability answer can be computed from every position.
fn assert_consistent(index: &Index, entries: &BTreeMap<String, SkuPositions>) {
    let positions: usize = entries.values().map(|e| e.positions().len()).sum();
    assert_eq!(index.sku_count(), entries.len() as u64, "SKUs counted");
    assert_eq!(
        index.position_count(),
        positions as u64,
        "positions counted"
    );
    let policy = AtpPolicy::default();
    for entry in entries.values() {
        let nodes: Vec<u32> = entry.positions().iter().map(|p| p.node()).collect();
        assert!(
            nodes.windows(2).all(|w| w[0] < w[1]),
            "positions ascend by node: {nodes:?}"
        );
        for position in entry.positions() {
            let _ = position.totals();
            let safety = position.safety(0);
            let _ = position.atp_profile(Day(0), safety, &policy);
        }
    }
}

/// A new index holding every shard of `index`, encoded and restored as a snapshot does.
fn snapshot_of(index: &Index) -> Index {
    let copy = Index::new(index.shard_count());
    for shard in 0..index.shard_count() {
        let mut w = Writer::default();
        index.encode_shard(shard, &mut w);
        copy.restore_shard(&mut Reader::new(&w.buf))
            .expect("an encoded shard restores");
    }
    copy
}
