//! Bearer credentials per call: a JWT verified before (the token cache), a static API key, and
//! a JWT seen for the first time (HS256 signature, claims), so the cache's saving is measured
//! in the same run.
//!
//! `cargo bench --bench auth`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench program stops with the reason when its setup is broken"
)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use promised::auth::Authenticator;
use promised::clock::ManualClock;

use common::{BenchSecurity, BENCH_API_KEY, NOW_MS};

fn main() {
    let security = BenchSecurity::new("auth");
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let auth = Authenticator::load(&security.credentials_file(), clock).expect("credentials");
    let exp_ms = NOW_MS + 3_600_000;
    let reused = security.token("checkout", "availability:read promise reserve", exp_ms);
    auth.bearer(&reused).expect("a valid token");
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("auth");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("jwt_cached", |b| {
        b.iter(|| black_box(auth.bearer(black_box(&reused)).expect("cached")))
    });
    // Tokens never seen before, made ahead of the timed loop.
    let mut fresh = 0u64;
    group.bench_function("jwt_first_seen_hs256", |b| {
        b.iter_custom(|iters| {
            let tokens: Vec<String> = (0..iters)
                .map(|_| {
                    fresh += 1;
                    security.token(&format!("caller-{fresh}"), "availability:read", exp_ms)
                })
                .collect();
            let started = Instant::now();
            for token in &tokens {
                black_box(auth.bearer(token).expect("valid"));
            }
            started.elapsed()
        })
    });
    group.bench_function("api_key", |b| {
        b.iter(|| black_box(auth.bearer(black_box(BENCH_API_KEY)).expect("known key")))
    });
    group.bench_function("unknown_token_refused", |b| {
        b.iter(|| black_box(auth.bearer(black_box("not-a-key")).is_err()))
    });
    group.finish();
    criterion.final_summary();
}
