//! Integration tests: the real service over gRPC on loopback.

mod availability;
mod durability;
mod helpers;
mod ingest;
mod operations;
mod redis;
mod validation;
