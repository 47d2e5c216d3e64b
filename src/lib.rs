//! # promised
//!
//! A real-time inventory and order-promising service: one live, in-memory, sharded view of
//! supply at every node, fed by streams from the systems that own it, answering availability
//! over gRPC in microseconds of server time.
//!
//! ## Modules, in the order data flows through them
//!
//! - [`config`]: flags and `PROMISED_*` variables, parsed once into typed values.
//! - [`grpc`]: the gRPC layer: generated types ([`grpc::pb`]), conversions, status mapping,
//!   and the service adapters (convert, call the engine, convert back).
//! - [`ingest`]: supply batches: sequence checks, per-update validation, rejection log, and
//!   shipments (`SHIP`) of committed orders.
//! - [`query`]: availability: per-node, group and network ATP, earliest dates.
//! - [`reserve`] over [`reservation`]: holds, updates, expiry, commits into allocations;
//!   [`audit`] checks that positions carry exactly the live holds.
//! - [`promise`]: delivery dates per service level from ATP, [`calendar`]s, cutoffs, carriers.
//! - [`route`]: cost-optimal node assignment (branch and bound), alternatives, batch waves.
//! - [`view`]: ATP at one instant (days per node, stale-feed policy, safety stock) and whether
//!   pooled group/network holds stay covered, checked as a max-[`flow`].
//! - [`engine`]: the shared core handle all of the above operate on.
//! - [`index`]: positions sharded by SKU, and time-phased ATP of one position.
//! - [`network`]: nodes, groups, sources, service levels, postal codes, swapped whole on change.
//! - [`mutation`]: the record a change leaves for the journal; [`codec`] its byte encoding.
//! - [`checkpoint`]: Redis: the group-committed journal, snapshots, recovery.
//! - [`domain`], [`error`], [`clock`]: vocabulary, errors and time.
//! - [`metrics`]: every metric name, and the `/metrics` endpoint.
//! - [`server`]: startup, serving, background loops and graceful shutdown; [`network_file`]
//!   and [`demo`].
//!
//! ## Invariants
//!
//! - The core (`domain`, `network`, `index`, `ingest`, `query`, `engine`) is synchronous and
//!   does no I/O; it never awaits.
//! - Only [`grpc`] imports the generated protobuf types; only [`checkpoint`] talks to Redis;
//!   only [`config`] reads the environment; only [`metrics`] names metrics.
//! - No mutation is acknowledged before its record is durable (when Redis is configured);
//!   recovery applies each journaled effect at most once, by shard sequence number.
//! - A reservation takes its book shard, then its SKUs' index shards in ascending order; it
//!   checks every line on copies before changing anything, so holds are all or nothing.
//! - Index lock guards never leave [`index`], are never held across `.await`, and a thread
//!   holding one never takes another key's lock, except several shards in ascending order.
//! - Every limit (pairs per call, batch size, field length, log length, message size, feed
//!   streams) is configurable; a request over a limit is refused, never queued without bound.
//! - Time comes from a [`clock::Clock`], so tests control it.

pub use promised_core::{
    audit, calendar, clock, codec, delivery, domain, engine, error, flow, index, ingest, mutation,
    network, promise, query, rejections, reservation, reserve, route, view,
};

pub mod app;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod grpc;
pub mod metrics;
pub mod network_file;
pub mod server;
