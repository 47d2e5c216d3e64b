//! The quick comparison end to end against a tiny workload: every target starts on loopback,
//! is loaded, and answers. Numbers belong in the reports; this only checks that the run
//! completes and that every target did some work.
//!
//! Needs `redis-server` and the PostgreSQL server binaries (Debian packages `redis-server` and
//! `postgresql`); without them it fails and says so.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The run takes a few seconds (with a debug build); this bounds a hang.
const DEADLINE: Duration = Duration::from_secs(180);

struct ReportDir(PathBuf);

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What promised-load printed (its progress lines and any error).
fn log_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn phases<'a>(report: &'a Value, section: &str) -> &'a [Value] {
    report[section]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} in the report"))
}

fn targets(phases: &[Value]) -> Vec<&str> {
    phases
        .iter()
        .map(|p| p["target"].as_str().expect("a target name"))
        .collect()
}

#[test]
fn the_quick_comparison_runs_against_every_target() {
    if let Err(missing) = promised_load::datastores::server_binaries() {
        panic!("the load-test smoke test needs PostgreSQL: {missing:#}");
    }
    let dir =
        ReportDir(std::env::temp_dir().join(format!("promised-load-smoke-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("report directory");
    let log_path = dir.0.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut run = Command::new(env!("CARGO_BIN_EXE_promised-load"))
        .args(["compare", "--quick", "--name", "smoke", "--no-pin"])
        .args([
            "--skus",
            "300",
            "--warmup-secs",
            "0.2",
            "--duration-secs",
            "1",
        ])
        .args(["--rate", "200", "--feed-rate", "200"])
        .args(["--concurrency", "4", "--connections", "2"])
        .arg("--report-dir")
        .arg(&dir.0)
        .stderr(log)
        .spawn()
        .expect("promised-load starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().expect("waiting for promised-load") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = run.kill();
            panic!(
                "the quick comparison did not finish within {DEADLINE:?}:\n{}",
                log_of(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "promised-load compare failed ({status}):\n{}",
        log_of(&log_path)
    );

    let text = std::fs::read_to_string(dir.0.join("smoke.json")).expect("the JSON report");
    let report: Value = serde_json::from_str(&text).expect("valid JSON");
    for file in ["smoke.md", "smoke.svg"] {
        assert!(dir.0.join(file).is_file(), "{file} written");
    }
    let every = ["floor", "promised", "redis-peer", "postgres-peer"];
    for section in ["capacity", "equal_load"] {
        let phases = phases(&report, section);
        assert_eq!(targets(phases), every, "{section}");
        for phase in phases {
            let rate = phase["ops_per_sec"].as_f64().unwrap_or_default();
            assert!(rate > 0.0, "{section}: no throughput in {phase}");
        }
    }
    let scenarios = phases(&report, "scenarios");
    assert_eq!(scenarios.len(), 4, "checkout, oms, feed, mixed");
    for phase in scenarios {
        let ops = phase["ops_per_sec"].as_f64().unwrap_or_default();
        let updates = phase["feed_updates_per_sec"].as_f64().unwrap_or_default();
        assert!(ops > 0.0 || updates > 0.0, "no throughput in {phase}");
    }
}
