//! Integration tests: the real service over gRPC and HTTP/JSON on loopback.

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
mod consistency;
mod contract;
mod crash;
mod deadlines;
mod durability;
mod feeds;
mod flood;
mod helpers;
mod http;
mod http_client;
mod http_upload;
mod http_watch;
mod http_webhooks;
mod import;
mod ingest;
#[cfg(feature = "kafka")]
mod kafka;
mod model;
mod mutating;
mod nats;
mod normalize;
mod operations;
mod pickup;
mod promising;
mod publish;
mod rate_cards;
mod raw;
mod redis;
mod reservations;
mod retries;
mod route_plans;
mod routing;
mod security;
mod signing_keys;
mod sync;
#[cfg(feature = "kafka")]
mod tansu;
mod traces;
mod transport;
mod unsettled;
mod validation;
mod watch;
mod waves;
