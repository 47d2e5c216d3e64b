//! # promised
//!
//! A real-time inventory and order-promising service: one live, in-memory, sharded view of
//! supply at every node, fed by streams from the systems that own it, answering availability,
//! promises and routing over gRPC in microseconds of server time.
//!
//! ## Layers, in the order a request passes them
//!
//! - **Edges** authenticate, authorise, convert, check and bound a request, then call one
//!   [`app::App`] method: [`grpc`] (generated types in [`grpc::pb`], the auth layer that admits
//!   every call by scope, conversions, the status table, one adapter per service, the router
//!   with health and reflection), [`http`] (the same API as resource-style HTTP/JSON routes
//!   that call the gRPC adapters, webhooks for supply batches, the OpenAPI document), and
//!   [`network_file`] (a network loaded from TOML or YAML at
//!   start), and [`feeds`] (supply batches read from NATS JetStream by durable consumers, or
//!   with the `kafka` feature from one-partition Kafka topics, exactly once across crashes,
//!   poison messages dead-lettered). [`import`] reads supply CSV
//!   files incrementally for `promised import` and the HTTP upload, which send them through
//!   the `Supply` API. [`publish`] sends the journal's changes out as CloudEvents (webhooks,
//!   NATS JetStream, Kafka topics with the `kafka` feature), each sink from its durable
//!   cursor. [`auth`] verifies credentials (API
//!   keys, JWTs, client certificates) for any edge.
//! - **Application** [`app`]: the one writer. Each mutating method checks that the store can
//!   take a write, runs the core operation, makes its record durable through [`checkpoint`],
//!   and only then answers. [`watch`] reads durable journal records back, each decoded once
//!   for every watcher, as the changes (or band crossings) watchers are shown.
//! - **Core** (the `promised-core` crate, re-exported here under the same module names):
//!   [`domain`], [`network`], [`index`] and ATP, [`ingest`], [`rejections`], [`reservation`] and
//!   [`reserve`], [`delivery`] and [`cost`], [`promise`], [`route`], [`query`] and [`explain`],
//!   [`view`], [`band`], [`flow`], [`audit`], [`sync`] (full syncs), over the [`engine`] handle; [`mutation`] records, snapshot
//!   [`manifest`]s and their [`codec`]; a promise or route stops at its [`deadline`].
//! - **Storage** [`checkpoint`]: the group-committed Redis journal, snapshots, recovery, and
//!   the outbound sinks' cursors and dead letters.
//! - **Process** [`server`]: listeners ([`connections`] bounds them and rests a connection
//!   that keeps being refused past its [`allowance`], [`request_bytes`] bounds the
//!   request bytes in flight over the gRPC one, [`tls`] encrypts them and reloads their
//!   certificates), background loops (expiry, audit, gauges, snapshots)
//!   and graceful shutdown; [`config`] parses flags and `PROMISED_*` variables once;
//!   [`metrics`] names every metric and serves `/metrics`; [`telemetry`] installs logging and,
//!   when configured, exports the spans of calls, writes and journal commits over OTLP. The demo is an example
//!   (`examples/demo`): a client of this library and of the gRPC API like any other.
//!
//! ## Where a request goes
//!
//! `Availability/GetAvailability` -> [`grpc`] adapter -> [`app::App::availability`] ->
//! [`query`]; `Availability/Explain` likewise to [`explain`]. `Reservations/Reserve` -> [`grpc`] -> [`app::App::reserve`] -> [`reserve`] ->
//! [`checkpoint`] -> answer. Every other RPC is the same shape: one adapter, one `App` method.
//! Over HTTP, `POST /v1/reservations` -> [`http`] route (admitted by the same scope, JSON
//! transcoded to the generated message) -> the same `Reservations/Reserve` adapter.
//!
//! ## Invariants
//!
//! - The core does no I/O and never awaits: its crate has no tokio, tonic, prost or redis.
//! - Only [`grpc`], [`http`] (through the gRPC adapters), [`feeds`] (whose messages are
//!   `SupplyBatch`es) and [`publish`] (whose events' data are the watch messages as JSON)
//!   name protobuf types; only
//!   [`checkpoint`] talks to Redis; only [`config`]
//!   reads the environment; only [`metrics`] names metrics.
//! - Only [`app::App`] commits a mutation: no answer before its record is durable (when Redis
//!   is configured), and an error means it was not acknowledged. Recovery applies each
//!   journaled effect at most once, by shard sequence number.
//! - Index lock guards never leave [`index`] and are never held across `.await`.
//! - Every limit (pairs per call, batch size, field length, log length, message size, feed
//!   streams, calls and request bytes in flight, work time per promise or route) is
//!   configurable; a request over a limit is refused, never queued without bound.
//! - Time comes from a [`clock::Clock`], so tests control it (token expiry included).
//! - Default deny: a call reaches a handler only with an [`auth::Identity`] holding its
//!   method's scope (health and reflection excepted); refusals change nothing. That identity,
//!   with the request's id, is the [`app::Caller`] every write records in the audit trail.

pub use promised_core::{
    audit, band, calendar, clock, codec, cost, deadline, delivery, domain, engine, error, explain,
    flow, index, ingest, manifest, mutation, network, normalize, promise, query, rate_card,
    rejections, reservation, reserve, route, spec, sync, view,
};

pub mod allowance;
pub mod app;
pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod connections;
pub mod consistency;
pub mod feeds;
pub mod grpc;
pub mod http;
pub mod import;
pub mod metrics;
pub mod network_file;
pub mod publish;
pub mod request_bytes;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod watch;
