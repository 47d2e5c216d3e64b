//! Integration tests: the real service over gRPC on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test's helpers fail the test with the reason"
)]

mod audit;
mod authorization;
mod availability;
mod bad_input;
mod binary;
mod connections;
mod contract;
mod crash;
mod deadlines;
mod durability;
mod flood;
mod helpers;
mod ingest;
mod model;
mod operations;
mod promising;
mod raw;
mod redis;
mod reservations;
mod routing;
mod security;
mod traces;
mod transport;
mod validation;
