//! # promised-load
//!
//! Load tests of promised, side by side with the peers a team might build instead, all on
//! loopback and started by this crate's binary. `compare` runs everything and writes the
//! report; see `load-tests/README.md`.
//!
//! ## Modules
//!
//! - [`compare`]: the plan of a comparison and its orchestration.
//! - [`lab`]: the targets, started side by side and loaded with the same catalogue.
//! - [`service`]: promised as a target: the in-process server of the child process, catalogue
//!   loading through the feed API, heartbeats.
//! - [`peer`]: the peers' gRPC API and its two stores, [`peer::redis`] and [`peer::postgres`].
//! - [`datastores`]: private `redis-server` and PostgreSQL instances on free ports.
//! - [`process`]: child processes, CPU pinning, CPU time.
//! - [`catalogue`]: SKUs, supply, Zipf popularity.
//! - [`flood`]: a well-behaved client beside a flood of large requests.
//! - [`soak`]: the mixed scenario for a long run, minute by minute.
//! - [`workload`]: scenarios, operations, clients; [`feed`]: the streaming supply feed.
//! - [`generator`]: open- and closed-loop drivers; [`stats`]: recording and percentiles.
//! - [`report`]: Markdown and JSON; [`svg`]: the latency-percentile chart.

pub mod catalogue;
pub mod compare;
pub mod datastores;
pub mod feed;
pub mod flood;
pub mod generator;
pub mod lab;
pub mod peer;
pub mod process;
pub mod report;
pub mod service;
pub mod soak;
pub mod stats;
pub mod svg;
pub mod workload;
