//! # promised-core
//!
//! The pure core of promised: everything that decides, nothing that talks. Synchronous, no
//! I/O, no transport or storage types; the server crate adds the edges (gRPC), durability
//! (Redis) and metrics around it. This crate's `Cargo.toml` has no tokio, tonic, prost or
//! redis, so the compiler keeps it that way.
//!
//! ## Modules, from vocabulary up to the operations
//!
//! - [`clock`], [`codec`], [`error`]: time, the byte codec of records, the error enum;
//!   [`deadline`]: when a request's work must stop.
//! - [`calendar`], [`domain`]: days and operating calendars; nodes, sources, supply updates,
//!   service levels; [`spec`]: their text forms, checked.
//! - [`network`]: nodes, groups, sources, service levels, postal codes, swapped whole on change;
//!   [`network_file`]: all of them as a TOML or YAML file states them.
//! - [`index`]: positions sharded by SKU, and time-phased ATP of one position.
//! - [`rejections`]: the bounded log of rejected updates.
//! - [`mutation`]: the record a change leaves for the journal; [`manifest`]: the table of
//!   contents of a snapshot generation.
//! - [`reservation`]: the reservation book; [`flow`]: the max-flow coverage check.
//! - [`engine`]: the shared core handle every operation below works on.
//! - [`view`]: ATP at one instant (days per node, stale-feed policy, safety stock);
//!   [`band`]: stock bands with hysteresis, what a storefront shows of a figure.
//! - [`ingest`]: supply batches: sequence checks, per-update validation; a `SHIP` update is
//!   handed to [`reserve`], which owns allocations.
//! - [`query`]: availability: per-node, group and network ATP, earliest dates; [`explain`]:
//!   how one of those figures is made, part by part.
//! - [`reserve`]: holds, updates, expiry, commits into allocations; [`audit`] checks them.
//! - [`delivery`]: ship and delivery dates of one node for one service level; [`cost`]: what
//!   a package and a plan cost, for promises and routes alike.
//!   [`rate_card`]: carriers' zone and weight tables and what items weigh, checked.
//! - [`promise`]: delivery promises per service level for a cart.
//! - [`route`]: cost-optimal node assignment (branch and bound), alternatives, batch waves.
//!
//! ## Invariants
//!
//! - Nothing here awaits, spawns, opens a socket or a file, or reads the environment.
//! - Operations that change state return a [`mutation::Mutation`]: the answer and the record
//!   the caller must make durable before acknowledging; it cannot be built outside this crate.
//! - A reservation takes its book shard, then its SKUs' index shards in ascending order; it
//!   checks every line on copies before changing anything, so holds are all or nothing.
//! - Index lock guards never leave [`index`], and a thread holding one never takes another
//!   key's lock, except several shards in ascending order.
//! - Time comes from a [`clock::Clock`], so tests control it.

pub mod audit;
pub mod band;
pub mod calendar;
pub mod clock;
pub mod codec;
pub mod cost;
pub mod deadline;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod error;
pub mod explain;
pub mod flow;
mod full_sync;
pub mod index;
pub mod ingest;
pub mod manifest;
pub mod mutation;
pub mod network;
pub mod network_file;
pub mod normalize;
pub mod promise;
pub mod query;
pub mod rate_card;
pub mod rejections;
pub mod reservation;
pub mod reserve;
pub mod route;
pub mod spec;
pub mod sync;
pub mod view;

#[cfg(test)]
mod deadline_tests;

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod explain_tests;
#[cfg(test)]
mod undo_tests;

#[cfg(test)]
mod test_support;
