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
//! - [`ingest`]: supply batches: sequence checks, per-update validation, rejection log.
//! - [`query`]: availability: per-node, group and network ATP, earliest dates.
//! - [`engine`]: the shared core handle that ingest, query and admin operate on.
//! - [`index`]: positions sharded by SKU, and time-phased ATP of one position.
//! - [`network`]: nodes, groups and sources, swapped whole on change.
//! - [`domain`], [`error`], [`clock`]: vocabulary, errors and time.
//! - [`metrics`]: every metric name, and the `/metrics` endpoint.
//! - [`server`]: startup, serving and graceful shutdown; [`network_file`] and [`demo`].
//!
//! ## Invariants
//!
//! - The core (`domain`, `network`, `index`, `ingest`, `query`, `engine`) is synchronous and
//!   does no I/O; it never awaits.
//! - Only [`grpc`] imports the generated protobuf types; only [`config`] reads the
//!   environment; only [`metrics`] names metrics.
//! - Index lock guards never leave [`index`], are never held across `.await`, and a thread
//!   holding one never takes another key's lock, except several shards in ascending order.
//! - Every limit (pairs per call, batch size, field length, log length, message size, feed
//!   streams) is configurable; a request over a limit is refused, never queued without bound.
//! - Time comes from a [`clock::Clock`], so tests control it.

#![forbid(unsafe_code)]

pub mod audit;
pub mod calendar;
pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod error;
pub mod flow;
pub mod grpc;
pub mod index;
pub mod ingest;
pub mod metrics;
pub mod mutation;
pub mod network;
pub mod network_file;
pub mod promise;
pub mod query;
pub mod reservation;
pub mod reserve;
pub mod route;
pub mod server;
pub mod view;
