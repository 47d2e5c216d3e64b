//! Resident memory per position: loads SKUS x NODES on-hand positions of the demo network
//! through `apply_batch` and prints the growth of the resident set per position.
//!
//! `cargo bench --bench memory` measures 200,000 SKUs x 50 nodes and 2,000,000 SKUs x 5 nodes
//! (10 M positions each); `cargo bench --bench memory -- 20000x50` measures the shapes given.
//! Each shape runs in a fresh child process, so one shape's freed memory does not hide in the
//! next one's baseline. Under `cargo test --benches` it only runs a tiny shape as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::process::Command;
use std::time::Instant;

use promised::domain::SupplyUpdate;
use promised::metrics::resident_memory_bytes;

use common::{demo_engine, on_hand_owner, on_hand_set, sku, Feed, BATCH, NOW_MS};

const DEFAULT_SHAPES: [&str; 2] = ["200000x50", "2000000x5"];

/// What `cargo test --benches` runs: enough to prove the program works.
const SMOKE_SHAPE: &str = "1000x50";

/// Marks the child invocation that measures one shape.
const CHILD_FLAG: &str = "--child";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, shape] = args.as_slice() {
        if flag == CHILD_FLAG {
            measure(parse_shape(shape));
            return;
        }
    }
    let given: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let shapes = match (given.is_empty(), common::benchmarking()) {
        (false, _) => given,
        (true, true) => DEFAULT_SHAPES.to_vec(),
        (true, false) => vec![SMOKE_SHAPE],
    };
    let program = std::env::current_exe().expect("the path of this program");
    for shape in shapes {
        parse_shape(shape);
        let status = Command::new(&program)
            .args([CHILD_FLAG, shape])
            .status()
            .expect("run the measuring child process");
        assert!(status.success(), "measuring {shape} failed: {status}");
    }
}

/// `SKUSxNODES`, e.g. `200000x50`; at most the 50 nodes of the demo network.
fn parse_shape(shape: &str) -> (usize, usize) {
    let parsed = shape
        .split_once('x')
        .and_then(|(skus, nodes)| Some((skus.parse().ok()?, nodes.parse().ok()?)));
    match parsed {
        Some((skus, nodes)) if skus > 0 && (1..=50).contains(&nodes) => (skus, nodes),
        _ => panic!("shape {shape:?} is not SKUSxNODES with 1 to 50 nodes"),
    }
}

/// Loads `skus` x `nodes` on-hand positions and prints the resident memory they take.
fn measure((skus, nodes): (usize, usize)) {
    let engine = demo_engine();
    let targets: Vec<(String, usize)> = engine.network().nodes()[..nodes]
        .iter()
        .map(|n| {
            let feed = usize::from(on_hand_owner(&engine, &n.id) == "POS");
            (n.id.clone(), feed)
        })
        .collect();
    let mut feeds = [Feed::resume(&engine, "WMS"), Feed::resume(&engine, "POS")];
    let mut pending: [Vec<SupplyUpdate>; 2] = [Vec::new(), Vec::new()];
    let before = resident_memory_bytes().expect("resident memory is readable on Linux");
    let started = Instant::now();
    for i in 0..skus {
        let sku = sku(i);
        for (node, feed) in &targets {
            let quantity = (i % 500) as i64 + 1;
            pending[*feed].push(on_hand_set(sku.clone(), node.clone(), quantity, NOW_MS));
            if pending[*feed].len() == BATCH {
                feeds[*feed].apply_all(&engine, std::mem::take(&mut pending[*feed]));
            }
        }
    }
    for (feed, updates) in feeds.iter_mut().zip(pending) {
        if !updates.is_empty() {
            feed.apply_all(&engine, updates);
        }
    }
    let elapsed = started.elapsed();
    let after = resident_memory_bytes().expect("resident memory is readable on Linux");
    let positions = engine.stats().positions;
    assert_eq!(
        positions,
        (skus * nodes) as u64,
        "every update makes a position"
    );
    let grown = after.saturating_sub(before);
    println!(
        "memory/{skus}x{nodes}: {positions} positions; resident {:.1} MiB before, {:.1} MiB after; \
         {:.1} bytes/position (loaded in {:.1} s, {:.2} M updates/s including building them)",
        mib(before),
        mib(after),
        grown as f64 / positions as f64,
        elapsed.as_secs_f64(),
        positions as f64 / elapsed.as_secs_f64() / 1e6,
    );
    // The engine is still alive here, so everything counted above was held by it.
    drop(engine);
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
