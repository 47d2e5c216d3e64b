//! A supply CSV parsed and applied in process: the reader `promised import` and the upload
//! route use, chunk by chunk into SET batches applied by the engine (in memory, demo
//! network, WMS on-hand at every node it owns). Against a baseline measured in the same run:
//! the same updates, already built, applied as the same batches.
//!
//! `cargo bench --bench csv_import` measures 1,000,000 rows in 3 rounds;
//! `cargo bench --bench csv_import -- 200000` the count given. Under `cargo test --benches`
//! it only runs 10,000 rows once, as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::DateTime;
use promised::domain::{SupplyType, SupplyUpdate};
use promised::import::CsvRows;

use common::{benchmarking, demo_engine, on_hand_set, owned_nodes, sku, Feed, NOW_MS};

const DEFAULT_ROWS: usize = 1_000_000;
const SMOKE_ROWS: usize = 10_000;
const ROUNDS: usize = 3;
/// Rows per batch, as `promised import` sends them by default.
const ROWS_PER_CALL: usize = 5_000;

fn main() {
    let given = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok());
    let (rows, rounds) = match (given, benchmarking()) {
        (Some(n), _) => (n, ROUNDS),
        (None, true) => (DEFAULT_ROWS, ROUNDS),
        (None, false) => (SMOKE_ROWS, 1),
    };
    let nodes = owned_nodes(&demo_engine(), "WMS", SupplyType::OnHand);
    let (csv, updates) = file(rows, &nodes);
    for round in 1..=rounds {
        let parsed = parse_and_apply(&csv, rows);
        let baseline = apply(&updates);
        let rate = |took: Duration| rows as f64 / took.as_secs_f64();
        println!(
            "round {round}: {rows} rows ({} MB): parse+apply {parsed:.2?} = {:.0} rows/s; \
             apply only {baseline:.2?} = {:.0} rows/s; parse+apply / apply = {:.2}",
            csv.len() / 1_000_000,
            rate(parsed),
            rate(baseline),
            parsed.as_secs_f64() / baseline.as_secs_f64(),
        );
    }
}

/// The CSV of `rows` on-hand SETs over WMS's nodes, SKU-major, and the same updates built.
fn file(rows: usize, nodes: &[String]) -> (Vec<u8>, Vec<SupplyUpdate>) {
    let as_of_ms = NOW_MS - 1_000;
    let as_of = DateTime::from_timestamp_millis(as_of_ms)
        .expect("in range")
        .to_rfc3339();
    let mut csv = String::from("sku,node,supply type,quantity,reference,eta,as of\n");
    let mut updates = Vec::with_capacity(rows);
    for i in 0..rows {
        let (sku, node) = (sku(i / nodes.len()), nodes[i % nodes.len()].clone());
        let quantity = (i % 97) as i64;
        writeln!(csv, "{sku},{node},on_hand,{quantity},,,{as_of}").expect("in memory");
        updates.push(on_hand_set(sku, node, quantity, as_of_ms));
    }
    (csv.into_bytes(), updates)
}

/// Reads `csv` chunk by chunk and applies each as a batch on a fresh engine.
fn parse_and_apply(csv: &[u8], rows: usize) -> Duration {
    let engine = demo_engine();
    let mut feed = Feed::resume(&engine, "WMS");
    let started = Instant::now();
    let mut reader = CsvRows::new(csv).expect("the header names every column");
    let mut applied = 0;
    while let Some(chunk) = reader.next_chunk(ROWS_PER_CALL).expect("readable") {
        assert!(chunk.errors.is_empty(), "{:?}", chunk.errors[0]);
        let updates = chunk.rows.into_iter().map(|row| row.update).collect();
        applied += feed.apply_all(&engine, updates).applied as usize;
    }
    let took = started.elapsed();
    assert_eq!(applied, rows);
    took
}

/// Applies `updates` in the same batches, built before the clock starts, on a fresh engine.
fn apply(updates: &[SupplyUpdate]) -> Duration {
    let engine = demo_engine();
    let mut feed = Feed::resume(&engine, "WMS");
    let batches: Vec<Vec<SupplyUpdate>> =
        updates.chunks(ROWS_PER_CALL).map(<[_]>::to_vec).collect();
    let started = Instant::now();
    for batch in batches {
        feed.apply_all(&engine, batch);
    }
    started.elapsed()
}
