//! The committed corpus without a fuzzer: every seed is a real encoding that decodes and
//! keeps its target's properties, and so does every file in `corpus/`. With
//! `PROMISED_FUZZ_WRITE_SEEDS=1` the seeds are written to `corpus/<target>/` first.

use std::path::{Path, PathBuf};

use promised_fuzz::seeds::{seeds, Seed};

/// A target's check of one input.
type Check = fn(&[u8]);

/// The targets, by the name of their corpus directory, and their checks.
const TARGETS: [(&str, Check); 7] = [
    ("journal_record", promised_fuzz::journal_record),
    ("journal_effects", promised_fuzz::journal_effects),
    ("snapshot_chunk", promised_fuzz::snapshot_chunk),
    ("reservation", promised_fuzz::reservation),
    ("network_codec", promised_fuzz::network_codec),
    ("manifest", promised_fuzz::manifest),
    ("network_file", promised_fuzz::network_file),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn check_of(target: &str) -> Check {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no target {target}"))
}

#[test]
fn every_seed_is_a_real_encoding_that_keeps_its_properties() {
    let seeds = seeds().expect("the seed engine takes every change");
    for (target, _) in TARGETS {
        assert!(
            seeds.iter().any(|s| s.target == target),
            "no seed for {target}"
        );
    }
    for Seed {
        target,
        name,
        bytes,
    } in &seeds
    {
        check_of(target)(bytes);
        assert!(decodes(target, bytes), "{target}/{name} does not decode");
    }
    if std::env::var_os("PROMISED_FUZZ_WRITE_SEEDS").is_some() {
        for seed in &seeds {
            let dir = corpus().join(seed.target);
            std::fs::create_dir_all(&dir).expect("corpus directory");
            std::fs::write(dir.join(&seed.name), &seed.bytes).expect("seed written");
        }
    }
}

/// Whether `bytes` decode as `target` reads them, so a seed reaches past the first check.
fn decodes(target: &str, bytes: &[u8]) -> bool {
    use promised_core::codec::Reader;
    match target {
        "journal_record" => promised_core::mutation::StoredRecord::decode(bytes).is_ok(),
        "journal_effects" => {
            let index = promised_core::index::Index::new(promised_fuzz::SHARDS);
            let mut replay = index.begin_replay();
            index.replay(&mut Reader::new(bytes), &mut replay).is_ok()
        }
        "snapshot_chunk" => {
            let index = promised_core::index::Index::new(promised_fuzz::SHARDS);
            let mut r = Reader::new(bytes);
            std::iter::from_fn(|| (!r.is_empty()).then(|| index.restore_shard(&mut r)))
                .all(|restored| restored.is_ok())
        }
        "reservation" => {
            promised_core::reservation::Reservation::decode(&mut Reader::new(bytes)).is_ok()
        }
        "network_codec" => {
            promised_core::network::Network::decode(bytes, promised_fuzz::NOW_MS).is_ok()
        }
        "manifest" => promised_core::manifest::Manifest::decode(bytes).is_ok(),
        "network_file" => std::str::from_utf8(bytes).is_ok_and(|text| {
            [false, true].into_iter().any(|yaml| {
                promised_core::network_file::NetworkFile::parse(text, yaml)
                    .and_then(|file| file.changes())
                    .is_ok_and(|changes| promised_fuzz::applied(changes).is_ok())
            })
        }),
        _ => false,
    }
}

#[test]
fn every_committed_corpus_file_keeps_its_target_properties() {
    let mut checked = 0;
    for (target, check) in TARGETS {
        let Ok(files) = std::fs::read_dir(corpus().join(target)) else {
            continue;
        };
        for file in files {
            let path = file.expect("corpus entry").path();
            check(&std::fs::read(&path).expect("corpus file"));
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "the corpus is committed under {}",
        corpus().display()
    );
}

/// Older formats this build still reads keep a few files in the corpus, so that fuzzing
/// reaches their branches too: `v2-*` journal records (reservations without an owner),
/// `v3-*` ones (without a kept answer), `v1-*` and `v2-*` manifests. Each is of that
/// version, and decodes.
#[test]
fn the_corpus_keeps_older_formats_that_still_decode() {
    let mut checked = 0;
    let older = [
        ("journal_record", 2),
        ("journal_record", 3),
        ("manifest", 1),
        ("manifest", 2),
    ];
    for (target, version) in older {
        let prefix = format!("v{version}-");
        let files = std::fs::read_dir(corpus().join(target)).expect("corpus directory");
        for file in files {
            let path = file.expect("corpus entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !name.starts_with(&prefix) {
                continue;
            }
            let bytes = std::fs::read(&path).expect("corpus file");
            assert_eq!(
                stated_version(target, &bytes),
                Some(version),
                "{target}/{name}"
            );
            assert!(decodes(target, &bytes), "{target}/{name} does not decode");
            checked += 1;
        }
    }
    assert!(
        checked >= older.len(),
        "older formats are kept in the corpus"
    );
}

/// The format version a file of `target` states: a journal record's first byte, a
/// manifest's two after `PRMS`.
fn stated_version(target: &str, bytes: &[u8]) -> Option<u16> {
    match target {
        "journal_record" => bytes.first().map(|&v| v.into()),
        "manifest" => bytes.get(4..6).map(|v| u16::from_le_bytes([v[0], v[1]])),
        _ => None,
    }
}
